"""`funmatch export --format tflite-int8 --data DIR`: post-training int8 TFLite calibrated on a prepared
data folder, reloaded and checked by top-1 agreement with the Keras model; a clear error without --data."""

from __future__ import annotations

import pathlib
import shutil
import warnings

import numpy as np
import pytest

from funmatch.errors import FunmatchError

REPO = pathlib.Path(__file__).resolve().parents[1]
MINI = REPO / "src" / "funmatch" / "assets" / "eurosat_mini"
CLASSES = ["000_annualcrop", "001_forest", "008_river"]
RESOLUTION = 16


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """3 EuroSAT classes, 10 train / 2 validation / 2 test images each, prepared."""
    from funmatch.data.prepare import prepare

    source = tmp_path_factory.mktemp("int8_src")
    for split, count in {"train": 10, "validation": 2, "test": 2}.items():
        for class_dir in CLASSES:
            (source / split / class_dir).mkdir(parents=True)
            for f in sorted((MINI / split / class_dir).iterdir())[:count]:
                shutil.copy(f, source / split / class_dir / f.name)
    out = tmp_path_factory.mktemp("int8") / "data"
    prepare(f"folder:{source}", out, progress=False)
    return out


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    """A batch-norm tiny CNN at 16 px with random non-zero weights (a zero head would agree trivially)."""
    from funmatch import models

    model = models.create("tiny_cnn_w8", num_classes=3, resolution=RESOLUTION)
    random = np.random.default_rng(3)
    for variable in model.trainable_variables:
        variable.assign(random.normal(0, 0.3, variable.shape).astype(np.float32))
    path = tmp_path_factory.mktemp("int8_model") / "tiny.keras"
    models.save(model, path)
    return path


def test_int8_round_trip_agrees_and_is_quantized(tiny_model_path, tiny_data, tmp_path):
    import tensorflow as tf

    from funmatch import models
    from funmatch.export import export_model, load_exported
    from funmatch.export.formats import calibration_images

    out = tmp_path / "m.tflite"
    result = export_model(tiny_model_path, out, "tflite-int8", data_dir=tiny_data, calibration_count=20)
    assert result["calibration_images"] == result["num_images"] == 20
    assert result["agreement_top1"] >= 0.95 and result["min_agreement"] == 0.95
    assert out.is_file() and result["size_bytes"] == out.stat().st_size
    # int8 weights and activations inside, float32 at the edges.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's move to ai-edge-litert
        interpreter = tf.lite.Interpreter(model_path=str(out))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    assert any(detail["dtype"] == np.int8 for detail in interpreter.get_tensor_details())
    # Independently: the reloaded file on the calibration images, batch of 7.
    model = models.load(tiny_model_path)
    images = calibration_images(model, tiny_data, count=7)
    assert images.shape == (7, RESOLUTION, RESOLUTION, 3) and -1 <= images.min() < images.max() <= 1
    expected = np.asarray(model.predict_on_batch(images))
    actual = load_exported(out, "tflite-int8")(images)
    assert actual.shape == expected.shape and np.abs(expected).max() > 0.1
    assert np.mean(actual.argmax(-1) == expected.argmax(-1)) >= 6 / 7
    np.testing.assert_allclose(actual, expected, atol=0.25 * np.abs(expected).max())


def test_int8_check_can_fail_and_needs_data(tiny_model_path, tiny_data, tmp_path):
    from funmatch.export import export_model

    with pytest.raises(FunmatchError, match=r"tflite-int8 needs --data DIR"):
        export_model(tiny_model_path, tmp_path / "m.tflite", "tflite-int8")
    assert not (tmp_path / "m.tflite").exists()
    (tmp_path / "not_data").mkdir()
    with pytest.raises(FunmatchError, match=r"not a prepared data folder"):
        export_model(tiny_model_path, tmp_path / "m.tflite", "tflite-int8", data_dir=tmp_path / "not_data")
    with pytest.raises(FunmatchError, match=r"agrees with the Keras model on .* of the 10 calibration images .*needed 101 %"):
        export_model(tiny_model_path, tmp_path / "m.tflite", "tflite-int8", data_dir=tiny_data,
                     calibration_count=10, min_agreement=1.01)
    # The artefact that failed its check is kept beside --out, which is never replaced by it.
    assert not (tmp_path / "m.tflite").exists() and (tmp_path / "m.rejected.tflite").stat().st_size > 0


def test_cli_int8(tiny_model_path, tiny_data, tmp_path, capsys):
    from funmatch.cli import main

    out = tmp_path / "cli.tflite"
    assert main(["export", str(tiny_model_path), "--format", "tflite-int8", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "--data DIR" in error and len(error.splitlines()) == 1
    assert main(["export", str(tiny_model_path), "--format", "tflite-int8", "--data", str(tiny_data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (tflite-int8" in printed and "top-1 agreement with keras" in printed and "30 calibration images" in printed
