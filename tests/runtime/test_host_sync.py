"""The training loop does not read a step's results to the host after every step (each read waits for the
device, which then cannot run ahead): over 100 steps (two chunks) on JAX it reads the loss every
`CHECK_EVERY` steps and at the first step, while a loop reading it after every step, or a callback with a
per-step hook, reads at least once per step (the counter sees them: the test could fail)."""

import json
import os
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).with_name("host_sync_check.py")


def test_the_loop_reads_a_steps_results_every_check_every_steps_not_every_step(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    completed = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True,
                               timeout=300)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stdout[-3000:] + completed.stderr[-5000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["backend"] == "jax"
    reads = result["steps"] // result["check_every"] + 1  # every CHECK_EVERY steps (chunk ends: 50, 100), the first
    assert 1 <= result["loop"] <= reads, result
    assert result["check_every_step"] >= result["steps"], result
    assert result["per_step_callback"] >= result["steps"], result  # Keras' contract for a per-step hook
