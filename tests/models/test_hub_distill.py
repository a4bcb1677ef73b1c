"""The whole pipeline from a model zoo checkpoint: `funmatch teacher --init PRESET` fine-tunes a keras-hub
teacher (ImageNet-style mean/std at 64 px) on the embedded EuroSAT images, then function matching distils it
into a keras-hub MobileNet ([0, 1] at 32 px, stored targets) and a keras.applications MobileNetV3 from a
weights file ([-1, 1] at 32 px, online teacher)."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

from funmatch import cli

MINI = pathlib.Path(__file__).resolve().parents[2] / "src" / "funmatch" / "assets" / "eurosat_mini"
CLASSES = ["000_annualcrop", "001_forest", "003_highway", "008_river"]
PER_SPLIT = {"train": 8, "validation": 2, "test": 4}
SMOKE = "eurosat:smoke=true,total_steps=2,eval_every=1000,checkpoint_every=1000,eval_max_examples=8"


@pytest.fixture(scope="module")
def hub_data(tmp_path_factory) -> pathlib.Path:
    from funmatch.data.prepare import prepare

    source = tmp_path_factory.mktemp("hub_src")
    for split, count in PER_SPLIT.items():
        for class_dir in CLASSES:
            (source / split / class_dir).mkdir(parents=True)
            for path in sorted((MINI / split / class_dir).iterdir())[:count]:
                shutil.copy(path, source / split / class_dir / path.name)
    out = tmp_path_factory.mktemp("hub") / "data"
    prepare(f"folder:{source}", out, progress=False, examples_per_shard=16)
    return out


def _main(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    return captured.out


@pytest.mark.slow  # ~60 s of CPU: a teacher fine-tune and two distillations, 2 steps each
def test_hub_teacher_to_hub_and_applications_students(hub_presets, hub_data, tmp_path, capsys):
    import keras

    from funmatch import models

    teacher_dir = tmp_path / "teacher"
    _main(capsys, "teacher", "--config", f"{SMOKE},teacher_resolution=64,resize_small=64,teacher_steps=2",
          "--data", str(hub_data), "--workdir", str(teacher_dir), "--init", str(hub_presets["resnet"]), "--no-progress")
    teacher = models.load(teacher_dir / "teacher.keras")
    contract = models.contract(teacher)
    assert contract["num_classes"] == 4 and contract["resolution"] == 64  # the preset's 10-class head replaced
    assert contract["preprocessing"]["source"].startswith("the image converter of")

    # Stored targets into a keras-hub MobileNet (its own [0, 1] contract at 32 px).
    hub_run = tmp_path / "hub_student"
    _main(capsys, "distill", "--config", f"{SMOKE},mode=fixed_teacher,student=hub:{hub_presets['mobilenet']},"
          "student_resolution=32,teacher_resolution=64,resize_small=64", "--data", str(hub_data),
          "--teacher", str(teacher_dir / "teacher.keras"), "--workdir", str(hub_run), "--no-progress")
    student = models.load(hub_run / "student.keras")
    assert models.contract(student)["preprocessing"]["scale"] == [1 / 255.0] * 3
    assert json.loads((hub_run / "metrics.json").read_text())["targets"] == "stored"

    # Online teacher into a keras.applications MobileNetV3Small from a weights file without its top.
    base = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None,
                                               pooling="avg", include_preprocessing=False, minimalistic=False)
    base.save_weights(tmp_path / "notop.weights.h5")
    app_run = tmp_path / "app_student"
    _main(capsys, "distill", "--config", f"{SMOKE},mode=function_matching,student=mobilenet_v3_small@"
          f"{tmp_path / 'notop.weights.h5'},student_resolution=32,teacher_resolution=64,resize_small=64",
          "--data", str(hub_data), "--teacher", str(teacher_dir / "teacher.keras"), "--workdir", str(app_run),
          "--no-progress")
    metrics = json.loads((app_run / "metrics.json").read_text())
    assert metrics["step"] == 2 and np.isfinite(metrics["test_agreement"])


def test_teacher_init_with_another_class_count_is_one_line(hub_presets, hub_data, tmp_path, capsys):
    from funmatch import models

    models.save(models.create("tiny_cnn", num_classes=7, resolution=32), tmp_path / "seven.keras")
    code = cli.main(["teacher", "--config", SMOKE, "--data", str(hub_data), "--workdir", str(tmp_path / "run"),
                     "--init", str(tmp_path / "seven.keras"), "--no-progress"])
    text = capsys.readouterr().err
    assert code != 0 and "the model has 7 classes, the data has 4" in text and len(text.strip().splitlines()) == 1
