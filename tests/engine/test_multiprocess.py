"""Two processes on 127.0.0.1 (JAX's distributed runtime, gloo CPU collectives) train as one.

Each process reads its own shard of the records and feeds half of the global batch; the result (losses and
weights, step by step) equals one process fed the same global batches. `funmatch distill` on two processes
resumes after a SIGKILL of one of them.
"""

import json
import pathlib
import sys

import numpy as np
import pytest
from multiprocess_helpers import free_port, kill_when, launch, wait_all

SCRIPT = pathlib.Path(__file__).with_name("data_parallel_check.py")


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch(engine_data, tmp_path):
    common = [sys.executable, str(SCRIPT), "--data", str(engine_data), "--global-batch", "8", "--steps", "6"]
    workers = launch([*common, "--out", str(tmp_path / "two.json"), "--reference"], 2, port=free_port(), log_dir=tmp_path)
    wait_all(workers, tmp_path, timeout=300)
    two = json.loads((tmp_path / "two.json").read_text())
    one = two["reference"]
    assert (two["processes"], two["devices"]) == (2, 2)
    assert len(one["losses"]) == len(two["losses"]) == 6
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    # The weights moved, and moved the same way in both runs.
    moved = max(float(np.abs(np.asarray(w)).max()) for w in one["weights"][-2:])  # the head starts at zero
    assert moved > 1e-3
    # Adam divides each element's update by its own gradient scale, so an element whose gradient is nearly
    # zero turns the all-reduce's float rounding into a visible difference (seen: 1 of 4,608 elements at
    # 4e-4 relative). The same training up to rounding: every element within 1e-3 of its tensor's scale,
    # and all but 0.1 % of them within rtol 1e-4.
    for a, b in zip(one["weights"], two["weights"]):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(b - a).max() <= 1e-3 * np.abs(a).max(), (np.abs(b - a).max(), np.abs(a).max())
        assert np.mean(~np.isclose(b, a, rtol=1e-4, atol=1e-6)) <= 1e-3


@pytest.mark.slow
def test_two_process_distill_resumes_after_sigkill_of_one_process(engine_data, engine_teacher, tmp_path):
    """`funmatch distill` on 2 processes: kill one with SIGKILL, stop the other, restart both: the run resumes
    from process 0's last checkpoint and finishes; process 0 alone wrote the records (each step once)."""
    config = "eurosat:smoke=true,student=tiny_cnn_w8,total_steps=12,checkpoint_every=4,eval_every=1000"
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "funmatch.cli", "distill", "--config", config, "--data", str(engine_data),
               "--teacher", str(engine_teacher), "--workdir", str(workdir), "--no-progress"]
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    # Any one process dies after step 4's checkpoint; the launcher stops the others, as a job scheduler does.
    kill_when(workdir / "checkpoints" / "ckpt-000000004", launch(command, 2, port=free_port(), log_dir=first), 1, first)
    assert not (workdir / "student.keras").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in (workdir / "checkpoints").glob("ckpt-*"))
    assert 4 <= killed_at < 12

    resume = [arg for arg in command if arg != "--no-progress"]  # it prints whether it resumes
    wait_all(launch(resume, 2, port=free_port(), log_dir=second), second, timeout=900)
    log = (second / "process0.log").read_text()
    assert "funmatch distill: resuming" in log and "on 2 processes" in log, log[-3000:]
    assert json.loads((workdir / "metrics.json").read_text())["step"] == 12
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 12 and killed_at in steps  # each step once, in order
    from funmatch import models

    weights = models.load(workdir / "student.keras").get_weights()
    assert all(np.all(np.isfinite(w)) for w in weights)


@pytest.mark.slow
def test_two_process_distill_of_a_hub_student_writes_its_file(engine_data, engine_teacher, hub_student, tmp_path):
    """A keras-hub student (a task compiled by keras-hub) on 2 processes: process 0 alone saves
    `student.keras` and both processes end (saving must not wait on a collective process 1 never joins)."""
    config = f"eurosat:smoke=true,student={hub_student},total_steps=2,checkpoint_every=2,eval_every=1000"
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "funmatch.cli", "distill", "--config", config, "--data", str(engine_data),
               "--teacher", str(engine_teacher), "--workdir", str(workdir), "--no-progress"]
    wait_all(launch(command, 2, port=free_port(), log_dir=tmp_path), tmp_path, timeout=600)
    assert json.loads((workdir / "metrics.json").read_text())["step"] == 2
    assert not list(workdir.glob(".student.tmp-*"))
    from funmatch import models

    weights = models.load(workdir / "student.keras").get_weights()
    assert weights and all(np.all(np.isfinite(w)) for w in weights)
