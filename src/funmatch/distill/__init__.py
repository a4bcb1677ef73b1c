"""Distillation: the loss (`losses`), on-device mixup (`mixup`) and the `Distiller` model with its four modes.

May import configs and errors only (one list of modes); training, evaluation and the commands build on it.
"""

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
