"""Fixtures for the training-entry tests: a small real-image dataset and a saved teacher."""

import pathlib
import shutil

import pytest
from engine_helpers import make_teacher

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


@pytest.fixture(scope="session")
def engine_teacher(tmp_path_factory) -> pathlib.Path:
    return make_teacher(tmp_path_factory.mktemp("teacher") / "teacher.keras")


@pytest.fixture(scope="session")
def hub_student(tmp_path_factory) -> str:
    """`hub:PRESET`, a student from a keras-hub preset: the tiny MobileNet of tests/hub_presets.py (random
    weights, saved locally; its own [0, 1] contract)."""
    from hub_presets import build_presets

    return "hub:" + str(build_presets(tmp_path_factory.mktemp("hub_presets"), names=("mobilenet",))["mobilenet"])
