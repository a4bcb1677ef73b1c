"""keras-hub image classifiers as funmatch models: a preset's backbone and head, its own preprocessing.

    classifier = hub_classifier("path/to/preset", num_classes=10)     # a funmatch Classifier
    hub_classifier("hf://user/preset", num_classes=10, load_weights=False)  # its architecture, random init

A preset is a local folder written by `save_to_preset` (config.json, metadata.json, weights, and for a
classifier task.json, preprocessor.json, image_converter.json), or a `kaggle://` / `hf://` handle or
keras-hub preset name, which keras-hub downloads where the network allows. The preprocessing contract is the
preset's own image converter (`preprocessing.converter_preprocessing`), never guessed. The Classifier's
backbone is the keras-hub `ImageClassifier` without its preprocessor (funmatch's pipelines feed it; the
Classifier maps [-1, 1] to the converter's values). keras-hub is optional: `require_keras_hub` names the
install. May import errors and the models package's own modules.
"""

from __future__ import annotations

import json
import os

from funmatch.errors import FunmatchError
from funmatch.models.optional import INSTALL, require_keras_hub  # noqa: F401 (INSTALL: re-exported)

PREFIX = "hub:"  # registry names: hub:SOURCE (the preset's weights) ...
RANDOM_PREFIX = "hub_random:"  # ... and hub_random:SOURCE (its architecture, random weights)
HANDLES = ("kaggle://", "hf://", "modelscope://")


def is_preset(source: str) -> bool:
    """A keras-hub preset: a handle (kaggle://, hf://) or a folder holding config.json and metadata.json."""
    source = str(source)
    if source.startswith(HANDLES):
        return True
    return os.path.isdir(source) and (os.path.isfile(os.path.join(source, "config.json"))
                                      or os.path.isfile(os.path.join(source, "metadata.json")))


def _read_json(source: str, name: str) -> dict | None:
    path = os.path.join(source, name)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise FunmatchError(f"{source}: damaged keras-hub preset ({name} does not read as JSON: {error})") from None


def check_preset_folder(source: str) -> None:
    """For a local preset folder: FunmatchError when it is damaged or not an image model (before keras-hub
    loads anything). Handles are checked by keras-hub itself."""
    if not os.path.isdir(source):
        return
    config = _read_json(source, "config.json")
    if config is None:
        raise FunmatchError(f"{source}: damaged keras-hub preset (no config.json, the backbone's config)")
    if not isinstance(config, dict) or "class_name" not in config:
        raise FunmatchError(f"{source}: damaged keras-hub preset (config.json names no backbone class)")
    if not any(name.endswith(".weights.h5") or name.endswith(".weights.json") for name in os.listdir(source)):
        raise FunmatchError(f"{source}: damaged keras-hub preset (no model.weights.h5)")


def _error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__


def load_task(source: str, *, num_classes: int | None = None, load_weights: bool = True):
    """The preset's keras-hub `ImageClassifier` (head from task.json where it has one, else a new head of
    `num_classes`) and its `ImageConverter` (None when the preset has none).

    `num_classes` other than the preset's head gives a new, randomly initialised head.
    FunmatchError (one line naming `source`) for a damaged folder, a preset of another kind of model (text,
    audio), or a keras-hub error while loading.
    """
    keras_hub = require_keras_hub(f"keras-hub preset {source}")
    source = str(source)
    check_preset_folder(source)
    local = os.path.isdir(source)
    try:
        loader_backbone = _backbone_class(source)
    except Exception as error:  # keras-hub raises many types for a handle it cannot reach
        raise FunmatchError(f"{source}: could not read the keras-hub preset ({_error_line(error)})") from error
    task_class = _image_classifier_class(keras_hub, loader_backbone)
    if task_class is None:
        raise FunmatchError(
            f"{source}: a keras-hub preset of {loader_backbone.__name__}, which is not an image model "
            "(keras-hub has no ImageClassifier for it); funmatch distils image classifiers")
    kwargs = {}
    preset_classes = preset_num_classes(source)
    if num_classes is not None and num_classes != preset_classes:
        kwargs["num_classes"] = int(num_classes)  # keras-hub then builds a new head (task weights not loaded)
    elif preset_classes is None and local:  # a handle's task.json is keras-hub's to read
        raise FunmatchError(f"{source}: the preset has no classifier head (no task.json); give --num-classes "
                            "for a new head")
    try:
        task = task_class.from_preset(source, load_weights=load_weights, activation=None, **kwargs)
    except Exception as error:  # keras / h5py / keras-hub errors for damaged weights or configs
        what = "damaged keras-hub preset" if local else "could not load the keras-hub preset"
        raise FunmatchError(f"{source}: {what} ({_error_line(error)})") from error
    converter = None
    preprocessor = getattr(task, "preprocessor", None)
    if preprocessor is not None:
        converter = getattr(preprocessor, "image_converter", None)
    task.preprocessor = None  # funmatch's pipelines feed the model; the converter becomes its contract
    return task, converter


def _backbone_class(source: str):
    from keras_hub.src.utils.preset_utils import get_preset_loader

    return get_preset_loader(source).check_backbone_class()


def _image_classifier_class(keras_hub, backbone_class):
    """The keras-hub ImageClassifier subclass for `backbone_class`, or None (a text or audio model)."""
    candidates = [keras_hub.models.ImageClassifier]
    seen = set()
    while candidates:
        cls = candidates.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if getattr(cls, "backbone_cls", None) is backbone_class:
            return cls
        candidates.extend(cls.__subclasses__())
    return None


def preset_num_classes(source: str) -> int | None:
    """The head size of a local preset's task.json (None: no classifier task, or a handle)."""
    if not os.path.isdir(source):
        return None
    task = _read_json(source, "task.json")
    if not task:
        return None
    value = task.get("config", {}).get("num_classes")
    return None if value is None else int(value)


def hub_classifier(source: str, *, num_classes: int | None = None, resolution: int | None = None,
                   load_weights: bool = True, arch: str | None = None, preprocessing: dict | None = None):
    """A funmatch `Classifier` around the preset's `ImageClassifier`, its contract from the preset's image
    converter (or `preprocessing`, when given: an explicit choice overrides the preset's).

    resolution: the contract's (default: the converter's image size, else the backbone's static input size).
    Raises FunmatchError when neither the preset nor `preprocessing` says how inputs are preprocessed.
    """
    from funmatch.models.classifier import Classifier
    from funmatch.models.preprocessing import converter_preprocessing, normalize

    task, converter = load_task(source, num_classes=num_classes, load_weights=load_weights)
    if preprocessing is None:
        if converter is None:
            raise FunmatchError(f"{source}: the preset has no image converter (image_converter.json); give "
                                "--preprocessing (its value range or mean/std)")
        preprocessing = converter_preprocessing(converter, source)
    preprocessing = normalize(preprocessing)
    size = resolution or _converter_size(converter) or _static_size(task)
    if not size:
        raise FunmatchError(f"{source}: neither the preset's image converter nor its backbone fixes an input "
                            "size; give --resolution")
    classes = int(task.num_classes)
    name = arch or PREFIX + source
    return Classifier(task, arch=name, num_classes=classes, resolution=int(size), preprocessing=preprocessing,
                      eval_crop_fraction=preprocessing["crop_fraction"], name="hub_classifier")


def _converter_size(converter) -> int | None:
    size = getattr(converter, "image_size", None) if converter is not None else None
    if size and size[0] and size[0] == size[1]:
        return int(size[0])
    return None


def _static_size(model) -> int | None:
    shape = getattr(model, "input_shape", None)
    if shape and len(shape) == 4 and shape[1] and shape[1] == shape[2]:
        return int(shape[1])
    return None


def hub_task(model):
    """The keras-hub ImageClassifier inside a funmatch Classifier, or None."""
    try:
        import keras_hub
    except ImportError:
        return None
    backbone = getattr(model, "backbone", None)
    return backbone if isinstance(backbone, keras_hub.models.ImageClassifier) else None


def parse_name(name: str) -> tuple[str, bool] | None:
    """`hub:SOURCE` -> (SOURCE, True: preset weights); `hub_random:SOURCE` -> (SOURCE, False); else None."""
    for prefix, pretrained in ((PREFIX, True), (RANDOM_PREFIX, False)):
        if name.startswith(prefix):
            source = name[len(prefix):]
            if not source:
                raise FunmatchError(f"model {name!r}: name a keras-hub preset after {prefix!r} "
                                    "(a preset folder, kaggle:// or hf:// handle)")
            return source, pretrained
    return None
