"""Model files: clear errors for damaged or hostile `.keras` / `.npz`, and the evaluation view a `.keras` carries."""

from __future__ import annotations

import json
import pathlib
import zipfile

import numpy as np
import pytest
from model_helpers import big_transfer_arrays

import funmatch.models as fm
from funmatch.errors import FunmatchError


def test_random_bytes_are_not_a_keras_file(tmp_path):
    path = tmp_path / "random.keras"
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(FunmatchError, match=r"random\.keras: not a \.keras file \(not a zip archive"):
        fm.load(path)


def test_truncated_keras_file(tmp_path):
    path = tmp_path / "model.keras"
    fm.create("tiny_cnn_w8", num_classes=3).save(path)
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(FunmatchError, match=r"model\.keras: not a \.keras file"):
        fm.load(path)


def test_refused_function_is_named(tmp_path):
    import keras

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2, activation="relu")(inputs)).save(tmp_path / "plain.keras")
    with zipfile.ZipFile(tmp_path / "plain.keras") as source:
        files = {name: source.read(name) for name in source.namelist()}
    hostile = {"module": "os", "class_name": "function", "config": "system", "registered_name": "function"}
    files["config.json"] = files["config.json"].decode().replace('"activation": "relu"',
                                                                 f'"activation": {json.dumps(hostile)}').encode()
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
    with pytest.raises(FunmatchError) as info:
        fm.load(tmp_path / "evil.keras")
    message = str(info.value)
    assert "evil.keras" in message and "os.system" in message and "safe mode refused" in message
    assert "\n" not in message


@pytest.mark.both_backends
def test_keras_file_carries_its_evaluation_view(tmp_path):
    from funmatch.training.checkpoints import atomic_save_keras

    model = fm.create("tiny_cnn_w8", num_classes=3, resolution=32)
    assert fm.contract(model)["eval_crop_fraction"] is None
    atomic_save_keras(model, tmp_path / "m.keras", eval_crop_fraction=32 / 40)
    loaded = fm.load(tmp_path / "m.keras")
    assert fm.contract(loaded)["eval_crop_fraction"] == 0.8 and fm.contract(loaded)["resolution"] == 32


def test_a_failed_save_leaves_no_file_behind(tmp_path, monkeypatch):
    """Keras raising mid-save (not an OSError: e.g. a layer it cannot serialise) leaves neither the target nor
    a temporary file in the folder."""
    from funmatch.training.checkpoints import atomic_save_keras

    model = fm.create("tiny_cnn_w8", num_classes=3, resolution=32)

    def half_save(path, *args, **kwargs):
        pathlib.Path(path).write_bytes(b"half a zip")
        raise TypeError("cannot serialise this layer")

    monkeypatch.setattr(model, "save", half_save)
    with pytest.raises(TypeError, match="cannot serialise"):
        atomic_save_keras(model, tmp_path / "m.keras")
    assert list(tmp_path.iterdir()) == []


def test_npz_with_nan_weights_is_refused(tmp_path):
    arrays = big_transfer_arrays((1, 1, 1, 1), 0.25, num_classes=4)
    arrays["resnet/block1/unit01/a/group_norm/gamma"][3] = np.inf
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(FunmatchError, match=r"bad\.npz: 1 array\(s\) hold NaN/Inf values "
                                            r"\(resnet/block1/unit01/a/group_norm/gamma\); refusing"):
        fm.load_bit_npz(fm.create("bit_r14x0.25", 4), tmp_path / "bad.npz")
