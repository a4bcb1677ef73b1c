"""Shared test fixtures.

The Keras backend is fixed per process by KERAS_BACKEND (scripts/test.sh runs the suite on tensorflow and
the `both_backends` tests again on jax); it defaults to tensorflow here, the CPU default.

Every test that uses the `shared_data` fixture (directly or through another fixture) is marked
`shared_data`: scripts/test.sh deselects them, saying so, on a clone without ../shared/data, and runs them
always under CI. A test that asks for the folder where it is missing fails; it is never skipped. Under CI
any skip is turned into a failure.
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


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (CI set, as .ci/run does) a skipped test is a failure: nothing goes untested there unseen."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every test must run: {reason}"


@pytest.fixture
def backend() -> str:
    import keras

    return keras.backend.backend()
