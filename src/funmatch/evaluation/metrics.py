"""Metrics on logits (numpy; no Keras): accuracy top-1/top-5, agreement and KL with the teacher
(through the training loss's own `distance`), calibration (ECE) and per-class accuracy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np



ECE_BINS = 15


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
