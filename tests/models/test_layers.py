"""Weight standardisation, GroupNorm and the root max-pool against hand-written NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

from funmatch.models.layers import GroupNorm, PaddedMaxPool2D, StandardizedConv2D, group_count


def _numpy_conv(images, kernel, stride, pad):
    """Direct convolution: images [B, H, W, I], kernel [k, k, I, O], symmetric zero padding."""
    padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    size = kernel.shape[0]
    out_h = (padded.shape[1] - size) // stride + 1
    out_w = (padded.shape[2] - size) // stride + 1
    out = np.zeros((images.shape[0], out_h, out_w, kernel.shape[3]))
    for row in range(out_h):
        for col in range(out_w):
            patch = padded[:, row * stride : row * stride + size, col * stride : col * stride + size, :]
            out[:, row, col, :] = np.einsum("bhwi,hwio->bo", patch, kernel)
    return out


@pytest.mark.both_backends
@pytest.mark.parametrize("stride", [1, 2])
def test_standardized_conv_matches_numpy(stride):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    kernel = (rng.normal(size=(3, 3, 4, 5)) * 0.05 + 0.3).astype("float32")  # non-zero mean
    layer = StandardizedConv2D(5, 3, strides=stride)
    layer.build(images.shape)
    layer.kernel.assign(kernel)

    mean = kernel.mean(axis=(0, 1, 2))
    std = np.sqrt(((kernel - mean) ** 2).mean(axis=(0, 1, 2)) + 1e-10)  # biased variance, eps 1e-10
    expected = _numpy_conv(images, (kernel - mean) / std, stride, pad=1)
    actual = np.asarray(layer(images))
    assert actual.shape == expected.shape == (2, 6 // stride, 6 // stride, 5)
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)
    # Standardisation removes the kernel's scale and offset.
    layer.kernel.assign(kernel * 7.0 + 0.0)
    np.testing.assert_allclose(np.asarray(layer(images)), expected, atol=1e-4, rtol=1e-4)


def test_standardized_conv_stride_two_pads_symmetrically():
    # For stride 2 on an even size, TF "same" pads (0, 1); BiT pads (1, 1). Output 4x4 from 8x8,
    # and the top-left output must see the zero padding (a kernel that only reads the top-left
    # tap gives 0 there, whereas "same" would read image[0, 0]).
    layer = StandardizedConv2D(1, 3, strides=2, epsilon=0.0)
    layer.build((1, 8, 8, 1))
    kernel = np.full((3, 3, 1, 1), -1.0 / 8, dtype="float32")
    kernel[0, 0] = 1.0  # standardised: top-left tap positive, the rest equal and negative
    layer.kernel.assign(kernel)
    images = np.ones((1, 8, 8, 1), dtype="float32")
    expected = _numpy_conv(images, (kernel - kernel.mean()) / kernel.std(), 2, pad=1)
    np.testing.assert_allclose(np.asarray(layer(images)), expected, atol=1e-5)


def _numpy_group_norm(x, groups, gamma, beta, eps=1e-5):
    batch, height, width, channels = x.shape
    grouped = x.reshape(batch, height, width, groups, channels // groups)
    mean = grouped.mean(axis=(1, 2, 4), keepdims=True)
    variance = grouped.var(axis=(1, 2, 4), keepdims=True)
    normalized = ((grouped - mean) / np.sqrt(variance + eps)).reshape(x.shape)
    return normalized * gamma + beta


@pytest.mark.both_backends
@pytest.mark.parametrize("channels, expected_groups", [(64, 32), (16, 16), (48, 16)])
def test_group_norm_matches_numpy(channels, expected_groups):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(2, 5, 3, channels)) * 3.0 + 1.5).astype("float32")
    gamma = rng.uniform(0.5, 1.5, size=channels).astype("float32")
    beta = rng.normal(size=channels).astype("float32")
    assert group_count(channels) == expected_groups
    layer = GroupNorm(32)
    layer.build(x.shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    expected = _numpy_group_norm(x.astype("float64"), expected_groups, gamma, beta)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-4, rtol=1e-4)
    relu_layer = GroupNorm(32, relu=True)
    relu_layer.build(x.shape)
    relu_layer.gamma.assign(gamma)
    relu_layer.beta.assign(beta)
    np.testing.assert_allclose(np.asarray(relu_layer(x)), np.maximum(expected, 0.0), atol=1e-4, rtol=1e-4)


@pytest.mark.both_backends
def test_group_norm_is_accurate_when_the_mean_dwarfs_the_spread():
    # Per-channel moments are combined into group moments; large, unequal channel means must not cancel.
    rng = np.random.default_rng(2)
    channels = 8
    offsets = rng.uniform(50.0, 150.0, size=channels)
    x = (rng.normal(size=(3, 6, 4, channels)) * 0.5 + offsets).astype("float32")
    layer = GroupNorm(4)
    layer.build(x.shape)
    expected = _numpy_group_norm(x.astype("float64"), 4, np.ones(channels), np.zeros(channels))
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=2e-3)


def test_group_norm_gradients_match_the_direct_formula():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    x = tf.constant((rng.normal(size=(2, 4, 5, 16)) * 2.0 + 0.7).astype("float32"))
    weights = tf.constant(rng.normal(size=(2, 4, 5, 16)).astype("float32"))
    layer = GroupNorm(4, relu=True)
    layer.build(x.shape)
    layer.gamma.assign(rng.uniform(0.5, 1.5, size=16).astype("float32"))
    layer.beta.assign(rng.normal(size=16).astype("float32"))

    def direct(inputs):
        grouped = tf.reshape(inputs, (2, 4, 5, 4, 4))
        mean, variance = tf.nn.moments(grouped, axes=(1, 2, 4), keepdims=True)
        normalized = tf.reshape((grouped - mean) * tf.math.rsqrt(variance + 1e-5), inputs.shape)
        return tf.nn.relu(normalized * layer.gamma + layer.beta)

    grads = []
    for fn in (layer, direct):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(x) * weights)
        grads.append(tape.gradient(loss, [x, layer.gamma, layer.beta]))
    for ours, reference in zip(*grads):
        np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.both_backends
def test_root_pool_padding_zero_versus_min():
    values = -np.arange(1, 17, dtype="float32").reshape(1, 4, 4, 1)  # all negative
    zero = np.asarray(PaddedMaxPool2D(pad_with="zero")(values))[0, :, :, 0]
    minimum = np.asarray(PaddedMaxPool2D(pad_with="min")(values))[0, :, :, 0]
    # Windows touching the padding (first row / column of outputs) see a 0 that wins over the
    # negative values; the bottom-right window covers real rows / columns 1..3 only.
    np.testing.assert_array_equal(zero, np.array([[0.0, 0.0], [0.0, -6.0]]))
    # -inf padding: the max over the real values of each window.
    np.testing.assert_array_equal(minimum, np.array([[-1.0, -2.0], [-5.0, -6.0]]))
