"""`funmatch teacher` on two processes on 127.0.0.1 (JAX's distributed runtime, gloo CPU collectives).

Each process reads its own shard of the records and feeds half of the global batch. A SIGKILL of one process
after a few steps, then a restart of both: the run resumes from process 0's last checkpoint (every process
restores it) and its per-step losses and final weights equal one process fed the same global batches
(`teacher_reference.py`, the command as users run it with the N shards' batches concatenated). Process 0
alone writes checkpoints, metrics and teacher.keras.
"""

import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from multiprocess_helpers import free_port, kill_when, launch, process_env, wait_all

REFERENCE = pathlib.Path(__file__).with_name("teacher_reference.py")
STEPS = 6
CONFIG = (f"eurosat:smoke=true,teacher=tiny_cnn_w8,teacher_resolution=32,teacher_steps={STEPS},teacher_batch_size=8,"
          "checkpoint_every=1,eval_every=1000")  # one step per chunk: metrics.jsonl holds every step's loss


def records(workdir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_process_teacher_equals_one_process_and_resumes_after_sigkill(engine_data, tmp_path):
    arguments = ["teacher", "--config", CONFIG, "--data", str(engine_data), "--no-progress"]
    one = tmp_path / "one"
    done = subprocess.run([sys.executable, str(REFERENCE), "--processes", "2", "--", *arguments, "--workdir", str(one)],
                          env=process_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    two = tmp_path / "two"
    command = [sys.executable, "-m", "funmatch.cli", *arguments, "--workdir", str(two)]
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    # Any one process dies after step 2's checkpoint; the launcher stops the others.
    kill_when(two / "checkpoints" / "ckpt-000000002", launch(command, 2, port=free_port(), log_dir=first), 1, first)
    assert not (two / "teacher.keras").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in (two / "checkpoints").glob("ckpt-*"))
    assert 2 <= killed_at < STEPS

    restarted = time.time()
    wait_all(launch(command, 2, port=free_port(), log_dir=second), second)

    # Resumed at the checkpoint: the records up to it are the first run's, the later ones the restart's, each once.
    steps = [r["step"] for r in records(two)]
    assert steps == list(range(1, STEPS + 1)), steps
    assert all((r["wall_time"] < restarted) == (r["step"] <= killed_at) for r in records(two)), (killed_at, records(two))
    log_rows = (two / "log.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in log_rows] == list(range(STEPS))  # one writer: each chunk once

    # The same losses, step by step, and the same weights as one process fed the same global batches.
    np.testing.assert_allclose([r["train_loss"] for r in records(two)], [r["train_loss"] for r in records(one)],
                               rtol=1e-5)
    final, final_one = (json.loads((w / "metrics.json").read_text()) for w in (two, one))
    assert final["step"] == STEPS
    for split in ("validation", "test"):  # evaluated on every example once, as one process does
        assert final[f"{split}_num_examples"] == final_one[f"{split}_num_examples"] > 0
        assert abs(final[f"{split}_accuracy"] - final_one[f"{split}_accuracy"]) <= 1 / final[f"{split}_num_examples"]
    from funmatch import models

    expected, got = models.load(one / "teacher.keras").get_weights(), models.load(two / "teacher.keras").get_weights()
    moved = max(float(np.abs(w).max()) for w in expected[-2:])  # the head starts at zero
    assert moved > 1e-3
    assert len(got) == len(expected)
    # The all-reduce sums gradients in another order (float32), and Adam turns that noise in near-zero gradients
    # into steps of its own size: measured here, at most 1e-5 apart (weights up to 1).
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=5e-5)
