"""Evaluation: what a distilled student is worth next to its teacher, in accuracy, fidelity and cost.

Building blocks (also used by training):

* `predict_logits` runs a model on the padded eval batches of `funmatch.data.pipeline.eval_dataset`
  and drops the padding with the `_mask` key, so every example is counted exactly once.
* `fidelity_metrics` computes, from logits and labels, accuracy top-1/top-5 of the student (and
  teacher), student–teacher agreement top-1/top-5 and the mean KL(teacher ‖ student) at T = 1,
  through the same `distance` used by the training loss.
* `expected_calibration_error`, `per_class_accuracy`, `measure_latency`, `model_cost`.

The entry point is `evaluate_models(student, teacher=None, data_dir=..., split=...)` (and
`funmatch evaluate`), which returns the report below. Each model is evaluated at its own contract
resolution with the eval pp `decode|resize_small(S)|central_crop(R)|value_range(-1, 1)`, where
S = round(R / crop_fraction) (the paper's 128 / 160 = 0.8 by default; a recipe's own ratio with
`config=`).

Report (JSON; keys are stable, values are plain numbers, strings, lists or null):

    schema            "funmatch.evaluate/1"
    backend           Keras backend ("jax" | "tensorflow")
    device            the device the latency was measured on, e.g. "cpu" or "NVIDIA H100 80GB HBM3"
    data              {data_dir, dataset_name, split, num_examples, num_classes, class_names}
    student, teacher  one block per model (teacher: null when not given):
        path                 the .keras file it was loaded from (null for an in-memory model)
        arch                 registry name from the contract (null without a contract)
        resolution           input size R it was evaluated at (its contract's)
        eval_pp              the pp spec its images went through
        num_examples         examples evaluated (always data.num_examples: no drop, no duplicate)
        accuracy_top1        fraction of examples whose label is the arg-max logit
        accuracy_top5        fraction whose label is among the 5 largest logits (all, with < 5 classes)
        ece                  expected calibration error of the softmax top-1 confidence, 15 equal-width
                             bins ((m-1)/15, m/15], weighted by bin size (Guo et al. 2017)
        params               scalar weights stored (trainable and not; `funmatch.models.count_params`)
        flops_per_image      FLOPs of one R x R image, multiply-add = 2 (`funmatch.models.count_flops`;
                             null when the model is not a functional graph)
        size_bytes           size of the model as a `.keras` file
        latency              null with latency=False, else {"batch_1": L, "batch_64": L}, where
                             L = {batch_size, median_ms, min_ms, repeats, throughput_images_per_sec}:
                             wall time of one compiled forward pass (jax.jit / tf.function with XLA)
                             on random inputs after warm-up, median over `repeats` calls;
                             throughput = batch_size / median
        latency_compiler     "jax.jit" | "tf.function(jit_compile=True)" | "tf.function" (null without latency)
    fidelity          with a teacher: {agreement_top1 (same arg-max), agreement_top5 (the teacher's
                      arg-max among the student's top 5), kl_mean (mean over examples of
                      KL(softmax(teacher) ‖ softmax(student)), T = 1, in nats)}; else null
    per_class         one entry per class, worst first: {class_index, class_name, num_examples,
                      student_accuracy, teacher_accuracy, gap}; gap = student − teacher accuracy.
                      Sorted by gap ascending (by student accuracy without a teacher; teacher_accuracy
                      and gap are then null). Accuracies of a class without examples are null.
    ratios            with a teacher: teacher ÷ student of {params, flops_per_image, size_bytes,
                      latency_batch_1, latency_batch_64 (median ms)}; a value is null where either
                      side is unknown; else null
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import tempfile
import time
from typing import Any, Callable

import numpy as np

from funmatch.errors import FunmatchError

SCHEMA = "funmatch.evaluate/1"
ECE_BINS = 15
# The paper's eval pp: resize_small(160)|central_crop(128).
DEFAULT_CROP_FRACTION = 128 / 160
LATENCY_BATCH_SIZES = (1, 64)


def predict_logits(model, dataset, *, image_key: str = "image", progress: bool = False) -> dict[str, np.ndarray]:
    """Logits [N, C], labels [N] and example indices [N] (when present) of the real examples.

    `dataset` yields dicts with `image_key`, `label` and `_mask` (padding rows have mask 0).
    """
    logits, labels, indices = [], [], []
    iterator = dataset
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(dataset, desc="evaluate", unit="batch", leave=False)
    for batch in iterator:
        mask = np.asarray(batch["_mask"]).astype(bool)
        # numpy in: a tf.Tensor from tf.data cannot enter a jax.jit-ed predict step.
        out = np.asarray(model.predict_on_batch(np.asarray(batch[image_key])), dtype=np.float32)
        logits.append(out[mask])
        labels.append(np.asarray(batch["label"])[mask])
        if "index" in batch:
            indices.append(np.asarray(batch["index"])[mask])
    result = {
        "logits": np.concatenate(logits) if logits else np.zeros((0, 0), np.float32),
        "labels": np.concatenate(labels).astype(np.int64) if labels else np.zeros((0,), np.int64),
    }
    if indices:
        result["index"] = np.concatenate(indices).astype(np.int64)
    return result


def split_logits(model, data_dir, split, spec, batch_size, max_examples=0) -> dict[str, np.ndarray]:
    """Logits of `model` on `split`; with `max_examples`, on a strided subset (every k-th example,
    so that a class-sorted split still gives a subset spread over all classes)."""
    from funmatch.data import pipeline

    total = pipeline.num_examples(data_dir, split)
    stride = -(-total // max_examples) if max_examples and total > max_examples else 1
    # The eval pipeline's process sharding (examples i with i % count == index) gives the strided subset.
    dataset = pipeline.eval_dataset(data_dir, split, spec, batch_size, process_index=0, process_count=stride)
    return predict_logits(model, dataset)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k largest logits."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def fidelity_metrics(student_logits: np.ndarray, labels: np.ndarray, teacher_logits: np.ndarray | None = None, *, prefix: str = "") -> dict[str, Any]:
    """Accuracy of the student; with teacher logits also agreement top-1/top-5 and mean KL (T = 1)."""
    from funmatch.distill.losses import distance

    out = {
        f"{prefix}accuracy": topk_accuracy(student_logits, labels, 1),
        f"{prefix}accuracy_top5": topk_accuracy(student_logits, labels, 5),
        f"{prefix}num_examples": int(len(labels)),
    }
    if teacher_logits is not None:
        for kind, name in (("agree_top1", "agreement"), ("agree_top5", "agreement_top5"), ("kl", "kl")):
            values = np.asarray(distance(student_logits, teacher_logits, kind, temperature=1.0))
            out[f"{prefix}{name}"] = float(np.mean(values)) if len(values) else float("nan")
    return out


# ----------------------------------------------------------------------------------------------
# Metrics on logits (numpy; no Keras)
# ----------------------------------------------------------------------------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 [N, C] (shifted by the row max, so large logits do not overflow)."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, num_bins: int = ECE_BINS) -> float:
    """ECE of the top-1 softmax confidence: sum over bins of |accuracy − mean confidence| · (count / N).

    Bins are equal-width, bin m (1..num_bins) holding confidences in ((m-1)/M, m/M] (Guo et al.,
    "On Calibration of Modern Neural Networks", 2017). Logits [N, C], labels [N]; nan when N = 0.
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    probabilities = softmax(logits)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    # ceil(c * M) - 1 puts a confidence exactly on an upper edge m/M into bin m (right-closed).
    bins = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    total = 0.0
    for m in range(num_bins):
        in_bin = bins == m
        count = int(in_bin.sum())
        if count:
            total += abs(correct[in_bin].mean() - confidence[in_bin].mean()) * count
    return float(total / len(labels))


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 accuracy [num_classes] with nan for classes without examples, example counts [num_classes])."""
    labels = np.asarray(labels, np.int64)
    predicted = np.asarray(logits).argmax(axis=1) if len(labels) else np.zeros((0,), np.int64)
    counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
    hits = np.bincount(labels, weights=(predicted == labels).astype(np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    return accuracy, counts


def per_class_table(
    class_names: list[str],
    counts: np.ndarray,
    student_accuracy: np.ndarray,
    teacher_accuracy: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The report's `per_class` list: one dict per class, worst gap (student − teacher) first.

    Without a teacher, sorted by student accuracy ascending. Classes with no examples (nan) go last;
    ties keep the class order.
    """
    rows = []
    for index, name in enumerate(class_names):
        student = float(student_accuracy[index])
        teacher = float(teacher_accuracy[index]) if teacher_accuracy is not None else None
        gap = student - teacher if teacher is not None else None
        rows.append({
            "class_index": index,
            "class_name": str(name),
            "num_examples": int(counts[index]),
            "student_accuracy": student,
            "teacher_accuracy": teacher,
            "gap": gap,
        })

    def sort_key(row):
        value = row["gap"] if teacher_accuracy is not None else row["student_accuracy"]
        missing = value is None or math.isnan(value)
        return (missing, 0.0 if missing else value, row["class_index"])

    return sorted(rows, key=sort_key)


# ----------------------------------------------------------------------------------------------
# Models: loading, resolution, cost
# ----------------------------------------------------------------------------------------------


def resolve_model(model, flag: str = "model"):
    """(keras model, path or None) from a `.keras` path or an in-memory Keras model."""
    if isinstance(model, (str, os.PathLike)):
        from funmatch import models

        path = pathlib.Path(model)
        if not path.is_file():
            raise FunmatchError(f"--{flag} {path}: no such file")
        return models.load(path), str(path)
    if not hasattr(model, "predict_on_batch"):
        raise FunmatchError(f"--{flag}: expected a .keras path or a Keras model, got {type(model).__name__}")
    return model, None


def model_resolution(model, flag: str = "model") -> int:
    """Input resolution R: the funmatch contract's, else a static square input shape."""
    contract = getattr(model, "contract", None)
    if isinstance(contract, dict) and contract.get("resolution"):
        return int(contract["resolution"])
    inputs = getattr(model, "inputs", None)
    if inputs:
        shape = tuple(inputs[0].shape)
        if len(shape) == 4 and shape[1] and shape[1] == shape[2]:
            return int(shape[1])
    raise FunmatchError(
        f"--{flag} {getattr(model, 'name', '?')!r}: no funmatch contract and no static square input shape, "
        "so its resolution is unknown (build it with funmatch.models.create)"
    )


def eval_pp(resolution: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> str:
    """The eval pp spec at `resolution`: resize the shorter side to R / crop_fraction, central-crop R."""
    if not 0 < crop_fraction <= 1:
        raise FunmatchError(f"--crop-fraction must be in (0, 1], got {crop_fraction}")
    small = int(round(resolution / crop_fraction))
    return f'decode|resize_small({small})|central_crop({resolution})|value_range(-1, 1)|keep("image", "label", "index")'


def keras_file_size(model, path: str | None = None) -> int:
    """Bytes of the model as a `.keras` file: the file itself when given, else a temporary save."""
    if path is not None and str(path).endswith(".keras"):
        return os.path.getsize(path)
    with tempfile.TemporaryDirectory() as directory:
        target = os.path.join(directory, "model.keras")
        model.save(target)
        return os.path.getsize(target)


def device_name() -> str:
    """A readable name of the device Keras computes on (first accelerator, else "cpu")."""
    from funmatch import runtime

    if runtime.backend() not in ("jax", "tensorflow"):
        return runtime.backend()
    kind = runtime.accelerator()
    if kind == "CPU":
        return "cpu"
    if runtime.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return str(getattr(device, "device_kind", device.platform))
    if kind == "GPU":
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return str(details.get("device_name", "gpu"))
    return kind.lower()


def compiled_forward(model) -> tuple[Callable[[Any], Any], Callable[[np.ndarray], Any], str]:
    """(forward(x) -> blocked output, to_device(array) -> backend input, compiler name).

    The forward pass is the model in inference mode, compiled: `jax.jit` of `stateless_call` on
    JAX, `tf.function(jit_compile=True)` on TensorFlow (plain `tf.function` when XLA cannot compile
    the model). `forward` waits for the result, so timing it measures the computation.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def run(trainable_values, non_trainable_values, images):
            return model.stateless_call(trainable_values, non_trainable_values, images, training=False)[0]

        def forward(images):
            return jax.block_until_ready(run(trainable, non_trainable, images))

        return forward, jax.device_put, "jax.jit"
    if backend == "tensorflow":
        import tensorflow as tf

        def make(jit_compile: bool):
            function = tf.function(lambda images: model(images, training=False), jit_compile=jit_compile)
            return lambda images: function(images).numpy()

        return make(True), tf.constant, "tf.function(jit_compile=True)"
    raise FunmatchError(f"latency: backend {backend!r} is not supported (use KERAS_BACKEND=jax or tensorflow)")


def time_calls(function: Callable[[], Any], *, repeats: int, warmup: int = 2, max_seconds: float = 10.0,
               clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each of up to `repeats` calls of `function()`, after `warmup` untimed calls.

    Stops early once `max_seconds` of timed calls have passed (at least 3 calls are always timed),
    so a large model on a slow device does not stall the evaluation.
    """
    for _ in range(warmup):
        function()
    durations = []
    spent = 0.0
    for _ in range(max(1, repeats)):
        start = clock()
        function()
        duration = clock() - start
        durations.append(duration)
        spent += duration
        if spent > max_seconds and len(durations) >= 3:
            break
    return durations


def measure_latency(model, resolution: int, batch_sizes=LATENCY_BATCH_SIZES, *, repeats: int = 20,
                    max_seconds: float = 10.0, seed: int = 0) -> tuple[dict[str, dict[str, Any]], str]:
    """Latency of a compiled forward pass at each batch size, on the current device.

    Returns ({"batch_{B}": {batch_size, median_ms, min_ms, repeats, throughput_images_per_sec}},
    compiler name).
    """
    forward, to_device, compiler = compiled_forward(model)
    out = {}
    random = np.random.default_rng(seed)
    for batch_size in batch_sizes:
        images = to_device(random.uniform(-1, 1, (batch_size, resolution, resolution, 3)).astype(np.float32))
        try:
            durations = time_calls(lambda: forward(images), repeats=repeats, max_seconds=max_seconds)
        except Exception:  # noqa: BLE001 - XLA could not compile the model on TensorFlow
            if compiler != "tf.function(jit_compile=True)":
                raise
            import tensorflow as tf

            function = tf.function(lambda x: model(x, training=False))
            forward, compiler = (lambda x: function(x).numpy()), "tf.function"
            durations = time_calls(lambda: forward(images), repeats=repeats, max_seconds=max_seconds)
        median = statistics.median(durations)
        out[f"batch_{batch_size}"] = {
            "batch_size": int(batch_size),
            "median_ms": median * 1e3,
            "min_ms": min(durations) * 1e3,
            "repeats": len(durations),
            "throughput_images_per_sec": batch_size / median if median > 0 else float("inf"),
        }
    return out, compiler


def model_cost(model, path: str | None, resolution: int, *, latency: bool = True, latency_repeats: int = 20,
               latency_max_seconds: float = 10.0) -> dict[str, Any]:
    """Parameters, FLOPs per image, `.keras` size and (optionally) latency of one model."""
    from funmatch import models

    try:
        flops = models.count_flops(model, resolution)
    except FunmatchError:
        flops = None  # not a functional graph: FLOPs cannot be counted by shape propagation
    cost = {
        "params": models.count_params(model),
        "flops_per_image": flops,
        "size_bytes": keras_file_size(model, path),
        "latency": None,
        "latency_compiler": None,
    }
    if latency:
        cost["latency"], cost["latency_compiler"] = measure_latency(
            model, resolution, repeats=latency_repeats, max_seconds=latency_max_seconds
        )
    return cost


# ----------------------------------------------------------------------------------------------
# The evaluation
# ----------------------------------------------------------------------------------------------


def _logits_on_split(model, data_dir, split: str, spec: str, batch_size: int, expected: int, flag: str) -> dict[str, np.ndarray]:
    """Logits of every example of the split, in example-index order; checks each is seen once."""
    result = split_logits(model, data_dir, split, spec, batch_size)
    count = len(result["labels"])
    if "index" in result:
        order = np.argsort(result["index"], kind="stable")
        result = {key: value[order] for key, value in result.items()}
        if not np.array_equal(result["index"], np.arange(expected)):
            raise FunmatchError(
                f"--data {data_dir}: split {split!r} yielded {count} examples with indices not covering 0..{expected - 1} "
                f"once each (evaluating --{flag})"
            )
    elif count != expected:
        raise FunmatchError(f"--data {data_dir}: split {split!r} yielded {count} examples, its card says {expected}")
    return result


def _model_block(model, path, resolution, spec, logits, labels, cost) -> dict[str, Any]:
    contract = getattr(model, "contract", None)
    return {
        "path": path,
        "arch": contract.get("arch") if isinstance(contract, dict) else None,
        "resolution": int(resolution),
        "eval_pp": spec,
        "num_examples": int(len(labels)),
        "accuracy_top1": topk_accuracy(logits, labels, 1),
        "accuracy_top5": topk_accuracy(logits, labels, 5),
        "ece": expected_calibration_error(logits, labels),
        **cost,
    }


def _ratio(numerator, denominator):
    if numerator is None or denominator is None or not denominator:
        return None
    return float(numerator) / float(denominator)


def _latency_ms(block: dict, batch_size: int):
    latency = block.get("latency")
    return latency[f"batch_{batch_size}"]["median_ms"] if latency else None


def _json_safe(value):
    """nan / inf -> None, numpy scalars -> Python numbers, recursively (JSON has no nan)."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate_models(
    student,
    teacher=None,
    *,
    data_dir,
    split: str = "test",
    batch_size: int = 64,
    latency: bool = True,
    latency_repeats: int = 20,
    latency_max_seconds: float = 10.0,
    crop_fraction: float | None = None,
    config=None,
) -> dict[str, Any]:
    """Evaluates a student (and its teacher) on one split of a prepared dataset; returns the report.

    Args:
      student, teacher: `.keras` paths or Keras models (funmatch models carry their resolution;
        others need a static square input shape). The teacher is optional.
      data_dir: a folder written by `funmatch prepare`.
      split: the split to evaluate (every example exactly once).
      batch_size: eval batch size (the last batch is padded and masked, never dropped).
      latency: measure latency at batch 1 and 64 (compiled forward pass, median of repeats).
      latency_repeats, latency_max_seconds: timed calls per batch size, and a time cap for them.
      crop_fraction: R / resize_small of the eval pp (default 0.8, the paper's 128/160).
      config: a recipe (name string or `Config`) whose eval pp ratio to use instead (its
        resize_small / student_resolution), as `funmatch distill` evaluates.

    Returns:
      The report dict documented in the module docstring (JSON-serialisable; nan -> None).
    """
    from funmatch.data import tfrecords

    import keras

    if batch_size < 1:
        raise FunmatchError(f"--batch-size must be >= 1, got {batch_size}")
    if config is not None:
        if crop_fraction is not None:
            raise FunmatchError("give either --config or --crop-fraction, not both")
        if isinstance(config, str):
            from funmatch.configs import get_config

            config = get_config(config)
        crop_fraction = config.student_resolution / config.resize_small
    crop_fraction = DEFAULT_CROP_FRACTION if crop_fraction is None else float(crop_fraction)

    card = tfrecords.load_card(data_dir)
    info = tfrecords.split_info(data_dir, split, card)
    expected = int(info["num_examples"])
    class_names = list(card["class_names"])
    num_classes = int(card["num_classes"])

    named = [("student", student)] + ([("teacher", teacher)] if teacher is not None else [])
    blocks, results = {}, {}
    for flag, given in named:
        model, path = resolve_model(given, flag)
        resolution = model_resolution(model, flag)
        spec = eval_pp(resolution, crop_fraction)
        result = _logits_on_split(model, data_dir, split, spec, batch_size, expected, flag)
        if result["logits"].shape[1] != num_classes:
            raise FunmatchError(
                f"--{flag} {path or getattr(model, 'name', '')}: the model has {result['logits'].shape[1]} outputs, "
                f"the dataset {num_classes} classes"
            )
        cost = model_cost(model, path, resolution, latency=latency, latency_repeats=latency_repeats,
                          latency_max_seconds=latency_max_seconds)
        blocks[flag] = _model_block(model, path, resolution, spec, result["logits"], result["labels"], cost)
        results[flag] = result

    labels = results["student"]["labels"]
    student_accuracy, counts = per_class_accuracy(results["student"]["logits"], labels, num_classes)
    fidelity = ratios = None
    teacher_accuracy = None
    if teacher is not None:
        if not np.array_equal(results["teacher"]["labels"], labels):
            raise FunmatchError(f"--data {data_dir}: split {split!r} gave different labels to student and teacher passes")
        metrics = fidelity_metrics(results["student"]["logits"], labels, results["teacher"]["logits"])
        fidelity = {
            "agreement_top1": metrics["agreement"],
            "agreement_top5": metrics["agreement_top5"],
            "kl_mean": metrics["kl"],
        }
        teacher_accuracy, _ = per_class_accuracy(results["teacher"]["logits"], labels, num_classes)
        s, t = blocks["student"], blocks["teacher"]
        ratios = {
            "params": _ratio(t["params"], s["params"]),
            "flops_per_image": _ratio(t["flops_per_image"], s["flops_per_image"]),
            "size_bytes": _ratio(t["size_bytes"], s["size_bytes"]),
            "latency_batch_1": _ratio(_latency_ms(t, 1), _latency_ms(s, 1)),
            "latency_batch_64": _ratio(_latency_ms(t, 64), _latency_ms(s, 64)),
        }

    report = {
        "schema": SCHEMA,
        "backend": keras.backend.backend(),
        "device": device_name(),
        "data": {
            "data_dir": str(pathlib.Path(data_dir)),
            "dataset_name": card.get("name"),
            "split": split,
            "num_examples": expected,
            "num_classes": num_classes,
            "class_names": class_names,
        },
        "student": blocks["student"],
        "teacher": blocks.get("teacher"),
        "fidelity": fidelity,
        "per_class": per_class_table(class_names, counts, student_accuracy, teacher_accuracy),
        "ratios": ratios,
    }
    return _json_safe(report)


# ----------------------------------------------------------------------------------------------
# Summary table and command line
# ----------------------------------------------------------------------------------------------


def _format(value, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "percent":
        return f"{100 * value:.2f} %"
    if kind == "count":
        for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {unit}"
        return f"{value:.0f}"
    if kind == "bytes":
        for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
            if abs(value) >= scale:
                return f"{value / scale:.2f} {unit}"
        return f"{value:.0f} B"
    if kind == "ms":
        return f"{value:.2f} ms"
    if kind == "rate":
        return f"{value:,.0f} img/s"
    if kind == "ratio":
        return f"{value:.2f}×"
    return f"{value:.4f}"


def format_summary(report: dict[str, Any], worst_classes: int = 5) -> str:
    """A readable text summary of an `evaluate_models` report (a table, fidelity, worst classes)."""
    names = [name for name in ("student", "teacher") if report.get(name)]

    def latency(block, batch, key):
        return block["latency"][f"batch_{batch}"][key] if block.get("latency") else None

    rows = [
        ("top-1 accuracy", lambda b: b["accuracy_top1"], "percent", None),
        ("top-5 accuracy", lambda b: b["accuracy_top5"], "percent", None),
        ("ECE (15 bins)", lambda b: b["ece"], "plain", None),
        ("resolution", lambda b: b["resolution"], "count", None),
        ("parameters", lambda b: b["params"], "count", "params"),
        ("FLOPs / image", lambda b: b["flops_per_image"], "count", "flops_per_image"),
        (".keras size", lambda b: b["size_bytes"], "bytes", "size_bytes"),
        ("latency, batch 1", lambda b: latency(b, 1, "median_ms"), "ms", "latency_batch_1"),
        ("latency, batch 64", lambda b: latency(b, 64, "median_ms"), "ms", "latency_batch_64"),
        ("throughput, batch 64", lambda b: latency(b, 64, "throughput_images_per_sec"), "rate", None),
    ]
    header = ["", *names] + (["teacher ÷ student"] if report.get("ratios") else [])
    table = [header]
    for label, getter, kind, ratio_key in rows:
        line = [label] + [_format(getter(report[name]), kind) for name in names]
        if report.get("ratios"):
            line.append(_format(report["ratios"].get(ratio_key), "ratio") if ratio_key else "")
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        f"{report['data']['dataset_name'] or report['data']['data_dir']} / {report['data']['split']}: "
        f"{report['data']['num_examples']} examples, {report['data']['num_classes']} classes "
        f"({report['backend']} on {report['device']})"
    ]
    for index, row in enumerate(table):
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    if report.get("fidelity"):
        fidelity = report["fidelity"]
        lines.append(
            f"student vs teacher: top-1 agreement {_format(fidelity['agreement_top1'], 'percent')}, "
            f"top-5 agreement {_format(fidelity['agreement_top5'], 'percent')}, mean KL {_format(fidelity['kl_mean'], 'plain')}"
        )
    worst = report["per_class"][:worst_classes]
    if worst:
        key = "gap" if report.get("teacher") else "student_accuracy"
        title = "worst classes (student − teacher accuracy)" if key == "gap" else "worst classes (student accuracy)"
        lines.append(f"{title}:")
        for row in worst:
            detail = f"{_format(row['student_accuracy'], 'percent')}"
            if key == "gap":
                gap = "—" if row["gap"] is None else f"{100 * row['gap']:+.2f} pt"
                detail = f"{gap} (student {detail}, teacher {_format(row['teacher_accuracy'], 'percent')})"
            lines.append(f"  {row['class_name']:<24} {detail}  n={row['num_examples']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--student", required=True, help="the student's .keras file")
    parser.add_argument("--teacher", default=None, help="the teacher's .keras file (optional)")
    parser.add_argument("--data", required=True, help="a folder written by `funmatch prepare`")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the full report as JSON to this file")
    parser.add_argument("--batch-size", type=int, default=64, help="eval batch size (default: 64)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency / throughput measurement")
    parser.add_argument("--latency-repeats", type=int, default=20, help="timed calls per batch size (default: 20)")
    crop = parser.add_mutually_exclusive_group()
    crop.add_argument("--crop-fraction", type=float, default=None,
                      help="R / resize_small of the eval pp (default: 0.8, the paper's central_crop(128) of resize_small(160))")
    crop.add_argument("--config", default=None, help="take the eval pp ratio from this recipe, e.g. eurosat")


def main(args: argparse.Namespace) -> int:
    json_path = pathlib.Path(args.json) if args.json else None
    if json_path is not None and json_path.is_dir():
        raise FunmatchError(f"--json {json_path}: is a directory")
    report = evaluate_models(
        args.student, args.teacher, data_dir=args.data, split=args.split, batch_size=args.batch_size,
        latency=not args.no_latency, latency_repeats=args.latency_repeats, crop_fraction=args.crop_fraction,
        config=args.config,
    )
    print(format_summary(report))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {json_path}")
    return 0
