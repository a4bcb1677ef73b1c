"""Workdirs and checkpoints of resumable runs (`funmatch distill`, `funmatch teacher`, `funmatch tune`).

A workdir holds:

    config.json                  the resolved run configuration (a re-run must match it to resume)
    checkpoints/ckpt-000001000/  state.npz (student weights, optimizer state, random state) + meta.json
    metrics.jsonl                one JSON object per logging interval (train + eval metrics)
    log.csv, tensorboard/        the same figures for spreadsheets / TensorBoard

Checkpoints are written to a temporary sibling folder and renamed into place, so a killed run never
leaves a half-written checkpoint that looks complete. Only the last `keep` are kept. Several processes
share one workdir: process 0 writes, every process waits for the write (a barrier) and, after a restore,
checks that all restored the same step (`funmatch.runtime.check_same_step`); temporary names carry the
host and process id (`temporary_tag`).

Keras' "epoch" is used as a *chunk* of `chunk_steps` optimizer steps: the state (which the JAX backend
keeps outside the Keras variables during an epoch) is synced at every chunk end, where we evaluate, log
and checkpoint. The data "epoch" (passes over the training set) is reported separately.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import time
import zipfile
from typing import Any, Sequence

import numpy as np

from funmatch.errors import FunmatchError


CHECKPOINT_PREFIX = "ckpt-"


def complete_steps(directory: os.PathLike) -> list[int]:
    """Steps of the complete checkpoints (meta.json and state.npz both there) in `directory`, sorted; reads only."""
    out = []
    for path in pathlib.Path(directory).glob(f"{CHECKPOINT_PREFIX}*"):
        if (path / "meta.json").exists() and (path / "state.npz").exists():
            try:
                out.append(int(path.name[len(CHECKPOINT_PREFIX):]))
            except ValueError:
                continue
    return sorted(out)


def temporary_tag() -> str:
    """`HOST-PID`: in the names of temporary files and folders, so that processes on different hosts writing
    to one shared folder never pick the same name."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def atomic_write_text(path: os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file + rename (never a half-written file).

    In a multi-process run only process 0 writes (here and in the other writers of this module).
    """
    if not _is_first_process():
        return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{temporary_tag()}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_save_npy(path: os.PathLike, array: np.ndarray) -> None:
    if not _is_first_process():
        return
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{temporary_tag()}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_save_keras(model, path: os.PathLike, *, eval_crop_fraction: float | None = None) -> None:
    """`model.save(path)` through a temporary file in the same folder + rename.

    `eval_crop_fraction`: the evaluation view the run scored the model at (R / resize_small); a funmatch
    `Classifier` carries it in the file, and `funmatch evaluate` uses it by default.

    Only process 0 saves, outside the run's global distribution (`runtime.local_only`): saving may create
    Keras variables (e.g. Keras builds a throwaway optimizer to walk a compiled model's one, as keras-hub
    tasks are), and under a multi-process distribution creating a variable is a collective that would wait
    forever for the other processes, which do not save.
    """
    if not _is_first_process():
        return
    from funmatch import runtime

    path = pathlib.Path(path)
    if eval_crop_fraction is not None and hasattr(model, "eval_crop_fraction"):
        model.eval_crop_fraction = float(eval_crop_fraction)
    tmp = path.with_name(f".{path.stem}.tmp-{temporary_tag()}.keras")
    try:
        with runtime.local_only():
            model.save(tmp)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise FunmatchError(f"{path}: cannot write the model ({error.strerror or error})") from None
    except BaseException:  # a model Keras cannot serialise, an interrupt: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise


def save_run_model(model, path: os.PathLike, *, trained_here: bool, eval_crop_fraction: float | None = None) -> bool:
    """A finished run's model file, through `atomic_save_keras`, when this process trained at least one step
    or the file is missing. A rerun of a finished run leaves the file as it is: Keras stamps the time into
    each save, so a rewrite would give the same weights another SHA-256, and whatever was started from the
    file (`distill --init`, a distillation from a teacher) would then refuse to resume. Returns whether it
    wrote the file."""
    path = pathlib.Path(path)
    if not trained_here and path.is_file():
        return False
    atomic_save_keras(model, path, eval_crop_fraction=eval_crop_fraction)
    return True


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
        for leftover in self.directory.glob(".tmp-*") if _is_first_process() else ():  # from a run killed mid-save
            shutil.rmtree(leftover, ignore_errors=True)

    def steps(self) -> list[int]:
        return complete_steps(self.directory)

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def path(self, step: int) -> pathlib.Path:
        return self.directory / f"{CHECKPOINT_PREFIX}{step:09d}"

    def save(self, step: int, groups: dict[str, Sequence[Any]], meta: dict[str, Any] | None = None) -> pathlib.Path:
        """Process 0 writes the checkpoint of `step`; every process returns once it is in place (a barrier:
        no process runs ahead of a checkpoint that a restart would need)."""
        if _is_first_process():
            self._write(step, groups, meta)
        from funmatch import runtime

        runtime.barrier(f"funmatch checkpoint {step}")
        return self.path(step)

    def _write(self, step: int, groups: dict[str, Sequence[Any]], meta: dict[str, Any] | None) -> pathlib.Path:
        arrays, layout = {}, {}
        for group, variables in groups.items():
            layout[group] = []
            for i, variable in enumerate(variables):
                value = np.asarray(_to_numpy(variable))
                arrays[f"{group}/{i:05d}"] = value
                layout[group].append([_variable_path(variable), list(value.shape)])
        meta = dict(meta or {}, step=int(step), layout=layout, time=time.time())
        final = self.path(step)
        tmp = None
        try:
            tmp = pathlib.Path(tempfile.mkdtemp(dir=self.directory, prefix=f".tmp-{temporary_tag()}-"))
            with open(tmp / "state.npz", "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as error:  # disk full, quota, read-only: the earlier checkpoints are untouched
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            previous = self.latest_step()
            raise FunmatchError(
                f"{final}: cannot write the checkpoint ({error.strerror or error}); "
                + (f"the checkpoint of step {previous} is intact: free space and re-run to resume"
                   if previous is not None else "no checkpoint was written yet")
            ) from None
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in self.steps()[: -self.keep]:
            shutil.rmtree(self.path(old), ignore_errors=True)
        return final

    def restore(self, groups: dict[str, Sequence[Any]], step: int | None = None) -> dict[str, Any] | None:
        """Assign the latest (or the given) checkpoint into `groups`; returns its meta or None.

        A damaged checkpoint (truncated or corrupt `state.npz`, unreadable `meta.json`, NaN/Inf values)
        is moved aside to `damaged-ckpt-…` with a note on stderr and the previous intact one is used.
        A checkpoint of another model (variable count or shapes) is an error, never skipped.
        """
        candidates = [step] if step is not None else sorted(self.steps(), reverse=True)
        damaged = []
        for candidate in candidates:
            path = self.path(candidate)
            try:
                meta, arrays = self._read(path, groups)
            except _Damaged as error:
                damaged.append(f"{path.name} ({error})")
                aside = self.directory / f"damaged-{path.name}"
                if _is_first_process():  # process 0 moves it; the others skip it too
                    shutil.rmtree(aside, ignore_errors=True)
                    path.rename(aside)
                remaining = [s for s in candidates if s < candidate]
                print(f"funmatch: checkpoint {path} is damaged ({error}); moved to {aside.name}"
                      + (f", falling back to step {remaining[0]}" if remaining else ""), file=sys.stderr, flush=True)
                continue
            for group, variables in groups.items():
                for i, variable in enumerate(variables):
                    variable.assign(arrays[f"{group}/{i:05d}"])
            return meta
        if damaged:
            raise FunmatchError(
                f"every checkpoint in {self.directory} is damaged: {'; '.join(damaged)}; "
                "move the workdir away (or delete its checkpoints/) to start the run over"
            )
        return None

    def _read(self, path: pathlib.Path, groups: dict[str, Sequence[Any]]) -> tuple[dict, dict[str, np.ndarray]]:
        """(meta, arrays) of the checkpoint at `path`, fully read and checked; raises `_Damaged`."""
        try:
            meta = json.loads((path / "meta.json").read_text())
            layout = meta["layout"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise _Damaged(f"meta.json: {type(error).__name__}: {error}") from None
        for group, variables in groups.items():
            saved = layout.get(group)
            if saved is None or len(saved) != len(variables):
                raise FunmatchError(
                    f"checkpoint {path}: group {group!r} has {0 if saved is None else len(saved)} variables, "
                    f"the model has {len(variables)}; the workdir belongs to a different model or config"
                )
        arrays = {}
        try:
            with np.load(path / "state.npz", allow_pickle=False) as data:
                for group, variables in groups.items():
                    for i, variable in enumerate(variables):
                        key = f"{group}/{i:05d}"
                        value = data[key]
                        if tuple(value.shape) != tuple(variable.shape):
                            raise FunmatchError(
                                f"checkpoint {path}: {group} variable {layout[group][i][0]} has shape {value.shape}, "
                                f"the model's {_variable_path(variable)} has {tuple(variable.shape)}"
                            )
                        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                            raise _Damaged(f"state.npz: {group} variable {layout[group][i][0]} holds NaN/Inf")
                        arrays[key] = value
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise _Damaged(f"state.npz: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        return meta, arrays


class _Damaged(Exception):
    """A checkpoint that cannot be read back (the reason is the message)."""


def _to_numpy(variable):
    import keras

    return keras.ops.convert_to_numpy(variable.value if hasattr(variable, "value") else variable)


def _variable_path(variable) -> str:
    return str(getattr(variable, "path", getattr(variable, "name", "?")))


LOCK_NAME = ".lock"
# Run settings recorded since a later version: a workdir written before them still resumes.
LATER_FIELDS = ("teacher_sha256", "precision", "data_card_sha256", "targets_card_sha256")
# A file's (or folder's) path and the field that holds its content's SHA-256: where both runs recorded the same
# content, it was moved (or mounted elsewhere), not changed, and the run resumes. A prepared dataset is its card
# (dataset.json, which holds every shard's SHA-256), a store of targets its card (targets.json).
CONTENT_FIELDS = {"teacher_path": "teacher_sha256", "student_init": "student_init_sha256",
                  "data_dir": "data_card_sha256", "targets_dir": "targets_card_sha256"}
_HELD_LOCKS: dict[str, int] = {}  # resolved workdir -> the open descriptor holding its lock


def data_fields(data_dir: os.PathLike) -> dict[str, str]:
    """A run config's record of its prepared dataset: the resolved path and the card's SHA-256
    (`CONTENT_FIELDS`: the same data at another path resumes the run)."""
    from funmatch.distill.targets import dataset_card_sha256

    return {"data_dir": str(pathlib.Path(data_dir).resolve()), "data_card_sha256": dataset_card_sha256(data_dir)}


def lock_workdir(workdir: os.PathLike) -> None:
    """Holds an exclusive lock on `workdir` until this process ends (or `unlock_workdir`).

    A second run on the same workdir (another `distill`, `teacher` or `tune`) is refused with a line
    naming the holder. The lock is an `flock` on WORKDIR/.lock, which the kernel drops when its process
    dies, so the lock of a killed run is never stale. Taking it again in the same process is a no-op.
    """
    workdir = pathlib.Path(workdir)
    key = str(workdir.resolve())
    if key in _HELD_LOCKS:
        return
    path = workdir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise FunmatchError(f"workdir {workdir}: cannot create {LOCK_NAME} ({error.strerror or error})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except ValueError:
            holder = {}
        os.close(fd)
        who = f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
        raise FunmatchError(
            f"workdir {workdir} is in use by another run ({who}); wait for it to end, or use another --workdir"
        ) from None
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    _HELD_LOCKS[key] = fd


def unlock_workdir(workdir: os.PathLike) -> None:
    """Releases the lock `lock_workdir` took in this process (no-op when none is held)."""
    fd = _HELD_LOCKS.pop(str(pathlib.Path(workdir).resolve()), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _is_first_process() -> bool:
    """Only process 0 of a multi-process run takes the workdir lock (all processes share the workdir)."""
    jax = sys.modules.get("jax")
    try:
        return jax is None or jax.process_index() == 0
    except Exception:  # jax imported but no backend yet
        return True


def _added_later(key: str, previous: dict, current: dict) -> bool:
    """A setting that a workdir written by an earlier version lacks: the content hash of the teacher, or a
    new field at its off value (0, False, "", None), which is what the earlier version ran with."""
    return key not in previous and (key in LATER_FIELDS or current.get(key) in (None, 0, 0.0, False, ""))


def _same_content(key: str, previous: dict, current: dict) -> bool:
    """Whether `key` is a file's path whose content both runs recorded, the same (`CONTENT_FIELDS`)."""
    digest = CONTENT_FIELDS.get(key)
    return digest is not None and previous.get(digest) is not None and previous.get(digest) == current.get(digest)


def _differing(previous: dict, current: dict) -> list[str]:
    """The settings in which a workdir's run and this one differ, sorted (see `prepare_workdir`)."""
    return sorted(k for k in set(previous) | set(current)
                  if previous.get(k) != current.get(k) and not _added_later(k, previous, current)
                  and not _same_content(k, previous, current))


def _has_progress(workdir: pathlib.Path) -> bool:
    """Whether the run in `workdir` got as far as a checkpoint or a metrics record."""
    checkpoints = workdir / "checkpoints"
    return (workdir / "metrics.jsonl").exists() or (
        checkpoints.is_dir() and any(p.name.startswith(CHECKPOINT_PREFIX) for p in checkpoints.iterdir())
    )


def _await_workdir(workdir: pathlib.Path, run_config: dict[str, Any], timeout: float = 600.0) -> bool:
    """`prepare_workdir` on processes other than 0: wait until process 0 has written config.json, check it."""
    config_path = workdir / "config.json"
    current = json.loads(json.dumps(run_config))
    deadline = time.time() + timeout
    while True:
        try:
            previous = json.loads(config_path.read_text())
        except (OSError, ValueError):
            previous = None
        if previous is not None:
            if not _differing(previous, current):
                return _has_progress(workdir)
        if time.time() > deadline:
            raise FunmatchError(f"workdir {workdir}: process 0 wrote no config.json matching this process's settings "
                                f"in {timeout:.0f} s; start every process with the same command and a shared --workdir")
        time.sleep(0.2)


def with_precision(run_config: dict[str, Any]) -> dict[str, Any]:
    """`run_config` with the run's compute precision (`funmatch.runtime.precision()`) as "precision": a run
    resumes only in the precision it began in (bfloat16 and float32 steps differ)."""
    if "precision" in run_config:
        return run_config
    from funmatch import runtime

    return {**run_config, "precision": runtime.precision()}


def prepare_workdir(workdir: os.PathLike, run_config: dict[str, Any]) -> bool:
    """Create `workdir`, lock it (`lock_workdir`) and write config.json, or check a resumed run's config.

    Returns True when the workdir already held a run (resume). A mismatch in any field is a clear error:
    resuming with different settings would silently mix two runs; a file recorded with its content's SHA-256
    (`CONTENT_FIELDS`) may have moved. A workdir whose run never reached a checkpoint (it stopped on an error)
    takes the new settings instead. The compute precision is part of the config (`with_precision`).
    """
    workdir = pathlib.Path(workdir)
    config_path = workdir / "config.json"
    run_config = with_precision(run_config)
    if not _is_first_process():
        return _await_workdir(workdir, run_config)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FunmatchError(f"--workdir {workdir}: cannot create it ({error.strerror or error})") from None
    if not workdir.is_dir():
        raise FunmatchError(f"--workdir {workdir}: not a directory")
    if _is_first_process():
        lock_workdir(workdir)
    current = json.loads(json.dumps(run_config))
    if config_path.exists():
        try:
            previous = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FunmatchError(f"{config_path}: not valid JSON ({e}); move the workdir away or fix the file") from None
        differing = _differing(previous, current)
        if not differing:
            return True
        if _has_progress(workdir) and "precision" in differing:
            raise FunmatchError(
                f"workdir {workdir} holds a run computed in {previous['precision']}, this one computes in "
                f"{current['precision']}: re-run with --precision {previous['precision']} to resume it, or use a new --workdir")
        if _has_progress(workdir):
            details = ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in differing[:6])
            raise FunmatchError(
                f"workdir {workdir} holds a run with other settings ({details}); "
                "use a new --workdir, or re-run with the same settings to resume"
            )
    elif any(p for p in workdir.iterdir() if not p.name.startswith(".")):
        raise FunmatchError(f"workdir {workdir} is not empty and holds no funmatch run (no config.json)")
    try:
        atomic_write_text(config_path, json.dumps(run_config, indent=2, sort_keys=True))
    except OSError as error:
        raise FunmatchError(f"{config_path}: cannot write it ({error.strerror or error})") from None
    return False


# Files that mark a run as finished (distill / labels write metrics.json; teacher writes teacher_metrics.json).
FINISHED_MARKERS = ("metrics.json", "teacher_metrics.json")


def run_progress(run_dir: os.PathLike) -> tuple[bool, int]:
    """(finished, latest checkpoint step) of the run folder `run_dir`; (False, 0) for an empty one."""
    run_dir = pathlib.Path(run_dir)
    finished = any((run_dir / name).exists() for name in FINISHED_MARKERS)
    return finished, max(complete_steps(run_dir / "checkpoints"), default=0)


def restore_runs(source: os.PathLike, workdir: os.PathLike) -> list[tuple[str, int]]:
    """Copies into `workdir` every run under `source` that got further than its copy in `workdir`.

    For runs that outlive one machine session (a Kaggle session ends after 9 hours; its saved output comes
    back, read-only, as an input of the next): `source` is the previous session's workdir, or a folder
    holding several run folders (one per mode, the trials of a search). A run folder is a folder with a
    config.json; it is copied when it finished and the local one did not, or when its latest checkpoint is
    later. The copy goes to a temporary sibling first and is renamed into place; a local run it replaces is
    kept beside it as `<name>.replaced` until the copy is complete. Files outside run folders (a search's
    own state, reports) are copied where `workdir` lacks them. Returns [(run folder relative to `source`,
    its latest step)] of the runs restored.
    """
    source, workdir = pathlib.Path(source), pathlib.Path(workdir)
    if not source.is_dir():
        raise FunmatchError(f"resume source {source}: no such folder (the previous session's saved workdir)")
    runs = sorted(path.parent for path in source.rglob("config.json"))
    runs = [run for run in runs if not any(parent in runs for parent in run.parents)]  # outermost run folders
    restored = []
    for run in runs:
        relative = run.relative_to(source)
        target = workdir / relative
        if run_progress(run) <= run_progress(target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.restoring"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(run, staging, ignore=shutil.ignore_patterns(LOCK_NAME, ".tmp-*"))
        replaced = target.parent / f"{target.name}.replaced"
        if target.exists():
            shutil.rmtree(replaced, ignore_errors=True)
            os.replace(target, replaced)
        os.replace(staging, target)
        shutil.rmtree(replaced, ignore_errors=True)
        restored.append((str(relative), run_progress(target)[1]))
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.name != LOCK_NAME and not any(run == path or run in path.parents for run in runs):
            target = workdir / path.relative_to(source)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return restored
