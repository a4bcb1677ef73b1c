"""`restore_runs`: a run continued from the previous machine session's saved workdir (Kaggle's 9-hour limit)."""

import json
import pathlib

import pytest

from funmatch.errors import FunmatchError
from funmatch.training.checkpoints import restore_runs, run_progress


def fake_run(folder: pathlib.Path, steps=(), finished=False, marker="metrics.json") -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"steps": 10}))
    (folder / ".lock").write_text('{"pid": 1}')
    for step in steps:
        ckpt = folder / "checkpoints" / f"ckpt-{step:09d}"
        ckpt.mkdir(parents=True)
        (ckpt / "meta.json").write_text(json.dumps({"step": step}))
        (ckpt / "state.npz").write_bytes(b"state %d" % step)
    if finished:
        (folder / marker).write_text("{}")
    return folder


def test_progress_counts_complete_checkpoints_and_the_finish_marker(tmp_path):
    run = fake_run(tmp_path / "run", steps=(100, 200))
    (run / "checkpoints" / "ckpt-000000300").mkdir()  # half-written: no state.npz
    assert run_progress(run) == (False, 200)
    assert run_progress(fake_run(tmp_path / "t", steps=(50,), finished=True, marker="teacher_metrics.json")) == (True, 50)
    assert run_progress(tmp_path / "absent") == (False, 0)


def test_later_runs_are_copied_and_earlier_or_equal_ones_kept(tmp_path):
    source, workdir = tmp_path / "saved", tmp_path / "working"
    fake_run(source / "function_matching", steps=(100, 200))
    fake_run(source / "independent", steps=(100,))
    fake_run(source / "consistent", steps=(100,))
    fake_run(workdir / "independent", steps=(100, 300))  # the local copy is further: kept
    fake_run(workdir / "consistent", steps=(100,))  # the same step: kept
    restored = restore_runs(source, workdir)
    assert restored == [("function_matching", 200)]
    assert (workdir / "function_matching" / "checkpoints" / "ckpt-000000200" / "state.npz").read_bytes() == b"state 200"
    assert not (workdir / "function_matching" / ".lock").exists()  # the old session's lock file stays behind
    assert run_progress(workdir / "independent") == (False, 300)
    assert not list(workdir.glob(".*restoring")) and not list(workdir.glob("*.replaced"))


def test_a_finished_run_replaces_an_unfinished_local_one(tmp_path):
    source, workdir = tmp_path / "saved", tmp_path / "working"
    fake_run(source, steps=(400,), finished=True)
    fake_run(workdir, steps=(100, 200))
    assert restore_runs(source, workdir) == [(".", 400)]
    assert run_progress(workdir) == (True, 400)
    assert not (workdir / "checkpoints" / "ckpt-000000100").exists()  # the run is the saved one, not a mix
    assert restore_runs(source, workdir) == []  # nothing newer the second time


def test_nested_trials_are_found_under_their_outermost_run_folder(tmp_path):
    source, workdir = tmp_path / "saved", tmp_path / "working"
    fake_run(source / "trials" / "0001", steps=(10,), finished=True)
    fake_run(source / "trials" / "0002", steps=(20,))
    fake_run(source / "trials" / "0002" / "inner", steps=(5,))  # inside a run: part of it, not a run
    (source / "oracle.json").write_text('{"trials": 2}')  # a search's own state, outside the runs
    (workdir / "report").mkdir(parents=True)
    (workdir / "report" / "index.html").write_text("local")
    (source / "report").mkdir()
    (source / "report" / "index.html").write_text("saved")
    assert sorted(restore_runs(source, workdir)) == [("trials/0001", 10), ("trials/0002", 20)]
    assert (workdir / "trials" / "0002" / "inner" / "checkpoints" / "ckpt-000000005").is_dir()
    assert (workdir / "oracle.json").read_text() == '{"trials": 2}'
    assert (workdir / "report" / "index.html").read_text() == "local"  # a file the workdir has is kept


def test_a_missing_source_is_one_clear_line(tmp_path):
    with pytest.raises(FunmatchError, match=r"resume source .*nowhere: no such folder"):
        restore_runs(tmp_path / "nowhere", tmp_path / "working")
