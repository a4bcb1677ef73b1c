"""Training: the resumable loop and its checkpoints (`loop`, `checkpoints`), the distillation run
(`distill`: `funmatch distill`'s library) and label training of teachers and reference students (`labels`).

May import configs, data, models, distill, evaluation and reporting (for the input picture); never
commands. Importing this package imports only numpy; `distill` and `labels` import Keras.
"""

from funmatch.training.checkpoints import (
    CHECKPOINT_PREFIX,
    Checkpointer,
    atomic_save_keras,
    atomic_save_npy,
    atomic_write_text,
    lock_workdir,
    prepare_workdir,
    unlock_workdir,
)
from funmatch.training.loop import fit_resumable

__all__ = [
    "CHECKPOINT_PREFIX",
    "Checkpointer",
    "atomic_save_keras",
    "atomic_save_npy",
    "atomic_write_text",
    "fit_resumable",
    "lock_workdir",
    "prepare_workdir",
    "unlock_workdir",
]
