"""Official BiT .npz loading: strict key checks, head re-initialisation, layouts, cache, convert."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import funmatch.models as fm
from model_helpers import big_transfer_arrays, big_transfer_to_bit_paper
from funmatch.errors import FunmatchError

UNITS = (1, 1, 1, 1)  # bit_r14x0.25: small and quick
NAME = "bit_r14x0.25"


@pytest.fixture
def arrays():
    return big_transfer_arrays(UNITS, 0.25, num_classes=7, seed=5)


def _write(tmp_path, arrays, name="ckpt.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.both_backends
def test_loads_every_weight_into_its_place(tmp_path, arrays):
    model = fm.load_bit_npz(fm.create(NAME, 7), _write(tmp_path, arrays))
    backbone = model.backbone
    np.testing.assert_array_equal(backbone.get_layer("root_conv").kernel, arrays["resnet/root_block/standardized_conv2d/kernel"])
    np.testing.assert_array_equal(
        backbone.get_layer("block3_unit01_proj_conv").kernel,
        arrays["resnet/block3/unit01/a/proj/standardized_conv2d/kernel"])
    np.testing.assert_array_equal(backbone.get_layer("block2_unit01_b_gn").gamma, arrays["resnet/block2/unit01/b/group_norm/gamma"])
    np.testing.assert_array_equal(backbone.get_layer("block4_unit01_c_gn").beta, arrays["resnet/block4/unit01/c/group_norm/beta"])
    np.testing.assert_array_equal(backbone.get_layer("pre_head_gn").gamma, arrays["resnet/group_norm/gamma"])
    np.testing.assert_array_equal(backbone.get_layer("head").kernel, arrays["resnet/head/conv2d/kernel"][0, 0])
    np.testing.assert_array_equal(backbone.get_layer("head").bias, arrays["resnet/head/conv2d/bias"])
    # Every variable of the model came from the file (none left at its initial value).
    assert sum(int(np.prod(w.shape)) for w in model.weights) == sum(a.size for a in arrays.values())


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("resnet/block2/unit01/b/group_norm/beta"), r"1 missing \[resnet/block2/unit01/b/group_norm/beta\]"),
        (lambda a: a.update({"resnet/block1/unit02/a/group_norm/gamma": np.ones(64, "float32")}),
         r"1 unexpected \[resnet/block1/unit02/a/group_norm/gamma\]"),
        (lambda a: a.update({"resnet/block1/unit01/b/standardized_conv2d/kernel": np.ones((3, 3, 16, 8), "float32")}),
         r"1 mis-shaped \[resnet/block1/unit01/b/standardized_conv2d/kernel \(3, 3, 16, 8\)"),
    ],
)
def test_strict_errors_list_the_keys_and_leave_the_model_untouched(tmp_path, arrays, change, message):
    change(arrays)
    path = _write(tmp_path, arrays)
    model = fm.create(NAME, 7)
    before = [np.asarray(weight).copy() for weight in model.weights]
    with pytest.raises(FunmatchError, match=message) as error:
        fm.load_bit_npz(model, path)
    assert str(path) in str(error.value) and "big_transfer" in str(error.value)
    for weight, value in zip(model.weights, before):
        np.testing.assert_array_equal(np.asarray(weight), value)


def test_wrong_depth_lists_all_problems(tmp_path, arrays):
    # bit_r26x0.25 has two units per block: each block's unit02 is missing (9 keys x 4 blocks).
    with pytest.raises(FunmatchError, match=r"36 missing \[resnet/block1/unit02/a/group_norm/gamma, ") as error:
        fm.load_bit_npz(fm.create("bit_r26x0.25", 7), _write(tmp_path, arrays))
    assert "(30 more)" in str(error.value) and "unexpected" not in str(error.value)


def test_other_class_count_reinitialises_the_head(tmp_path, arrays, caplog):
    model = fm.create(NAME, 3)
    model.backbone.get_layer("head").kernel.assign(np.ones((512, 3), "float32"))
    with caplog.at_level(logging.WARNING, logger="funmatch.models"):
        fm.load_bit_npz(model, _write(tmp_path, arrays))
    assert "checkpoint head has 7 classes, the model 3: head re-initialised to zeros" in caplog.text
    np.testing.assert_array_equal(model.backbone.get_layer("head").kernel, 0.0)
    np.testing.assert_array_equal(model.backbone.get_layer("root_conv").kernel, arrays["resnet/root_block/standardized_conv2d/kernel"])


def test_arch_name_takes_the_class_count_from_the_checkpoint(tmp_path, arrays):
    model = fm.load_bit_npz(NAME, _write(tmp_path, arrays), resolution=64)
    assert fm.contract(model) == {"arch": NAME, "num_classes": 7, "resolution": 64, "value_range": (-1.0, 1.0),
                                  "eval_crop_fraction": None}


@pytest.mark.both_backends
def test_bit_paper_layout_loads_the_same_weights(tmp_path, arrays, caplog):
    reference = fm.load_bit_npz(fm.create(NAME, 7), _write(tmp_path, arrays))
    paper_path = _write(tmp_path, big_transfer_to_bit_paper(arrays), "paper.npz")
    with caplog.at_level(logging.WARNING, logger="funmatch.models"):
        paper = fm.load_bit_npz(NAME, paper_path)
    assert caplog.text == ""  # by arch name, the root pool pads with -inf as big_vision does
    assert paper.backbone.get_layer("root_pool").pad_with == "min"
    for expected, actual in zip(reference.weights, paper.weights):
        np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))
    with caplog.at_level(logging.WARNING, logger="funmatch.models"):
        fm.load_bit_npz(fm.create(NAME, 7), paper_path)
    assert "root_pool_padding='min'" in caplog.text


def test_not_a_bit_checkpoint(tmp_path):
    path = _write(tmp_path, {"dense/kernel": np.zeros((2, 2))})
    with pytest.raises(FunmatchError, match="not a BiT checkpoint"):
        fm.load_bit_npz(NAME, path)
    with pytest.raises(FunmatchError, match="checkpoint file not found"):
        fm.load_bit_npz(NAME, tmp_path / "absent.npz")
    import keras

    inputs = keras.Input((None, None, 3))
    backbone = keras.Model(inputs, keras.layers.Dense(7, kernel_initializer="zeros")(inputs))
    not_bit = fm.Classifier(backbone, arch="tiny_cnn_w8", num_classes=7, resolution=64)
    with pytest.raises(FunmatchError, match="'tiny_cnn_w8' is not a BiT ResNet-V2"):
        fm.load_bit_npz(not_bit, _write(tmp_path, big_transfer_arrays(UNITS, 0.25, 7)))


def test_remote_checkpoints_are_cached(tmp_path, arrays):
    import io

    import tensorflow as tf

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    url = "ram://funmatch-test/remote.npz"  # an in-memory tf.io.gfile filesystem stands in for gs://
    with tf.io.gfile.GFile(url, "wb") as file:
        file.write(buffer.getvalue())
    cache = tmp_path / "cache"
    local = fm.resolve_checkpoint(url, cache=str(cache))
    assert local.startswith(str(cache / "checkpoints")) and local.endswith("_remote.npz")
    tf.io.gfile.remove(url)
    # Second use: served from the cache although the remote file is gone.
    assert fm.resolve_checkpoint(url, cache=str(cache)) == local
    model = fm.load_bit_npz(NAME, url, cache=str(cache))
    assert model.num_classes == 7
    assert not list((cache / "checkpoints").glob("*.part"))
    assert fm.KNOWN_CHECKPOINTS["BiT-M-R50x1"] == "gs://bit_models/BiT-M-R50x1.npz"


def test_cli_convert_and_list(tmp_path, arrays, capsys):
    from funmatch.cli import main

    npz = _write(tmp_path, arrays)
    out = tmp_path / "converted.keras"
    assert main(["models", "convert", "--npz", str(npz), "--arch", NAME, "--num-classes", "4",
                 "--resolution", "64", "--out", str(out)]) == 0
    model = fm.load(out)
    assert fm.contract(model) == {"arch": NAME, "num_classes": 4, "resolution": 64, "value_range": (-1.0, 1.0),
                                  "eval_crop_fraction": None}
    np.testing.assert_array_equal(model.backbone.get_layer("root_conv").kernel, arrays["resnet/root_block/standardized_conv2d/kernel"])
    np.testing.assert_array_equal(model.backbone.get_layer("head").kernel, 0.0)

    assert main(["models", "convert", "--npz", str(npz), "--arch", "tiny_cnn", "--out", str(out)]) == 2
    assert "--arch 'tiny_cnn'" in capsys.readouterr().err

    assert main(["models", "list", "--resolution", "64", "--num-classes", "10", "--names", "bit_r*"]) == 0
    listing = capsys.readouterr().out
    assert "bit_r152x4" in listing and "bit_r14x0.25" in listing and "tiny_cnn" not in listing
    row = next(line for line in listing.splitlines() if line.startswith("bit_r14x0.25 "))
    assert "509,594" in row and "18.6" in row
    assert main(["models", "--names", "nothing*"]) == 2
