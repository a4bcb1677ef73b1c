"""Parameter and FLOP counts on models whose counts are known by hand."""

from __future__ import annotations

import keras
import pytest

import funmatch.models as fm
from funmatch.models import bit


@pytest.mark.both_backends
def test_counts_of_a_hand_countable_model():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 3*3*3*4 + 4 = 112 params
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 3*3*4 + 4 = 40 params
    x = keras.layers.BatchNormalization()(x)  # 4 * 4 = 16 weights (2 trainable x 4)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5)(x)  # 4*5 + 5 = 25 params
    model = keras.Model(inputs, outputs)
    assert fm.count_params(model) == 112 + 40 + 16 + 25
    assert fm.count_params(model, trainable_only=True) == 112 + 40 + 8 + 25
    # 8x8 input: conv 8*8 positions * 27 taps * 4 outputs; depthwise 4*4 positions * 9 taps * 4
    # channels; dense 4 * 5; each multiply-add is 2 FLOPs.
    assert fm.count_flops(model, 8) == 2 * (8 * 8 * 27 * 4 + 4 * 4 * 9 * 4 + 4 * 5)
    assert fm.count_flops(model, 16) == 2 * (16 * 16 * 27 * 4 + 8 * 8 * 9 * 4 + 4 * 5)


def test_bit_counts_match_the_known_figures():
    # ResNet-50 (v2 / BiT) at 224 px: 4.09 G multiply-adds (8.17 GFLOPs), 25.55 M parameters with
    # a 1000-class head (timm's resnetv2_50x1_bit has 25,549,352 parameters).
    model = fm.create("bit_r50x1", 1000)
    assert fm.count_params(model) == 25_549_352
    flops = fm.count_flops(model, 224)
    assert flops == bit.bit_cost(bit.parse_bit_name("bit_r50x1"), 1000, 224)[1]
    assert 8.1e9 < flops < 8.25e9


@pytest.mark.both_backends
@pytest.mark.parametrize("name, resolution", [("bit_r14x0.25", 64), ("bit_r26x0.25", 65)])
def test_bit_cost_matches_the_built_model(name, resolution):
    model = fm.create(name, 10)
    assert bit.bit_cost(bit.parse_bit_name(name), 10, resolution) == (
        fm.count_params(model), fm.count_flops(model, resolution))


def test_tiny_cnn_counts_by_hand():
    width = 8
    model = fm.create("tiny_cnn_w8", 10)
    convs = [(3, width), (width, width), (width, 2 * width), (2 * width, 4 * width)]
    params = sum(9 * cin * cout + 4 * cout for cin, cout in convs) + 4 * width * 10 + 10
    assert fm.count_params(model) == params
    sizes = [32, 32, 16, 8]  # at 64 px
    flops = sum(2 * size * size * 9 * cin * cout for size, (cin, cout) in zip(sizes, convs)) + 2 * 4 * width * 10
    assert fm.count_flops(model, 64) == flops


def test_layers_called_inside_a_subclassed_layer_are_counted():
    """keras-hub's blocks are subclassed layers that call their convolutions in `call`: those count too."""
    import keras

    from funmatch.models import count_flops

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(8, 3, padding="same")
            self.depthwise = keras.layers.DepthwiseConv2D(3, padding="same")

        def call(self, x):
            return self.depthwise(self.conv(x))

    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(Block()(inputs)))
    model = keras.Model(inputs, outputs)
    # conv 3x3, 3 -> 8 at 10x10; depthwise 3x3 on 8 channels at 10x10; dense 8 -> 5.
    expected = 2 * 100 * 9 * 3 * 8 + 2 * 100 * 9 * 8 + 2 * 8 * 5
    assert count_flops(model, 10) == expected
