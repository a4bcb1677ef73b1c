"""The model registry: `create(name, num_classes, **kwargs)` and `list_models()`.

Families (every model takes images in [-1, 1] and returns logits; see `Classifier`):

* `bit_r{depth}x{width}`: BiT ResNet-V2, any depth in `bit.BLOCK_UNITS` and width with 64 * width
  an integer (e.g. `bit_r50x1`, `bit_r152x2`, `bit_r26x0.25`). Default resolution 128.
  kwargs: `weight_standardization_epsilon`, `group_norm_epsilon`, `groups`, `root_pool_padding`.
* `tiny_cnn`, `tiny_cnn_w{width}`: four conv layers, for tests and CPU students. Default
  resolution 64. kwargs: `norm` ("batch" | "group").
* keras.applications `mobilenet_v3_small`, `mobilenet_v3_large`, `efficientnet_v2_b0`,
  `resnet50_v2`: built with `weights=None` (or the user's `weights=` file), `include_top=True`,
  `classifier_activation=None` and no built-in rescaling (inputs are already in [-1, 1]).
  Their input shape is fixed to the resolution (keras.applications needs a static shape for its
  top). Default resolution 224. kwargs: `weights`, `dropout_rate` (where the constructor has it).

Every family accepts `resolution=` (the contract's resolution).
"""

from __future__ import annotations

import difflib

import keras

from funmatch.errors import FunmatchError
from funmatch.models import bit, tiny
from funmatch.models.classifier import Classifier
from funmatch.models.classifier import contract as classifier_contract

# Listed names (the parsers accept more: any `bit_r{depth}x{width}`, any `tiny_cnn_w{width}`).
BIT_NAMES = [
    "bit_r50x1",
    "bit_r101x1",
    "bit_r50x3",
    "bit_r101x3",
    "bit_r152x2",
    "bit_r152x4",
    "bit_r26x1",
    "bit_r26x0.5",
    "bit_r26x0.25",
    "bit_r14x0.25",
]
TINY_NAMES = ["tiny_cnn", "tiny_cnn_w8", "tiny_cnn_w32"]

# name -> (keras.applications constructor name, extra constructor kwargs)
APPLICATIONS = {
    "mobilenet_v3_small": ("MobileNetV3Small", {"include_preprocessing": False}),
    "mobilenet_v3_large": ("MobileNetV3Large", {"include_preprocessing": False}),
    "efficientnet_v2_b0": ("EfficientNetV2B0", {"include_preprocessing": False}),
    "resnet50_v2": ("ResNet50V2", {}),
}

DEFAULT_RESOLUTION = {"bit": 128, "tiny": 64, "applications": 224}
_BIT_KWARGS = {"weight_standardization_epsilon", "group_norm_epsilon", "groups", "root_pool_padding"}
_TINY_KWARGS = {"norm"}
_APPLICATION_KWARGS = {"weights", "dropout_rate"}


def list_models() -> list[str]:
    """Names of the registered models (BiT, tiny CNNs, keras.applications)."""
    return BIT_NAMES + TINY_NAMES + list(APPLICATIONS)


def family(name: str) -> str:
    """"bit", "tiny" or "applications"; FunmatchError (with close names) for an unknown name."""
    try:
        if bit.parse_bit_name(name) is not None:
            return "bit"
        if tiny.parse_tiny_name(name) is not None:
            return "tiny"
    except ValueError as error:
        raise FunmatchError(f"model {name!r}: {error}") from error
    if name in APPLICATIONS:
        return "applications"
    close = difflib.get_close_matches(name, list_models(), n=4, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise FunmatchError(
        f"unknown model {name!r}{hint} (known: {', '.join(list_models())}; "
        "also any bit_r{depth}x{width} and tiny_cnn_w{width})"
    )


def _check_kwargs(name: str, kwargs: dict, allowed: set) -> None:
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise FunmatchError(
            f"model {name!r}: unknown argument(s) {', '.join(unknown)} (accepted: resolution, {', '.join(sorted(allowed))})"
        )


def create(name: str, num_classes: int, *, resolution: int | None = None, **kwargs) -> Classifier:
    """A fresh model: images `[B, H, W, 3]` in [-1, 1] -> logits `[B, num_classes]`.

    Args:
      name: registry name (see `list_models`; any `bit_r{depth}x{width}` / `tiny_cnn_w{width}`).
      num_classes: number of logits.
      resolution: the contract's input resolution (default: 128 BiT, 64 tiny CNN, 224 applications).
      **kwargs: family options (see the module docstring).

    Returns a `Classifier` (a Keras model) whose `contract` holds arch, num_classes, resolution and
    value range.
    """
    model_family = family(name)
    if int(num_classes) < 1:
        raise FunmatchError(f"model {name!r}: num_classes must be >= 1, got {num_classes}")
    resolution = int(resolution or DEFAULT_RESOLUTION[model_family])
    if model_family == "bit":
        _check_kwargs(name, kwargs, _BIT_KWARGS)
        try:
            backbone = bit.build_bit(bit.parse_bit_name(name), num_classes, **kwargs)
        except ValueError as error:
            raise FunmatchError(f"model {name!r}: {error}") from error
    elif model_family == "tiny":
        _check_kwargs(name, kwargs, _TINY_KWARGS)
        try:
            backbone = tiny.build_tiny_cnn(tiny.parse_tiny_name(name), num_classes, **kwargs)
        except ValueError as error:
            raise FunmatchError(f"model {name!r}: {error}") from error
    else:
        _check_kwargs(name, kwargs, _APPLICATION_KWARGS)
        backbone = _build_application(name, num_classes, resolution, **kwargs)
    return Classifier(
        backbone,
        arch=name,
        num_classes=num_classes,
        resolution=resolution,
        arch_kwargs=kwargs,
        name=name.replace(".", "p"),
    )


def _build_application(name: str, num_classes: int, resolution: int, weights=None, **kwargs) -> keras.Model:
    constructor_name, extra = APPLICATIONS[name]
    constructor = getattr(keras.applications, constructor_name)
    try:
        return constructor(
            input_shape=(resolution, resolution, 3),
            include_top=True,
            weights=weights,
            classes=num_classes,
            classifier_activation=None,
            **extra,
            **kwargs,
        )
    except (ValueError, OSError, TypeError) as error:
        where = f" (weights={weights!r})" if weights else ""
        raise FunmatchError(f"model {name!r}{where}: {error}") from error


def with_resolution(model: keras.Model, resolution: int) -> keras.Model:
    """The same weights behind a model built for `resolution` (its contract says so; its recorded eval view is
    kept). `model` itself when it already has that resolution. Only fully convolutional models (the BiT and
    tiny CNN families) can change resolution; another raises FunmatchError."""
    spec = classifier_contract(model)
    if int(spec["resolution"]) == int(resolution):
        return model
    resized = create(spec["arch"], num_classes=spec["num_classes"], resolution=int(resolution),
                     **dict(getattr(model, "arch_kwargs", {}) or {}))
    try:
        resized.set_weights(model.get_weights())
    except ValueError as error:
        raise FunmatchError(f"{spec['arch']} does not run at {resolution} px with these weights ({error}); "
                            "only fully convolutional models can change resolution") from error
    resized.eval_crop_fraction = spec.get("eval_crop_fraction")
    return resized
