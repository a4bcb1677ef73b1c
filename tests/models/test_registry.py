"""Registry: names, errors, the preprocessing contract, and .keras save -> load for every family."""

from __future__ import annotations

import numpy as np
import pytest

import funmatch.models as fm
from model_helpers import randomize_weights
from funmatch.errors import FunmatchError


def test_list_models_covers_the_issue_names():
    names = fm.list_models()
    for name in ["bit_r50x1", "bit_r101x1", "bit_r50x3", "bit_r101x3", "bit_r152x2", "bit_r152x4",
                 "bit_r26x1", "bit_r26x0.25", "bit_r14x0.25", "tiny_cnn", "mobilenet_v3_small",
                 "mobilenet_v3_large", "efficientnet_v2_b0", "resnet50_v2"]:
        assert name in names
    assert len(set(names)) == len(names)
    assert all(fm.family(name) in ("bit", "tiny", "applications") for name in names)


def test_unknown_name_lists_close_names():
    with pytest.raises(FunmatchError, match=r"unknown model 'bit_r50x1x'.*did you mean.*bit_r50x1"):
        fm.create("bit_r50x1x", 10)
    with pytest.raises(FunmatchError, match=r"unknown BiT depth 51"):
        fm.create("bit_r51x1", 10)
    with pytest.raises(FunmatchError, match=r"64 \* width"):
        fm.create("bit_r26x0.3", 10)
    with pytest.raises(FunmatchError, match=r"unknown argument\(s\) nrom"):
        fm.create("tiny_cnn", 10, nrom="group")


def test_bit_name_parser_gives_the_block_layout():
    assert fm.parse_bit_name("bit_r50x1").units == (3, 4, 6, 3)
    assert fm.parse_bit_name("bit_r101x3").units == (3, 4, 23, 3)
    assert fm.parse_bit_name("bit_r152x4").units == (3, 8, 36, 3)
    assert fm.parse_bit_name("bit_r26x0.25").root_channels == 16
    assert fm.parse_bit_name("bit_r14x0.25").units == (1, 1, 1, 1)
    assert fm.parse_bit_name("tiny_cnn") is None


@pytest.mark.both_backends
def test_bit_structure_and_zero_head(images):
    model = fm.create("bit_r14x0.25", 5)
    assert fm.contract(model) == {"arch": "bit_r14x0.25", "num_classes": 5, "resolution": 128,
                                  "value_range": (-1.0, 1.0),
                                  "eval_crop_fraction": None}
    backbone = model.backbone
    # Pre-activation: the projection reads the GN+ReLU output of the unit, not its raw input.
    projection = backbone.get_layer("block2_unit01_proj_conv")
    assert projection._inbound_nodes[0].operation is projection
    assert projection._inbound_nodes[0].input_tensors[0]._keras_history.operation.name == "block2_unit01_a_gn"
    assert backbone.get_layer("block2_unit01_b_conv").strides == 2  # the stride is on the 3x3 conv
    assert backbone.get_layer("block2_unit01_a_conv").strides == 1
    assert backbone.get_layer("block1_unit01_proj_conv").strides == 1
    logits = np.asarray(model(images))
    assert logits.shape == (2, 5)
    np.testing.assert_array_equal(logits, 0.0)  # zero-initialised head


def _save_load_roundtrip(model, images, tmp_path):
    randomize_weights(model, seed=4)
    expected = np.asarray(model(images, training=False))
    assert np.abs(expected).max() > 1e-3
    path = tmp_path / "model.keras"
    fm.save(model, path)
    loaded = fm.load(path)
    assert isinstance(loaded, fm.Classifier)
    assert fm.contract(loaded) == fm.contract(model)
    np.testing.assert_allclose(np.asarray(loaded(images, training=False)), expected, atol=1e-5, rtol=1e-5)
    return loaded


@pytest.mark.both_backends
@pytest.mark.parametrize(
    "name, kwargs",
    [("bit_r14x0.25", {"resolution": 64}),
     ("bit_r14x0.25", {"resolution": 96, "root_pool_padding": "min", "weight_standardization_epsilon": 1e-8}),
     ("tiny_cnn_w8", {}),
     ("tiny_cnn_w8", {"norm": "group", "resolution": 32})],
)
def test_save_load_identical_outputs(name, kwargs, images, tmp_path):
    model = fm.create(name, 3, **kwargs)
    loaded = _save_load_roundtrip(model, images, tmp_path)
    assert loaded.arch_kwargs == {key: value for key, value in kwargs.items() if key != "resolution"}
    assert fm.contract(loaded)["resolution"] == kwargs.get("resolution", fm.contract(model)["resolution"])


@pytest.mark.slow
@pytest.mark.both_backends
def test_save_load_keras_application(tmp_path):
    # keras.applications need a static input: the model is built at its contract resolution.
    images = np.random.default_rng(2).uniform(-1, 1, size=(2, 32, 32, 3)).astype("float32")
    model = fm.create("mobilenet_v3_small", 4, resolution=32)
    assert fm.contract(model)["resolution"] == 32
    _save_load_roundtrip(model, images, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_large", "efficientnet_v2_b0", "resnet50_v2"])
def test_other_keras_applications_build(name, tmp_path):
    # Building is the slow part on JAX (one compile per initialiser shape); outputs are checked
    # symbolically and the user-weights path by comparing weights.
    model = fm.create(name, 4, resolution=32)
    assert fm.contract(model) == {"arch": name, "num_classes": 4, "resolution": 32, "value_range": (-1.0, 1.0),
                                  "eval_crop_fraction": None}
    assert model.backbone.outputs[0].shape == (None, 4)
    assert model.backbone.layers[-1].activation.__name__ == "linear"  # logits, not softmax
    # User weights: a weights file of the same architecture is accepted through `weights=`.
    weights_path = tmp_path / "user.weights.h5"
    randomize_weights(model)
    model.backbone.save_weights(weights_path)
    reloaded = fm.create(name, 4, resolution=32, weights=str(weights_path))
    for expected, actual in zip(model.weights, reloaded.weights):
        np.testing.assert_array_equal(np.asarray(actual), np.asarray(expected))


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(FunmatchError, match="missing.keras: model file not found"):
        fm.load(tmp_path / "missing.keras")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(FunmatchError, match=r"broken.keras: not a .keras file"):
        fm.load(broken)


def test_contract_of_a_foreign_model_is_an_error():
    import keras

    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(FunmatchError, match="carries no funmatch preprocessing contract"):
        fm.contract(plain)
