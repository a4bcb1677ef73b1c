"""`Classifier`: every registry model, carrying its preprocessing contract.

A `Classifier` wraps a backbone (a functional Keras model: images -> logits) and stores, in its
config, the contract funmatch needs to feed it correctly: the architecture name, the number of
classes, the expected resolution and the input value range. The contract survives a `.keras`
save and a safe-mode `keras.models.load_model`, so a saved teacher tells the eval pipeline how to
preprocess its inputs.

Every funmatch pipeline hands a model the same thing: its crop window at the contract's resolution, RGB in
[-1, 1]. A model from elsewhere (`funmatch models import`, a keras-hub student) expects its own input: a
value range or mean/std, maybe BGR. Its `preprocessing` (see `funmatch.models.preprocessing`) records that,
and `call` maps the [-1, 1] window to it, one per-channel affine map inside the model: teacher and student
see the same window, each in its own preprocessing (timm renormalises a teacher's batch the same way).
"""

from __future__ import annotations

import os

import keras

from funmatch.errors import FunmatchError

VALUE_RANGE = (-1.0, 1.0)


@keras.saving.register_keras_serializable(package="funmatch")
class Classifier(keras.Model):
    """Images `[B, H, W, 3]` in `value_range` -> logits `[B, num_classes]`.

    Args:
      backbone: a Keras model mapping images to logits `[B, num_classes]`.
      arch: registry name (e.g. "bit_r50x1"); with `num_classes` and `resolution`, the contract.
      num_classes: number of logits.
      resolution: the square input size the model expects (eval pipelines resize/crop to it).
      value_range: (low, high) of the input pixels; funmatch models all use (-1, 1).
      arch_kwargs: the keyword arguments given to `funmatch.models.create` (for the record).
      eval_crop_fraction: the evaluation view the model was scored at by the run that wrote it:
        `resize_small(round(R / f))|central_crop(R)` with f = eval_crop_fraction (None: not recorded).
      preprocessing: the backbone's own input (`funmatch.models.preprocessing.normalize`): RGB pixels in
        [0, 255], channel order, then `pixel * scale + offset` per channel. None: the backbone takes [-1, 1].
    """

    def __init__(
        self,
        backbone: keras.Model,
        arch: str,
        num_classes: int,
        resolution: int,
        value_range=VALUE_RANGE,
        arch_kwargs: dict | None = None,
        eval_crop_fraction: float | None = None,
        preprocessing: dict | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.arch = str(arch)
        self.num_classes = int(num_classes)
        self.resolution = int(resolution)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.arch_kwargs = dict(arch_kwargs or {})
        self.eval_crop_fraction = None if eval_crop_fraction is None else float(eval_crop_fraction)
        from funmatch.models.preprocessing import normalize

        self.preprocessing = None if preprocessing is None else normalize(preprocessing)
        if keras.backend.backend() == "tensorflow":
            native_grouped_convs(backbone)
        if backbone.built:
            # The functional backbone already owns its variables; nothing to build here.
            self.built = True

    def build(self, input_shape=None):
        if not self.backbone.built:
            self.backbone.build(input_shape)
        self.built = True

    def call(self, images, training=None):
        if self.preprocessing is not None:
            from funmatch.models.preprocessing import to_model_input

            images = to_model_input(images, self.preprocessing)
        return self.backbone(images, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    @property
    def contract(self) -> dict:
        out = {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "resolution": self.resolution,
            "value_range": self.value_range,
            "eval_crop_fraction": self.eval_crop_fraction,
        }
        if self.preprocessing is not None:  # a model from elsewhere: what its backbone itself takes
            out["preprocessing"] = dict(self.preprocessing)
        return out

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "arch": self.arch,
            "num_classes": self.num_classes,
            "resolution": self.resolution,
            "value_range": list(self.value_range),
            "arch_kwargs": dict(self.arch_kwargs),
        }
        if self.eval_crop_fraction is not None:  # absent in files written before it was recorded
            config["eval_crop_fraction"] = self.eval_crop_fraction
        if self.preprocessing is not None:
            config["preprocessing"] = dict(self.preprocessing)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def native_grouped_convs(model: keras.Model) -> int:
    """Runs each grouped `Conv2D` of `model` (channels last) on TensorFlow's own kernels; returns how many.

    TensorFlow has no CPU kernel for grouped convolutions, and Keras compiles each one with XLA on its own,
    forward and backward, which is slow: one 3x3 grouped convolution on [128, 24, 24, 64], forward and
    backward, took 1.4 s of CPU with 2 groups and 19.6 s with 32 groups, against 55-99 ms for one convolution
    per group (`benchmarks/grouped_convs.py`, one core, 2026-12-07). So:

    * one input channel per group (a depthwise convolution written as `Conv2D(groups=C)`, as keras-hub's
      MobileNet, CSPNet and HGNetV2 write theirs): `ops.depthwise_conv`, the same kernel reshaped from
      (kh, kw, 1, C * m) to (kh, kw, C, m), the same output channels in the same order. A keras-hub
      MobileNetV3-Small-style student at 48 px: 1.55 -> 0.15 CPU s per train step of 128; the same for
      `keras.applications`' ConvNeXt: ConvNeXtTiny's forward pass at 112 px 126 -> 21 CPU ms per image;
    * several input channels per group (ResNeXt, RegNet): one convolution per group, concatenated.

    The weights, the config and the saved file do not change (`Classifier` calls this for the TensorFlow
    backend; JAX has grouped convolutions of its own).
    """
    from keras import ops

    count = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if (type(layer) is not keras.layers.Conv2D or int(getattr(layer, "groups", 1)) <= 1
                or layer.data_format != "channels_last"):
            continue
        count += 1
        if getattr(layer, "_funmatch_native", False):  # a second Classifier around the same backbone
            continue

        def convolution_op(inputs, kernel, layer=layer):
            height, width, per_group, filters = kernel.shape
            options = dict(strides=layer.strides, padding=layer.padding, dilation_rate=layer.dilation_rate,
                           data_format="channels_last")
            if per_group == 1:
                depthwise = ops.reshape(kernel, (height, width, layer.groups, filters // layer.groups))
                return ops.depthwise_conv(inputs, depthwise, **options)
            parts = zip(ops.split(inputs, layer.groups, axis=-1), ops.split(kernel, layer.groups, axis=-1))
            return ops.concatenate([ops.conv(part, weights, **options) for part, weights in parts], axis=-1)

        layer.convolution_op = convolution_op
        layer._funmatch_native = True
    return count


def contract(model: keras.Model) -> dict:
    """The preprocessing contract of a funmatch model: `{"arch": str, "num_classes": int, "resolution": int,
    "value_range": (-1.0, 1.0), "eval_crop_fraction": float | None}` (the run's evaluation view, if recorded),
    plus `"preprocessing"` (the backbone's own input, see `Classifier`) for a model from elsewhere.

    Raises FunmatchError for a model that was not made by `funmatch.models.create` (no contract).
    """
    if isinstance(model, Classifier):
        return model.contract
    raise FunmatchError(
        f"model {getattr(model, 'name', model)!r} carries no funmatch preprocessing contract "
        "(build it with funmatch.models.create or load a .keras file written by funmatch)"
    )


def save(model: keras.Model, path: str | os.PathLike) -> None:
    """Writes `model` to a `.keras` file (the contract is part of its config)."""
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise FunmatchError(f"{path}: a funmatch model file must end in .keras")
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    model.save(path)


def load(path: str | os.PathLike) -> keras.Model:
    """Loads a `.keras` model with Keras safe mode and funmatch's layers registered.

    Raises FunmatchError naming `path` and the cause when the file is missing, is not a `.keras` archive
    (random bytes, truncated), or does not load (e.g. safe mode refusing a function it would have to run).
    """
    import warnings
    import zipfile

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FunmatchError(f"{path}: model file not found")
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        raise FunmatchError(f"{path}: not a .keras file (not a zip archive: truncated, damaged or another format)")
    names = _config_names(path) if os.path.isfile(path) else b""
    if b'"keras_hub' in names:
        from funmatch.models.optional import require_keras_hub

        require_keras_hub(f"{path}: a keras-hub model")  # importing it registers its classes with Keras
    if b'"funmatch>SavedModelLayer"' in names:
        from funmatch.models.savedmodel import _savedmodel_layer_class

        _savedmodel_layer_class()  # registers the layer of an imported SavedModel
    try:
        with warnings.catch_warnings():
            # A keras-hub task records its compile settings; funmatch compiles what it trains itself.
            warnings.filterwarnings("ignore", message=r"`compile\(\)` was not called as part of model loading")
            return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types here; the user needs the path and cause.
        raise FunmatchError(f"{path}: could not load the model ({load_error_cause(error)})") from error


def _config_names(path: str) -> bytes:
    """The `.keras` archive's config.json (read from the zip, nothing imported; b"" when unreadable): which
    optional classes (keras-hub's, an imported SavedModel's) must be registered before loading."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read("config.json")
    except (KeyError, zipfile.BadZipFile, OSError):
        return b""  # keras.models.load_model names the damage


def load_error_cause(error: BaseException) -> str:
    """The innermost cause of a Keras loading error, in one line.

    Keras nests the real cause ("Could not locate function 'system'", with the object's config) under
    generic "could not be deserialized properly" lines, one per enclosing layer; the user needs the last.
    """
    import re

    text = str(error).strip()
    if not text:
        return type(error).__name__
    cause = text.split("Exception encountered:")[-1].strip()
    first = cause.splitlines()[0] if cause else text.splitlines()[0]
    module = re.search(r"'module': '([\w.]+)'.*?'config': '(\w+)'", cause)
    if "Could not locate" in first and module:
        return (f"it names the function {module.group(1)}.{module.group(2)}, which is neither a Keras nor a "
                "funmatch object; Keras' safe mode refused to load it")
    first = re.sub(r"\s*Make sure custom classes.*", "", first)
    return f"{type(error).__name__}: {first[:300]}"
