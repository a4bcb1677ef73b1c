"""Workdirs and checkpoints of resumable runs (`funmatch distill`, `funmatch teacher`, `funmatch tune`).

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
import os
import pathlib
import shutil
import tempfile
import time
from typing import Any, Sequence

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
