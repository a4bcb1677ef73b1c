"""Fixtures for the tuning tests: a tiny prepared EuroSAT subset and an untrained tiny teacher."""

import pathlib
import shutil

import pytest

MINI = pathlib.Path(__file__).resolve().parents[2] / "src" / "funmatch" / "assets" / "eurosat_mini"
# Per split: images per class. 40 train images, batch 8 (smoke): 5 steps per data epoch.
PER_CLASS = {"train": 4, "validation": 2, "test": 2}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> pathlib.Path:
    """A `funmatch prepare` folder of 40 / 20 / 20 real EuroSAT images (10 classes)."""
    from funmatch.data.prepare import prepare

    root = tmp_path_factory.mktemp("tune_data")
    images = root / "images"
    for split, count in PER_CLASS.items():
        for class_dir in sorted(p for p in (MINI / split).iterdir() if p.is_dir()):
            (images / split / class_dir.name).mkdir(parents=True)
            for path in sorted(class_dir.iterdir())[:count]:
                shutil.copy(path, images / split / class_dir.name / path.name)
    prepare(f"folder:{images}", root / "data", progress=False, workers=1)
    return root / "data"


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> pathlib.Path:
    from funmatch import models

    path = tmp_path_factory.mktemp("tune_teacher") / "teacher.keras"
    models.create("tiny_cnn", num_classes=10, resolution=64).save(path)
    return path
