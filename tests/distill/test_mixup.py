"""mixup(): one coefficient, roll-by-one partners, aligned views, p = 0 identity, jit-able."""

import numpy as np
import pytest

from funmatch.errors import FunmatchError

pytestmark = pytest.mark.both_backends


def one_hot_batch(batch_size=6, resolution=2, teacher_resolution=3):
    """Image i is the constant i+1 (so mixes can be decoded); the teacher view likewise, 10×."""
    student = np.ones((batch_size, resolution, resolution, 3), "float32")
    teacher = np.ones((batch_size, teacher_resolution, teacher_resolution, 3), "float32")
    values = np.arange(1, batch_size + 1, dtype="float32")
    return {
        "image": student * values[:, None, None, None],
        "teacher": teacher * 10 * values[:, None, None, None],
        "label": np.arange(batch_size, dtype="int64"),
        "index": np.arange(100, 100 + batch_size, dtype="int64"),
    }


def test_roll_partners_same_coefficient_across_views():
    import keras

    from funmatch.distill import mixup

    batch = one_hot_batch()
    mixed, coefficient = mixup(batch, seed=keras.random.SeedGenerator(3), p=1.0)
    a = float(coefficient)
    assert 0.5 <= a <= 1.0
    values = np.arange(1, 7, dtype="float32")
    partners = np.roll(values, 1)  # partner of i is i − 1; of 0 is the last
    expected = a * values + (1 - a) * partners
    np.testing.assert_allclose(np.asarray(mixed["image"])[:, 0, 0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(mixed["teacher"])[:, 1, 2, 1], 10 * expected, rtol=1e-6)
    # Each image is used as a partner exactly once (roll, not reverse).
    assert sorted(partners.tolist()) == values.tolist()
    assert mixed["image"].shape == batch["image"].shape and mixed["teacher"].shape == batch["teacher"].shape
    # Other keys untouched; the input dict is not modified.
    np.testing.assert_array_equal(np.asarray(mixed["label"]), batch["label"])
    np.testing.assert_array_equal(np.asarray(mixed["index"]), batch["index"])
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], values)


def test_coefficient_distribution_and_fold():
    """a = max(u, 1 − u) with u ~ U(0, 1) at p = 1: a ~ U(0.5, 1), mean 0.75."""
    import keras

    from funmatch.distill import mixup

    seed = keras.random.SeedGenerator(0)
    batch = {"image": np.ones((2, 1, 1, 1), "float32")}
    draws = np.array([float(mixup(batch, seed=seed, p=1.0)[1]) for _ in range(200)])
    assert draws.min() >= 0.5 and draws.max() <= 1.0
    assert len(np.unique(draws)) > 150  # a fresh coefficient every call
    assert abs(draws.mean() - 0.75) < 0.04
    # Small p puts the mass near 0 and 1, i.e. a near 1 after the fold.
    small = np.array([float(mixup(batch, seed=seed, p=0.1)[1]) for _ in range(100)])
    assert np.median(small) > 0.9


def test_p_zero_is_identity_and_negative_p_is_an_error():
    import keras

    from funmatch.distill import mixup

    batch = one_hot_batch()
    mixed, coefficient = mixup(batch, seed=keras.random.SeedGenerator(1), p=0.0)
    assert float(coefficient) == 1.0
    for key in batch:
        np.testing.assert_array_equal(np.asarray(mixed[key]), batch[key])
    with pytest.raises(FunmatchError, match="p must be >= 0"):
        mixup(batch, seed=1, p=-1.0)


def test_missing_keys_skipped_and_custom_keys():
    import keras

    from funmatch.distill import mixup

    batch = one_hot_batch()
    del batch["teacher"]
    mixed, _ = mixup(batch, seed=keras.random.SeedGenerator(2))
    assert "teacher" not in mixed
    batch["other"] = batch["image"] * 2
    mixed, a = mixup(batch, seed=keras.random.SeedGenerator(2), image_keys=("other",))
    np.testing.assert_array_equal(np.asarray(mixed["image"]), batch["image"])
    expected = float(a) * batch["other"] + (1 - float(a)) * np.roll(batch["other"], 1, axis=0)
    np.testing.assert_allclose(np.asarray(mixed["other"]), expected, rtol=1e-6)


def test_works_compiled_on_backend(backend):
    """Inside jax.jit (stateless seed) or tf.function (stateful SeedGenerator)."""
    import keras

    from funmatch.distill import mixup

    batch = one_hot_batch()
    images, teacher = batch["image"], batch["teacher"]
    if backend == "jax":
        import jax

        @jax.jit
        def mix(images, teacher, seed):
            mixed, a = mixup({"image": images, "teacher": teacher}, seed=seed)
            return mixed["image"], mixed["teacher"], a

        seed_a = keras.random.SeedGenerator(5).state.value
        outputs = [mix(images, teacher, seed_a), mix(images, teacher, seed_a + 1)]
    else:
        import tensorflow as tf

        generator = keras.random.SeedGenerator(5)

        @tf.function(jit_compile=False)
        def mix(images, teacher):
            mixed, a = mixup({"image": images, "teacher": teacher}, seed=generator)
            return mixed["image"], mixed["teacher"], a

        outputs = [mix(images, teacher), mix(images, teacher)]
    values = np.arange(1, 7, dtype="float32")
    coefficients = []
    for mixed_images, mixed_teacher, a in outputs:
        a = float(a)
        coefficients.append(a)
        expected = a * values + (1 - a) * np.roll(values, 1)
        np.testing.assert_allclose(np.asarray(mixed_images)[:, 0, 0, 0], expected, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(mixed_teacher)[:, 0, 0, 0], 10 * expected, rtol=1e-6)
    assert coefficients[0] != coefficients[1]  # the seed advances between steps


@pytest.mark.parametrize("p", [0.2, 0.5, 1.0, 2.0, 5.0])
def test_symmetric_beta_matches_the_distribution(p):
    """The XLA-friendly Beta(p, p) sampler against numpy's: mean, variance and the folded mean."""
    import keras

    from funmatch.distill.mixup import symmetric_beta

    samples = np.asarray(keras.ops.convert_to_numpy(symmetric_beta(p, keras.random.SeedGenerator(3), shape=(20000,))))
    reference = np.random.default_rng(0).beta(p, p, 200000)
    assert samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_allclose(samples.mean(), 0.5, atol=0.01)
    np.testing.assert_allclose(samples.var(), reference.var(), rtol=0.05)  # 1 / (4 (2p + 1))
    folded = np.maximum(samples, 1 - samples).mean()
    np.testing.assert_allclose(folded, np.maximum(reference, 1 - reference).mean(), atol=0.01)


@pytest.mark.both_backends
def test_mixup_compiles_with_xla():
    """TensorFlow's GPU/TPU path compiles the train step with XLA; keras.random.beta does not lower there."""
    import keras

    from funmatch.distill.mixup import mixup

    batch = {"image": np.ones((4, 8, 8, 3), np.float32) * np.arange(4, dtype=np.float32)[:, None, None, None]}
    seed = keras.random.SeedGenerator(1)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda b: mixup(b, seed=seed, p=0.5), jit_compile=True)
        mixed, a = compiled({"image": tf.constant(batch["image"])})
    else:
        import jax

        def step(b, state):
            with keras.StatelessScope(state_mapping=[(seed.state, state)]) as scope:
                out = mixup(b, seed=seed, p=0.5)
            return out, scope.get_current_value(seed.state)

        (mixed, a), _ = jax.jit(step)(batch, seed.state.value)
    a = float(np.asarray(a))
    assert 0.5 <= a <= 1.0
    expected = a * batch["image"] + (1 - a) * np.roll(batch["image"], 1, axis=0)
    np.testing.assert_allclose(np.asarray(mixed["image"]), expected, rtol=1e-5)
