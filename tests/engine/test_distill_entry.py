"""The real `funmatch distill` entry on a small real-image dataset: smoke, modes, resume after SIGKILL,
NaN handling, and one-line errors before any compute."""

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from engine_helpers import make_teacher

from funmatch.errors import FunmatchError

SMOKE = "eurosat:smoke=true,student=tiny_cnn_w8"


def _weights(path):
    from funmatch import models

    return [np.asarray(w) for w in models.load(path).get_weights()]


def _sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.mark.both_backends
def test_one_run_of_the_real_entry(engine_data, engine_teacher, tmp_path):
    from funmatch.training.distill import distill

    teacher_hash = _sha(engine_teacher)
    workdir = tmp_path / "run"
    metrics = distill(SMOKE, engine_data, engine_teacher, workdir, progress=False)
    assert metrics["step"] == 3
    for key in ("validation_accuracy", "test_accuracy", "test_agreement", "test_kl", "teacher_test_accuracy"):
        assert key in metrics and np.isfinite(metrics[key]), key
    assert metrics["test_num_examples"] == 20 and metrics["validation_num_examples"] == 12  # every example once
    assert json.loads((workdir / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [2, 3] and all(np.isfinite(l["train_loss"]) for l in lines)
    assert (workdir / "log.csv").exists() and (workdir / "tensorboard").is_dir()
    assert (workdir / "augmentations.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The teacher file is untouched, and checkpoints hold the student (not the teacher).
    assert _sha(engine_teacher) == teacher_hash
    meta = json.loads((workdir / "checkpoints" / "ckpt-000000003" / "meta.json").read_text())
    assert set(meta["layout"]) == {"student", "optimizer", "rng"}
    student_weights = _weights(workdir / "student.keras")
    assert len(meta["layout"]["student"]) == len(student_weights)
    assert not any("teacher" in path for path, _ in meta["layout"]["student"])
    # The student trained: its (zero-initialised) head is no longer zero.
    assert any(np.abs(w).sum() > 0 for w in student_weights[-2:])


@pytest.mark.parametrize("mode", ["consistent", "independent", "fixed_teacher"])
def test_other_modes_run(engine_data, engine_teacher, tmp_path, mode):
    from funmatch.training.distill import distill

    workdir = tmp_path / mode
    metrics = distill(SMOKE, engine_data, engine_teacher, workdir, mode=mode, progress=False)
    assert metrics["mode"] == mode and np.isfinite(metrics["test_kl"])
    if mode == "fixed_teacher":
        # One target per training image, in the run's own store (the same store `funmatch targets` writes).
        from funmatch.distill import targets as store

        card = store.load_card(workdir / "teacher_targets")
        assert (card["mode"], card["views"], metrics["targets"]) == ("fixed_teacher", 1, "stored")
        targets = store.decode_rows(store.read_targets(workdir / "teacher_targets", card, 0), 4)
        assert targets.shape == (48, 4) and np.all(np.isfinite(targets))
        # The stored targets are the teacher's log-probabilities on the eval view of each training image.
        from funmatch import models
        from funmatch.configs import get_config
        from funmatch.data import pipeline
        from funmatch.training.distill import eval_pp

        teacher = models.load(engine_teacher)
        batch = next(pipeline.eval_dataset(engine_data, "train", eval_pp(get_config(SMOKE), 64), 8).as_numpy_iterator())
        expected = store.log_softmax(teacher.predict_on_batch(batch["image"]))
        np.testing.assert_allclose(targets[batch["index"]], expected, rtol=2e-3, atol=2e-3)
        # Re-running (resume of a finished run) reuses the store rather than recomputing it.
        cache = next((workdir / "teacher_targets").glob("view-*/*.npy"))
        before = cache.stat().st_mtime_ns
        distill(SMOKE, engine_data, engine_teacher, workdir, mode=mode, progress=False)
        assert cache.stat().st_mtime_ns == before


@pytest.mark.slow
@pytest.mark.parametrize("student", ["tiny_cnn_w8", "hub"])
def test_resume_after_sigkill_continues_exactly(engine_data, engine_teacher, tmp_path, request, student):
    """N steps straight == k steps, SIGKILL, resume to N (same weights, trainable or not): funmatch's own
    student, and a keras-hub MobileNet built from a preset (its batch-norm statistics included)."""
    from funmatch.training.distill import distill

    if student == "hub":
        student = request.getfixturevalue("hub_student")
    config = f"eurosat:smoke=true,student={student},total_steps=24,checkpoint_every=4,eval_every=1000"
    straight = tmp_path / "straight"
    distill(config, engine_data, engine_teacher, straight, progress=False)

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "funmatch.cli", "distill", "--config", config, "--data", str(engine_data),
               "--teacher", str(engine_teacher), "--workdir", str(killed), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (killed / "checkpoints" / "ckpt-000000008").exists():
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    assert not (killed / "student.keras").exists()
    steps = sorted(p.name for p in (killed / "checkpoints").glob("ckpt-*"))
    assert steps and steps[-1] < "ckpt-000000024"
    distill(config, engine_data, engine_teacher, killed, progress=False)
    straight_weights, killed_weights = _weights(straight / "student.keras"), _weights(killed / "student.keras")
    assert len(straight_weights) == len(killed_weights)
    for a, b in zip(straight_weights, killed_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    logged = [json.loads(l)["step"] for l in (killed / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] == 24


def test_a_nan_teacher_is_named_before_any_step(engine_data, tmp_path):
    from funmatch.training.distill import distill

    poisoned = make_teacher(tmp_path / "nan_teacher.keras", poison=True)
    workdir = tmp_path / "nan"
    with pytest.raises(FunmatchError, match=r"--teacher .*nan_teacher\.keras: the teacher's weight \S+ holds NaN or Inf"):
        distill(SMOKE, engine_data, poisoned, workdir, progress=False)
    assert not (workdir / "checkpoints").exists() and not (workdir / "student.keras").exists()


def test_bad_inputs_fail_before_compute_and_leave_no_workdir(engine_data, engine_teacher, tmp_path, monkeypatch):
    from funmatch import runtime
    from funmatch.training.distill import distill

    workdir = tmp_path / "never"
    wrong_classes = make_teacher(tmp_path / "five.keras", num_classes=5)
    cases = [
        (dict(teacher_path=wrong_classes), "the teacher has 5 classes, the dataset has 4"),
        (dict(teacher_path=tmp_path / "missing.keras"), "missing.keras: no such file"),
        (dict(config="eurosat:smoke=true,nosuchkey=1"), "unknown key(s) nosuchkey"),
        (dict(config="nosuchrecipe"), "unknown recipe"),
        (dict(mode="magic"), "--mode: unknown mode 'magic'"),
        (dict(data_dir=tmp_path / "nodata"), "dataset.json"),
    ]
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"not a keras file")
    cases.append((dict(teacher_path=garbage), "garbage.keras"))
    for overrides, message in cases:
        kwargs = dict(config=SMOKE, data_dir=engine_data, teacher_path=engine_teacher, workdir=workdir, progress=False)
        kwargs.update(overrides)
        with pytest.raises(FunmatchError) as info:
            distill(**kwargs)
        assert message in str(info.value), (overrides, str(info.value))
        assert not workdir.exists()
    monkeypatch.setattr(runtime, "replica_count", lambda: 3)
    with pytest.raises(FunmatchError, match="global batch 8 does not divide by the 3 devices"):
        distill(SMOKE, engine_data, engine_teacher, workdir, progress=False)
    assert not workdir.exists()


def test_resume_with_other_settings_is_refused(engine_data, engine_teacher, tmp_path):
    from funmatch.training.distill import distill

    workdir = tmp_path / "run"
    distill(SMOKE, engine_data, engine_teacher, workdir, progress=False)
    with pytest.raises(FunmatchError, match=r"learning_rate: 0.003 -> 0.01"):
        distill(SMOKE + ",lr=0.01", engine_data, engine_teacher, workdir, progress=False)


def test_cli_help_and_errors(capsys):
    from funmatch.cli import COMMANDS, main

    for command in COMMANDS:
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "usage: funmatch " + command in capsys.readouterr().out
    assert main(["distill", "--config", "nosuch", "--data", "x", "--teacher", "y", "--workdir", "z"]) == 2
    assert "funmatch distill: error: --config: unknown recipe 'nosuch'" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["function_matching", "consistent", "independent", "fixed_teacher"])
def test_crop_area_min_sets_the_smallest_crop_of_every_view(mode):
    import tensorflow as tf

    from funmatch.configs import get_config
    from funmatch.data import ops
    from funmatch.training.distill import train_pp

    paper = train_pp(get_config("eurosat"), mode)
    assert "area_min" not in paper  # the paper's 5 % is the op's default
    config = get_config("eurosat:crop_area_min=100,student_resolution=8,teacher_resolution=16")
    spec = train_pp(config, mode)
    assert spec.count("area_min=100") == (2 if mode == "independent" else 1)
    # 100 % crops are the whole image: every view is the resized image (maybe flipped), whatever the seed.
    rows, cols = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    image = np.stack([rows * 15, cols * 15, np.full_like(rows, 128)], -1).astype(np.uint8)  # smooth ramps
    encoded = tf.io.encode_jpeg(image, quality=100)
    example = {"image": encoded, "label": tf.constant(1), "index": tf.constant(0, tf.int64)}
    for position in range(3):
        out = ops.get_preprocess_fn(spec)({**example, ops.RNG_KEY: tf.constant([1, position], tf.int64)})
        for key, size in (("image", 8), ("teacher", 16)):
            if key in out:
                assert out[key].shape[:2] == (size, size)
                view = out[key].numpy()
                full = tf.image.resize(tf.io.decode_image(encoded, channels=3, expand_animations=False), (size, size),
                                       antialias=True).numpy() / 127.5 - 1.0
                assert min(np.abs(view - full).max(), np.abs(view - full[:, ::-1]).max()) < 0.1
