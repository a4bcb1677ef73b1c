"""The resumable training loop: `fit_resumable` runs a Keras model in chunks of optimizer steps.

Keras' "epoch" is used as a *chunk* of `chunk_steps` optimizer steps: the state (which the JAX backend
keeps outside the Keras variables during an epoch) is synced at every chunk end, where we evaluate, log
and checkpoint (`funmatch.training.checkpoints`). The data "epoch" (passes over the training set) is
reported separately.

No host sync per step: the device runs ahead of Python. The loss the step returns is read to the host
every `check_every` steps (and at the first step and every chunk end), where the NaN and divergence
guards and the progress bar look at it; the time budget reads only host clocks, and with several
processes process 0 decides it at those same steps (one broadcast per `check_every` steps). Keras'
own callback list would read every log to the host after every step (`fit` passes them through
`float()`): `fit_resumable` hands `fit` a list that does not (`_StepCallbacks`).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from typing import Any, Callable, Sequence


from funmatch import runtime
from funmatch.errors import FunmatchError
from funmatch.training.checkpoints import Checkpointer

BUDGET_KEYS = ("max_wall_seconds", "max_cpu_seconds")
# Divergence: a loss this many times above its running minimum (floored at a thousandth of the first
# loss), or a trainable weight this large in magnitude, stops the run (NaN is caught on its own).
DIVERGENCE_FACTOR = 1e4
WEIGHT_BOUND = 1e6
CHECK_EVERY = 10  # steps between reads of the step's loss on the host (see the module docstring)


def diverged(loss: float, lowest: float, first: float) -> bool:
    """Whether `loss` grew by orders of magnitude (DIVERGENCE_FACTOR) over its running minimum `lowest`."""
    return loss > DIVERGENCE_FACTOR * max(lowest, 1e-3 * abs(first), 1e-12)


def largest_weight(groups: dict[str, Sequence[Any]]) -> tuple[float, str]:
    """(max |w|, variable path) over the trainable variables of the model groups (not optimizer, rng)."""
    import keras

    largest, where = 0.0, ""
    for group, variables in groups.items():
        if group in ("optimizer", "rng"):
            continue
        for variable in variables:
            if getattr(variable, "trainable", True) and "float" in str(variable.dtype):
                value = float(keras.ops.convert_to_numpy(keras.ops.max(keras.ops.abs(variable.value))))
                if not value <= largest:  # NaN counts as the largest
                    largest, where = value, str(getattr(variable, "path", variable.name))
    return largest, where


def _kept(checkpointer: Checkpointer) -> str:
    """What a stopped run leaves: "The last checkpoint (step N) is intact", or that none was written."""
    step = checkpointer.latest_step()
    return "No checkpoint was written" if step is None else f"The last checkpoint (step {step}) is intact"


def trim_records(workdir: pathlib.Path, step: int, chunk_steps: int) -> None:
    """Drops metrics.jsonl records after `step` and log.csv rows of later chunks: a resumed run (or one
    that fell back to an earlier checkpoint) writes them again, and each step must appear once."""
    from funmatch.training.checkpoints import atomic_write_text

    metrics = workdir / "metrics.jsonl"
    if metrics.exists():
        kept = []
        for line in metrics.read_text().splitlines():
            try:
                if line.strip() and int(json.loads(line)["step"]) <= step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill
        atomic_write_text(metrics, "".join(f"{line}\n" for line in kept))
    log = workdir / "log.csv"
    if log.exists():
        lines = log.read_text().splitlines()
        header, rows = lines[:1], lines[1:]
        kept = [row for row in rows if row.split(",")[0].strip().isdigit() and int(row.split(",")[0]) < step // chunk_steps]
        atomic_write_text(log, "".join(f"{line}\n" for line in header + kept))


def budget_spent(budget: dict[str, float] | None, train_seconds: float, train_cpu_seconds: float) -> str | None:
    """The budget key a run has used up ("max_wall_seconds" or "max_cpu_seconds"), or None.

    `budget` maps those keys to seconds (0 or missing: no limit). The clocks are the run's own, over
    all its resumes, periodic evaluation excluded: `train_seconds` (elapsed) and `train_cpu_seconds`
    (the process's CPU time, all threads). Sizing two runs by the same clock keeps them at equal
    training time even when the machine gets busier during one of them.
    """
    spent = {"max_wall_seconds": train_seconds, "max_cpu_seconds": train_cpu_seconds}
    return next((key for key in BUDGET_KEYS if (budget or {}).get(key) and spent[key] >= float(budget[key])), None)


def _build_loop_callback(
    *,
    start_step: int,
    total_steps: int,
    chunk_steps: int,
    images_per_step: int,
    steps_per_data_epoch: float,
    checkpointer: Checkpointer,
    groups: Callable[[], dict[str, Sequence[Any]]],
    evaluate: Callable[[int], dict[str, float]] | None,
    eval_every: int,
    workdir: pathlib.Path,
    progress: bool,
    description: str,
    loss_key: str = "loss",
    previous_train_seconds: float = 0.0,
    previous_train_cpu_seconds: float = 0.0,
    budget: dict[str, float] | None = None,
    check_every: int = CHECK_EVERY,
):
    import keras

    class LoopCallback(keras.callbacks.Callback):
        """Step counting, progress bar, NaN guard, time budget (`step_end`, called by `_StepCallbacks`);
        evaluation, logging and checkpoints at chunk ends."""

        def __init__(self):
            super().__init__()
            self.step = start_step
            self.bar = None
            self.chunk_start_time = None
            self.chunk_start_step = start_step
            self.metrics_path = workdir / "metrics.jsonl"
            # Seconds spent in fit (this run so far, over all resumes: carried in the checkpoint's meta),
            # compilation included, periodic evaluation excluded.
            self.train_seconds_before = float(previous_train_seconds)
            self.train_begin_time = None
            self.train_cpu_seconds_before = float(previous_train_cpu_seconds)  # process CPU time, likewise
            self.train_begin_cpu = None
            self.stopped_by = None  # the budget key that stopped the run
            self.recorded = (self.train_seconds_before, self.train_cpu_seconds_before)  # at the last chunk end
            self.first_loss = self.lowest_loss = None  # the divergence guard's reference points

        def spent(self) -> tuple[float, float]:
            """(train_seconds, train_cpu_seconds) of the run so far."""
            return (self.train_seconds_before + time.perf_counter() - self.train_begin_time,
                    self.train_cpu_seconds_before + time.process_time() - self.train_begin_cpu)

        def on_train_begin(self, logs=None):
            if progress:
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=total_steps, initial=start_step, desc=description, unit="step", dynamic_ncols=True,
                    mininterval=1.0,
                )
            self.chunk_start_time = time.perf_counter()
            self.train_begin_time = time.perf_counter()
            self.train_begin_cpu = time.process_time()

        def on_epoch_begin(self, epoch, logs=None):
            self.chunk_start_time = time.perf_counter()
            self.chunk_start_step = self.step

        def step_end(self, logs) -> None:
            """After each step, with the step's logs as the device returned them (nothing read here but
            every `check_every` steps, at the run's first step and at each chunk end)."""
            self.step += 1
            chunk_end = self.step >= total_steps or self.step % chunk_steps == 0
            checked = chunk_end or self.step % check_every == 0 or self.first_loss is None
            if checked:
                self.check(logs)
            if self.step >= total_steps:
                self.model.stop_training = True
            elif budget:
                several = runtime.process_info()[1] > 1
                if several and not (chunk_end or self.step % check_every == 0):
                    return  # every process stops at the same step: process 0 decides at the check points
                self.stopped_by = budget_spent(budget, *self.spent())
                if several:
                    index = runtime.from_process_0(BUDGET_KEYS.index(self.stopped_by) if self.stopped_by else -1)
                    self.stopped_by = BUDGET_KEYS[index] if index >= 0 else None
                if self.stopped_by:  # Keras ends the chunk here: on_epoch_end evaluates and checkpoints
                    if not checked:  # the loss of the step the checkpoint will hold
                        self.check(logs)
                    self.model.stop_training = True

        def check(self, logs) -> None:
            """Reads the step's loss to the host: NaN and divergence guards, progress bar."""
            value = (logs or {}).get(loss_key)
            loss = float(keras.ops.convert_to_numpy(value)) if value is not None else 0.0
            if not math.isfinite(loss):
                # Raise before any checkpoint of this chunk is written: the last good one stays intact.
                raise FunmatchError(
                    f"{loss_key} became {loss} by step {self.step} (read every {check_every} steps); stopped. "
                    f"{_kept(checkpointer)}; lower the learning rate or check the data"
                )
            if self.first_loss is None:
                self.first_loss = self.lowest_loss = loss
            if diverged(loss, self.lowest_loss, self.first_loss):
                raise FunmatchError(
                    f"training diverged by step {self.step}: {loss_key} {loss:.4g} is over {DIVERGENCE_FACTOR:g}x its "
                    f"lowest value {self.lowest_loss:.4g}; stopped. {_kept(checkpointer)}; lower the learning rate"
                )
            self.lowest_loss = min(self.lowest_loss, loss)
            if self.bar is not None:
                elapsed = time.perf_counter() - self.chunk_start_time
                rate = (self.step - self.chunk_start_step) * images_per_step / max(elapsed, 1e-9)
                self.bar.set_postfix_str(f"{loss_key}={loss:.4f} img/s={rate:,.0f}", refresh=False)
                self.bar.update(self.step - self.bar.n)

        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.perf_counter() - self.chunk_start_time
            steps_done = self.step - self.chunk_start_step
            record: dict[str, Any] = {
                "step": self.step,
                "epoch": self.step / steps_per_data_epoch if steps_per_data_epoch else None,
                "images_per_sec": steps_done * images_per_step / max(elapsed, 1e-9),
                "wall_time": time.time(),
            }
            record["train_seconds"], record["train_cpu_seconds"] = self.recorded = self.spent()
            record.update({f"train_{k}": float(v) for k, v in (logs or {}).items()})
            last = self.step >= total_steps or self.stopped_by is not None
            if self.stopped_by:
                record["stopped_by"] = self.stopped_by
            if evaluate is not None and (last or (eval_every and self.step % eval_every == 0)):
                eval_started, eval_started_cpu = time.perf_counter(), time.process_time()
                results = evaluate(self.step)
                # Periodic evaluation is not training time (runs are compared at equal training time).
                self.train_seconds_before -= time.perf_counter() - eval_started
                self.train_cpu_seconds_before -= time.process_time() - eval_started_cpu
                record.update(results)
                if self.bar is not None and results:
                    shown = ", ".join(f"{k}={v:.4f}" for k, v in results.items() if isinstance(v, float))
                    self.bar.write(f"step {self.step}: {shown}")
            state = groups()
            largest, where = largest_weight(state)
            if not largest <= WEIGHT_BOUND:  # checked before the checkpoint: the last good one stays intact
                raise FunmatchError(
                    f"training diverged by step {self.step}: weight {where} reached {largest:.3g} (bound "
                    f"{WEIGHT_BOUND:g}); stopped. {_kept(checkpointer)}; lower the learning rate"
                )
            # The record comes before its checkpoint: a kill once the checkpoint is in place (or while another
            # process waits at its barrier) loses nothing, and a kill in between is undone on resume, which
            # trims the records after the checkpoint it resumes from (`trim_records`): never lost, never twice.
            if runtime.is_writer():  # multi-process runs: process 0 writes
                with open(self.metrics_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
            checkpointer.save(self.step, state, {"epoch": record["epoch"], "train_seconds": record["train_seconds"],
                                                 "train_cpu_seconds": record["train_cpu_seconds"],
                                                 "stopped_by": self.stopped_by})

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.close()

    return LoopCallback()


def _has_step_hook(callback) -> bool:
    """Whether `callback` overrides Keras' per-step end hook (it then needs the step's logs on the host)."""
    import keras

    base = keras.callbacks.Callback
    return any(getattr(type(callback), name) is not getattr(base, name) for name in ("on_train_batch_end", "on_batch_end"))


def _step_callbacks(model, loop, others: Sequence[Any], **params):
    """A `keras.callbacks.CallbackList` for `fit` that reads nothing to the host after a step: `loop`
    gets the step's logs as device values (`step_end`), and only callbacks that override a per-step end
    hook get them as floats, every step, as Keras gives them (that costs a host sync per step: the
    training loop's own callbacks have none)."""
    import keras

    class StepCallbacks(keras.callbacks.CallbackList):
        def __init__(self):
            # `loop` last: at a chunk's end the others (log.csv's row) write before its checkpoint, so a kill
            # in between is undone on resume (`trim_records`) instead of losing the row.
            super().__init__([*others, loop], add_history=True, model=model, **params)
            self._async_train = False  # nothing per step to hand to a thread
            self.per_step = [callback for callback in others if _has_step_hook(callback)]

        def on_train_batch_end(self, batch, logs=None):
            loop.step_end(logs)
            if self.per_step:
                host = {key: float(keras.ops.convert_to_numpy(value)) for key, value in (logs or {}).items()}
                for callback in self.per_step:
                    callback.on_train_batch_end(batch, host)

    return StepCallbacks()


def epoch_tensorboard(log_dir: os.PathLike):
    """`keras.callbacks.TensorBoard` writing the chunk-end logs only (no per-step hook, so no host sync)."""
    import keras

    class EpochTensorBoard(keras.callbacks.TensorBoard):
        on_train_batch_begin = keras.callbacks.Callback.on_train_batch_begin
        on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    return EpochTensorBoard(str(log_dir), update_freq="epoch")


def fit_resumable(
    model,
    make_dataset: Callable[[int], Any],
    *,
    workdir: os.PathLike,
    total_steps: int,
    chunk_steps: int,
    groups: Callable[[], dict[str, Sequence[Any]]],
    images_per_step: int,
    steps_per_data_epoch: float,
    keep_checkpoints: int = 3,
    evaluate: Callable[[int], dict[str, float]] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    description: str = "train",
    extra_callbacks: Sequence[Any] = (),
    budget: dict[str, float] | None = None,
    check_every: int = CHECK_EVERY,
) -> dict[str, Any]:
    """Run `model.fit` from the latest checkpoint in `workdir` up to `total_steps`, or until `budget`
    (see `budget_spent`; it counts over all resumes) is spent: the run then ends at that step.

    The loss is read to the host every `check_every` steps (NaN, divergence, progress) and several
    processes agree on the budget there; one process checks its budget after every step (host clocks).
    `extra_callbacks` with a per-step end hook bring back a host sync per step (`_step_callbacks`).

    `make_dataset(start_step)` must return the training dataset positioned at `start_step` (the data
    pipeline's resume contract). `groups()` returns the variables that make up the state. Returns
    {"start_step" (0 for a fresh run), "step" (where it ended), "train_seconds", "train_cpu_seconds",
    "stopped_by" (the budget key, or None)}; a complete run returns at once.
    """
    import keras

    workdir = pathlib.Path(workdir)
    checkpointer = Checkpointer(workdir / "checkpoints", keep=keep_checkpoints)
    meta = checkpointer.restore(groups()) or {}
    start_step = int(meta.get("step", 0))
    runtime.check_same_step(start_step, workdir / "checkpoints")  # several processes: all at one step, or none
    seconds, cpu_seconds = float(meta.get("train_seconds", 0.0)), float(meta.get("train_cpu_seconds", 0.0))
    spent = budget_spent(budget, seconds, cpu_seconds)
    if start_step >= total_steps or spent:
        return {"start_step": start_step, "step": start_step, "train_seconds": seconds,
                "train_cpu_seconds": cpu_seconds, "stopped_by": meta.get("stopped_by") or spent}
    if chunk_steps < 1:
        raise FunmatchError(f"checkpoint interval must be >= 1 step, got {chunk_steps} (config key 'checkpoint_every')")
    if start_step % chunk_steps:
        raise FunmatchError(
            f"checkpoint at step {start_step} in {workdir} is not on a chunk boundary of {chunk_steps} steps; "
            "the checkpoint interval changed between runs"
        )
    trim_records(workdir, start_step, chunk_steps)
    loop = _build_loop_callback(
        start_step=start_step,
        total_steps=total_steps,
        chunk_steps=chunk_steps,
        images_per_step=images_per_step,
        steps_per_data_epoch=steps_per_data_epoch,
        checkpointer=checkpointer,
        groups=groups,
        evaluate=evaluate,
        eval_every=eval_every,
        workdir=workdir,
        progress=progress,
        description=description,
        previous_train_seconds=seconds,
        previous_train_cpu_seconds=cpu_seconds,
        budget=budget,
        check_every=max(1, int(check_every)),
    )
    loggers = [keras.callbacks.CSVLogger(str(workdir / "log.csv"), append=True)] if runtime.is_writer() else []
    epochs = math.ceil(total_steps / chunk_steps)
    callbacks = _step_callbacks(model, loop, [*loggers, *extra_callbacks], epochs=epochs, steps=chunk_steps, verbose=0)
    model.fit(
        make_dataset(start_step),
        initial_epoch=start_step // chunk_steps,
        epochs=epochs,
        steps_per_epoch=chunk_steps,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles (deterministically, for exact resume)
        verbose=0,
    )
    seconds, cpu_seconds = loop.recorded
    return {"start_step": start_step, "step": loop.step, "train_seconds": seconds, "train_cpu_seconds": cpu_seconds,
            "stopped_by": loop.stopped_by}
