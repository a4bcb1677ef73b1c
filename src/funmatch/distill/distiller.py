"""The `Distiller`: a Keras model that trains a student to match a frozen teacher.

It goes through Keras' own trainer (only `call`, `compute_loss` and `compute_metrics` are
overridden), so `fit()`, `evaluate()`, callbacks, `keras.distribution` (JAX) and `tf.distribute`
(TensorFlow) work as for any Keras model. The loss is a `DistillationLoss` (a `keras.losses.Loss`),
which Keras scales by 1/replicas under `tf.distribute`.

Batches are dicts (no `y`):
    "image":          [B, H, W, 3] float in [-1, 1], the student's view.
    "teacher":        optional [B, H', W', 3], the teacher's view (the same crop at another
                      resolution, or, in "independent" mode, an independently augmented view);
                      when absent the teacher sees "image".
    "label":          optional int [B]; feeds the `accuracy` metric only, never the loss.
    "teacher_logits": [B, C], precomputed teacher outputs ("fixed_teacher" mode).
    "_mask":          optional [B] (eval batches): 1 for real examples, 0 for padding.
Other keys (e.g. "index") are ignored.

Modes (the paper's ablation):
    function_matching: teacher and student see the same view, mixed up on device (one a, one partner).
    consistent:        the same view, no mixup.
    independent:       the teacher sees batch["teacher"], an independently augmented view; no mixup.
    fixed_teacher:     the teacher is not run; batch["teacher_logits"] are the targets; no mixup.
                       This is also the step of every run on stored targets (`funmatch.distill.targets`):
                       the input pipeline delivers the views already mixed, with their stored targets.

What to checkpoint: `distiller.student` (weights), `distiller.optimizer.variables` (it only tracks
the student's trainable variables) and `distiller.seed_generator.state` (the mixup random state).
The teacher is frozen and never part of a student checkpoint.
"""

from __future__ import annotations

import keras
from keras import ops

from funmatch.distill.losses import DistillationLoss, distance
from funmatch.distill.mixup import mixup
from funmatch.configs.common import MODES  # one list of modes for configs, CLI and model
from funmatch.errors import FunmatchError

STUDENT_KEY, TEACHER_KEY = "image", "teacher"
TEACHER_LOGITS_KEY, LABEL_KEY, MASK_KEY = "teacher_logits", "label", "_mask"


class Distiller(keras.Model):
    """Frozen teacher + trainable student, trained by T²·KL on the teacher's logits.

    Args:
        teacher: a Keras model mapping [B, H', W', 3] images to [B, C] logits. It is frozen
            (`trainable = False`) and always called with `training=False`. May be None in
            "fixed_teacher" mode.
        student: a Keras model mapping [B, H, W, 3] images to [B, C] logits.
        mode: one of MODES.
        temperature: T of the loss.
        mixup_p: Beta(p, p) concentration of the mixup coefficient ("function_matching" only).
        seed: seed of the mixup `SeedGenerator` (its state is a model variable, so it advances
            statelessly under JAX and can be checkpointed).

    `call(batch)` returns {"student": [B, C] student logits, "teacher": [B, C] teacher logits}.
    Compile with an optimizer only: `distiller.compile(optimizer=make_optimizer(...))`.
    Training logs: loss (distillation), agreement (top-1), accuracy (student vs label, if given).
    Evaluation logs: additionally kl (masked mean T²·KL); all masked by "_mask".
    """

    def __init__(
        self,
        teacher,
        student,
        *,
        mode: str = "function_matching",
        temperature: float = 1.0,
        mixup_p: float = 1.0,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise FunmatchError(f"unknown distillation mode {mode!r}; expected one of: {', '.join(MODES)}")
        if teacher is None and mode != "fixed_teacher":
            raise FunmatchError(f"mode {mode!r} needs a teacher model (only fixed_teacher runs without)")
        if float(mixup_p) < 0:
            raise FunmatchError(f"mixup_p must be >= 0, got {mixup_p}")
        self.mode = mode
        self.temperature = float(temperature)
        self.mixup_p = float(mixup_p)
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.seed_generator = keras.random.SeedGenerator(seed, name="mixup_seed")
        self.distillation_loss = DistillationLoss(temperature=self.temperature)
        self.agreement_tracker = keras.metrics.Mean(name="agreement")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def build(self, input_shape=None):
        # The teacher and student arrive built (or build on first call); nothing of our own to create.
        self.built = True

    # -- forward --------------------------------------------------------------------------------

    def _check_batch(self, batch):
        if not isinstance(batch, dict) or STUDENT_KEY not in batch:
            keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise FunmatchError(f"Distiller batches must be dicts with an 'image' key; got {keys}")
        if self.mode == "fixed_teacher" and TEACHER_LOGITS_KEY not in batch:
            raise FunmatchError("mode 'fixed_teacher' needs 'teacher_logits' in every batch")
        if self.mode == "independent" and TEACHER_KEY not in batch:
            raise FunmatchError(
                "mode 'independent' needs a separately augmented 'teacher' view in every batch"
            )

    def prepare_views(self, batch, training=False):
        """The (student images, teacher images or None) the models will see for this batch.

        Applies mixup in "function_matching" mode when training; the teacher images are None in
        "fixed_teacher" mode.
        """
        self._check_batch(batch)
        if self.mode == "function_matching" and training and self.mixup_p > 0:
            batch, _ = mixup(
                batch, seed=self.seed_generator, p=self.mixup_p, image_keys=(STUDENT_KEY, TEACHER_KEY)
            )
        if self.mode == "fixed_teacher":
            return batch[STUDENT_KEY], None
        return batch[STUDENT_KEY], batch.get(TEACHER_KEY, batch[STUDENT_KEY])

    def call(self, batch, training=False):
        student_images, teacher_images = self.prepare_views(batch, training=training)
        if teacher_images is None:
            teacher_logits = batch[TEACHER_LOGITS_KEY]
        else:
            teacher_logits = self.teacher(teacher_images, training=False)
        teacher_logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
        student_logits = ops.cast(self.student(student_images, training=training), "float32")
        return {"student": student_logits, "teacher": teacher_logits}

    # -- loss and metrics -----------------------------------------------------------------------

    @staticmethod
    def _mask(batch):
        mask = batch.get(MASK_KEY) if isinstance(batch, dict) else None
        return None if mask is None else ops.cast(ops.reshape(mask, (-1,)), "float32")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """DistillationLoss(teacher logits, student logits), weighted by "_mask" when present,
        plus the student's own regularisation losses. Labels are not used."""
        del y, sample_weight  # no labels in the loss, ever
        mask = self._mask(x)
        if mask is not None:
            # Keras' "sum_over_batch_size" divides by B; rescale so that a padded eval batch
            # gives the mean over its real examples (the `kl` metric is exact across batches).
            batch_size = ops.cast(ops.shape(mask)[0], "float32")
            mask = mask * ops.divide_no_nan(batch_size, ops.sum(mask))
        loss = self.distillation_loss(y_pred["teacher"], y_pred["student"], sample_weight=mask)
        for extra in self.student.losses:
            loss = loss + self._aggregate_additional_loss(extra)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        mask = self._mask(x)
        student_logits, teacher_logits = y_pred["student"], y_pred["teacher"]
        self.agreement_tracker.update_state(
            distance(student_logits, teacher_logits, "agree_top1"), sample_weight=mask
        )
        self.kl_tracker.update_state(
            distance(student_logits, teacher_logits, "kl", temperature=self.temperature),
            sample_weight=mask,
        )
        if isinstance(x, dict) and LABEL_KEY in x:
            labels = ops.cast(ops.reshape(x[LABEL_KEY], (-1,)), "int32")
            correct = ops.cast(
                ops.equal(ops.cast(ops.argmax(student_logits, axis=-1), "int32"), labels), "float32"
            )
            # Unlabelled images (label -1, `funmatch.data.unlabeled`) teach through the teacher only: not counted here.
            labelled = ops.cast(ops.greater_equal(labels, 0), "float32")
            self.accuracy_tracker.update_state(correct, sample_weight=labelled if mask is None else mask * labelled)
        return self.get_metrics_result()

    def get_config(self):
        raise NotImplementedError(
            "A Distiller is not saved as a whole: save `distiller.student` (and the optimizer "
            "variables); the teacher is loaded from its own file."
        )
