"""The resumable training loop: `fit_resumable` runs a Keras model in chunks of optimizer steps.

Keras' "epoch" is used as a *chunk* of `chunk_steps` optimizer steps: the state (which the JAX backend
keeps outside the Keras variables during an epoch) is synced at every chunk end, where we evaluate, log
and checkpoint (`funmatch.training.checkpoints`). The data "epoch" (passes over the training set) is
reported separately.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from typing import Any, Callable, Sequence


from funmatch.errors import FunmatchError
from funmatch.training.checkpoints import Checkpointer


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
):
    import keras

    class LoopCallback(keras.callbacks.Callback):
        """Step counting, progress bar, NaN guard, evaluation, logging and checkpoints at chunk ends."""

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

        def on_train_begin(self, logs=None):
            if progress:
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=total_steps, initial=start_step, desc=description, unit="step", dynamic_ncols=True,
                    mininterval=1.0,
                )
            self.chunk_start_time = time.perf_counter()
            self.train_begin_time = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.chunk_start_time = time.perf_counter()
            self.chunk_start_step = self.step

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            loss = float(logs.get(loss_key, 0.0)) if logs else 0.0
            if not math.isfinite(loss):
                # Raise before any checkpoint of this chunk is written: the last good one stays intact.
                raise FunmatchError(
                    f"{loss_key} became {loss} at step {self.step}; stopped. The last checkpoint "
                    f"(step {checkpointer.latest_step()}) is intact; lower the learning rate or check the data"
                )
            if self.bar is not None:
                elapsed = time.perf_counter() - self.chunk_start_time
                rate = (self.step - self.chunk_start_step) * images_per_step / max(elapsed, 1e-9)
                self.bar.set_postfix_str(f"{loss_key}={loss:.4f} img/s={rate:,.0f}", refresh=False)
                self.bar.update(1)
            if self.step >= total_steps:
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.perf_counter() - self.chunk_start_time
            steps_done = self.step - self.chunk_start_step
            record: dict[str, Any] = {
                "step": self.step,
                "epoch": self.step / steps_per_data_epoch if steps_per_data_epoch else None,
                "images_per_sec": steps_done * images_per_step / max(elapsed, 1e-9),
                "wall_time": time.time(),
                "train_seconds": self.train_seconds_before + time.perf_counter() - self.train_begin_time,
            }
            record.update({f"train_{k}": float(v) for k, v in (logs or {}).items()})
            last = self.step >= total_steps
            if evaluate is not None and (last or (eval_every and self.step % eval_every == 0)):
                eval_started = time.perf_counter()
                results = evaluate(self.step)
                # Periodic evaluation is not training time (runs are compared at equal training time).
                self.train_seconds_before -= time.perf_counter() - eval_started
                record.update(results)
                if self.bar is not None and results:
                    shown = ", ".join(f"{k}={v:.4f}" for k, v in results.items() if isinstance(v, float))
                    self.bar.write(f"step {self.step}: {shown}")
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            checkpointer.save(self.step, groups(), {"epoch": record["epoch"], "train_seconds": record["train_seconds"]})

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.close()

    return LoopCallback()


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
) -> int:
    """Run `model.fit` from the latest checkpoint in `workdir` up to `total_steps`.

    `make_dataset(start_step)` must return the training dataset positioned at `start_step` (the data
    pipeline's resume contract). `groups()` returns the variables that make up the state. Returns the
    step the run started from (0 for a fresh run; `total_steps` when it was already complete).
    """
    import keras

    workdir = pathlib.Path(workdir)
    checkpointer = Checkpointer(workdir / "checkpoints", keep=keep_checkpoints)
    meta = checkpointer.restore(groups())
    start_step = int(meta["step"]) if meta else 0
    if start_step >= total_steps:
        return start_step
    if start_step % chunk_steps:
        raise FunmatchError(
            f"checkpoint at step {start_step} in {workdir} is not on a chunk boundary of {chunk_steps} steps; "
            "the checkpoint interval changed between runs"
        )
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
        previous_train_seconds=float(meta.get("train_seconds", 0.0)) if meta else 0.0,
    )
    callbacks = [loop, keras.callbacks.CSVLogger(str(workdir / "log.csv"), append=True), *extra_callbacks]
    model.fit(
        make_dataset(start_step),
        initial_epoch=start_step // chunk_steps,
        epochs=math.ceil(total_steps / chunk_steps),
        steps_per_epoch=chunk_steps,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles (deterministically, for exact resume)
        verbose=0,
    )
    return start_step
