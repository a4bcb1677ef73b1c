"""Checkpointer and workdir rules: atomic saves, pruning, clear errors on mismatched state."""

import json

import numpy as np
import pytest

from funmatch.errors import FunmatchError
from funmatch.training.checkpoints import Checkpointer, atomic_write_text, prepare_workdir


class FakeVariable:
    def __init__(self, value, path):
        self.value = np.asarray(value, np.float32)
        self.path = path

    @property
    def shape(self):
        return self.value.shape

    def assign(self, value):
        self.value = np.asarray(value, np.float32)


def _groups(scale=1.0):
    return {"student": [FakeVariable(np.arange(6).reshape(2, 3) * scale, "dense/kernel"), FakeVariable([scale], "dense/bias")],
            "optimizer": [FakeVariable([7 * scale], "iterations")]}


def test_save_restore_roundtrip_and_prune(tmp_path):
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=2)
    for step in (10, 20, 30):
        ckpt.save(step, _groups(step), {"epoch": step / 10})
    assert ckpt.steps() == [20, 30]  # only the last two kept
    target = _groups(0.0)
    meta = ckpt.restore(target)
    assert meta["step"] == 30 and meta["epoch"] == 3.0
    np.testing.assert_array_equal(target["student"][0].value, np.arange(6).reshape(2, 3) * 30)
    np.testing.assert_array_equal(target["optimizer"][0].value, [210])


def test_incomplete_checkpoint_is_ignored_and_cleaned(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=3)
    ckpt.save(5, _groups(), {})
    # A run killed mid-save leaves a temporary folder and possibly a folder without meta.json.
    (tmp_path / ".tmp-abc").mkdir()
    (tmp_path / ".tmp-abc" / "state.npz").write_bytes(b"partial")
    (tmp_path / "ckpt-000000009").mkdir()
    (tmp_path / "ckpt-000000009" / "state.npz").write_bytes(b"partial")
    again = Checkpointer(tmp_path, keep=3)
    assert again.latest_step() == 5
    assert not (tmp_path / ".tmp-abc").exists()


def test_restore_into_other_model_is_a_clear_error(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, _groups(), {})
    other = _groups()
    other["student"][0] = FakeVariable(np.zeros((3, 3)), "dense/kernel")
    with pytest.raises(FunmatchError, match=r"shape \(2, 3\).*\(3, 3\)"):
        ckpt.restore(other)
    fewer = {"student": other["student"][:1], "optimizer": other["optimizer"]}
    with pytest.raises(FunmatchError, match="different model or config"):
        ckpt.restore(fewer)


def test_restore_without_checkpoint_returns_none(tmp_path):
    assert Checkpointer(tmp_path).restore(_groups()) is None


def test_prepare_workdir_resume_rules(tmp_path):
    workdir = tmp_path / "run"
    assert prepare_workdir(workdir, {"lr": 0.1, "steps": 10}) is False
    assert json.loads((workdir / "config.json").read_text()) == {"lr": 0.1, "steps": 10, "precision": "float32"}
    assert prepare_workdir(workdir, {"lr": 0.1, "steps": 10}) is True
    (workdir / "metrics.jsonl").write_text('{"step": 5}\n')  # the run trained: its settings are fixed
    with pytest.raises(FunmatchError, match=r"lr: 0.1 -> 0.2"):
        prepare_workdir(workdir, {"lr": 0.2, "steps": 10})
    # The refused run did not touch the workdir.
    assert json.loads((workdir / "config.json").read_text())["lr"] == 0.1
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(FunmatchError, match="not empty and holds no funmatch run"):
        prepare_workdir(stray, {"lr": 0.1})


def test_prepare_workdir_resumes_with_moved_data_but_not_with_other_data(tmp_path):
    """A dataset or store recorded with its card's SHA-256 may move (another host, another mount); other
    content at any path is refused, and a workdir from before the SHA-256 was recorded still compares paths."""
    workdir = tmp_path / "run"
    run = {"lr": 0.1, "data_dir": "/a/data", "data_card_sha256": "d1", "targets_dir": "/a/t", "targets_card_sha256": "t1"}
    assert prepare_workdir(workdir, run) is False
    (workdir / "metrics.jsonl").write_text('{"step": 5}\n')
    assert prepare_workdir(workdir, {**run, "data_dir": "/b/data", "targets_dir": "/b/t"}) is True
    with pytest.raises(FunmatchError, match=r"data_card_sha256: 'd1' -> 'd2', data_dir: '/a/data' -> '/b/data'"):
        prepare_workdir(workdir, {**run, "data_dir": "/b/data", "data_card_sha256": "d2"})
    with pytest.raises(FunmatchError, match=r"targets_card_sha256: 't1' -> 't2'"):  # regenerated in place
        prepare_workdir(workdir, {**run, "targets_card_sha256": "t2"})
    old = tmp_path / "old"  # written before the cards' SHA-256 was recorded
    assert prepare_workdir(old, {"lr": 0.1, "data_dir": "/a/data"}) is False
    (old / "metrics.jsonl").write_text('{"step": 5}\n')
    assert prepare_workdir(old, {"lr": 0.1, "data_dir": "/a/data", "data_card_sha256": "d1"}) is True
    with pytest.raises(FunmatchError, match=r"data_dir: '/a/data' -> '/b/data'"):
        prepare_workdir(old, {"lr": 0.1, "data_dir": "/b/data", "data_card_sha256": "d1"})


def test_atomic_write_text_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "metrics.json"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
