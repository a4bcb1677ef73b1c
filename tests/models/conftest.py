"""Helpers for the model tests: checkpoints written in the official layouts, random weights."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def images():
    """Two 64 px images in [-1, 1], NHWC."""
    return np.random.default_rng(1).uniform(-1.0, 1.0, size=(2, 64, 64, 3)).astype("float32")


@pytest.fixture(scope="session")
def hub_presets(tmp_path_factory):
    """Small keras-hub presets from random initialisations (tests/hub_presets.py), once per session."""
    from hub_presets import build_presets

    return build_presets(tmp_path_factory.mktemp("hub_presets"))
