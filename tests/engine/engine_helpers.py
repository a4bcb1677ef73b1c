"""Helpers of the training-entry tests (a module with a unique name: `conftest` is ambiguous
when several test folders are collected in one run)."""

import pathlib

import numpy as np


def make_teacher(path: pathlib.Path, num_classes: int = 4, *, poison: bool = False, seed: int = 0) -> pathlib.Path:
    """A tiny random teacher (non-zero head, so its logits are informative) saved as .keras."""
    from funmatch import models

    teacher = models.create("tiny_cnn_w8", num_classes=num_classes, resolution=64)
    rng = np.random.default_rng(seed)
    for variable in teacher.trainable_variables:
        value = rng.normal(0, 0.3, variable.shape).astype("float32")
        if poison:
            value[...] = np.nan
        variable.assign(value)
    teacher.save(path)
    return path
