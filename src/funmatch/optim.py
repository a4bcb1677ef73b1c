"""Optimizers and the learning-rate schedule of the function-matching recipes.

The official recipe (big_vision `optax.py` as configured by the distillation configs) is

    clip_by_global_norm(1.0) → scale_by_adam(b1=.9, b2=.999, eps=1e-8) → scale(lr)
        → add_decayed_weights(wd, mask=kernels) → scale_by_schedule(−multiplier(step))

that is, with lr_t = base_lr · multiplier(t):

    w ← w − lr_t · adam_update(clip(g)) − wd · (lr_t / base_lr) · w        (kernels)
    w ← w − lr_t · adam_update(clip(g))                                    (everything else)

The weight decay follows the schedule but is **not** multiplied by the learning rate.
`keras.optimizers.AdamW` instead applies `w ← w − lr_t · wd · w`, so the same `wd` number means a
decay `base_lr` times weaker there (e.g. 0.003× for the flowers fast recipe).
`ScheduledDecayAdam` implements the official rule; `make_optimizer("adamw", ...)` gives Keras'.

Gradient clipping is by the global norm of the gradient of the whole (global) batch. Keras' own
`global_clipnorm` clips *before* the cross-replica sum under `tf.distribute`, i.e. per replica;
the optimizers here clip after it, so one step on N replicas equals one step on one device.

Kernel selection: a variable is decayed when its Keras path (`variable.path`, e.g.
"block1/conv/kernel") matches `decay_pattern`, by default `(^|/)kernel$`: conv and dense
kernels are decayed; biases, normalisation scales/offsets ("gamma"/"beta"/"scale"/"offset") and
embeddings ("embeddings") are not. Pass another regex to change that.
"""

from __future__ import annotations

import math
import re

import keras
from keras import ops

from funmatch.errors import FunmatchError

DEFAULT_DECAY_PATTERN = r"(^|/)kernel$"
OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "lion", "muon")


# ---------------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="funmatch")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `base_learning_rate` over `warmup_steps`, then cosine to 0.

    lr(step) = base · min(1, step / warmup) · ½(1 + cos(π · clip((step − warmup) /
    (total − warmup), 0, 1))), big_vision's `create_learning_rate_schedule` with cosine decay.
    `step` is the optimizer's iteration count before the update (0 for the first update, whose
    learning rate is therefore 0 when there is a warmup, as in big_vision).
    """

    def __init__(self, base_learning_rate: float, total_steps: int, warmup_steps: int = 0):
        base_learning_rate = float(base_learning_rate)
        total_steps, warmup_steps = int(total_steps), int(warmup_steps)
        if total_steps < 1:
            raise FunmatchError(f"schedule total_steps must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps <= total_steps:
            raise FunmatchError(
                f"schedule warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}"
            )
        self.base_learning_rate = base_learning_rate
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def multiplier(self, step):
        """The schedule's factor in [0, 1] at `step` (a scalar tensor or number)."""
        step = ops.cast(step, "float32")
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        factor = 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps > 0:
            factor = factor * ops.minimum(1.0, step / float(self.warmup_steps))
        return factor

    def __call__(self, step):
        return self.base_learning_rate * self.multiplier(step)

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
        }


def warmup_cosine(base_lr: float, total_steps: int, warmup_steps: int) -> WarmupCosine:
    """A serialisable `LearningRateSchedule`: linear warmup to `base_lr`, then cosine to 0."""
    return WarmupCosine(base_lr, total_steps, warmup_steps)


# ---------------------------------------------------------------------------------------------
# Clipping after the cross-replica sum, and kernel-only decay, for any Keras optimizer
# ---------------------------------------------------------------------------------------------


def clip_by_global_norm(gradients, clip_norm):
    """Scale all gradients by min(1, clip_norm / ‖g‖) where ‖g‖ is their joint L2 norm (optax rule).

    Gradients that are None are passed through. A NaN/Inf norm propagates (so a NaN guard sees it).
    """
    if not clip_norm:
        return list(gradients)
    present = [g for g in gradients if g is not None]
    if not present:
        return list(gradients)
    squared = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in present]
    norm = ops.sqrt(ops.sum(ops.stack(squared)))
    scale = ops.where(norm < clip_norm, 1.0, clip_norm / norm)
    return [None if g is None else g * ops.cast(scale, g.dtype) for g in gradients]


class _FunmatchOptimizerMixin:
    """Global-norm clipping after the gradients are summed over replicas, and decay by path regex.

    Mixed in front of a Keras optimizer class. The Keras `global_clipnorm` argument is not used
    (it clips per replica under tf.distribute); `clip_norm` replaces it.
    """

    def _setup_funmatch(self, clip_norm, decay_pattern):
        if clip_norm is not None and clip_norm < 0:
            raise FunmatchError(f"clip_norm must be >= 0 (0 or None: no clipping), got {clip_norm}")
        self.clip_norm = float(clip_norm) if clip_norm else None
        self.decay_pattern = decay_pattern
        try:
            self._decay_regex = re.compile(decay_pattern) if decay_pattern else None
        except re.error as error:
            raise FunmatchError(f"decay_pattern {decay_pattern!r} is not a regex: {error}") from None

    def _keras_variable(self, variable):
        """The Keras variable the optimizer was built on (TF passes the underlying tf.Variable)."""
        return self._trainable_variables[self._get_variable_index(variable)]

    def decays(self, variable) -> bool:
        """Whether weight decay applies to `variable` (its `.path` matches `decay_pattern`)."""
        if self._decay_regex is None:
            return False
        return self._decay_regex.search(self._keras_variable(variable).path) is not None

    def _use_weight_decay(self, variable):
        # Keras' own exclusion list still applies on top of the pattern.
        return self.decays(variable) and super()._use_weight_decay(variable)

    def _clip_gradients(self, grads):
        # Clipping moves into `_backend_update_step`, after the cross-replica sum.
        return grads

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if keras.backend.backend() != "tensorflow":
            # JAX (also under keras.distribution) and single-device: gradients are already global.
            grads = clip_by_global_norm(grads, self.clip_norm)
            return super()._backend_update_step(grads, trainable_variables, learning_rate)

        # TensorFlow: the same steps as Keras' TFOptimizer._backend_update_step, with the global
        # norm clip between the all-reduce and the per-variable update.
        import tensorflow as tf

        tf_variables = [
            v.value if isinstance(v, keras.Variable) else v for v in trainable_variables
        ]
        grads_and_vars = self._all_reduce_sum_gradients(list(zip(grads, tf_variables)))
        clipped = clip_by_global_norm([g for g, _ in grads_and_vars], self.clip_norm)
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step,
            self._distribution_strategy,
            list(zip(clipped, tf_variables)),
            learning_rate,
        )

    def _funmatch_config(self):
        return {"clip_norm": self.clip_norm, "decay_pattern": self.decay_pattern}


# ---------------------------------------------------------------------------------------------
# The official optimizer
# ---------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="funmatch")
class ScheduledDecayAdam(_FunmatchOptimizerMixin, keras.optimizers.Optimizer):
    """Adam with global-norm clipping and schedule-scaled (not lr-scaled) decoupled weight decay.

    Per step t (1-based), for every trainable variable w with clipped gradient g:

        m ← b1·m + (1 − b1)·g;   v ← b2·v + (1 − b2)·g²
        update = m/(1 − b1^t) / (sqrt(v/(1 − b2^t)) + eps)          (optax `scale_by_adam`)
        w ← w − lr_t·update − weight_decay·(lr_t / base_learning_rate)·w   (decay: kernels only)

    Note eps is added to the *bias-corrected* sqrt(v), as in optax; Keras' Adam adds it before
    the bias correction ("epsilon hat"), which differs early in training.

    Args:
        learning_rate: float or LearningRateSchedule (e.g. `warmup_cosine(...)`).
        beta_1, beta_2, epsilon: Adam constants (official: .9, .999, 1e-8).
        weight_decay: wd (0 disables decay).
        clip_norm: global-norm clip of the gradients (after the cross-replica sum); 0/None: off.
        decay_pattern: regex on `variable.path` selecting the decayed variables (kernels).
        base_learning_rate: the lr the schedule multiplier is relative to. Defaults to the
            schedule's `base_learning_rate` attribute, or to `learning_rate` when it is a float.
    The state (iterations, m, v) lives in `optimizer.variables` and is saved with the model.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float | None = 1.0,
        decay_pattern: str | None = DEFAULT_DECAY_PATTERN,
        base_learning_rate: float | None = None,
        name: str = "scheduled_decay_adam",
        **kwargs,
    ):
        for unsupported in ("global_clipnorm", "clipnorm", "clipvalue"):
            if kwargs.get(unsupported) is not None:
                raise FunmatchError(f"ScheduledDecayAdam: use clip_norm instead of {unsupported}")
            kwargs.pop(unsupported, None)
        # The base class' weight decay (lr-scaled) is not used; ours is applied in update_step.
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self._setup_funmatch(clip_norm, decay_pattern)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.decay_rate = float(weight_decay or 0.0)
        if base_learning_rate is None:
            if isinstance(learning_rate, (int, float)):
                base_learning_rate = float(learning_rate)
            else:
                base_learning_rate = getattr(learning_rate, "base_learning_rate", None)
        if self.decay_rate and not (base_learning_rate and base_learning_rate > 0):
            raise FunmatchError(
                "ScheduledDecayAdam: weight_decay needs a positive base_learning_rate "
                "(pass it, or use a schedule with a base_learning_rate attribute)"
            )
        self.base_learning_rate = None if base_learning_rate is None else float(base_learning_rate)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"]
        )

    def _apply_weight_decay(self, variables):
        # Decay is part of update_step (schedule-scaled, not lr-scaled); nothing to do here.
        return

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]

        self.assign_add(momentum, (gradient - momentum) * (1.0 - self.beta_1))
        self.assign_add(velocity, (ops.square(gradient) - velocity) * (1.0 - self.beta_2))
        momentum_hat = momentum / (1.0 - ops.power(ops.cast(self.beta_1, dtype), step))
        velocity_hat = velocity / (1.0 - ops.power(ops.cast(self.beta_2, dtype), step))
        update = lr * momentum_hat / (ops.sqrt(velocity_hat) + self.epsilon)
        if self.decay_rate and self.decays(variable):
            schedule_multiplier = lr / self.base_learning_rate
            update = update + (self.decay_rate * schedule_multiplier) * variable
        self.assign_sub(variable, update)

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        config.update(self._funmatch_config())
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "weight_decay": self.decay_rate,
                "base_learning_rate": self.base_learning_rate,
            }
        )
        return config


# ---------------------------------------------------------------------------------------------
# Keras optimizers with the same clipping and kernel selection
# ---------------------------------------------------------------------------------------------


def _with_funmatch_clipping(keras_class, registered_name):
    """A subclass of a Keras optimizer with clip-after-reduce and decay only on `decay_pattern`."""

    class Wrapped(_FunmatchOptimizerMixin, keras_class):
        def __init__(self, *args, clip_norm=None, decay_pattern=DEFAULT_DECAY_PATTERN, **kwargs):
            for unsupported in ("global_clipnorm", "clipnorm", "clipvalue"):
                if kwargs.get(unsupported) is not None:
                    raise FunmatchError(f"{registered_name}: use clip_norm instead of {unsupported}")
                kwargs.pop(unsupported, None)
            super().__init__(*args, **kwargs)
            self._setup_funmatch(clip_norm, decay_pattern)

        def get_config(self):
            config = super().get_config()
            config.update(self._funmatch_config())
            return config

    Wrapped.__name__ = Wrapped.__qualname__ = registered_name
    Wrapped.__doc__ = (
        f"`keras.optimizers.{keras_class.__name__}` with global-norm clipping after the "
        "cross-replica sum (`clip_norm`) and weight decay only on variables whose path matches "
        "`decay_pattern` (Keras' rule otherwise: decay multiplied by the learning rate)."
    )
    return keras.saving.register_keras_serializable(package="funmatch")(Wrapped)


ClippedAdamW = _with_funmatch_clipping(keras.optimizers.AdamW, "ClippedAdamW")
ClippedSGD = _with_funmatch_clipping(keras.optimizers.SGD, "ClippedSGD")
ClippedLion = _with_funmatch_clipping(keras.optimizers.Lion, "ClippedLion")
ClippedMuon = _with_funmatch_clipping(keras.optimizers.Muon, "ClippedMuon")


def make_optimizer(
    name: str,
    *,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int,
    weight_decay: float = 0.0,
    clip_norm: float | None = 1.0,
    **kwargs,
) -> keras.optimizers.Optimizer:
    """Build an optimizer by name with a warmup-cosine schedule peaking at `learning_rate`.

    Names:
        "adam": the official recipe, `ScheduledDecayAdam` (wd scaled by the schedule, not by lr).
        "adamw": Keras AdamW (w ← w − lr_t·wd·w: wd *is* multiplied by the lr), eps 1e-8.
        "sgd": SGD with momentum 0.9 (Keras decoupled decay, multiplied by the lr, if wd > 0).
        "lion": Keras Lion (decay multiplied by the lr).
        "muon": Keras Muon (AdamW for non-matrix variables; see its docs).
    All clip the global gradient norm to `clip_norm` after the cross-replica sum and decay only
    kernels (`decay_pattern`, overridable through kwargs). Extra kwargs go to the optimizer class.

    Raises:
        FunmatchError: for an unknown name.
    """
    schedule = warmup_cosine(learning_rate, total_steps, warmup_steps)
    weight_decay = float(weight_decay or 0.0)
    key = name.lower()
    if key == "adam":
        return ScheduledDecayAdam(
            learning_rate=schedule, weight_decay=weight_decay, clip_norm=clip_norm, **kwargs
        )
    common = {"learning_rate": schedule, "clip_norm": clip_norm}
    if key == "adamw":
        kwargs.setdefault("epsilon", 1e-8)
        return ClippedAdamW(weight_decay=weight_decay, **common, **kwargs)
    if key == "sgd":
        kwargs.setdefault("momentum", 0.9)
        return ClippedSGD(weight_decay=weight_decay or None, **common, **kwargs)
    if key == "lion":
        return ClippedLion(weight_decay=weight_decay or None, **common, **kwargs)
    if key == "muon":
        return ClippedMuon(weight_decay=weight_decay, **common, **kwargs)
    raise FunmatchError(f"unknown optimizer {name!r}; expected one of: {', '.join(OPTIMIZER_NAMES)}")
