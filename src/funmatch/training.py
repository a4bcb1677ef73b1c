"""Resumable training machinery shared by `funmatch distill` and `funmatch teacher`.

A workdir holds:

    config.json                  the resolved run configuration (a re-run must match it to resume)
    checkpoints/ckpt-000001000/  state.npz (student weights, optimizer state, random state) + meta.json
    metrics.jsonl                one JSON object per logging interval (train + eval metrics)
    log.csv, tensorboard/        the same figures for spreadsheets / TensorBoard

Checkpoints are written to a temporary sibling folder and renamed into place, so a killed run never
leaves a half-written checkpoint that looks complete. Only the last `keep` are kept.

Keras' "epoch" is used as a *chunk* of `chunk_steps` optimizer steps: the state (which the JAX backend
keeps outside the Keras variables during an epoch) is synced at every chunk end, where we evaluate, log
and checkpoint. The data "epoch" (passes over the training set) is reported separately.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import tempfile
import time
from typing import Any, Callable, Sequence

import numpy as np

from funmatch.errors import FunmatchError

CHECKPOINT_PREFIX = "ckpt-"


def atomic_write_text(path: os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file + rename (never a half-written file)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_save_npy(path: os.PathLike, array: np.ndarray) -> None:
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_save_keras(model, path: os.PathLike) -> None:
    """`model.save(path)` through a temporary file in the same folder + rename."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)


class Checkpointer:
    """Atomic, pruned checkpoints of named groups of Keras variables.

    `groups` maps a group name ("student", "optimizer", "rng", ...) to a list of variables; the
    order of each list defines the storage keys (`student/00012`), and each variable's path and shape
    are recorded so that restoring into a different model is a clear error, not silent garbage.
    """

    def __init__(self, directory: os.PathLike, keep: int = 3):
        self.directory = pathlib.Path(directory)
        self.keep = max(1, int(keep))
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob(".tmp-*"):  # from a run killed mid-save
            shutil.rmtree(leftover, ignore_errors=True)

    def steps(self) -> list[int]:
        out = []
        for path in self.directory.glob(f"{CHECKPOINT_PREFIX}*"):
            if (path / "meta.json").exists() and (path / "state.npz").exists():
                try:
                    out.append(int(path.name[len(CHECKPOINT_PREFIX):]))
                except ValueError:
                    continue
        return sorted(out)

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def path(self, step: int) -> pathlib.Path:
        return self.directory / f"{CHECKPOINT_PREFIX}{step:09d}"

    def save(self, step: int, groups: dict[str, Sequence[Any]], meta: dict[str, Any] | None = None) -> pathlib.Path:
        arrays, layout = {}, {}
        for group, variables in groups.items():
            layout[group] = []
            for i, variable in enumerate(variables):
                value = np.asarray(_to_numpy(variable))
                arrays[f"{group}/{i:05d}"] = value
                layout[group].append([_variable_path(variable), list(value.shape)])
        meta = dict(meta or {}, step=int(step), layout=layout, time=time.time())
        tmp = pathlib.Path(tempfile.mkdtemp(dir=self.directory, prefix=".tmp-"))
        try:
            with open(tmp / "state.npz", "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            final = self.path(step)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in self.steps()[: -self.keep]:
            shutil.rmtree(self.path(old), ignore_errors=True)
        return final

    def restore(self, groups: dict[str, Sequence[Any]], step: int | None = None) -> dict[str, Any] | None:
        """Assign the latest (or the given) checkpoint into `groups`; returns its meta or None."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        path = self.path(step)
        meta = json.loads((path / "meta.json").read_text())
        with np.load(path / "state.npz") as data:
            for group, variables in groups.items():
                saved = meta["layout"].get(group)
                if saved is None or len(saved) != len(variables):
                    raise FunmatchError(
                        f"checkpoint {path}: group {group!r} has {0 if saved is None else len(saved)} variables, "
                        f"the model has {len(variables)}; the workdir belongs to a different model or config"
                    )
                for i, variable in enumerate(variables):
                    value = data[f"{group}/{i:05d}"]
                    if tuple(value.shape) != tuple(variable.shape):
                        raise FunmatchError(
                            f"checkpoint {path}: {group} variable {saved[i][0]} has shape {value.shape}, "
                            f"the model's {_variable_path(variable)} has {tuple(variable.shape)}"
                        )
                    variable.assign(value)
        return meta


def _to_numpy(variable):
    import keras

    return keras.ops.convert_to_numpy(variable.value if hasattr(variable, "value") else variable)


def _variable_path(variable) -> str:
    return str(getattr(variable, "path", getattr(variable, "name", "?")))


def prepare_workdir(workdir: os.PathLike, run_config: dict[str, Any], *, ignore: Sequence[str] = ()) -> bool:
    """Create `workdir` and write config.json, or check a resumed run's config matches.

    Returns True when the workdir already held a run (resume). A mismatch in any field other than
    `ignore` is a clear error: resuming with different settings would silently mix two runs.
    """
    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.json"
    if config_path.exists():
        try:
            previous = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise FunmatchError(f"{config_path}: not valid JSON ({e}); move the workdir away or fix the file") from None
        current = json.loads(json.dumps(run_config))
        differing = sorted(
            k for k in set(previous) | set(current) if k not in ignore and previous.get(k) != current.get(k)
        )
        if differing:
            details = ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in differing[:6])
            raise FunmatchError(
                f"workdir {workdir} holds a run with other settings ({details}); "
                "use a new --workdir, or re-run with the same settings to resume"
            )
        return True
    if workdir.exists() and any(p for p in workdir.iterdir() if not p.name.startswith(".")):
        raise FunmatchError(f"workdir {workdir} is not empty and holds no funmatch run (no config.json)")
    workdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, json.dumps(run_config, indent=2, sort_keys=True))
    return False


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
