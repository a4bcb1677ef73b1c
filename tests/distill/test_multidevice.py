"""One step on 4 devices equals one step on one device (loss scaling, clipping, mixup)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("multidevice_check.py")


@pytest.mark.slow
@pytest.mark.both_backends
def test_four_devices_equal_one(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    completed = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-5000:]
    report = json.loads(lines[-1][len("RESULT "):])
    expected = {"sgd_consistent", "sgd_clipped", "adam_official"} | (
        {"function_matching"} if backend == "jax" else set()
    )
    assert set(report) == expected
    for name, result in report.items():
        single_loss, multi_loss = result["loss"]
        assert multi_loss == pytest.approx(single_loss, rel=1e-4), name
        # The step really moved the weights, and both runs moved them the same way.
        assert result["max_weight_change"] > 1e-3, name
        assert result["max_weight_diff"] < 1e-5 + 1e-3 * result["max_weight_change"], (name, result)
