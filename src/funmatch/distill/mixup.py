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


def mixup(batch: dict, *, seed, p: float = 1.0, image_keys=("image", "teacher")):
    """Mix every image key of `batch` with its roll-by-one partner, using one coefficient.

    Args:
        batch: dict of tensors with a leading batch axis B; image keys are [B, ...] floats (each key
            may have its own resolution).
        seed: a `keras.random.SeedGenerator` (stateful or traced), an int, or anything
            `keras.random.beta` accepts as `seed`.
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
    coefficient = keras.random.beta((), alpha=p, beta=p, seed=seed, dtype="float32")
    coefficient = ops.maximum(coefficient, 1.0 - coefficient)
    for key in image_keys:
        if key not in batch:
            continue
        images = batch[key]
        weight = ops.cast(coefficient, images.dtype)
        partners = ops.roll(images, shift=1, axis=0)  # partners[i] = images[i - 1]
        mixed[key] = weight * images + (1.0 - weight) * partners
    return mixed, coefficient
