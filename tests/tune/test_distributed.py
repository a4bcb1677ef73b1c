"""Chief + two workers on 127.0.0.1 (real `funmatch tune` processes): a worker SIGKILLed mid-trial does
not hang the chief, its trial is retried by the live worker from its checkpoint, no trial is lost."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from funmatch.tuning import load_trials

DEADLINE_S = 420  # generous: three processes import TensorFlow + JAX on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_chief_and_two_workers_survive_a_killed_worker(tiny_data, tiny_teacher, tmp_path):
    search_dir = tmp_path / "search"
    address = f"127.0.0.1:{_free_port()}"
    command = [
        sys.executable, "-m", "funmatch.cli", "tune", "--config", "eurosat:smoke=true,total_steps=16",
        "--data", str(tiny_data), "--teacher", str(tiny_teacher), "--dir", str(search_dir),
        "--space", "lr=0.001,0.01;T=1,2", "--axes", "lr,T", "--max-trials", "3", "--keep-best", "2",
        "--chief", address, "--heartbeat", "1", "--lease-timeout", "15", "--connect-timeout", "120",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    logs = {name: open(tmp_path / f"{name}.log", "w+") for name in ("chief", "w1", "w2")}
    processes = {}
    try:
        processes["chief"] = subprocess.Popen(command + ["--role", "chief"], stdout=logs["chief"], stderr=subprocess.STDOUT, env=env)
        for name in ("w1", "w2"):
            processes[name] = subprocess.Popen(command + ["--role", "worker", "--tuner-id", name],
                                               stdout=logs[name], stderr=subprocess.STDOUT, env=env)

        def w1_trial():
            text = (tmp_path / "w1.log").read_text()
            marker = "[w1]: trial "
            if marker not in text:
                return None
            return text.split(marker, 1)[1].split()[0]

        # Kill w1 once its trial has written its first checkpoint (step 2 of 16).
        _wait(lambda: w1_trial() is not None, DEADLINE_S / 2, "w1 to start a trial")
        killed_trial = w1_trial()
        checkpoints = search_dir / "trials" / killed_trial / "checkpoints"
        _wait(lambda: checkpoints.is_dir() and any(checkpoints.glob("ckpt-*")), DEADLINE_S / 2, "w1's first checkpoint")
        processes["w1"].send_signal(signal.SIGKILL)
        processes["w1"].wait(10)

        for name in ("chief", "w2"):
            assert processes[name].wait(DEADLINE_S) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
        for log in logs.values():
            log.close()

    chief_log = (tmp_path / "chief.log").read_text()
    assert "tuner w1 sent nothing" in chief_log and f"trial {killed_trial} queued for retry" in chief_log
    assert f"[w2]: trial {killed_trial} started" in (tmp_path / "w2.log").read_text()
    rows, _ = load_trials(search_dir)
    assert [r["status"] for r in rows] == ["COMPLETED"] * 3  # no trial lost
    # The retry resumed from w1's checkpoint: step 2 was logged once (a fresh start would log it again).
    records = [json.loads(line) for line in (search_dir / "trials" / killed_trial / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps.count(2) == 1 and steps[-1] == 16, steps
    kept = [p for p in (search_dir / "trials").iterdir() if (p / "student.keras").exists()]
    assert len(kept) == 2 and not list(search_dir.glob("trials/*/checkpoints"))
