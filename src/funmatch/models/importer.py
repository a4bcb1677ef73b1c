"""`import_model`: any Keras image classifier -> a funmatch model file with an explicit preprocessing contract.

Sources (`source_kind` tells them apart):

    keras-hub preset   a preset folder, `kaggle://...` / `hf://...` handle, or `hub:NAME`: its ImageClassifier;
                       the contract is its own image converter (resolution, scale/offset, interpolation)
    keras.applications `keras.applications.NAME` (e.g. keras.applications.ResNet50) with `weights=FILE`
                       (with its top); the contract is that family's `preprocess_input` mode
    .keras file        any Keras model images -> logits; `preprocessing` must be given (a file does not say)
    SavedModel folder  a TensorFlow SavedModel with a `serving_default` signature (TensorFlow backend), kept
                       by path in the .keras file (`savedmodel.SavedModelLayer`, inference only) with the
                       folder's content hash: it loads only while the folder holds the bytes that were
                       imported (the user vouched for them; Keras' own TFSMLayer is refused by safe mode);
                       `preprocessing` must be given

The imported model is checked on random images before it is written: one [batch, classes] output of
logits (not probabilities), and the class count asked for. Each failure is one FunmatchError line naming
the source. May import errors and the models package's own modules.
"""

from __future__ import annotations

import os

import numpy as np

from funmatch.errors import FunmatchError
from funmatch.models import hub
from funmatch.models.preprocessing import APPLICATION_MODES, normalize, spec_preprocessing

APPLICATIONS_PREFIX = "keras.applications."
# keras.applications module -> its `preprocess_input` mode (`raw`: the network rescales inside itself).
APPLICATION_MODULE_MODES = {
    "resnet": "caffe", "vgg16": "caffe", "vgg19": "caffe",
    "resnet_v2": "tf", "mobilenet": "tf", "mobilenet_v2": "tf", "inception_v3": "tf",
    "inception_resnet_v2": "tf", "xception": "tf", "nasnet": "tf",
    "densenet": "torch",
    "mobilenet_v3": "raw", "efficientnet": "raw", "efficientnet_v2": "raw", "convnext": "raw", "regnet": "raw",
}
APPLICATION_RESOLUTIONS = {"inception_v3": 299, "inception_resnet_v2": 299, "xception": 299}


def source_kind(source: str) -> str:
    """"hub", "applications", "keras" or "savedmodel"; FunmatchError for anything else."""
    source = str(source)
    if source.startswith(APPLICATIONS_PREFIX):
        return "applications"
    if source.startswith(hub.PREFIX) or hub.is_preset(source):
        return "hub"
    if os.path.isdir(source):
        if os.path.isfile(os.path.join(source, "saved_model.pb")):
            return "savedmodel"
        raise FunmatchError(f"{source}: a folder that is neither a keras-hub preset (no config.json, "
                            "metadata.json) nor a TensorFlow SavedModel (no saved_model.pb)")
    if source.endswith(".keras"):
        if not os.path.isfile(source):
            raise FunmatchError(f"{source}: model file not found")
        return "keras"
    if not os.path.exists(source):
        raise FunmatchError(f"{source}: not found (expected a keras-hub preset folder or handle, "
                            f"{APPLICATIONS_PREFIX}NAME, a .keras file or a SavedModel folder)")
    raise FunmatchError(f"{source}: not a .keras file, a keras-hub preset or a SavedModel folder")


def import_model(source: str, *, num_classes: int | None = None, resolution: int | None = None,
                 preprocessing: str | dict | None = None, weights: str | None = None,
                 crop_fraction: float | None = None):
    """A funmatch `Classifier` for `source` (see the module docstring), checked on random images.

    Args:
      num_classes: the head size wanted. A keras-hub preset or keras.applications network with another head
        gets a new (random) head of this size; for a .keras file or SavedModel it must match the output.
      resolution: the contract's (default: the preset's converter size, the network's static input, 224).
      preprocessing: a spec string (`preprocessing.SPEC_HELP`) or dict overriding the source's own.
      weights: the weights file of a keras.applications network (with its top).
      crop_fraction: the evaluation view's crop fraction to record (default: the preprocessing's).
    """
    kind = source_kind(source)
    if isinstance(preprocessing, str):
        preprocessing = spec_preprocessing(preprocessing)
    if kind == "hub":
        preset = source[len(hub.PREFIX):] if source.startswith(hub.PREFIX) else source
        model = hub.hub_classifier(preset, num_classes=num_classes, resolution=resolution,
                                   preprocessing=preprocessing, arch=hub.PREFIX + preset)
    elif kind == "applications":
        model = _import_application(source, num_classes, resolution, preprocessing, weights)
    else:
        if preprocessing is None:
            raise FunmatchError(f"{source}: a {'.keras file' if kind == 'keras' else 'SavedModel'} does not say how "
                                "its inputs are preprocessed; give --preprocessing (e.g. 'range=0,1' or "
                                "'mean=0.485,0.456,0.406 std=0.229,0.224,0.225')")
        backbone = _load_keras(source) if kind == "keras" else _load_savedmodel(source, resolution)
        size = resolution or hub._static_size(backbone)
        if not size:
            raise FunmatchError(f"{source}: the model has no static square input size; give --resolution")
        model = _wrap(backbone, f"{kind}:{os.path.basename(os.path.normpath(source))}", size, preprocessing,
                      source)
    if crop_fraction is not None:
        model.eval_crop_fraction = float(crop_fraction)
        model.preprocessing = {**model.preprocessing, "crop_fraction": float(crop_fraction)}
    check_classifier(model, source, num_classes)
    return model


def _wrap(backbone, arch: str, resolution: int, preprocessing: dict, source: str):
    from funmatch.models.classifier import Classifier

    outputs = getattr(backbone, "outputs", None)
    classes = outputs[0].shape[-1] if outputs and len(outputs) == 1 and len(outputs[0].shape) == 2 else None
    if classes is None:
        classes = _probe_classes(backbone, resolution, source)
    return Classifier(backbone, arch=arch, num_classes=int(classes), resolution=int(resolution),
                      preprocessing=preprocessing, eval_crop_fraction=preprocessing.get("crop_fraction"),
                      name="imported_classifier")


def _probe_classes(backbone, resolution: int, source: str) -> int:
    output = backbone(np.zeros((1, resolution, resolution, 3), np.float32))
    shape = tuple(np.shape(_single_output(output, source)))
    if len(shape) != 2:
        raise FunmatchError(f"{source}: outputs shape {shape}, not [batch, classes] logits: not an image classifier")
    return int(shape[1])


def _single_output(output, source: str):
    if isinstance(output, dict):
        if len(output) != 1:
            raise FunmatchError(f"{source}: returns {len(output)} outputs ({', '.join(sorted(output))}); "
                                "an image classifier returns one, its logits")
        output = next(iter(output.values()))
    if isinstance(output, (list, tuple)):
        if len(output) != 1:
            raise FunmatchError(f"{source}: returns {len(output)} outputs; an image classifier returns one, its logits")
        output = output[0]
    return output


def _load_keras(source: str):
    import keras

    from funmatch.models.classifier import Classifier, load

    model = load(source)
    if isinstance(model, Classifier):
        raise FunmatchError(f"{source}: already a funmatch model (it carries its contract); use it as it is")
    if not isinstance(model, keras.Model):
        raise FunmatchError(f"{source}: holds a {type(model).__name__}, not a Keras model")
    return model


def _load_savedmodel(source: str, resolution: int | None):
    import keras

    if keras.backend.backend() != "tensorflow":
        raise FunmatchError(f"{source}: a SavedModel runs on the TensorFlow backend only (KERAS_BACKEND=tensorflow)")
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(source)
    except Exception as error:  # TensorFlow raises several types for a damaged folder
        raise FunmatchError(f"{source}: could not load the SavedModel ({hub._error_line(error)})") from error
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise FunmatchError(f"{source}: the SavedModel has no serving signature ('serving_default'); save it "
                            "with one (tf.saved_model.save(model, path, signatures=...))")
    specs = list(signature.structured_input_signature[1].values()) + list(signature.structured_input_signature[0])
    if len(specs) != 1 or len(specs[0].shape) != 4:
        raise FunmatchError(f"{source}: the serving signature takes {len(specs)} inputs; an image classifier "
                            "takes one, images [batch, height, width, 3]")
    size = resolution or (specs[0].shape[1] if specs[0].shape[1] == specs[0].shape[2] else None)
    if not size:
        raise FunmatchError(f"{source}: the serving signature has no static square input size; give --resolution")
    from funmatch.models.savedmodel import SavedModelLayer, folder_sha256

    layer = SavedModelLayer(os.path.abspath(source), folder_sha256(source), name="savedmodel_serving_default")
    inputs = keras.Input((int(size), int(size), 3), name="images")
    output = _single_output(layer(inputs), source)
    return keras.Model(inputs, output, name="savedmodel")


def _import_application(source: str, num_classes, resolution, preprocessing, weights):
    import keras

    name = source[len(APPLICATIONS_PREFIX):]
    constructor = getattr(keras.applications, name, None)
    if constructor is None or not callable(constructor) or not name[:1].isupper():
        known = sorted(n for n in dir(keras.applications) if n[:1].isupper())
        raise FunmatchError(f"{source}: no such keras.applications network (known: {', '.join(known)})")
    module = constructor.__module__.rsplit(".", 1)[-1]
    mode = APPLICATION_MODULE_MODES.get(module)
    if preprocessing is None:
        if mode is None:
            raise FunmatchError(f"{source}: funmatch does not know the preprocessing of keras.applications.{module}; "
                                "give --preprocessing")
        preprocessing = {**APPLICATION_MODES[mode], "source": f"keras.applications.{module}.preprocess_input "
                                                              f"(mode {mode!r})"}
    preprocessing = normalize(preprocessing)
    if weights is None:
        raise FunmatchError(f"{source}: give --weights FILE (the network's weights with its top; funmatch "
                            "cannot download them)")
    if not os.path.isfile(weights):
        raise FunmatchError(f"--weights {weights}: no such file")
    size = int(resolution or APPLICATION_RESOLUTIONS.get(module, 224))
    classes = int(num_classes or 1000)
    try:
        backbone = constructor(input_shape=(size, size, 3), include_top=True, weights=weights, classes=classes,
                               classifier_activation=None)
    except Exception as error:  # ValueError / OSError / KeyError for another network's file or head size
        raise FunmatchError(f"--weights {weights}: not {name}'s weights with a {classes}-class top "
                            f"({hub._error_line(error)})") from error
    return _wrap(backbone, f"keras.applications.{name}", size, preprocessing, source)


def check_classifier(model, source: str, num_classes: int | None = None, *, seed: int = 0) -> None:
    """FunmatchError (one line) unless `model` maps images [B, R, R, 3] to logits [B, C] (C = num_classes when
    given): not probabilities, finite."""
    resolution = int(model.resolution)
    images = np.random.default_rng(seed).uniform(-1, 1, (2, resolution, resolution, 3)).astype(np.float32)
    try:
        output = model(images, training=False)
    except FunmatchError:
        raise
    except Exception as error:  # the source's own layers refusing the input
        raise FunmatchError(f"{source}: does not run on images [2, {resolution}, {resolution}, 3] "
                            f"({hub._error_line(error)})") from error
    output = np.asarray(_single_output(output, source), np.float64)
    if output.ndim != 2 or output.shape[0] != 2:
        raise FunmatchError(f"{source}: outputs shape {tuple(output.shape[1:])} per batch, not [classes] logits: "
                            "not an image classifier")
    if num_classes is not None and output.shape[1] != int(num_classes):
        raise FunmatchError(f"{source}: the model has {output.shape[1]} classes, --num-classes {num_classes}")
    if not np.isfinite(output).all():
        raise FunmatchError(f"{source}: outputs non-finite values on random images")
    if (output >= 0).all() and np.allclose(output.sum(-1), 1.0, atol=1e-3) and output.shape[1] > 1:
        raise FunmatchError(f"{source}: outputs probabilities (each row sums to 1: a softmax), not logits; "
                            "funmatch needs the logits (remove the final softmax, e.g. classifier_activation=None)")


def save_atomic(model, out) -> None:
    """Writes `model` to the `.keras` file `out` through a temporary file in the same folder (never a partial
    file at `out`)."""
    from funmatch.models.classifier import save

    out = os.fspath(out)
    if not out.endswith(".keras"):
        raise FunmatchError(f"--out {out}: a funmatch model file must end in .keras")
    from funmatch.outputs import staged

    with staged(out, command="models import", kind="file") as temporary:
        save(model, temporary)


def init_model_file(init: str, num_classes: int, workdir) -> str:
    """`funmatch teacher --init`'s file: an official `.npz` checkpoint, a URL or tag and a funmatch `.keras`
    file pass through (the `.keras` file's class count checked against the data's); a keras-hub preset
    (folder, handle, `hub:NAME`) is imported with a head of `num_classes` into `workdir/.init.keras` once
    (reruns resume from the same file; hidden, as the run's own files decide what the workdir holds). FunmatchError for a file that cannot be fine-tuned."""
    import keras

    from funmatch.models.classifier import Classifier, load

    init = str(init)
    if init.endswith(".keras") and os.path.isfile(init):
        model = load(init)
        if not isinstance(model, Classifier):
            raise FunmatchError(f"--init {init}: carries no funmatch preprocessing contract; import it first "
                                f"(funmatch models import {init} --preprocessing ... --out init.keras)")
        if model.num_classes != int(num_classes):
            raise FunmatchError(f"--init {init}: the model has {model.num_classes} classes, the data has "
                                f"{num_classes}; import it with a new head (funmatch models import SOURCE "
                                f"--num-classes {num_classes})")
        return init
    if init.startswith(APPLICATIONS_PREFIX) or not (init.startswith(hub.PREFIX) or hub.is_preset(init)):
        if os.path.isdir(init) and os.path.isfile(os.path.join(init, "saved_model.pb")):
            raise FunmatchError(f"--init {init}: a SavedModel runs inference only and cannot be fine-tuned; use it "
                                "as a teacher (funmatch models import) or start from its Keras model")
        return init  # a checkpoint path, URL or tag: funmatch.models.checkpoints resolves it
    out = os.path.join(os.fspath(workdir), ".init.keras")
    if not os.path.isfile(out):
        keras.utils.set_random_seed(0)  # a new head's initialisation is a function of the seed
        save_atomic(import_model(init, num_classes=int(num_classes)), out)
    return out


def _same_architecture(a: str, b: str) -> bool:
    """Registry names of one architecture: equal, or one keras-hub preset with or without its weights
    (`hub:SOURCE` and `hub_random:SOURCE`)."""
    parsed = [hub.parse_name(name) for name in (a, b)]
    if parsed[0] is not None and parsed[1] is not None:
        return parsed[0][0] == parsed[1][0]
    return a == b


def warm_start(model, path, *, flag: str = "--init") -> None:
    """Copies the weights of the funmatch model file `path` (`init_model_file`'s `.keras` result) into `model`.

    The file must be a model of `model`'s kind: the same architecture (contract `arch`), class count and input
    resolution, and weights of the same shapes; anything else is one FunmatchError line naming `flag`. Only
    weights are copied: the caller's optimizer state and step count are its own.
    """
    from funmatch.models.classifier import Classifier, contract, load

    if not str(path).endswith(".keras"):
        raise FunmatchError(f"{flag} {path}: a student starts from a funmatch .keras file (a student.keras of "
                            "funmatch labels or distill, or funmatch models import output) or a keras-hub preset")
    init = load(path)
    if not isinstance(init, Classifier):
        raise FunmatchError(f"{flag} {path}: carries no funmatch preprocessing contract; import it first "
                            f"(funmatch models import {path} --preprocessing ... --out init.keras)")
    want, have = contract(model), contract(init)
    if not _same_architecture(str(want["arch"]), str(have["arch"])):
        raise FunmatchError(f"{flag} {path}: the model is a {have['arch']}, the student a {want['arch']}; start "
                            f"from a {want['arch']} file or set student={have['arch']}")
    for key, what in (("num_classes", "classes"), ("resolution", "px input resolution")):
        if int(want[key]) != int(have[key]):
            raise FunmatchError(f"{flag} {path}: the model has {have[key]} {what}, the student {want[key]}; "
                                f"start from a file made for this student and data")
    shapes = [tuple(w.shape) for w in model.weights]
    if shapes != [tuple(w.shape) for w in init.weights]:
        raise FunmatchError(f"{flag} {path}: its {have['arch']} has other weights than the student's "
                            f"({len(init.weights)} arrays vs {len(shapes)}; other model options)")
    model.set_weights(init.get_weights())
