"""Evaluation: logits of a model over an eval split (every example exactly once), and the fidelity
metrics between a student and a teacher computed from them.

`predict_logits` runs the model on the padded eval batches of `funmatch.data.pipeline.eval_dataset`
and drops the padding with the `_mask` key. `fidelity_metrics` computes, from logits and labels:
accuracy top-1/top-5 of the student (and teacher), student–teacher agreement top-1/top-5 and the mean
KL(teacher ‖ student) at temperature 1, through the same `distance` used by training.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def predict_logits(model, dataset, *, image_key: str = "image", max_examples: int = 0, progress: bool = False) -> dict[str, np.ndarray]:
    """Logits [N, C], labels [N] and example indices [N] (when present) of the real examples.

    `dataset` yields dicts with `image_key`, `label` and `_mask` (padding rows have mask 0).
    `max_examples` > 0 stops after that many real examples (for quick periodic evaluation).
    """
    logits, labels, indices = [], [], []
    seen = 0
    iterator = dataset
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(dataset, desc="evaluate", unit="batch", leave=False)
    for batch in iterator:
        mask = np.asarray(batch["_mask"]).astype(bool)
        out = np.asarray(model.predict_on_batch(batch[image_key]), dtype=np.float32)
        logits.append(out[mask])
        labels.append(np.asarray(batch["label"])[mask])
        if "index" in batch:
            indices.append(np.asarray(batch["index"])[mask])
        seen += int(mask.sum())
        if max_examples and seen >= max_examples:
            break
    result = {
        "logits": np.concatenate(logits) if logits else np.zeros((0, 0), np.float32),
        "labels": np.concatenate(labels).astype(np.int64) if labels else np.zeros((0,), np.int64),
    }
    if indices:
        result["index"] = np.concatenate(indices).astype(np.int64)
    if max_examples:
        result = {k: v[:max_examples] for k, v in result.items()}
    return result


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
