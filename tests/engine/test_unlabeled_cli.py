"""`funmatch distill --unlabeled`: images without labels join the distillation stream."""

import json
import pathlib
import shutil

UNLABELED = pathlib.Path(__file__).resolve().parents[2] / "src" / "funmatch" / "assets" / "eurosat_unlabeled" / "images"


def test_distill_with_unlabeled_images_trains_on_the_union_split(engine_data, engine_teacher, tmp_path):
    from funmatch.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    for f in sorted(UNLABELED.iterdir())[:20]:
        shutil.copy(f, photos / f.name)
    workdir = tmp_path / "run"
    config = "eurosat:smoke=true,student=tiny_cnn_w8,total_steps=4,checkpoint_every=2,unlabeled_ratio=0.25"
    argv = ["distill", "--config", config, "--data", str(engine_data), "--teacher", str(engine_teacher),
            "--workdir", str(workdir), "--unlabeled", f"folder:{photos}", "--unlabeled-data", str(tmp_path / "union"),
            "--no-progress"]
    assert main(argv) == 0
    run = json.loads((workdir / "config.json").read_text())
    assert run["train_split"] == "train_and_unlabeled" and run["unlabeled_ratio"] == 0.25
    card = json.loads((tmp_path / "union" / "dataset.json").read_text())
    union = card["splits"]["train_and_unlabeled"]
    assert union["labelled_examples"] == 48 and union["unlabeled_examples"] == 12  # 0.25 × 48 of the 20
    assert json.loads((workdir / "metrics.json").read_text())["step"] == 4
    # The same command again resumes (the union is not written twice) and finds the run complete.
    assert main(argv) == 0
