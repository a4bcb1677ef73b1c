"""Data: sources and `prepare` (any source -> TFRecord shards + dataset card), the record format
(`tfrecords`), the pp ops registry (`ops`) and the train/eval pipelines (`pipeline`).

Imports only `errors` and its own modules; nothing above it. The names below are loaded on first
use, so `funmatch.data.prepare` and `funmatch.data.sources` can be imported without TensorFlow.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "get_preprocess_fn": "ops",
    "register": "ops",
    "registered_ops": "ops",
    "MASK_KEY": "pipeline",
    "eval_dataset": "pipeline",
    "num_examples": "pipeline",
    "train_dataset": "pipeline",
    "load_card": "tfrecords",
    "read_records": "tfrecords",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"funmatch.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'funmatch.data' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
