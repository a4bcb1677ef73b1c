"""Two processes on 127.0.0.1 (JAX's distributed runtime, gloo CPU collectives) train as one.

Each process reads its own shard of the records and feeds half of the global batch; the result (losses and
weights, step by step) equals one process fed the same global batches.
"""

import json
import pathlib
import sys

import numpy as np
import pytest
from multiprocess_helpers import free_port, launch, log_tail

SCRIPT = pathlib.Path(__file__).with_name("data_parallel_check.py")


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch(engine_data, tmp_path):
    common = [sys.executable, str(SCRIPT), "--data", str(engine_data), "--global-batch", "8", "--steps", "6"]
    workers = launch([*common, "--out", str(tmp_path / "two.json"), "--reference"], 2, port=free_port(), log_dir=tmp_path)
    try:
        codes = [p.wait(timeout=300) for p in workers]
    finally:
        for p in workers:
            if p.poll() is None:
                p.kill()
    assert codes == [0, 0], log_tail(tmp_path, 2)
    two = json.loads((tmp_path / "two.json").read_text())
    one = two["reference"]
    assert (two["processes"], two["devices"]) == (2, 2)
    assert len(one["losses"]) == len(two["losses"]) == 6
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    # The weights moved, and moved the same way in both runs.
    moved = max(float(np.abs(np.asarray(w)).max()) for w in one["weights"][-2:])  # the head starts at zero
    assert moved > 1e-3
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
