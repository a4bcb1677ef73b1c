"""Shared test fixtures.

The Keras backend is fixed per process by KERAS_BACKEND (scripts/test.sh runs the suite on tensorflow and
the `both_backends` tests again on jax); it defaults to tensorflow here, the CPU default.
"""

import os
import pathlib

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def _shared_data_dir() -> pathlib.Path:
    env = os.environ.get("FUNMATCH_SHARED_DATA")
    return pathlib.Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """../shared/data (Flowers102, EuroSAT RGB). Missing data is a failure, never a silent skip."""
    path = _shared_data_dir()
    if not (path / "flowers102").is_dir():
        pytest.fail(f"shared data not found at {path} (set FUNMATCH_SHARED_DATA)")
    return path


@pytest.fixture
def backend() -> str:
    import keras

    return keras.backend.backend()
