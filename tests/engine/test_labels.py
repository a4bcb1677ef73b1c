"""Label training as a first-class run: `funmatch labels` and `funmatch teacher` write workdirs in the
distillation runs' scheme, which `funmatch report` reads as finished runs."""

import json
import pathlib
import shutil

import pytest


@pytest.mark.both_backends
def test_label_run_of_a_registry_student_is_a_finished_run_in_the_report(engine_data, engine_teacher, tmp_path, capsys):
    """`funmatch labels`: the recipe's student on labels, agreement with a teacher, metrics.json the report reads."""
    from funmatch import cli
    from funmatch.reporting import load_run, write_report

    workdir = tmp_path / "labels"
    config = "eurosat:smoke=true,student=tiny_cnn_w8,student_resolution=32,total_steps=4,checkpoint_every=2,mixup_p=1"
    assert cli.main(["labels", "--config", config, "--data", str(engine_data), "--workdir", str(workdir),
                     "--teacher", str(engine_teacher), "--no-progress"]) == 0
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["mode"] == "labels" and metrics["step"] == 4 and metrics["stopped_by"] is None
    assert metrics["train_seconds"] > 0 and metrics["train_cpu_seconds"] > 0
    assert 0 <= metrics["test_agreement"] <= 1 and 0 <= metrics["teacher_test_accuracy"] <= 1
    assert metrics["test_num_examples"] == 20  # the full split, not the smoke subset
    assert (workdir / "student.keras").exists() and (workdir / "augmentations.png").exists()
    run = load_run(workdir)
    assert run.finished and run.status == "finished" and run.mode == "labels"
    assert run.settings["steps"] == 4 and run.settings["mixup_p"] == 0.0  # the recipe's mixup_p=1 is function matching's
    assert run.settings["student"] == "tiny_cnn_w8" and "temperature" not in run.settings
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4] and all("train_cpu_seconds" in r for r in records)
    write_report([workdir], tmp_path / "report")
    assert (tmp_path / "report" / "accuracy-vs-time.png").exists()
    # Re-running the finished run trains nothing and reports the same.
    assert cli.main(["labels", "--config", config, "--data", str(engine_data), "--workdir", str(workdir),
                     "--teacher", str(engine_teacher), "--no-progress"]) == 0
    assert json.loads((workdir / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    # ... and so with the same teacher at another path (its SHA-256 is the setting).
    moved = pathlib.Path(shutil.copy(engine_teacher, tmp_path / "moved.keras"))
    assert cli.main(["labels", "--config", config, "--data", str(engine_data), "--workdir", str(workdir),
                     "--teacher", str(moved), "--no-progress"]) == 0
    # An unknown model is an error naming close names, before any work.
    assert cli.main(["labels", "--config", config, "--data", str(engine_data), "--workdir", str(tmp_path / "x"),
                     "--model", "tiny_cnnn"]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_teacher_command_writes_metrics_json(engine_data, tmp_path):
    """`funmatch teacher` runs are finished runs for the report, with the teacher's own settings."""
    from funmatch.reporting import load_run
    from funmatch.training.labels import train_teacher

    workdir = tmp_path / "teacher"
    train_teacher("eurosat:smoke=true,teacher=tiny_cnn_w8,teacher_resolution=32,teacher_steps=4,total_steps=3000",
                  engine_data, workdir, progress=False)
    run = load_run(workdir)
    assert run.finished and run.mode == "labels"
    assert run.settings["steps"] == 4 and run.settings["student"] == "tiny_cnn_w8"
    assert run.settings["mixup_p"] == 0.0 and run.settings["student_resolution"] == 32
    assert json.loads((workdir / "teacher_metrics.json").read_text())["step"] == 4
