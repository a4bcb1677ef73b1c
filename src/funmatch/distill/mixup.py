"""Batch mixup on device, the function-matching way (big_vision `utils.get_mixup`).

One coefficient per batch, a ~ Beta(p, p), folded to a = max(a, 1 − a) so that every image stays
the dominant part of its own mix; the partner of image i is image i − 1 (a roll by one along the
batch axis). A roll pairs every image with exactly one partner and uses every image as a partner
exactly once; a reverse would pair each image with its mirror and repeat pairs.

Every image key of the batch (the student's "image" and the teacher's "teacher" view, possibly at
another resolution) gets the same coefficient and the same partner, so teacher and student keep
seeing the same (mixed) picture.

Written with `keras.ops` / `keras.random` only: it runs eagerly, inside `jax.jit`, inside
`tf.function`, and inside a Keras train step (where the `SeedGenerator` state is model state).
"""

from __future__ import annotations

import keras
from keras import ops

from funmatch.errors import FunmatchError


# Marsaglia–Tsang draws this many candidates at once and keeps the first accepted one; each is
# accepted with probability > 0.95 for shape >= 1, so all 16 fail with probability < 1e-20.
GAMMA_CANDIDATES = 16


def _seeds(seed, count: int) -> list:
    """Independent seeds for `count` draws: a SeedGenerator advances by itself; an int is offset."""
    if isinstance(seed, int):
        return [seed + i for i in range(count)]
    return [seed] * count


def _gamma(shape_parameter: float, seeds: list, shape: tuple) -> "keras.KerasTensor":
    """Gamma(shape_parameter, 1) samples of `shape` (Marsaglia & Tsang 2000), with fixed-size ops only.

    `keras.random.beta`/`gamma` lower to TensorFlow's StatelessRandomGammaV3, which has no XLA
    kernel: the TensorFlow train step would not compile with `jit_compile=True` (GPU/TPU).
    """
    boost = shape_parameter < 1.0  # Gamma(k) = Gamma(k + 1) · U^(1/k)
    k = shape_parameter + 1.0 if boost else shape_parameter
    d = k - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    x = keras.random.normal((*shape, GAMMA_CANDIDATES), seed=seeds[0], dtype="float32")
    u = keras.random.uniform((*shape, GAMMA_CANDIDATES), seed=seeds[1], dtype="float32")
    v = (1.0 + c * x) ** 3
    positive = v > 0
    safe_v = ops.where(positive, v, 1.0)
    accept = ops.logical_and(positive, ops.log(u) < 0.5 * x * x + d - d * safe_v + d * ops.log(safe_v))
    first = ops.argmax(ops.cast(accept, "int32"), axis=-1)
    chosen = ops.take_along_axis(safe_v, ops.expand_dims(first, -1), axis=-1)[..., 0]
    sample = d * ops.where(ops.any(accept, axis=-1), chosen, 1.0)
    if boost:
        extra = keras.random.uniform(shape, minval=1e-12, maxval=1.0, seed=seeds[2], dtype="float32")
        sample = sample * extra ** (1.0 / shape_parameter)
    return sample


def symmetric_beta(p: float, seed, shape: tuple = ()):
    """Beta(p, p) samples of `shape` (float32), XLA-compilable on every backend.

    p = 1 is U(0, 1) exactly; otherwise G1 / (G1 + G2) with G1, G2 ~ Gamma(p) independent.
    """
    p = float(p)
    if p <= 0:
        raise FunmatchError(f"Beta(p, p) needs p > 0, got {p}")
    if p == 1.0:
        return keras.random.uniform(shape, seed=_seeds(seed, 1)[0], dtype="float32")
    seeds = _seeds(seed, 6)
    first = _gamma(p, seeds[:3], shape)
    second = _gamma(p, seeds[3:], shape)
    return first / (first + second)


def mixup(batch: dict, *, seed, p: float = 1.0, image_keys=("image", "teacher")):
    """Mix every image key of `batch` with its roll-by-one partner, using one coefficient.

    Args:
        batch: dict of tensors with a leading batch axis B; image keys are [B, ...] floats (each key
            may have its own resolution).
        seed: a `keras.random.SeedGenerator` (stateful or traced) or an int.
        p: the Beta(p, p) concentration; p = 1 gives a ~ U(0, 1); p = 0 leaves the batch unchanged.
        image_keys: the keys to mix; keys absent from `batch` are skipped. Other keys (label,
            index, teacher_logits, _mask, ...) are passed through untouched.

    Returns:
        (mixed_batch, coefficient): a new dict (the input is not modified) and the scalar float32
        coefficient a in [0.5, 1] (1.0 when p = 0). mixed[key][i] = a·x[i] + (1 − a)·x[i − 1].
    """
    p = float(p)
    if p < 0:
        raise FunmatchError(f"mixup p must be >= 0, got {p}")
    mixed = dict(batch)
    if p == 0:
        return mixed, ops.convert_to_tensor(1.0, dtype="float32")
    coefficient = symmetric_beta(p, seed)
    coefficient = ops.maximum(coefficient, 1.0 - coefficient)
    for key in image_keys:
        if key not in batch:
            continue
        images = batch[key]
        weight = ops.cast(coefficient, images.dtype)
        partners = ops.roll(images, shift=1, axis=0)  # partners[i] = images[i - 1]
        mixed[key] = weight * images + (1.0 - weight) * partners
    return mixed, coefficient
