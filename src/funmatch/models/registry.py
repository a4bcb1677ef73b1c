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

* keras.applications students from a weights file: `NAME@FILE`, FILE the network's weights without its top
  (keras.applications' `*_notop` file, e.g. ImageNet), under a new head for the dataset's classes.
* keras-hub presets (needs keras-hub, `funmatch.models.hub`): `hub:SOURCE` is the preset's backbone with its
  weights (a pretrained start) and a head for `num_classes` (the preset's own head when the count is the
  same); `hub_random:SOURCE` the same architecture randomly initialised (from the preset's config). SOURCE is
  a preset folder, or a `kaggle://` / `hf://` handle where the network allows. The contract's preprocessing
  is the preset's image converter; default resolution: the converter's image size.

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

DEFAULT_RESOLUTION = {"bit": 128, "tiny": 64, "applications": 224, "hub": None}
_BIT_KWARGS = {"weight_standardization_epsilon", "group_norm_epsilon", "groups", "root_pool_padding"}
_TINY_KWARGS = {"norm"}
_APPLICATION_KWARGS = {"weights", "dropout_rate"}


def list_models() -> list[str]:
    """Names of the registered models (BiT, tiny CNNs, keras.applications)."""
    return BIT_NAMES + TINY_NAMES + list(APPLICATIONS)


def family(name: str) -> str:
    """"bit", "tiny", "applications" or "hub"; FunmatchError (with close names) for an unknown name."""
    from funmatch.models import hub

    if hub.parse_name(name) is not None:
        return "hub"
    application, at, weights = name.partition("@")
    if at and application in APPLICATIONS:
        if not weights:
            raise FunmatchError(f"model {name!r}: name the weights file after '@' (the network without its top)")
        return "applications"
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
    if model_family == "hub":
        from funmatch.models import hub

        _check_kwargs(name, kwargs, set())
        source, pretrained = hub.parse_name(name)
        return hub.hub_classifier(source, num_classes=int(num_classes), resolution=resolution,
                                  load_weights=pretrained, arch=name)
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
    elif "@" in name:
        _check_kwargs(name, kwargs, _APPLICATION_KWARGS - {"weights"})
        backbone = _build_application_from_notop(*name.split("@", 1), num_classes, resolution, **kwargs)
    else:
        _check_kwargs(name, kwargs, _APPLICATION_KWARGS)
        backbone = _build_application(name, num_classes, resolution, **kwargs)
    return Classifier(
        backbone,
        arch=name,
        num_classes=num_classes,
        resolution=resolution,
        arch_kwargs=kwargs,
        name=name.split("@")[0].replace(".", "p"),
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


def _build_application_from_notop(name: str, weights: str, num_classes: int, resolution: int,
                                  dropout_rate: float | None = None) -> keras.Model:
    """keras.applications `name` without its top, `weights` loaded, then global average pooling and a new
    dense head of `num_classes` logits."""
    import os

    if not os.path.isfile(weights):
        raise FunmatchError(f"model {name}@{weights}: weights file not found")
    constructor_name, extra = APPLICATIONS[name]
    constructor = getattr(keras.applications, constructor_name)
    try:
        base = constructor(input_shape=(resolution, resolution, 3), include_top=False, weights=weights,
                           pooling="avg", **extra)
    except Exception as error:  # Keras / h5py raise ValueError, OSError, KeyError ... for another network's file
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise FunmatchError(f"model {name}@{weights}: not the weights of {constructor_name} without its top "
                            f"(keras.applications' *_notop file) ({first})") from error
    features = base.output
    if dropout_rate:
        features = keras.layers.Dropout(dropout_rate, name="head_dropout")(features)
    logits = keras.layers.Dense(num_classes, name="head")(features)
    return keras.Model(base.input, logits, name=constructor_name.lower())


def with_resolution(model: keras.Model, resolution: int) -> keras.Model:
    """The same weights behind a model built for `resolution` (its contract says so; its recorded eval view is
    kept). `model` itself when it already has that resolution. Only fully convolutional models (the BiT and
    tiny CNN families) can change resolution; another raises FunmatchError."""
    spec = classifier_contract(model)
    if int(spec["resolution"]) == int(resolution):
        return model
    if spec.get("preprocessing") is not None:  # a model from elsewhere: the same config at another size
        return _resized_copy(model, int(resolution))
    resized = create(spec["arch"], num_classes=spec["num_classes"], resolution=int(resolution),
                     **dict(getattr(model, "arch_kwargs", {}) or {}))
    try:
        resized.set_weights(model.get_weights())
    except ValueError as error:
        raise FunmatchError(f"{spec['arch']} does not run at {resolution} px with these weights ({error}); "
                            "only fully convolutional models can change resolution") from error
    resized.eval_crop_fraction = spec.get("eval_crop_fraction")
    return resized


def _resized_copy(model: Classifier, resolution: int) -> Classifier:
    """A copy of an imported model (its own config and weights) whose contract says `resolution`; the
    backbone must run at that size (keras-hub's convolutional backbones do; a ViT's fixed patch grid not)."""
    config = model.get_config()
    config["resolution"] = int(resolution)
    resized = Classifier.from_config(config)
    try:
        resized(keras.ops.zeros((1, resolution, resolution, 3)))
        resized.set_weights(model.get_weights())
    except Exception as error:  # shape errors of the backbone's own layers
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise FunmatchError(f"{model.arch} does not run at {resolution} px ({first}); only fully convolutional "
                            "models can change resolution") from error
    return resized
