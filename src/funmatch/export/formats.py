"""Deployable files from a `.keras` model, each loaded back and checked against the Keras model.

    funmatch export student.keras --format tflite --out student.tflite

Formats and how each is produced and read back (B, the batch dimension, stays dynamic):

    keras       `.keras` file (model.save)                  -> funmatch.models.load
    savedmodel  folder, `model.export(format="tf_saved_model")` (jax: jax2tf; tensorflow: tf.function)
                                                              -> tf.saved_model.load(...).serve
    tflite      `.tflite` flatbuffer (LiteRT, float32). tensorflow: `model.export(format="litert")`;
                jax: the SavedModel above through `tf.lite.TFLiteConverter` (builtin ops only)
                                                              -> tf.lite.Interpreter
    onnx        `.onnx`. tensorflow: `model.export(format="onnx")` = tf2onnx (needs `tf2onnx`, `onnx`);
                jax: Keras uses `jax2onnx`         -> onnxruntime.InferenceSession (needs `onnxruntime`)
    keras-hub   a keras-hub preset folder (`save_to_preset`) of a keras-hub student (`hub:` / `hub_random:`),
                its preprocessor built from the model's contract (the converter takes RGB pixels in [0, 255]),
                and a model card (README.md, funmatch_card.json: `funmatch.export.card`)
                                                              -> keras_hub.models.ImageClassifier.from_preset
    tflite-int8 `.tflite`, post-training int8 quantization: weights and activations int8, input and output
                float32 (a drop-in for the float file). The SavedModel above through `tf.lite.TFLiteConverter`
                with a representative dataset: `calibration_images` images of a prepared data folder's train
                split through the model's own eval pp (`--data DIR`). Ops without an int8 kernel stay float.
                                                              -> tf.lite.Interpreter

Verification: the artefact and the Keras model are run on the same random images in [-1, 1]
(batches of 1 and 4 at the model's resolution); the export fails with a FunmatchError when
|exported − keras| > atol + rtol · |keras| anywhere (default atol = rtol = 1e-4, float32).
An int8 file cannot match to 1e-4: it is checked by top-1 agreement with the Keras model on the
calibration images (default >= 95 %, `min_agreement`), and its max |difference| is reported.
A format the installed stack cannot produce on the current backend is a FunmatchError that names the
backend or the packages that would (e.g. `pip install tf2onnx onnxruntime`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib
import shutil
import tempfile
from typing import Any, Callable

import numpy as np

from funmatch import outputs
from funmatch.errors import FunmatchError

FORMATS = ("keras", "savedmodel", "tflite", "tflite-int8", "onnx", "keras-hub")
# File name ending each format needs (None: a folder).
SUFFIXES = {"keras": ".keras", "savedmodel": None, "tflite": ".tflite", "tflite-int8": ".tflite", "onnx": ".onnx",
            "keras-hub": None}
# Formats quantized from calibration data (`data_dir`), checked by top-1 agreement instead of atol.
QUANTIZED = ("tflite-int8",)
DEFAULT_CALIBRATION_IMAGES = 300
DEFAULT_MIN_AGREEMENT = 0.95
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
VERIFY_BATCH_SIZES = (1, 4)


def _backend() -> str:
    import keras

    return keras.backend.backend()


def _missing(*modules: str) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


def check_format_supported(format: str, backend: str | None = None) -> None:
    """Raises FunmatchError when `format` cannot be produced (and verified) on `backend` with what is installed."""
    backend = backend or _backend()
    if format not in FORMATS:
        raise FunmatchError(f"--format {format!r}: unknown format; choose one of {', '.join(FORMATS)}")
    if format in ("savedmodel", "tflite", "tflite-int8") and backend not in ("jax", "tensorflow"):
        raise FunmatchError(
            f"--format {format}: not available on the {backend} backend; run with KERAS_BACKEND=tensorflow (or jax)"
        )
    if format == "keras-hub" and _missing("keras_hub"):
        from funmatch.models.optional import INSTALL

        raise FunmatchError(f"--format keras-hub needs keras-hub, which is not installed: {INSTALL}")
    if format == "onnx":
        if backend == "tensorflow":
            missing = _missing("tf2onnx", "onnx", "onnxruntime")
            if missing:
                raise FunmatchError(
                    f"--format onnx on the tensorflow backend needs {', '.join(missing)} "
                    f"(pip install tf2onnx onnx onnxruntime)"
                )
        elif backend == "jax":
            missing = _missing("jax2onnx", "onnxruntime")
            if missing:
                raise FunmatchError(
                    f"--format onnx on the jax backend needs {', '.join(missing)} (pip install jax2onnx onnxruntime); "
                    "or run with KERAS_BACKEND=tensorflow, where Keras exports through tf2onnx "
                    "(pip install tf2onnx onnx onnxruntime)"
                )
        else:
            raise FunmatchError(f"--format onnx: not supported by funmatch on the {backend} backend; use KERAS_BACKEND=tensorflow")


def _check_out_path(out: pathlib.Path, format: str, overwrite: bool) -> None:
    suffix = SUFFIXES[format]
    if suffix is not None and out.suffix != suffix:
        raise FunmatchError(f"--out {out}: a {format} file must end in {suffix}")
    if suffix is None and out.suffix in (".keras", ".tflite", ".onnx", ".h5"):
        raise FunmatchError(f"--out {out}: a {format} is a folder; give a folder name, not a {out.suffix} file")
    if out.is_dir() and suffix is not None:
        raise FunmatchError(f"--out {out}: is a folder, expected a {suffix} file")
    if out.is_file() and suffix is None:
        raise FunmatchError(f"--out {out}: is a file, expected a {format} folder")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FunmatchError(f"--out {out}: {parent} is not a folder")
            if not os.access(parent, os.W_OK):
                raise FunmatchError(f"--out {out}: folder {parent} is not writable")
            break


def input_resolution(model) -> int:
    """The model's square input size: the funmatch contract's, else a static input shape."""
    from funmatch.evaluation.cost import model_resolution

    return model_resolution(model, "model")


def _input_signature(resolution: int):
    import keras

    return [keras.InputSpec(shape=(None, resolution, resolution, 3), dtype="float32", name="images")]


def _remove(path: pathlib.Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _rejected(temporary: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """Moves an artefact that failed its check beside `out` (`NAME.rejected.SUFFIX`), for inspection."""
    kept = out.with_name(f"{out.stem}.rejected{out.suffix}" if out.suffix else f"{out.name}.rejected")
    _remove(kept)
    temporary.rename(kept)
    return kept


# ----------------------------------------------------------------------------------------------
# Writers and readers
# ----------------------------------------------------------------------------------------------


def _write_keras(model, out: pathlib.Path, resolution: int) -> None:
    from funmatch import models

    models.save(model, out)


def _write_savedmodel(model, out: pathlib.Path, resolution: int) -> None:
    model.export(str(out), format="tf_saved_model", verbose=False, input_signature=_input_signature(resolution))


def _write_tflite(model, out: pathlib.Path, resolution: int) -> None:
    if _backend() == "tensorflow":
        model.export(str(out), format="litert", verbose=False, input_signature=_input_signature(resolution))
        return
    # jax: Keras' LiteRT exporter needs TensorFlow; the jax2tf SavedModel converts to builtin TFLite ops.
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as directory:
        saved = os.path.join(directory, "savedmodel")
        _write_savedmodel(model, pathlib.Path(saved), resolution)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            flatbuffer = converter.convert()
        except Exception as error:  # the converter raises ConverterError and others
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise FunmatchError(
                f"--format tflite: the TFLite converter failed on the jax SavedModel ({first}); "
                "try KERAS_BACKEND=tensorflow, where Keras' LiteRT exporter is used"
            ) from error
    out.write_bytes(flatbuffer)


def calibration_images(model, data_dir, *, count: int = DEFAULT_CALIBRATION_IMAGES, split: str = "train") -> np.ndarray:
    """`count` images [N, R, R, 3] float32 of `split` of a prepared data folder, spread over the split (every
    k-th example) and preprocessed with the model's own eval pp (resolution and recorded crop fraction)."""
    from funmatch.data import pipeline
    from funmatch.evaluation.evaluate import model_crop_fraction
    from funmatch.evaluation.logits import eval_pp

    data_dir = pathlib.Path(data_dir)
    if not (data_dir / "dataset.json").is_file():
        raise FunmatchError(f"--data {data_dir}: not a prepared data folder (no dataset.json; run funmatch prepare)")
    if count < 1:
        raise FunmatchError(f"calibration images: need at least 1, got {count}")
    total = pipeline.num_examples(data_dir, split)
    stride = max(1, total // count)
    spec = eval_pp(input_resolution(model), model_crop_fraction(model))
    images = []
    for batch in pipeline.eval_dataset(data_dir, split, spec, 64, process_index=0, process_count=stride):
        mask = np.asarray(batch["_mask"]).astype(bool)
        images.append(np.asarray(batch["image"], np.float32)[mask])
    return np.concatenate(images)[:count]


def _write_tflite_int8(model, out: pathlib.Path, resolution: int, calibration: np.ndarray) -> None:
    import tensorflow as tf

    def representative():
        for image in calibration:
            yield [image[None]]

    with tempfile.TemporaryDirectory() as directory:
        saved = os.path.join(directory, "savedmodel")
        _write_savedmodel(model, pathlib.Path(saved), resolution)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # int8 kernels where they exist, float for the rest; input and output stay float32.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            flatbuffer = converter.convert()
        except Exception as error:  # the converter raises ConverterError and others
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise FunmatchError(f"--format tflite-int8: the TFLite converter failed ({first})") from error
    out.write_bytes(flatbuffer)


def _write_onnx(model, out: pathlib.Path, resolution: int) -> None:
    import warnings

    # tf2onnx logs every graph rewrite at WARNING, and Keras' numpy-2 patch of it warns about np.object.
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(out), format="onnx", verbose=False, input_signature=_input_signature(resolution))


def _write_keras_hub(model, out: pathlib.Path, resolution: int) -> None:
    """The keras-hub ImageClassifier inside `model`, with a preprocessor made from its contract, as a preset."""
    from funmatch.models.hub import hub_task

    task = hub_task(model)
    if task is None:
        raise FunmatchError(f"--format keras-hub: the model ({getattr(model, 'arch', model.name)}) is not a keras-hub "
                            "model; students built from a preset (student=hub:PRESET) can be written as one")
    preprocessing = model.preprocessing
    if preprocessing["channel_order"] != "rgb":
        raise FunmatchError("--format keras-hub: keras-hub image converters take RGB; this model takes BGR")
    preprocessor_class = type(task).preprocessor_cls
    converter = preprocessor_class.image_converter_cls(
        image_size=(resolution, resolution), scale=list(preprocessing["scale"]), offset=list(preprocessing["offset"]),
        interpolation=preprocessing["interpolation"], antialias=preprocessing["antialias"])
    task.preprocessor = preprocessor_class(image_converter=converter)
    try:
        task.save_to_preset(str(out))
    finally:
        task.preprocessor = None  # funmatch feeds the model itself


def _read_keras_hub(path: pathlib.Path) -> Callable[[np.ndarray], np.ndarray]:
    """Runs the preset as keras-hub users do: its own preprocessor on RGB pixels in [0, 255]."""
    import keras_hub

    loaded = keras_hub.models.ImageClassifier.from_preset(str(path))
    return lambda images: np.asarray(loaded.predict((images + 1.0) * 127.5, verbose=0))


def _write_card(model, model_path, out: pathlib.Path) -> None:
    import json

    from funmatch.export.card import model_card, render_markdown

    card = model_card(model, model_path)
    title = pathlib.Path(model_path).stem if model_path is not None else model.name
    (out / "funmatch_card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    (out / "README.md").write_text(render_markdown(card, title))


def _read_keras(path: pathlib.Path) -> Callable[[np.ndarray], np.ndarray]:
    from funmatch import models

    loaded = models.load(path)
    return lambda images: np.asarray(loaded.predict_on_batch(images))


def _read_savedmodel(path: pathlib.Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return lambda images: np.asarray(loaded.serve(tf.constant(images)))


def _read_tflite(path: pathlib.Path) -> Callable[[np.ndarray], np.ndarray]:
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        # tf.lite.Interpreter warns that it moves to ai-edge-litert; it still ships with TF 2.21.
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    (input_detail,) = interpreter.get_input_details()
    output_index = interpreter.get_output_details()[0]["index"]

    def run(images: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(input_detail["index"], images.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(input_detail["index"], images)
        interpreter.invoke()
        return np.array(interpreter.get_tensor(output_index))

    return run


def _read_onnx(path: pathlib.Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda images: np.asarray(session.run(None, {input_name: images})[0])


WRITERS = {"keras": _write_keras, "savedmodel": _write_savedmodel, "tflite": _write_tflite, "onnx": _write_onnx,
           "keras-hub": _write_keras_hub}
READERS = {"keras": _read_keras, "savedmodel": _read_savedmodel, "tflite": _read_tflite, "tflite-int8": _read_tflite,
           "onnx": _read_onnx, "keras-hub": _read_keras_hub}


def load_exported(path, format: str) -> Callable[[np.ndarray], np.ndarray]:
    """A function images [B, R, R, 3] float32 -> logits [B, C] (numpy) running the exported artefact."""
    if format not in READERS:
        raise FunmatchError(f"--format {format!r}: unknown format; choose one of {', '.join(FORMATS)}")
    return READERS[format](pathlib.Path(path))


def _path_size(path: pathlib.Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


# ----------------------------------------------------------------------------------------------
# Export + verification
# ----------------------------------------------------------------------------------------------


def export_model(
    model,
    out,
    format: str,
    *,
    overwrite: bool = False,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    seed: int = 0,
    data_dir=None,
    calibration_count: int = DEFAULT_CALIBRATION_IMAGES,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
) -> dict[str, Any]:
    """Writes `model` (a `.keras` path or Keras model) as `format` at `out`, reloads it and compares.

    Returns {"format", "path", "backend", "resolution", "size_bytes", "max_abs_diff", "atol", "rtol",
    "num_images"}: `max_abs_diff` is the largest |exported − keras| over batches of 1 and 4 random
    images in [-1, 1]. Raises FunmatchError when that exceeds atol + rtol · |keras| (the artefact
    is left in place for inspection), or when the format is not available here.

    A quantized format (`tflite-int8`) needs `data_dir`, a prepared data folder whose train split gives
    `calibration_count` calibration images; it is checked on those images by top-1 agreement with the
    Keras model (>= `min_agreement`) instead of atol/rtol, and the result adds "agreement_top1",
    "min_agreement" and "calibration_images" (num_images counts them).
    """
    from funmatch.evaluation.cost import resolve_model

    backend = _backend()
    check_format_supported(format, backend)
    out = pathlib.Path(out)
    _check_out_path(out, format, overwrite)
    folder = SUFFIXES[format] is None
    outputs.check_output(out, kind="folder" if folder else "file", overwrite=overwrite,
                         inputs={"MODEL": model if isinstance(model, (str, os.PathLike)) else None, "--data": data_dir})
    model, model_path = resolve_model(model, "model")
    resolution = input_resolution(model)

    if format in QUANTIZED:
        if data_dir is None:
            raise FunmatchError(f"--format {format} needs --data DIR: a prepared data folder whose train split calibrates the int8 ranges")
        calibration = calibration_images(model, data_dir, count=calibration_count)

    # Written beside `out` and checked there; only a checked artefact replaces the old one (by a rename).
    out.parent.mkdir(parents=True, exist_ok=True)
    outputs.remove_leftovers(out)
    temporary = outputs.temporary_name(out)
    _remove(temporary)
    try:
        if format in QUANTIZED:
            _write_tflite_int8(model, temporary, resolution, calibration)
            result = _check_quantized(model, temporary, out, format, backend, resolution, calibration, min_agreement)
        else:
            WRITERS[format](model, temporary, resolution)
            result = _check_float(model, temporary, out, format, backend, resolution, seed, atol, rtol)
            if format == "keras-hub":  # a preset travels with its model card
                _write_card(model, model_path, temporary)
        if folder:
            outputs.write_marker(temporary, "export")
        outputs.swap_in(temporary, out)
    finally:
        if temporary.exists():
            _remove(temporary)
    result["size_bytes"] = _path_size(out)
    return result


def _check_float(model, temporary, out, format, backend, resolution, seed, atol, rtol) -> dict[str, Any]:
    """Reloads the artefact at `temporary` and compares it with `model` on random images (see export_model)."""
    run_exported = load_exported(temporary, format)

    random = np.random.default_rng(seed)
    worst, worst_excess, num_images = 0.0, -np.inf, 0
    for batch_size in VERIFY_BATCH_SIZES:
        images = random.uniform(-1, 1, (batch_size, resolution, resolution, 3)).astype(np.float32)
        expected = np.asarray(model.predict_on_batch(images), np.float64)
        actual = np.asarray(run_exported(images), np.float64)
        if actual.shape != expected.shape:
            raise FunmatchError(f"--out {out}: the {format} artefact returns shape {actual.shape}, Keras {expected.shape}")
        difference = np.abs(actual - expected)
        worst = max(worst, float(difference.max()))
        worst_excess = max(worst_excess, float((difference - (atol + rtol * np.abs(expected))).max()))
        num_images += batch_size
    if not worst_excess <= 0:  # also catches nan
        kept = _rejected(temporary, out)
        raise FunmatchError(
            f"--out {out}: the {format} artefact differs from the Keras model by up to {worst:.3g} "
            f"(tolerance atol {atol:g} + rtol {rtol:g}·|logit|); it is left for inspection at {kept}, --out is unchanged"
        )
    return {**_describe(format, out, backend, resolution, worst), "atol": atol, "rtol": rtol, "num_images": num_images}


def _describe(format, out, backend, resolution, max_abs_diff) -> dict[str, Any]:
    """The result's common fields; "size_bytes" is filled in once the artefact is at `out`."""
    return {"format": format, "path": str(out), "backend": backend, "resolution": resolution,
            "size_bytes": None, "max_abs_diff": max_abs_diff}


def _check_quantized(model, temporary, out, format, backend, resolution, calibration, min_agreement) -> dict[str, Any]:
    run_exported = load_exported(temporary, format)
    expected, actual = [], []
    for start in range(0, len(calibration), 32):
        batch = calibration[start:start + 32]
        expected.append(np.asarray(model.predict_on_batch(batch), np.float64))
        actual.append(np.asarray(run_exported(batch), np.float64))
    expected, actual = np.concatenate(expected), np.concatenate(actual)
    if actual.shape != expected.shape:
        raise FunmatchError(f"--out {out}: the {format} artefact returns shape {actual.shape}, Keras {expected.shape}")
    agreement = float(np.mean(actual.argmax(-1) == expected.argmax(-1)))
    worst = float(np.abs(actual - expected).max())
    result = {**_describe(format, out, backend, resolution, worst), "agreement_top1": agreement,
              "min_agreement": min_agreement, "calibration_images": len(calibration), "num_images": len(calibration)}
    if not agreement >= min_agreement:
        kept = _rejected(temporary, out)
        raise FunmatchError(
            f"--out {out}: the {format} artefact agrees with the Keras model on {100 * agreement:.1f} % of the "
            f"{len(calibration)} calibration images (top-1; needed {100 * min_agreement:g} %); it is left for "
            f"inspection at {kept}, --out is unchanged"
        )
    return result
