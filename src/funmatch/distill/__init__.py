"""Distillation: the loss, on-device mixup and the `Distiller` model with its four modes."""

from funmatch.distill.distiller import MODES, Distiller
from funmatch.distill.losses import DISTANCE_KINDS, DistillationLoss, distance
from funmatch.distill.mixup import mixup

__all__ = [
    "DISTANCE_KINDS",
    "MODES",
    "DistillationLoss",
    "Distiller",
    "distance",
    "mixup",
]
