"""Two processes on 127.0.0.1 evaluate a split once between them: each its own shard block, shares gathered."""

import json
import pathlib
import sys

import numpy as np
import pytest
from multiprocess_helpers import free_port, launch, wait_all

SCRIPT = pathlib.Path(__file__).with_name("multiprocess_eval_check.py")


@pytest.mark.slow
def test_two_processes_evaluate_each_example_once_and_agree_with_one(engine_data, tmp_path):
    # The test split: 20 examples in shards of 16 and 4, so the two shares differ in length (padding).
    command = [sys.executable, str(SCRIPT), "--data", str(engine_data), "--out", str(tmp_path / "result")]
    wait_all(launch(command, 2, port=free_port(), log_dir=tmp_path), tmp_path, timeout=300)
    results = [json.loads((tmp_path / f"result.{i}.json").read_text()) for i in range(2)]
    assert [r["processes"] for r in results] == [2, 2]
    reference = results[0]["reference"]
    assert reference["index"] == list(range(20))
    for result in results:  # every process holds the whole result, each example once, in index order
        assert result["full"]["index"] == list(range(20))
        assert result["full"]["labels"] == reference["labels"]
        np.testing.assert_allclose(result["full"]["logits"], reference["logits"], rtol=1e-5, atol=1e-5)
        assert result["subset"]["index"] == list(range(0, 20, 3))  # max_examples=7: every third example
        np.testing.assert_allclose(result["subset"]["logits"], np.asarray(reference["logits"])[::3], rtol=1e-5, atol=1e-5)
    assert np.std(reference["logits"]) > 1e-3
