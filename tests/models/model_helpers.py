"""Helpers of the model tests: weights in the official layouts, random weights (a module with a unique
name: `conftest` is ambiguous when several test folders are collected in one run)."""

from __future__ import annotations

import numpy as np


def big_transfer_arrays(units, width, num_classes, seed=0):
    """Random weights in the big_transfer BiT `.npz` layout, written from the layout spec alone
    (independently of funmatch's model code), with non-trivial GroupNorm scales/offsets and a
    non-zero head so that a wrong mapping changes the logits.

    Kernels are N(0, 1): weight standardisation removes their scale, and with unit variance the
    standardisation epsilon (1e-10 official, 1e-8 timm) changes kernels by ~1e-8 relative.
    """
    rng = np.random.default_rng(seed)
    arrays = {}

    def kernel(*shape):
        return rng.normal(size=shape).astype("float32")

    def group_norm(prefix, channels):
        arrays[f"{prefix}/group_norm/gamma"] = rng.uniform(0.5, 1.5, size=channels).astype("float32")
        arrays[f"{prefix}/group_norm/beta"] = rng.normal(0.0, 0.2, size=channels).astype("float32")

    root = int(round(64 * width))
    arrays["resnet/root_block/standardized_conv2d/kernel"] = kernel(7, 7, 3, root)
    in_channels = root
    for block_index, unit_count in enumerate(units):
        mid = root * 2**block_index
        out = 4 * mid
        for unit_index in range(unit_count):
            prefix = f"resnet/block{block_index + 1}/unit{unit_index + 1:02d}"
            group_norm(f"{prefix}/a", in_channels)
            arrays[f"{prefix}/a/standardized_conv2d/kernel"] = kernel(1, 1, in_channels, mid)
            group_norm(f"{prefix}/b", mid)
            arrays[f"{prefix}/b/standardized_conv2d/kernel"] = kernel(3, 3, mid, mid)
            group_norm(f"{prefix}/c", mid)
            arrays[f"{prefix}/c/standardized_conv2d/kernel"] = kernel(1, 1, mid, out)
            if unit_index == 0:
                arrays[f"{prefix}/a/proj/standardized_conv2d/kernel"] = kernel(1, 1, in_channels, out)
            in_channels = out
    arrays["resnet/group_norm/gamma"] = rng.uniform(0.5, 1.5, size=in_channels).astype("float32")
    arrays["resnet/group_norm/beta"] = rng.normal(0.0, 0.2, size=in_channels).astype("float32")
    arrays["resnet/head/conv2d/kernel"] = (
        rng.normal(size=(1, 1, in_channels, num_classes)) / np.sqrt(in_channels)
    ).astype("float32")
    arrays["resnet/head/conv2d/bias"] = rng.normal(0.0, 0.1, size=num_classes).astype("float32")
    return arrays


def big_transfer_to_bit_paper(arrays):
    """The same weights in big_vision's `bit_paper` layout (as its `maybe_convert_big_transfer_format`
    maps them), under a `params/` prefix as big_vision checkpoints store them."""
    converted = {}
    for key, value in arrays.items():
        parts = key.split("/")[1:]  # drop "resnet"
        if parts[0] == "root_block":
            converted["root_block/conv_root/kernel"] = value
        elif parts[0] == "group_norm":
            converted[f"norm-pre-head/{'scale' if parts[1] == 'gamma' else 'bias'}"] = value[None, None, None]
        elif parts[0] == "head":
            converted[f"head/{parts[2]}"] = value[0, 0] if parts[2] == "kernel" else value
        else:
            block, unit, group = parts[:3]
            index = "abc".index(group) + 1
            if parts[3] == "proj":
                converted[f"{block}/{unit}/conv_proj/kernel"] = value
            elif parts[3] == "standardized_conv2d":
                converted[f"{block}/{unit}/conv{index}/kernel"] = value
            else:
                name = "scale" if parts[4] == "gamma" else "bias"
                converted[f"{block}/{unit}/gn{index}/{name}"] = value[None, None, None]
    return {f"params/{key}": value for key, value in converted.items()}


def randomize_weights(model, seed=0):
    """Sets every weight of `model` to random values (the heads start at zero, which would make
    save/load comparisons trivially equal). Variances stay positive."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if "variance" in weight.path:
            value = rng.uniform(0.5, 1.5, size=shape)
        else:
            value = rng.normal(0.0, 0.3, size=shape)
        weight.assign(value.astype(weight.dtype))
