"""Fixtures for the training-entry tests: a small real-image dataset and a saved teacher."""

import pathlib
import shutil

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
MINI = REPO / "src" / "funmatch" / "assets" / "eurosat_mini"
CLASSES = ["000_annualcrop", "001_forest", "003_highway", "008_river"]
PER_SPLIT = {"train": 12, "validation": 3, "test": 5}


@pytest.fixture(scope="session")
def engine_data(tmp_path_factory) -> pathlib.Path:
    """4 EuroSAT classes from the vendored mini set: 48 train / 12 validation / 20 test images, prepared."""
    from funmatch.data.prepare import prepare

    source = tmp_path_factory.mktemp("engine_src")
    for split, count in PER_SPLIT.items():
        for class_dir in CLASSES:
            files = sorted((MINI / split / class_dir).iterdir())[:count]
            (source / split / class_dir).mkdir(parents=True)
            for f in files:
                shutil.copy(f, source / split / class_dir / f.name)
    out = tmp_path_factory.mktemp("engine") / "data"
    prepare(f"folder:{source}", out, progress=False, examples_per_shard=16)
    return out


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


@pytest.fixture(scope="session")
def engine_teacher(tmp_path_factory) -> pathlib.Path:
    return make_teacher(tmp_path_factory.mktemp("teacher") / "teacher.keras")
