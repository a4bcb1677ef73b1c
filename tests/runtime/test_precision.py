"""bfloat16 compute (teacher forward, student forward and backward) with float32 variables, loss and optimizer
state agrees with float32: per-step loss within 2 %, held-out KL within 5 %, agreement within 0.1."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).with_name("precision_check.py")


@pytest.mark.slow
def test_bfloat16_agrees_with_float32():
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    completed = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-5000:]
    result = json.loads(lines[-1][len("RESULT "):])
    full, half = result["float32"], result["bfloat16"]
    assert full["compute_dtypes"] == ["float32"] and half["compute_dtypes"] == ["bfloat16"]
    # Weights and optimizer state stay float32 (the integers are step counters and random states).
    assert full["variable_dtypes"] == half["variable_dtypes"] and "float32" in half["variable_dtypes"]
    assert set(half["variable_dtypes"]) <= {"float32", "int32", "int64", "uint32"}
    assert half["logits_dtype"] == "bfloat16"
    a, b = np.asarray(full["losses"]), np.asarray(half["losses"])
    assert len(a) == len(b) == 10
    assert not np.array_equal(a, b)  # bfloat16 really computed
    np.testing.assert_allclose(b, a, rtol=0.02)
    assert half["metrics"]["kl"] == pytest.approx(full["metrics"]["kl"], rel=0.05)
    assert abs(half["metrics"]["agreement"] - full["metrics"]["agreement"]) <= 0.1
