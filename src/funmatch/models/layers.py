"""Layers of the BiT ResNet-V2 family: weight-standardised convolution and group normalisation.

Both are registered Keras serialisables (package "funmatch"), so a `.keras` file that uses them
loads in safe mode once `funmatch.models` is imported.

Numerics follow the official code (big_transfer / big_vision `bit_paper`):

* weight standardisation: each output filter of the kernel `[kh, kw, in, out]` is standardised
  over (kh, kw, in): `(w - mean) / sqrt(var + eps)`, with the biased variance and eps = 1e-10;
* group normalisation: statistics over (H, W, channels of the group), biased variance, eps = 1e-5,
  then a per-channel scale (`gamma`) and offset (`beta`).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

# The official BiT code uses 32 groups; narrow CPU variants (a width factor below 1) have layers
# with fewer channels, see `group_count`.
DEFAULT_GROUPS = 32


def group_count(channels: int, groups: int = DEFAULT_GROUPS) -> int:
    """Number of groups actually used for `channels` channels when `groups` are asked for.

    The rule is `gcd(groups, channels)`: it equals `groups` whenever `channels` is a multiple of it
    (every official BiT layer: widths are multiples of 64), and otherwise picks the largest count
    that divides both, e.g. 16 channels -> 16 groups (one channel per group), 48 -> 16.
    """
    return math.gcd(int(groups), int(channels))


@keras.saving.register_keras_serializable(package="funmatch")
class HostNormal(keras.initializers.Initializer):
    """He-normal (std sqrt(2 / fan_in)) values drawn with NumPy on the host.

    Keras' own random initializers compile one small program per weight shape on JAX, which made
    building `bit_r50x1` take ~30 s on 2 CPU cores; drawing with NumPy takes well under a second.
    The values come from NumPy's global generator, which `keras.utils.set_random_seed` seeds, so
    runs stay reproducible. (Before weight standardisation the kernel scale does not matter; this
    scale keeps un-standardised uses sensible.)
    """

    def __call__(self, shape, dtype=None):
        fan_in = math.prod(shape[:-1]) if len(shape) > 1 else shape[0]
        seed = np.random.randint(0, 2**31 - 1)
        values = np.random.default_rng(seed).normal(0.0, math.sqrt(2.0 / max(fan_in, 1)), size=shape)
        return ops.convert_to_tensor(values, dtype=dtype or "float32")

    def get_config(self):
        return {}


def standardize_kernel(kernel, epsilon: float):
    """Weight standardisation of a conv kernel `[kh, kw, in, out]` over its first three axes."""
    mean = ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
    centered = kernel - mean
    variance = ops.mean(ops.square(centered), axis=(0, 1, 2), keepdims=True)
    return centered * ops.rsqrt(variance + epsilon)


@keras.saving.register_keras_serializable(package="funmatch")
class StandardizedConv2D(keras.layers.Layer):
    """2-D convolution with a weight-standardised kernel and explicit symmetric zero padding.

    Input `[B, H, W, in]` -> output `[B, H', W', filters]` with
    `H' = floor((H + 2 * padding - kernel_size) / strides) + 1`. The padding is explicit (not
    Keras' "same") because for stride 2 TensorFlow's "same" pads (0, 1) on even sizes where the
    official BiT code pads (1, 1). No bias (the official units have none).

    The stored variable `kernel` is the raw kernel (as in the checkpoints); it is standardised on
    every call, so gradients flow through the standardisation as in the paper.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        padding: int | None = None,
        epsilon: float = 1e-10,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        # Default: pad (k - 1) // 2 on both sides, as big_transfer's PaddingFromKernelSize for odd k.
        self.padding = (self.kernel_size - 1) // 2 if padding is None else int(padding)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or HostNormal())

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.kernel_size, self.kernel_size, in_channels, self.filters),
            initializer=self.kernel_initializer,
        )

    def call(self, inputs):
        kernel = standardize_kernel(self.kernel, self.epsilon)
        if self.strides == 1 and 2 * self.padding == self.kernel_size - 1:
            # Stride 1, odd kernel: "same" pads (k - 1) / 2 on both sides too, without copying the input.
            return ops.conv(inputs, kernel, strides=1, padding="same")
        if self.padding:
            pad = self.padding
            inputs = ops.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return ops.conv(inputs, kernel, strides=self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        def out_size(size):
            if size is None:
                return None
            return (size + 2 * self.padding - self.kernel_size) // self.strides + 1

        return (input_shape[0], out_size(input_shape[1]), out_size(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            epsilon=self.epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="funmatch")
class GroupNorm(keras.layers.Layer):
    """Group normalisation of `[B, H, W, C]` (channels last), optionally followed by ReLU.

    `groups` is the requested count (32 in BiT); the count used is `group_count(C, groups)`.
    Statistics are computed in float32 over (H, W, channels of the group) with the biased
    variance, as in big_vision's `bit_paper.GroupNorm`. Weights: `gamma` and `beta`, shape `[C]`.
    """

    def __init__(self, groups: int = DEFAULT_GROUPS, epsilon: float = 1e-5, relu: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)
        self.epsilon = float(epsilon)
        self.relu = bool(relu)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.used_groups = group_count(channels, self.groups)
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        # Per-channel moments first (reductions over H, W: contiguous in NHWC), then group statistics on
        # the small [B, C] tensors, then one multiply-add on the activation. Same numbers as reshaping to
        # [B, H, W, G, C/G] and reducing over (1, 2, 4) -- the group's biased variance is the mean of
        # the channel variances plus the variance of the channel means -- at about half the CPU time of
        # the teacher's forward pass (benchmarks/models.py).
        input_dtype = inputs.dtype
        x = ops.cast(inputs, "float32")
        channels = x.shape[-1]
        groups, per_group = self.used_groups, channels // self.used_groups
        channel_mean, channel_variance = ops.moments(x, axes=(1, 2))  # [B, C] each
        batch = ops.shape(channel_mean)[0]
        grouped_mean = ops.reshape(channel_mean, (batch, groups, per_group))
        group_mean = ops.mean(grouped_mean, axis=-1, keepdims=True)  # [B, G, 1]
        group_variance = ops.mean(
            ops.reshape(channel_variance, (batch, groups, per_group)) + ops.square(grouped_mean - group_mean),
            axis=-1, keepdims=True,
        )
        inverse = ops.broadcast_to(ops.rsqrt(group_variance + self.epsilon), (batch, groups, per_group))
        scale = ops.reshape(inverse, (batch, 1, 1, channels)) * ops.cast(self.gamma, "float32")
        mean = ops.reshape(ops.broadcast_to(group_mean, (batch, groups, per_group)), (batch, 1, 1, channels))
        outputs = x * scale + (ops.cast(self.beta, "float32") - mean * scale)
        if self.relu:
            outputs = ops.relu(outputs)
        return ops.cast(outputs, input_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(groups=self.groups, epsilon=self.epsilon, relu=self.relu)
        return config


@keras.saving.register_keras_serializable(package="funmatch")
class PaddedMaxPool2D(keras.layers.Layer):
    """3x3 / stride-2 max-pool after explicit symmetric padding by 1, as in the BiT root block.

    `pad_with="zero"` pads with zeros, as big_transfer (TF2 and PyTorch) and timm's `stem_type=
    "fixed"` do; `pad_with="min"` pads with -inf, as big_vision's `bit_paper` (flax
    `max_pool(padding=[(1, 1), (1, 1)])`) does. They differ only on border windows whose values
    are all negative (the root conv output has no activation before the pool).
    """

    def __init__(self, pool_size: int = 3, strides: int = 2, pad_with: str = "zero", **kwargs):
        super().__init__(**kwargs)
        if pad_with not in ("zero", "min"):
            raise ValueError(f"pad_with must be 'zero' or 'min', got {pad_with!r}")
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.pad_with = pad_with

    def call(self, inputs):
        pad = (self.pool_size - 1) // 2
        value = 0.0 if self.pad_with == "zero" else float("-inf")
        padded = ops.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]], constant_values=value)
        return ops.max_pool(padded, pool_size=self.pool_size, strides=self.strides, padding="valid")

    def compute_output_shape(self, input_shape):
        pad = (self.pool_size - 1) // 2

        def out_size(size):
            return None if size is None else (size + 2 * pad - self.pool_size) // self.strides + 1

        return (input_shape[0], out_size(input_shape[1]), out_size(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, pad_with=self.pad_with)
        return config
