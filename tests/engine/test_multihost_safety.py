"""Several processes on one workdir: each checkpoint write is followed by a barrier, and after a restore
every process refuses to run unless all restored the same step (two real processes on 127.0.0.1)."""

import json
import pathlib
import sys

import pytest
from multiprocess_helpers import free_port, launch, wait_all

SCRIPT = pathlib.Path(__file__).with_name("multihost_check.py")


def _results(log_dir, count=2):
    out = []
    for index in range(count):
        lines = [line for line in (log_dir / f"process{index}.log").read_text().splitlines() if line.startswith("RESULT ")]
        out.append(json.loads(lines[-1][len("RESULT "):]))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("steps, refused", [("8,8", False), ("8,4", True)])
def test_a_checkpoint_is_in_place_everywhere_and_the_restored_steps_must_agree(tmp_path, steps, refused):
    logs = tmp_path / "logs"
    logs.mkdir()
    command = [sys.executable, str(SCRIPT), "--dir", str(tmp_path / "checkpoints"), "--steps", steps]
    wait_all(launch(command, 2, port=free_port(), log_dir=logs), logs, timeout=300)
    results = _results(logs)
    assert [r["checkpoint_in_place"] for r in results] == [True, True]  # process 1 waited for process 0's write
    for result in results:
        if refused:
            assert "the processes restored different checkpoints (process 0: step 8, process 1: step 4)" in result["verdict"]
        else:
            assert result["verdict"] == "same"


def test_temporary_names_carry_host_and_process(tmp_path, monkeypatch):
    import os
    import socket

    from funmatch.training import checkpoints

    monkeypatch.setattr(socket, "gethostname", lambda: "tpu-vm.europe/1")
    tag = checkpoints.temporary_tag()
    assert tag == f"tpu-vm_europe_1-{os.getpid()}"
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(checkpoints.os, "replace", lambda a, b: (seen.append(str(a)), real_replace(a, b)))
    checkpoints.atomic_write_text(tmp_path / "config.json", "{}")
    assert len(seen) == 1 and f".config.json.{tag}." in seen[0]
