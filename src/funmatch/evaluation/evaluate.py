"""Evaluation: what a distilled student is worth next to its teacher, in accuracy, fidelity and cost.

Building blocks (also used by training):

* `predict_logits` runs a model on the padded eval batches of `funmatch.data.pipeline.eval_dataset`
  and drops the padding with the `_mask` key, so every example is counted exactly once. On several
  processes (`split_logits`) each evaluates its own block of the split's files and the shares are
  gathered: the split is evaluated once between them, and every process gets the whole result.
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

import math
import os
import pathlib
from typing import Any

import numpy as np

from funmatch.errors import FunmatchError
from funmatch.evaluation.cost import device_name, model_cost, model_resolution, resolve_model
from funmatch.evaluation.logits import DEFAULT_CROP_FRACTION, eval_pp, split_logits
from funmatch.evaluation.metrics import expected_calibration_error, fidelity_metrics, per_class_accuracy, per_class_table, topk_accuracy


SCHEMA = "funmatch.evaluate/1"
ECE_BINS = 15


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


def model_crop_fraction(model) -> float:
    """The crop fraction of a model's own evaluation view: recorded in its `.keras` by the funmatch run
    that wrote it, else the paper's 0.8."""
    recorded = (getattr(model, "contract", None) or {}).get("eval_crop_fraction")
    return float(recorded) if recorded else DEFAULT_CROP_FRACTION


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
    reuse: dict | None = None,
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
      crop_fraction: R / resize_small of the eval pp. Default: each model's own evaluation view, as
        recorded in the `.keras` file by the funmatch run that wrote it (`eval_crop_fraction`), else 0.8
        (the paper's 128/160).
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
    crop_fraction = None if crop_fraction is None else float(crop_fraction)

    card = tfrecords.load_card(data_dir)
    info = tfrecords.split_info(data_dir, split, card)
    expected = int(info["num_examples"])
    class_names = list(card["class_names"])
    num_classes = int(card["num_classes"])

    named = [("student", student)] + ([("teacher", teacher)] if teacher is not None else [])
    blocks, results = {}, {}
    for flag, given in named:
        key = None
        if reuse is not None and isinstance(given, (str, os.PathLike)) and pathlib.Path(given).is_file():
            stat = pathlib.Path(given).stat()
            key = (str(pathlib.Path(given).resolve()), stat.st_size, stat.st_mtime_ns, str(pathlib.Path(data_dir).resolve()),
                   split, batch_size, crop_fraction, latency, latency_repeats, latency_max_seconds)
            if key in reuse:
                blocks[flag], results[flag] = reuse[key]
                continue
        model, path = resolve_model(given, flag)
        resolution = model_resolution(model, flag)
        spec = eval_pp(resolution, model_crop_fraction(model) if crop_fraction is None else crop_fraction)
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
        if key is not None:
            reuse[key] = (blocks[flag], result)

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
