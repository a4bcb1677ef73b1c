"""`funmatch targets` on two processes on 127.0.0.1 (JAX's distributed runtime, gloo), and after a SIGKILL.

The units (one view of one record file) are split over the processes; each runs the teacher on its own devices,
so an odd number of units (one process gets one more) costs no stall. The store two processes write equals the
store of one process; a kill of one process mid-run followed by a restart of both, and a kill of a one-process
run followed by a rerun, complete to that same store.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from multiprocess_helpers import free_port, kill_when, launch, process_env, wait_all

VIEWS = 15  # 15 views x 3 record files of the engine data: 45 units, 23 for process 0 and 22 for process 1


def targets_command(data, teacher, out) -> list[str]:
    return [sys.executable, "-m", "funmatch.cli", "targets", "--teacher", str(teacher), "--data", str(data),
            "--config", "eurosat:smoke=true", "--views", str(VIEWS), "--out", str(out), "--no-progress"]


def unit_files(store: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.glob("view-*/*.npy"))


def assert_same_store(store: pathlib.Path, reference: pathlib.Path) -> None:
    """Complete, the same settings, and the same float16 rows in every unit (to one float16 step)."""
    card, expected = json.loads((store / "targets.json").read_text()), json.loads((reference / "targets.json").read_text())
    assert card["complete"] is True
    static = ("mode", "views", "storage", "num_classes", "view_spec", "partner_shifts", "seed", "bytes_total")
    assert {k: card[k] for k in static} == {k: expected[k] for k in static}
    assert unit_files(store) == unit_files(reference) and len(unit_files(store)) == VIEWS * 3
    for name in unit_files(reference):
        rows, want = np.load(store / name), np.load(reference / name)
        assert rows.dtype == want.dtype == np.float16 and rows.shape == want.shape
        np.testing.assert_allclose(rows.astype(np.float32), want.astype(np.float32), rtol=2**-10, atol=1e-4,
                                   err_msg=name)


@pytest.fixture(scope="module")
def one_process_store(engine_data, engine_teacher, tmp_path_factory) -> pathlib.Path:
    """The store of one uninterrupted JAX process."""
    out = tmp_path_factory.mktemp("targets_one") / "store"
    done = subprocess.run(targets_command(engine_data, engine_teacher, out), env=process_env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_two_processes_write_the_store_of_one_with_unequal_units(engine_data, engine_teacher, one_process_store,
                                                                 tmp_path):
    out = tmp_path / "store"
    wait_all(launch(targets_command(engine_data, engine_teacher, out), 2, port=free_port(), log_dir=tmp_path), tmp_path)
    assert_same_store(out, one_process_store)
    card = json.loads((out / "targets.json").read_text())
    assert card["processes"] == 2  # both processes generated (timing-p0000.json, timing-p0001.json)
    logs = [(tmp_path / f"process{i}.log").read_text() for i in range(2)]
    assert "funmatch targets: function_matching, 15 view(s)" in logs[0], logs[0][-2000:]
    assert "funmatch targets:" not in logs[1]  # process 0 reports


@pytest.mark.slow
def test_two_process_targets_resume_after_sigkill_of_one_process(engine_data, engine_teacher, one_process_store,
                                                                 tmp_path):
    out = tmp_path / "store"
    command = targets_command(engine_data, engine_teacher, out)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    # Process 1's first unit is view 0 of record file 1: kill it right after writing that one.
    kill_when(out / "view-00000" / "train-00001.npy", launch(command, 2, port=free_port(), log_dir=first), 1, first)
    assert json.loads((out / "targets.json").read_text())["complete"] is False
    assert 1 <= len(unit_files(out)) < VIEWS * 3
    wait_all(launch(command, 2, port=free_port(), log_dir=second), second)
    assert_same_store(out, one_process_store)


@pytest.mark.slow
def test_one_process_targets_resume_after_sigkill(engine_data, engine_teacher, one_process_store, tmp_path):
    out = tmp_path / "store"
    command = targets_command(engine_data, engine_teacher, out)
    log = open(tmp_path / "process0.log", "w")
    kill_when(out / "view-00001" / "train-00000.npy",
              [subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=process_env())], 0, tmp_path)
    assert json.loads((out / "targets.json").read_text())["complete"] is False
    assert 4 <= len(unit_files(out)) < VIEWS * 3
    done = subprocess.run(command, env=process_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert_same_store(out, one_process_store)
