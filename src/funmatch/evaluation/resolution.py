"""The test-time resolution of a trained model, chosen on a held-out split (train/test resolution discrepancy).

A network trained on random crops (objects look larger than in the central eval crop) often scores
better when it is *evaluated* at a higher resolution than it was trained at (Touvron et al., "Fixing
the train-test resolution discrepancy", NeurIPS 2019). BiT ResNets are fully convolutional, so the same
weights run at any input size. `pick_resolution` scores the weights at several resolutions on a split
that no model was trained on (validation), picks the best by accuracy (ties: lower NLL) and returns the
model rebuilt at that resolution, its contract updated. The choice is made on validation only, so the
test split stays clean for reporting.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from funmatch.errors import FunmatchError
from funmatch.evaluation.logits import DEFAULT_CROP_FRACTION, eval_pp, split_logits
from funmatch.evaluation.metrics import topk_accuracy


@dataclasses.dataclass(frozen=True)
class ResolutionScore:
    resolution: int
    accuracy: float
    nll: float
    examples: int


def score(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(top-1 accuracy, mean negative log-likelihood of the true class) of `logits` [N, C]."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return topk_accuracy(logits, labels, 1), float(-log_probs[np.arange(len(labels)), labels].mean())


def best(scores: list[ResolutionScore]) -> ResolutionScore:
    """The highest accuracy; among equal accuracies the lower NLL; then the lower resolution (cheaper)."""
    if not scores:
        raise FunmatchError("no resolution was scored")
    return min(scores, key=lambda s: (-s.accuracy, s.nll, s.resolution))


def pick_resolution(model, data_dir, resolutions, *, split: str = "validation", crop_fraction: float | None = None,
                    batch_size: int = 256, progress=None):
    """Scores `model`'s weights at each of `resolutions` on `split`; returns (scores, best model).

    `crop_fraction`: the eval view, `resize_small(R / f)|central_crop(R)`; default the one recorded in the
    model, else the paper's 0.8. `progress(score)` is called after each resolution.
    """
    from funmatch import models

    resolutions = sorted({int(r) for r in resolutions})
    if not resolutions or resolutions[0] < 8:
        raise FunmatchError(f"--resolutions must be sizes of at least 8 px, got {resolutions}")
    if crop_fraction is None:
        crop_fraction = models.contract(model).get("eval_crop_fraction") or DEFAULT_CROP_FRACTION
    scores = []
    for resolution in resolutions:
        candidate = models.with_resolution(model, resolution)
        out = split_logits(candidate, data_dir, split, eval_pp(resolution, crop_fraction), batch_size)
        accuracy, nll = score(out["logits"], out["labels"])
        scores.append(ResolutionScore(resolution, accuracy, nll, int(len(out["labels"]))))
        if progress is not None:
            progress(scores[-1])
    chosen = models.with_resolution(model, best(scores).resolution)
    chosen.eval_crop_fraction = float(crop_fraction)  # the view it was chosen with travels with it
    return scores, chosen
