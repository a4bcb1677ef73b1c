"""What a model from elsewhere expects as input, and the map from funmatch's view to it.

funmatch's pipelines give every model its crop window at the model's resolution, RGB in [-1, 1]. A model
from elsewhere was trained on its own input; its `preprocessing` records it (keras-hub's convention, the
one its image converters use):

    {"channel_order": "rgb" | "bgr",      order of the channels the model takes
     "scale": [3 floats], "offset": [3],  model input = pixel * scale + offset, pixels in [0, 255] in that order
     "interpolation": "bilinear", "antialias": bool,    how the model's own resize works (recorded: the
                                                         funmatch pipelines resize with antialiased bilinear)
     "crop_fraction": float | None,       the model's evaluation view (resize the shorter side to R / f,
                                          central crop R); None: not known
     "source": str}                       where the numbers came from

`spec_preprocessing("mean=0.485,0.456,0.406 std=0.229,0.224,0.225 bgr crop=0.875")` reads a user's spec;
`converter_preprocessing(image_converter)` reads a keras-hub preset's own; `APPLICATION_MODES` are
keras.applications' `preprocess_input` modes. May import errors only (Keras inside functions).
"""

from __future__ import annotations

import math

from funmatch.errors import FunmatchError

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")

# keras.applications' `preprocess_input` modes, as scale/offset on RGB pixels in [0, 255].
APPLICATION_MODES = {
    "tf": {"channel_order": "rgb", "scale": [1 / 127.5] * 3, "offset": [-1.0] * 3},  # [-1, 1]
    "torch": {"channel_order": "rgb", "scale": [1 / (255 * s) for s in (0.229, 0.224, 0.225)],
              "offset": [-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]},
    # caffe: BGR, ImageNet mean subtracted, no scaling (scale/offset are in the model's channel order, BGR).
    "caffe": {"channel_order": "bgr", "scale": [1.0] * 3, "offset": [-103.939, -116.779, -123.68]},
    "raw": {"channel_order": "rgb", "scale": [1.0] * 3, "offset": [0.0] * 3},  # [0, 255]: the model rescales
}

SPEC_HELP = ("tokens separated by spaces: a keras.applications mode (tf = [-1, 1], torch, caffe, raw = [0, 255]), "
             "or range=LOW,HIGH, or mean=R,G,B std=R,G,B (on pixels in [0, 1]); then optionally bgr, "
             "interpolation=NAME, crop=FRACTION")


def _triple(value, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        value = [value] * 3
    values = [float(v) for v in value]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise FunmatchError(f"preprocessing {name}: expected 1 or 3 finite numbers, got {value!r}")
    return values


def normalize(preprocessing: dict) -> dict:
    """The canonical form (all keys, lists of 3 floats); FunmatchError for a malformed one."""
    order = str(preprocessing.get("channel_order", "rgb")).lower()
    if order not in ("rgb", "bgr"):
        raise FunmatchError(f"preprocessing channel_order: 'rgb' or 'bgr', got {order!r}")
    scale = _triple(preprocessing.get("scale", 1.0), "scale")
    if any(value == 0 for value in scale):
        raise FunmatchError(f"preprocessing scale: must not be 0, got {scale}")
    interpolation = str(preprocessing.get("interpolation", "bilinear"))
    if interpolation not in INTERPOLATIONS:
        raise FunmatchError(f"preprocessing interpolation {interpolation!r}: one of {', '.join(INTERPOLATIONS)}")
    crop = preprocessing.get("crop_fraction")
    if crop is not None and not 0 < float(crop) <= 1:
        raise FunmatchError(f"preprocessing crop_fraction: in (0, 1], got {crop}")
    return {
        "channel_order": order,
        "scale": scale,
        "offset": _triple(preprocessing.get("offset", 0.0), "offset"),
        "interpolation": interpolation,
        "antialias": bool(preprocessing.get("antialias", False)),
        "crop_fraction": None if crop is None else float(crop),
        "source": str(preprocessing.get("source", "")),
    }


def spec_preprocessing(spec: str) -> dict:
    """A user's `--preprocessing` spec (`SPEC_HELP`) -> the canonical dict. FunmatchError names the token."""
    values: dict = {"source": f"--preprocessing {spec!r}"}
    mean = std = None
    for token in spec.split():
        key, sep, value = token.partition("=")
        key = key.lower()
        try:
            if not sep and key in APPLICATION_MODES:
                values.update(APPLICATION_MODES[key])
            elif not sep and key in ("bgr", "rgb"):
                values["channel_order"] = key
            elif key == "range":
                low, high = (float(part) for part in value.split(","))
                if not high > low:
                    raise ValueError("HIGH must exceed LOW")
                values["scale"] = [(high - low) / 255.0] * 3
                values["offset"] = [low] * 3
            elif key == "mean":
                mean = _triple([float(part) for part in value.split(",")], "mean")
            elif key == "std":
                std = _triple([float(part) for part in value.split(",")], "std")
            elif key == "interpolation":
                values["interpolation"] = value
            elif key == "crop":
                values["crop_fraction"] = float(value)
            else:
                raise ValueError("unknown token")
        except ValueError as error:
            raise FunmatchError(f"--preprocessing {spec!r}: cannot read {token!r} ({error}); {SPEC_HELP}") from None
    if (mean is None) != (std is None):
        raise FunmatchError(f"--preprocessing {spec!r}: give both mean= and std=")
    if mean is not None:
        if any(value <= 0 for value in std):
            raise FunmatchError(f"--preprocessing {spec!r}: std must be > 0")
        values["scale"] = [1 / (255 * s) for s in std]
        values["offset"] = [-m / s for m, s in zip(mean, std)]
    if "scale" not in values:
        raise FunmatchError(f"--preprocessing {spec!r}: says nothing about the value range; {SPEC_HELP}")
    return normalize(values)


def converter_preprocessing(converter, source: str) -> dict:
    """A keras-hub `ImageConverter`'s own preprocessing (scale, offset, interpolation, antialias): keras-hub
    converters take RGB pixels in [0, 255]. Its crop is the whole image (resized, aspect ratio kept by a
    central crop when `crop_to_aspect_ratio`), so the crop fraction is 1."""
    scale = 1.0 if converter.scale is None else converter.scale
    offset = 0.0 if converter.offset is None else converter.offset
    return normalize({"channel_order": "rgb", "scale": scale, "offset": offset,
                      "interpolation": converter.interpolation, "antialias": converter.antialias,
                      "crop_fraction": 1.0, "source": f"the image converter of {source}"})


def affine(preprocessing: dict) -> tuple[list[float], list[float]]:
    """(a, b) per channel, in the model's channel order: model input = a * x + b for x in [-1, 1]
    (pixel = 127.5 (x + 1))."""
    a = [127.5 * s for s in preprocessing["scale"]]
    b = [127.5 * s + o for s, o in zip(preprocessing["scale"], preprocessing["offset"])]
    return a, b


def to_model_input(images, preprocessing: dict):
    """Images `[B, H, W, 3]` RGB in [-1, 1] -> the model's own input (same shape), in the images' dtype."""
    from keras import ops

    if preprocessing["channel_order"] == "bgr":
        images = ops.flip(images, axis=-1)
    a, b = affine(preprocessing)
    return images * ops.cast(a, images.dtype) + ops.cast(b, images.dtype)


def describe(preprocessing: dict) -> str:
    """One line: channel order, mean/std on [0, 1] pixels (or the value range), interpolation, crop."""
    scale, offset = preprocessing["scale"], preprocessing["offset"]
    if len(set(scale)) == 1 and len(set(offset)) == 1:
        low, high = offset[0], 255 * scale[0] + offset[0]
        values = f"range [{low:g}, {high:g}]"
    else:
        mean = [-o / (255 * s) for s, o in zip(scale, offset)]
        std = [1 / (255 * s) for s in scale]
        values = f"mean ({', '.join(f'{m:.4g}' for m in mean)}) std ({', '.join(f'{s:.4g}' for s in std)}) on [0, 1]"
    crop = preprocessing.get("crop_fraction")
    return (f"{preprocessing['channel_order'].upper()} {values}, {preprocessing['interpolation']}"
            f"{' antialiased' if preprocessing.get('antialias') else ''}, crop fraction "
            f"{'unknown' if crop is None else f'{crop:g}'}")
