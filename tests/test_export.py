"""Tests of `funmatch export`: every format round-trips (outputs compared with the Keras model), and
unavailable formats, bad formats and bad paths give clear errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from funmatch.errors import FunmatchError

RESOLUTION = 16


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    """A GroupNorm tiny CNN (custom layer) at 16 px with random, non-zero weights, saved as .keras."""
    from funmatch import models

    model = models.create("tiny_cnn_w8", num_classes=5, resolution=RESOLUTION, norm="group")
    random = np.random.default_rng(1)
    for variable in model.weights:
        # The zero-initialised head would make every output 0 and every comparison trivially pass.
        variable.assign(random.normal(0, 0.5, variable.shape).astype(np.float32))
    path = tmp_path_factory.mktemp("export_model") / "tiny.keras"
    models.save(model, path)
    return path


def _keras_logits(path, images):
    from funmatch import models

    return np.asarray(models.load(path).predict_on_batch(images))


def _images(batch_size=3, seed=5):
    return np.random.default_rng(seed).uniform(-1, 1, (batch_size, RESOLUTION, RESOLUTION, 3)).astype(np.float32)


def _onnx_available(backend: str) -> bool:
    needed = ("tf2onnx", "onnx", "onnxruntime") if backend == "tensorflow" else ("jax2onnx", "onnxruntime")
    return all(importlib.util.find_spec(name) is not None for name in needed)


@pytest.mark.both_backends
@pytest.mark.parametrize("format, name", [("keras", "m.keras"), ("savedmodel", "m_savedmodel"), ("tflite", "m.tflite")])
def test_round_trip(tiny_model_path, tmp_path, format, name):
    from funmatch.export import export_model, load_exported

    out = tmp_path / "sub" / name
    result = export_model(tiny_model_path, out, format)
    assert out.exists() and result["path"] == str(out) and result["size_bytes"] > 0
    assert result["resolution"] == RESOLUTION and result["num_images"] == 5
    assert result["max_abs_diff"] <= 1e-4
    # Independently of the check inside: a new batch size through the reloaded artefact.
    images = _images(batch_size=3)
    expected = _keras_logits(tiny_model_path, images)
    assert np.abs(expected).max() > 0.1  # the comparison is not between zeros
    np.testing.assert_allclose(load_exported(out, format)(images), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.both_backends
def test_onnx_round_trip_or_clear_error(tiny_model_path, tmp_path, backend):
    from funmatch.export import export_model, load_exported

    out = tmp_path / "m.onnx"
    if _onnx_available(backend):
        result = export_model(tiny_model_path, out, "onnx")
        assert result["max_abs_diff"] <= 1e-4
        images = _images()
        np.testing.assert_allclose(load_exported(out, "onnx")(images), _keras_logits(tiny_model_path, images), atol=1e-4, rtol=1e-4)
    else:
        package = "tf2onnx" if backend == "tensorflow" else "jax2onnx"
        with pytest.raises(FunmatchError, match=f"--format onnx on the {backend} backend needs .*pip install {package}"):
            export_model(tiny_model_path, out, "onnx")
        assert not out.exists()


def test_unavailable_formats_name_the_backend_or_packages(monkeypatch):
    from funmatch.export import formats as export

    with pytest.raises(FunmatchError, match="KERAS_BACKEND=tensorflow"):
        export.check_format_supported("tflite", "torch")
    monkeypatch.setattr(export, "_missing", lambda *names: list(names))
    with pytest.raises(FunmatchError, match=r"jax backend needs jax2onnx, onnxruntime .*KERAS_BACKEND=tensorflow"):
        export.check_format_supported("onnx", "jax")
    with pytest.raises(FunmatchError, match=r"pip install tf2onnx onnx onnxruntime"):
        export.check_format_supported("onnx", "tensorflow")


@pytest.mark.both_backends
def test_bad_format_and_paths(tiny_model_path, tmp_path):
    from funmatch.export import export_model

    with pytest.raises(FunmatchError, match="--format 'pt': unknown format"):
        export_model(tiny_model_path, tmp_path / "m.pt", "pt")
    with pytest.raises(FunmatchError, match=r"a tflite file must end in \.tflite"):
        export_model(tiny_model_path, tmp_path / "m.onnx", "tflite")
    with pytest.raises(FunmatchError, match="savedmodel is a folder"):
        export_model(tiny_model_path, tmp_path / "m.keras", "savedmodel")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FunmatchError, match="is not a folder"):
        export_model(tiny_model_path, blocker / "m.keras", "keras")
    existing = tmp_path / "existing.keras"
    existing.write_text("old")
    with pytest.raises(FunmatchError, match="already exists"):
        export_model(tiny_model_path, existing, "keras")
    assert export_model(tiny_model_path, existing, "keras", overwrite=True)["max_abs_diff"] == 0.0
    with pytest.raises(FunmatchError, match="missing.keras: no such file"):
        export_model(tmp_path / "missing.keras", tmp_path / "out.keras", "keras")


@pytest.mark.both_backends
def test_mismatch_over_tolerance_fails(tiny_model_path, tmp_path, monkeypatch):
    from funmatch.export import formats as export

    real_reader = export.READERS["keras"]

    def shifted_reader(path):
        run = real_reader(path)
        return lambda images: run(images) + 1e-3

    monkeypatch.setitem(export.READERS, "keras", shifted_reader)
    with pytest.raises(FunmatchError, match=r"differs from the Keras model by up to 0\.001"):
        export.export_model(tiny_model_path, tmp_path / "m.keras", "keras")
    # A looser tolerance accepts the same artefact.
    assert export.export_model(tiny_model_path, tmp_path / "m2.keras", "keras", atol=2e-3)["max_abs_diff"] == pytest.approx(1e-3, rel=1e-2)


@pytest.mark.both_backends
def test_cli_prints_the_difference_and_fails_cleanly(tiny_model_path, tmp_path, capsys):
    from funmatch.cli import main

    out = tmp_path / "cli.keras"
    assert main(["export", str(tiny_model_path), "--format", "keras", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "max |exported − keras| = 0 over 5 images" in printed
    assert main(["export", str(tmp_path / "none.keras"), "--format", "keras", "--out", str(tmp_path / "x.keras")]) == 2
    assert "MODEL" in capsys.readouterr().err
