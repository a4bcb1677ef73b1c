"""`funmatch export --format keras-hub`: a preset folder that keras-hub loads, predicting what the .keras file
predicts, with the model card of the run that made the student."""

from __future__ import annotations

import json

import numpy as np

from funmatch import cli


def test_keras_hub_export_round_trip_with_model_card(hub_presets, tmp_path, capsys):
    import keras
    import keras_hub

    from funmatch import models

    keras.utils.set_random_seed(1)
    run = tmp_path / "run"
    run.mkdir()
    student = models.create(f"hub:{hub_presets['mobilenet']}", num_classes=4)
    models.save(student, run / "student.keras")
    (run / "config.json").write_text(json.dumps({"recipe": "eurosat", "mode": "function_matching", "steps": 12,
                                                 "teacher_path": "/runs/teacher.keras", "dataset": "eurosat_rgb"}))
    (run / "metrics.json").write_text(json.dumps({"step": 12, "test_accuracy": 0.75, "test_agreement": 0.8,
                                                  "teacher_test_accuracy": 0.9, "targets": "stored"}))
    out = tmp_path / "preset"
    assert cli.main(["export", str(run / "student.keras"), "--format", "keras-hub", "--out", str(out)]) == 0, \
        capsys.readouterr()
    exported = keras_hub.models.ImageClassifier.from_preset(str(out))
    pixels = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3)).astype("float32")
    ours = models.load(run / "student.keras").predict(pixels / 127.5 - 1, verbose=0)
    theirs = exported.predict(pixels, verbose=0)  # keras-hub's own preprocessor on raw pixels
    np.testing.assert_array_equal(theirs.argmax(-1), ours.argmax(-1))
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)
    card = json.loads((out / "funmatch_card.json").read_text())
    assert card["student"]["test_accuracy"] == 0.75 and card["student"]["test_agreement"] == 0.8
    assert card["teacher"] == {"file": "/runs/teacher.keras", "arch": None, "test_accuracy": 0.9}
    assert card["recipe"]["steps"] == 12 and card["recipe"]["targets"] == "stored"
    assert card["cost"]["params"] == models.count_params(student) and card["cost"]["flops_per_image"] > 0
    assert card["int8"]["test_accuracy_change"] is None
    readme = (out / "README.md").read_text()
    assert "| student accuracy (test) | 75.0 % |" in readme and "| int8 TFLite accuracy change | not measured |" in readme


def test_keras_hub_export_of_a_model_that_is_not_from_keras_hub(tmp_path, capsys):
    from funmatch import models

    models.save(models.create("tiny_cnn", num_classes=3, resolution=16), tmp_path / "tiny.keras")
    code = cli.main(["export", str(tmp_path / "tiny.keras"), "--format", "keras-hub", "--out", str(tmp_path / "p")])
    text = capsys.readouterr().err
    assert code != 0 and "is not a keras-hub model" in text and len(text.strip().splitlines()) == 1
