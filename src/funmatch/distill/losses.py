"""The distillation loss and the student–teacher distances it shares with evaluation.

One function, `distance(student_logits, teacher_logits, kind)`, serves the training loss, the
training metrics and evaluation, so that "KL" means the same number everywhere.

The loss is the paper's (and big_vision's) T²·KL(softmax(teacher/T) ‖ softmax(student/T)),
written here rather than taken from Keras: `keras.distillation.LogitsDistillation` with its
default `loss="kl_divergence"` treats the logits as probabilities (no softmax, no T²), which gives
a different number and is not invariant to shifting the logits by a constant.
"""

from __future__ import annotations

import keras
from keras import ops

from funmatch.errors import FunmatchError

DISTANCE_KINDS = ("kl", "agree_top1", "agree_top5")


def _kl_divergence(student_logits, teacher_logits, temperature: float):
    """Per-example T²·KL(softmax(t/T) ‖ softmax(s/T)) from log-softmax (stable for large logits)."""
    student_logits = ops.cast(student_logits, "float32")
    teacher_logits = ops.cast(teacher_logits, "float32")
    teacher_log_probs = ops.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = ops.log_softmax(student_logits / temperature, axis=-1)
    teacher_probs = ops.exp(teacher_log_probs)
    per_example = ops.sum(teacher_probs * (teacher_log_probs - student_log_probs), axis=-1)
    # T² keeps the gradient magnitude independent of T (Hinton et al. 2015), as the paper does.
    return per_example * (temperature**2)


def distance(student_logits, teacher_logits, kind: str, temperature: float = 1.0):
    """Per-example distance between student and teacher predictions.

    Args:
        student_logits: [B, C] logits of the student.
        teacher_logits: [B, C] logits of the teacher.
        kind: one of
            "kl": T²·KL(softmax(teacher/T) ‖ softmax(student/T)) (the training loss);
            "agree_top1": 1.0 where the student's and the teacher's argmax agree, else 0.0;
            "agree_top5": 1.0 where the teacher's top-1 class is among the student's top 5.
        temperature: T, used by "kl" only.

    Returns:
        float32 tensor [B].

    Raises:
        FunmatchError: for an unknown `kind` or a non-positive temperature.
    """
    if kind == "kl":
        if not temperature > 0:
            raise FunmatchError(f"distillation temperature must be > 0, got {temperature}")
        return _kl_divergence(student_logits, teacher_logits, temperature)
    if kind == "agree_top1":
        agree = ops.equal(ops.argmax(student_logits, axis=-1), ops.argmax(teacher_logits, axis=-1))
        return ops.cast(agree, "float32")
    if kind == "agree_top5":
        num_classes = student_logits.shape[-1]
        # With fewer than 5 classes every class is in the top 5.
        k = 5 if num_classes is None else min(5, num_classes)
        teacher_top1 = ops.cast(ops.argmax(teacher_logits, axis=-1), "int32")
        hit = ops.in_top_k(teacher_top1, ops.cast(student_logits, "float32"), k=k)
        return ops.cast(hit, "float32")
    raise FunmatchError(
        f"unknown distance kind {kind!r}; expected one of: {', '.join(DISTANCE_KINDS)}"
    )


@keras.saving.register_keras_serializable(package="funmatch")
class DistillationLoss(keras.losses.Loss):
    """T²·KL(softmax(teacher/T) ‖ softmax(student/T)), a Keras `Loss`.

    Being a `keras.losses.Loss`, Keras reduces it (default "sum_over_batch_size") and, under
    `tf.distribute`, divides it by the number of replicas so that the summed gradients equal
    the single-device ones. A loss computed by hand inside `compute_loss` would not be scaled.

    Call as `loss(teacher_logits, student_logits, sample_weight=None)`:
        y_true: [B, C] teacher logits (targets; no gradient is taken through them).
        y_pred: [B, C] student logits.
        sample_weight: optional [B] weights, e.g. the eval padding mask.
    Returns the reduced scalar (or [B] with reduction=None / "none").
    """

    def __init__(
        self,
        temperature: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "distillation_loss",
        dtype=None,
    ):
        if not temperature > 0:
            raise FunmatchError(f"distillation temperature must be > 0, got {temperature}")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        """Per-example loss [B] for teacher logits `y_true` and student logits `y_pred`."""
        teacher_logits = ops.stop_gradient(y_true)
        return distance(y_pred, teacher_logits, "kl", temperature=self.temperature)

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature})
        return config
