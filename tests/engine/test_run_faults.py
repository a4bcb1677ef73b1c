"""Faults of resumable runs: damaged checkpoints fall back, the workdir lock, records after their checkpoint,
divergence, write errors — each a clear line or a recovery that says so."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from funmatch.errors import FunmatchError
from funmatch.training import checkpoints
from funmatch.training.checkpoints import Checkpointer, lock_workdir, prepare_workdir, unlock_workdir
from funmatch.training.loop import diverged, trim_records


class FakeVariable:
    def __init__(self, value, path, trainable=True):
        self.value = np.asarray(value, np.float32)
        self.path = path
        self.trainable = trainable

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return "float32"

    def assign(self, value):
        self.value = np.asarray(value, np.float32)


def _groups(scale=1.0):
    return {"student": [FakeVariable(np.arange(6).reshape(2, 3) * scale, "dense/kernel")],
            "optimizer": [FakeVariable([7 * scale], "iterations")]}


@pytest.mark.parametrize("damage", ["truncated npz", "not a zip", "bad meta", "nan weights"])
def test_damaged_latest_checkpoint_falls_back_and_says_so(tmp_path, capsys, damage):
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=3)
    ckpt.save(10, _groups(1.0))
    ckpt.save(20, _groups(2.0))
    latest = ckpt.path(20)
    if damage == "truncated npz":
        (latest / "state.npz").write_bytes((latest / "state.npz").read_bytes()[:150])
    elif damage == "not a zip":
        (latest / "state.npz").write_bytes(b"\0" * 64)
    elif damage == "bad meta":
        (latest / "meta.json").write_text('{"step": 20, "lay')
    else:
        ckpt.save(20, {"student": [FakeVariable(np.full((2, 3), np.nan), "dense/kernel")],
                       "optimizer": [FakeVariable([7.0], "iterations")]})
    target = _groups(0.0)
    meta = ckpt.restore(target)
    assert meta["step"] == 10
    np.testing.assert_array_equal(target["student"][0].value, np.arange(6).reshape(2, 3))
    err = capsys.readouterr().err
    assert f"{latest} is damaged" in err and "falling back to step 10" in err
    assert (tmp_path / "checkpoints" / "damaged-ckpt-000000020").is_dir() and ckpt.steps() == [10]


def test_every_checkpoint_damaged_is_one_error(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=3)
    ckpt.save(1, _groups())
    (ckpt.path(1) / "state.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(FunmatchError, match=r"every checkpoint in .* is damaged: ckpt-000000001 \(state\.npz"):
        ckpt.restore(_groups())


def test_checkpoint_of_another_model_is_not_skipped(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=3)
    ckpt.save(1, _groups())
    other = {"student": [FakeVariable(np.zeros((3, 3)), "dense/kernel")], "optimizer": [FakeVariable([0.0], "i")]}
    with pytest.raises(FunmatchError, match=r"shape \(2, 3\)"):
        ckpt.restore(other)
    assert ckpt.steps() == [1]


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt = Checkpointer(tmp_path, keep=3)
    ckpt.save(1, _groups())

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(FunmatchError, match=r"ckpt-000000002: cannot write the checkpoint \(No space left on device\); "
                                            r"the checkpoint of step 1 is intact"):
        ckpt.save(2, _groups())
    assert ckpt.steps() == [1] and not list(tmp_path.glob(".tmp-*"))


def test_workdir_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FunmatchError, match=r"--workdir .*file/run: cannot create it"):
        prepare_workdir(tmp_path / "file" / "run", {"a": 1})


def test_settings_of_a_run_that_never_trained_are_replaced(tmp_path):
    workdir = tmp_path / "run"
    assert prepare_workdir(workdir, {"lr": 1.0}) is False
    assert prepare_workdir(workdir, {"lr": 0.5}) is False  # no checkpoint, no record: the new settings win
    assert json.loads((workdir / "config.json").read_text()) == {"lr": 0.5, "precision": "float32"}  # CPU: auto
    (workdir / "metrics.jsonl").write_text('{"step": 2}\n')
    with pytest.raises(FunmatchError, match=r"holds a run with other settings \(lr: 0\.5 -> 0\.25\)"):
        prepare_workdir(workdir, {"lr": 0.25})
    assert prepare_workdir(workdir, {"lr": 0.5}) is True


def test_a_teacher_is_its_content_where_both_runs_recorded_it(tmp_path):
    workdir = tmp_path / "run"
    run = {"lr": 0.5, "teacher_path": "/a/teacher.keras", "teacher_sha256": "aa"}
    assert prepare_workdir(workdir, run) is False
    (workdir / "metrics.jsonl").write_text('{"step": 2}\n')
    assert prepare_workdir(workdir, {**run, "teacher_path": "/b/teacher.keras"}) is True  # moved: the same file
    with pytest.raises(FunmatchError, match=r"other settings \(teacher_sha256: 'aa' -> 'bb'\)"):
        prepare_workdir(workdir, {**run, "teacher_sha256": "bb"})  # another file at the same path
    # A workdir written before the content was recorded: its path is all there is to compare.
    (workdir / "config.json").write_text(json.dumps({"lr": 0.5, "teacher_path": "/a/teacher.keras"}))
    assert prepare_workdir(workdir, run) is True
    with pytest.raises(FunmatchError, match=r"other settings \(teacher_path: '/a/teacher.keras' -> '/b/teacher.keras'\)"):
        prepare_workdir(workdir, {**run, "teacher_path": "/b/teacher.keras"})


def test_a_run_resumes_only_in_the_precision_it_began_in(tmp_path):
    workdir = tmp_path / "run"
    assert prepare_workdir(workdir, {"lr": 0.5, "precision": "bfloat16"}) is False
    (workdir / "metrics.jsonl").write_text('{"step": 2}\n')
    with pytest.raises(FunmatchError, match=r"computed in bfloat16, this one computes in float32: re-run with "
                                            r"--precision bfloat16 to resume it"):
        prepare_workdir(workdir, {"lr": 0.5})  # the run's precision: float32 (auto on this CPU)
    assert prepare_workdir(workdir, {"lr": 0.5, "precision": "bfloat16"}) is True
    # A workdir written before the precision was recorded resumes (as before).
    (workdir / "config.json").write_text(json.dumps({"lr": 0.5}))
    assert prepare_workdir(workdir, {"lr": 0.5}) is True


HOLD = textwrap.dedent("""
    import sys, time
    from funmatch.training.checkpoints import lock_workdir
    lock_workdir(sys.argv[1])
    print("locked", flush=True)
    time.sleep(120)
""")


def test_workdir_lock_refuses_a_second_run_and_dies_with_its_holder(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FunmatchError, match=rf"workdir .*run is in use by another run \(process {holder.pid} on "):
            lock_workdir(workdir)
    finally:
        holder.kill()  # SIGKILL: nothing cleans up, the .lock file stays
        holder.wait()
    assert (workdir / ".lock").exists()
    lock_workdir(workdir)  # the kernel dropped the dead holder's lock
    lock_workdir(workdir)  # again in the same process: a no-op
    unlock_workdir(workdir)


def test_records_after_the_resume_point_are_dropped(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (2, 4, 6)) + '{"ste')
    (tmp_path / "log.csv").write_text("epoch,loss\n0,1.0\n1,0.9\n2,0.8\n")
    trim_records(tmp_path, 4, 2)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert (tmp_path / "log.csv").read_text() == "epoch,loss\n0,1.0\n1,0.9\n"


def test_divergence_rule():
    assert not diverged(1.0, 0.5, 2.0)
    assert diverged(6e3, 0.5, 2.0)  # four orders of magnitude over the running minimum
    assert not diverged(1.5, 1e-6, 2.0)  # a tiny minimum is floored at a thousandth of the first loss
    assert diverged(25.0, 1e-6, 2.0)


def _tiny_fit(tmp_path, learning_rate, steps=6, chunk=2, nan_from=None):
    import keras

    from funmatch.training.loop import fit_resumable

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    x, y = np.random.default_rng(0).normal(size=(64, 4)).astype("float32"), np.zeros((64, 3), "float32")
    if nan_from is not None:  # the examples of batch `nan_from` on (batches of 8) are NaN
        x[8 * nan_from:] = np.nan

    def make_dataset(start_step):
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(8).skip(start_step)

    def groups():
        return {"model": list(model.variables), "optimizer": list(model.optimizer.variables)}

    return fit_resumable(model, make_dataset, workdir=tmp_path, total_steps=steps, chunk_steps=chunk, groups=groups,
                         images_per_step=8, steps_per_data_epoch=8, progress=False)


def test_exploding_weights_stop_the_run_with_checkpoints_intact(tmp_path):
    # SGD on mse with lr 1e15: the weights leave any sane range within the first chunk.
    with pytest.raises(FunmatchError, match=r"training diverged (at|by) step \d+"):
        _tiny_fit(tmp_path, 1e15)
    assert Checkpointer(tmp_path / "checkpoints").steps() == []
    assert not (tmp_path / "metrics.jsonl").exists()


def test_a_nan_loss_is_caught_by_the_chunk_end_with_the_last_checkpoint_intact(tmp_path):
    # Batches 0-2 finite, batch 3 (step 4) NaN: the loss is read at step 1 and at each chunk end (2, 4).
    with pytest.raises(FunmatchError, match=r"loss became nan by step 4 \(read every 10 steps\); stopped\. "
                                            r"The last checkpoint \(step 2\) is intact"):
        _tiny_fit(tmp_path, 0.01, nan_from=3)
    assert Checkpointer(tmp_path / "checkpoints").steps() == [2]


def test_records_follow_their_checkpoints(tmp_path):
    out = _tiny_fit(tmp_path, 0.01)
    assert out["step"] == 6
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    # A kill between the checkpoint of step 6 and its record, after a kill between ... : resume from step 4
    # (the checkpoint of step 6 gone) writes steps 6 once.
    import shutil

    shutil.rmtree(tmp_path / "checkpoints" / "ckpt-000000006")
    _tiny_fit(tmp_path, 0.01)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]


def test_each_chunks_log_row_is_written_before_its_checkpoint(tmp_path, monkeypatch):
    """log.csv's row of a chunk is on disk when its checkpoint is written: a kill between the two is undone
    on resume (the row trimmed and written again), never a lost row."""
    from funmatch.training import checkpoints as module

    rows_at_save = []
    real_save = module.Checkpointer.save

    def save(self, step, groups, meta=None):
        log = tmp_path / "log.csv"
        rows_at_save.append((step, len(log.read_text().splitlines()) - 1 if log.exists() else 0))
        return real_save(self, step, groups, meta)

    monkeypatch.setattr(module.Checkpointer, "save", save)
    _tiny_fit(tmp_path, 0.01)
    assert rows_at_save == [(2, 1), (4, 2), (6, 3)]


def test_lock_only_in_the_first_process(monkeypatch, tmp_path):
    class FakeJax:
        @staticmethod
        def process_index():
            return 1

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"a": 1}')  # written by process 0
    monkeypatch.setitem(sys.modules, "jax", FakeJax)
    prepare_workdir(tmp_path / "run", {"a": 1})
    assert not (tmp_path / "run" / ".lock").exists()
    assert str((tmp_path / "run").resolve()) not in checkpoints._HELD_LOCKS


def test_workdir_of_an_earlier_version_resumes(tmp_path):
    workdir = tmp_path / "run"
    prepare_workdir(workdir, {"lr": 0.5})
    (workdir / "metrics.jsonl").write_text('{"step": 2}\n')
    # Settings recorded since: the teacher's hash, a new field at its off value.
    assert prepare_workdir(workdir, {"lr": 0.5, "teacher_sha256": "ab", "unlabeled_ratio": 0.0}) is True
    with pytest.raises(FunmatchError, match=r"unlabeled_ratio: None -> 0\.5"):
        prepare_workdir(workdir, {"lr": 0.5, "unlabeled_ratio": 0.5})
