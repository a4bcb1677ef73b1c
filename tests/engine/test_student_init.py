"""`funmatch distill --init`: the student's warm start from a funmatch `.keras` file (the recipe's `student_init`)."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from funmatch.errors import FunmatchError

SMOKE = "eurosat:smoke=true,student=tiny_cnn_w8,eval_max_examples=8"


def _student_file(path, *, arch="tiny_cnn_w8", classes=4, resolution=48, seed=1):
    """A student file with weights no seed's initialisation gives (every weight drawn, the zero head too)."""
    from funmatch import models

    model = models.create(arch, num_classes=classes, resolution=resolution)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype("float32"))
    model.save(path)
    return path


def _weights(path):
    from funmatch import models

    return models.load(path).get_weights()


def _record_start(monkeypatch):
    """The student's weights as `fit_resumable` receives it: before the first update (and before a resume's restore)."""
    from funmatch.training import loop as module  # distill() imports it from there at each call

    seen = []
    real = module.fit_resumable

    def fit(model, *args, **kwargs):
        seen.append([np.array(w) for w in model.student.get_weights()])
        return real(model, *args, **kwargs)

    monkeypatch.setattr(module, "fit_resumable", fit)
    return seen


def test_the_first_step_starts_from_the_init_and_a_resume_from_its_checkpoint(engine_data, engine_teacher, tmp_path,
                                                                               monkeypatch):
    from funmatch.evaluation.cache import file_sha256
    from funmatch.models import importer
    from funmatch.training.distill import distill

    init = _student_file(tmp_path / "init.keras")
    config = SMOKE + ",total_steps=2,checkpoint_every=1,eval_every=1000"
    straight = tmp_path / "straight"
    seen = _record_start(monkeypatch)
    distill(config, engine_data, engine_teacher, straight, init=init, progress=False)
    for start, expected in zip(seen[0], _weights(init), strict=True):  # before the first update
        np.testing.assert_array_equal(start, expected)
    run = json.loads((straight / "config.json").read_text())
    assert run["student_init"] == str(init.resolve()) and run["student_init_sha256"] == file_sha256(init)
    # The same run stopped after its first checkpoint (what a kill leaves), then resumed with the same --init.
    killed = tmp_path / "killed"
    shutil.copytree(straight, killed, ignore=shutil.ignore_patterns(".lock*"))
    shutil.rmtree(killed / "checkpoints" / "ckpt-000000002")
    (killed / "metrics.json").unlink()
    (killed / "student.keras").unlink()
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(killed, elsewhere)

    def refuse(*args, **kwargs):
        raise AssertionError("a resume applied --init again")

    monkeypatch.setattr(importer, "warm_start", refuse)
    distill(config, engine_data, engine_teacher, killed, init=init, progress=False)
    for a, b in zip(_weights(straight / "student.keras"), _weights(killed / "student.keras"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    other = _student_file(tmp_path / "other.keras", seed=2)
    with pytest.raises(FunmatchError, match=r"^--init .*other\.keras: workdir .*killed resumes a run started from "
                                            r".*init\.keras \(sha256 [0-9a-f]{12}\); resume with its --init"):
        distill(config, engine_data, engine_teacher, killed, init=other, progress=False)
    with pytest.raises(FunmatchError, match=r"^no --init: workdir .* resumes a run started from .*init\.keras"):
        distill(config, engine_data, engine_teacher, killed, progress=False)
    # The same file at another path (moved, or mounted elsewhere) is the same start: the run resumes.
    (tmp_path / "moved").mkdir()
    moved = pathlib.Path(shutil.copy(init, tmp_path / "moved" / "init.keras"))
    distill(config, engine_data, engine_teacher, elsewhere, init=moved, progress=False)
    for a, b in zip(_weights(straight / "student.keras"), _weights(elsewhere / "student.keras"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_run_resumes_with_its_teacher_at_another_path_but_not_with_another_teacher(engine_data, engine_teacher,
                                                                                     tmp_path):
    from engine_helpers import make_teacher

    from funmatch.training.distill import distill

    config = SMOKE + ",total_steps=2,checkpoint_every=1,eval_every=1000"
    straight = tmp_path / "straight"
    distill(config, engine_data, engine_teacher, straight, progress=False)
    killed = tmp_path / "killed"  # stopped after its first checkpoint
    shutil.copytree(straight, killed, ignore=shutil.ignore_patterns(".lock*"))
    shutil.rmtree(killed / "checkpoints" / "ckpt-000000002")
    (killed / "metrics.json").unlink()
    (killed / "student.keras").unlink()
    (tmp_path / "other").mkdir()
    other = make_teacher(tmp_path / "other" / "teacher.keras", seed=1)
    with pytest.raises(FunmatchError, match=r"holds a run with other settings \(teacher_path: .*, teacher_sha256: "):
        distill(config, engine_data, other, killed, progress=False)
    (tmp_path / "moved").mkdir()
    moved = pathlib.Path(shutil.copy(engine_teacher, tmp_path / "moved" / "teacher.keras"))
    distill(config, engine_data, moved, killed, progress=False)  # the same teacher, moved: the run resumes
    for a, b in zip(_weights(straight / "student.keras"), _weights(killed / "student.keras"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_an_init_that_does_not_fit_the_student_is_one_line_naming_the_flag(engine_data, engine_teacher, tmp_path):
    from funmatch.training.distill import distill

    npz = tmp_path / "bit.npz"
    np.savez(npz, x=np.zeros(1))
    cases = [
        (_student_file(tmp_path / "w16.keras", arch="tiny_cnn_w16"), "the model is a tiny_cnn_w16, the student a tiny_cnn_w8"),
        (_student_file(tmp_path / "five.keras", classes=5), "the model has 5 classes, the student 4"),
        (_student_file(tmp_path / "px32.keras", resolution=32), "the model has 32 px input resolution, the student 48"),
        (npz, "a student starts from a funmatch .keras file"),
        (tmp_path / "missing.keras", "no such file"),
    ]
    workdir = tmp_path / "never"
    for init, message in cases:
        with pytest.raises(FunmatchError) as info:
            distill(SMOKE, engine_data, engine_teacher, workdir, init=init, progress=False)
        text = str(info.value)
        assert text.startswith(f"--init {init}") and message in text and "\n" not in text, text
        assert not workdir.exists()
    from funmatch.training.labels import train_labels

    with pytest.raises(FunmatchError, match=r"^config key 'student_init' \(.*w16\.keras\): a warm start is funmatch distill's"):
        train_labels(SMOKE + f",student_init={tmp_path / 'w16.keras'}", engine_data, workdir, progress=False)
    assert not workdir.exists()


def test_the_command_line_flag_reaches_the_run(engine_data, engine_teacher, tmp_path, capsys):
    from funmatch.cli import main

    init = _student_file(tmp_path / "five.keras", classes=5)
    code = main(["distill", "--config", SMOKE, "--data", str(engine_data), "--teacher", str(engine_teacher),
                 "--workdir", str(tmp_path / "run"), "--init", str(init), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"funmatch distill: error: --init {init}: the model has 5 classes, the data has 4; import it "
                   "with a new head (funmatch models import SOURCE --num-classes 4)"]


def test_rerunning_finished_runs_keeps_their_model_files_so_an_init_from_one_resumes(engine_data, engine_teacher,
                                                                                     tmp_path, monkeypatch):
    """`funmatch labels` (and `distill`) rerun on a finished workdir trains nothing and leaves its model file as it
    was: a rewrite would stamp another save time into it, and a distillation started from that file with `--init`
    would refuse to resume (another SHA-256)."""
    import time

    from funmatch.evaluation.cache import file_sha256
    from funmatch.training.distill import distill
    from funmatch.training.labels import train_labels

    labels = tmp_path / "labels"
    train_labels(SMOKE + ",total_steps=2,checkpoint_every=1,eval_every=1000", engine_data, labels, progress=False)
    first = file_sha256(labels / "student.keras")
    time.sleep(1.1)  # a rewrite would carry another save time
    train_labels(SMOKE + ",total_steps=2,checkpoint_every=1,eval_every=1000", engine_data, labels, progress=False)
    assert file_sha256(labels / "student.keras") == first
    assert json.loads((labels / "metrics.json").read_text())["start_step_this_process"] == 2

    config = SMOKE + ",total_steps=2,checkpoint_every=1,eval_every=1000"
    run = tmp_path / "distill"
    distill(config, engine_data, engine_teacher, run, init=labels / "student.keras", progress=False)
    student = file_sha256(run / "student.keras")
    time.sleep(1.1)
    distill(config, engine_data, engine_teacher, run, init=labels / "student.keras", progress=False)  # resumes: no refusal
    assert file_sha256(run / "student.keras") == student

    # A file that is missing is written again, from the restored weights.
    (run / "student.keras").unlink()
    distill(config, engine_data, engine_teacher, run, init=labels / "student.keras", progress=False)
    assert (run / "student.keras").is_file()
