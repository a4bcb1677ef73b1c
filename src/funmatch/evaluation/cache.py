"""Cached model outputs on eval splits, keyed by the model file's content (not its path).

A run computes its frozen teacher's logits on the eval splits once and keeps them in the workdir.
The cache key is the SHA-256 of the teacher's `.keras` file, plus the eval pp and the subset size, so
another teacher written to the same path is never scored with the old one's logits. Beside the arrays,
`<stem>_digest.txt` holds the SHA-256 of what they cache (the logits' and labels' bytes and the dataset
card they were computed on): a damaged, edited or foreign cache file, or other data in the same place, is
recomputed (with a note) instead of being used or stopping the run.

    key = model_key(path)                                   # "teacher-<16 hex>"
    cached_split_logits(model, key, workdir, data_dir, "test", spec, batch_size)
        -> {"logits": [N, C] float32, "labels": [N] int64}   # workdir/<key>_test_<spec hash>_{logits,labels}.npy
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import sys

import numpy as np

_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes; remembered per (path, size, mtime) within the process."""
    path = pathlib.Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def model_key(path: os.PathLike, prefix: str = "teacher") -> str:
    """`<prefix>-<first 16 hex digits of the file's SHA-256>`: the cache key of a model file."""
    return f"{prefix}-{file_sha256(path)[:16]}"


def weights_key(model, prefix: str = "teacher") -> str:
    """`<prefix>-w<16 hex>`: the cache key of an in-memory model, from the SHA-256 of its weights."""
    import keras

    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value)).tobytes())
    return f"{prefix}-w{digest.hexdigest()[:16]}"


def cached_split_logits(model, key: str, directory: os.PathLike, data_dir, split: str, spec: str, batch_size: int,
                        max_examples: int = 0) -> dict[str, np.ndarray]:
    """`split_logits(model, ...)`, kept in `directory` under `key` (see the module docstring)."""
    from funmatch.evaluation.logits import split_logits

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    view = hashlib.sha1(f"{spec}|{int(max_examples)}".encode()).hexdigest()[:8]
    stem = directory / f"{key}_{split}_{view}"
    logits_path, labels_path = pathlib.Path(f"{stem}_logits.npy"), pathlib.Path(f"{stem}_labels.npy")
    digest_path = pathlib.Path(f"{stem}_digest.txt")
    if logits_path.exists() and labels_path.exists():
        try:
            logits, labels = np.load(logits_path, allow_pickle=False), np.load(labels_path, allow_pickle=False)
            recorded = digest_path.read_text().strip() if digest_path.exists() else None
            if recorded != _digest(logits, labels, data_dir):
                problem = "no digest" if recorded is None else "their digest does not match their content or data"
            elif logits.ndim == 2 and len(logits) == len(labels) and np.all(np.isfinite(logits)):
                return {"logits": logits, "labels": labels}
            else:
                problem = "inconsistent shapes or non-finite values"
        except (OSError, ValueError, EOFError) as error:
            problem = f"{type(error).__name__}: {error}"
        print(f"funmatch: cached logits {logits_path.name} not used ({problem}); computing them again",
              file=sys.stderr, flush=True)
    from funmatch.outputs import staged

    result = split_logits(model, data_dir, split, spec, batch_size, max_examples)
    digest_path.unlink(missing_ok=True)  # arrays and digest replaced together: no digest, no use
    _atomic_save_npy(labels_path, result["labels"])
    _atomic_save_npy(logits_path, result["logits"])
    with staged(digest_path, command="evaluate", kind="file") as temporary:
        temporary.write_text(_digest(result["logits"], result["labels"], data_dir) + "\n")
    return result


def _digest(logits: np.ndarray, labels: np.ndarray, data_dir) -> str:
    """SHA-256 of what a cache entry holds: the arrays (dtype, shape, bytes) and the dataset card."""
    digest = hashlib.sha256()
    for array in (np.asarray(logits), np.asarray(labels)):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    card = pathlib.Path(data_dir) / "dataset.json"
    digest.update(card.read_bytes() if card.is_file() else b"")
    return digest.hexdigest()


def _atomic_save_npy(path: pathlib.Path, array: np.ndarray) -> None:
    """np.save through a temporary file + rename: a killed run never leaves a half-written cache."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


__all__ = ["cached_split_logits", "file_sha256", "model_key", "weights_key"]
