"""BiT ResNet-V2 (Kolesnikov et al., "Big Transfer", 2020) as a Keras functional model.

Architecture, as in big_transfer and big_vision's `bit_paper` (and timm's `resnetv2_*_bit`):

* root: 7x7 / 2 weight-standardised conv (zero padding 3), then 3x3 / 2 max-pool (padding 1);
* four blocks of pre-activation bottleneck units. A unit computes
  `GN+ReLU -> 1x1 conv (a) -> GN+ReLU -> 3x3 conv (b, carries the stride) -> GN+ReLU -> 1x1 conv (c)`
  and adds the shortcut; the first unit of each block projects the shortcut with a 1x1 (stride)
  conv applied to the *pre-activated* input;
* final GN + ReLU, global average pool, dense head initialised to zeros.

Channel widths: the root and the bottleneck of block 1 have `64 * width` channels, block `i`
(0-based) has `64 * width * 2**i` bottleneck and 4x that output channels. Block strides 1, 2, 2, 2.

Layer names mirror the checkpoint layout (`block1_unit01_a_conv` <-> `resnet/block1/unit01/a/
standardized_conv2d/kernel`), see `funmatch.models.checkpoints`.
"""

from __future__ import annotations

import dataclasses
import re

import keras

from funmatch.models.layers import DEFAULT_GROUPS, GroupNorm, PaddedMaxPool2D, StandardizedConv2D

# Units per block for each depth (bottleneck units: depth = 3 * sum(units) + 2).
BLOCK_UNITS: dict[int, tuple[int, int, int, int]] = {
    14: (1, 1, 1, 1),
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}

_NAME_PATTERN = re.compile(r"^bit_r(\d+)x(\d+(?:\.\d+)?)$")


@dataclasses.dataclass(frozen=True)
class BitSpec:
    """Depth and width of one BiT ResNet-V2: `units` per block and the width factor."""

    depth: int
    width: float

    @property
    def units(self) -> tuple[int, int, int, int]:
        return BLOCK_UNITS[self.depth]

    @property
    def root_channels(self) -> int:
        return int(round(64 * self.width))

    @property
    def name(self) -> str:
        return f"bit_r{self.depth}x{self.width:g}"


def parse_bit_name(name: str) -> BitSpec | None:
    """`"bit_r50x1"` -> BitSpec(50, 1.0); None when `name` is not of the form `bit_r{depth}x{width}`.

    Raises ValueError when the form matches but the depth is unknown or the width gives a
    non-integer channel count (64 * width must be a positive integer).
    """
    match = _NAME_PATTERN.match(name)
    if not match:
        return None
    depth, width = int(match.group(1)), float(match.group(2))
    if depth not in BLOCK_UNITS:
        raise ValueError(f"unknown BiT depth {depth} in {name!r}; known depths: {sorted(BLOCK_UNITS)}")
    channels = 64 * width
    if channels < 1 or abs(channels - round(channels)) > 1e-9:
        raise ValueError(f"BiT width {width:g} in {name!r} must make 64 * width a positive integer")
    return BitSpec(depth, width)


def build_bit(
    spec: BitSpec,
    num_classes: int,
    *,
    weight_standardization_epsilon: float = 1e-10,
    group_norm_epsilon: float = 1e-5,
    groups: int = DEFAULT_GROUPS,
    root_pool_padding: str = "zero",
    input_shape: tuple = (None, None, 3),
    name: str | None = None,
) -> keras.Model:
    """The BiT ResNet-V2 backbone + head as a functional model: images `[B, H, W, 3]` -> logits `[B, num_classes]`.

    Args:
      spec: depth and width (see `parse_bit_name`).
      num_classes: size of the zero-initialised head.
      weight_standardization_epsilon: eps of the kernel standardisation (official 1e-10; timm 1e-8).
      group_norm_epsilon: eps of every GroupNorm (official 1e-5).
      groups: requested GroupNorm groups (32); narrow layers use `gcd(groups, channels)`.
      root_pool_padding: "zero" (big_transfer, timm) or "min" (big_vision `bit_paper`).
      input_shape: per-image shape; spatial size may be None (any resolution).
    """

    def conv(filters, kernel_size, strides, layer_name):
        return StandardizedConv2D(
            filters,
            kernel_size,
            strides=strides,
            epsilon=weight_standardization_epsilon,
            name=layer_name,
        )

    def norm(layer_name):
        return GroupNorm(groups, epsilon=group_norm_epsilon, relu=True, name=layer_name)

    images = keras.Input(shape=input_shape, name="images")
    x = conv(spec.root_channels, 7, 2, "root_conv")(images)
    x = PaddedMaxPool2D(3, 2, pad_with=root_pool_padding, name="root_pool")(x)

    in_channels = spec.root_channels
    for block_index, unit_count in enumerate(spec.units):
        mid_channels = spec.root_channels * 2**block_index
        out_channels = 4 * mid_channels
        for unit_index in range(unit_count):
            prefix = f"block{block_index + 1}_unit{unit_index + 1:02d}"
            strides = 2 if (unit_index == 0 and block_index > 0) else 1
            preactivated = norm(f"{prefix}_a_gn")(x)
            if strides != 1 or in_channels != out_channels:
                # The projection sees the pre-activated input (ResNet-V2), not the raw residual.
                shortcut = conv(out_channels, 1, strides, f"{prefix}_proj_conv")(preactivated)
            else:
                shortcut = x
            y = conv(mid_channels, 1, 1, f"{prefix}_a_conv")(preactivated)
            y = norm(f"{prefix}_b_gn")(y)
            y = conv(mid_channels, 3, strides, f"{prefix}_b_conv")(y)
            y = norm(f"{prefix}_c_gn")(y)
            y = conv(out_channels, 1, 1, f"{prefix}_c_conv")(y)
            x = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
            in_channels = out_channels

    x = norm("pre_head_gn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer="zeros", bias_initializer="zeros", name="head"
    )(x)
    return keras.Model(images, logits, name=name or spec.name.replace(".", "_"))


def bit_cost(spec: BitSpec, num_classes: int, resolution: int) -> tuple[int, int]:
    """(parameters, FLOPs per image) of `build_bit(spec, num_classes)` at `resolution`, without building it.

    Same conventions as `funmatch.models.count_params` / `count_flops` (all weights; FLOPs =
    2 x multiply-adds of convs and the head). Lets `funmatch models` list bit_r152x4 (936 M
    parameters) without allocating it; tests check it against the counts of built models.
    """

    def conv_out(size, kernel, stride, pad):
        return (size + 2 * pad - kernel) // stride + 1

    params = flops = 0

    def conv(size, in_channels, out_channels, kernel, stride):
        nonlocal params, flops
        out = conv_out(size, kernel, stride, (kernel - 1) // 2)
        params += kernel * kernel * in_channels * out_channels
        flops += 2 * out * out * kernel * kernel * in_channels * out_channels
        return out

    def norm(channels):
        nonlocal params
        params += 2 * channels

    size = conv(resolution, 3, spec.root_channels, 7, 2)
    size = conv_out(size, 3, 2, 1)  # root max-pool
    in_channels = spec.root_channels
    for block_index, unit_count in enumerate(spec.units):
        mid = spec.root_channels * 2**block_index
        out = 4 * mid
        for unit_index in range(unit_count):
            stride = 2 if (unit_index == 0 and block_index > 0) else 1
            norm(in_channels)
            if stride != 1 or in_channels != out:
                conv(size, in_channels, out, 1, stride)
            conv(size, in_channels, mid, 1, 1)
            norm(mid)
            new_size = conv(size, mid, mid, 3, stride)
            norm(mid)
            conv(new_size, mid, out, 1, 1)
            size, in_channels = new_size, out
    norm(in_channels)
    params += in_channels * num_classes + num_classes
    flops += 2 * in_channels * num_classes
    return params, flops
