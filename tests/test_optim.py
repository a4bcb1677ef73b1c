"""The official optimizer (clip → Adam → schedule-scaled kernel decay), the schedule, and the others."""

import math

import numpy as np
import pytest

from funmatch.errors import FunmatchError

pytestmark = pytest.mark.both_backends


def reference_schedule(step, base, total, warmup):
    """big_vision's warmup + cosine, written out."""
    factor = 0.5 * (1 + math.cos(math.pi * min(max((step - warmup) / (total - warmup), 0.0), 1.0)))
    if warmup:
        factor *= min(1.0, step / warmup)
    return base * factor


def test_schedule_values_at_hand_picked_steps():
    import keras

    from funmatch.optim import WarmupCosine, warmup_cosine

    schedule = warmup_cosine(0.1, total_steps=110, warmup_steps=10)
    expected = {0: 0.0, 5: 0.05, 10: 0.1, 60: 0.05, 110: 0.0, 200: 0.0}
    expected[35] = 0.1 * 0.5 * (1 + math.cos(math.pi / 4))
    for step, value in expected.items():
        assert float(schedule(step)) == pytest.approx(value, abs=1e-7), step
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(restored, WarmupCosine) and float(restored(35)) == pytest.approx(expected[35])
    assert float(warmup_cosine(1.0, 4, 0)(2)) == pytest.approx(0.5)
    with pytest.raises(FunmatchError, match="warmup_steps"):
        warmup_cosine(0.1, total_steps=10, warmup_steps=11)


# Gradients for 5 steps; step index 2 has a norm ≫ 1, so the clip is active there (and only there).
GRADIENTS = [
    (np.array([[0.1, -0.2], [0.3, 0.05]]), np.array([0.2, -0.1])),
    (np.array([[-0.3, 0.1], [0.0, 0.2]]), np.array([0.1, 0.3])),
    (np.array([[4.0, -3.0], [2.0, 5.0]]), np.array([-6.0, 1.0])),
    (np.array([[0.05, 0.02], [-0.1, 0.4]]), np.array([0.0, -0.2])),
    (np.array([[0.2, 0.2], [0.2, -0.2]]), np.array([0.3, 0.1])),
]
KERNEL0 = np.array([[0.5, -1.0], [1.5, 2.0]])
BIAS0 = np.array([0.3, -0.7])


def reference_updates(base_lr, total, warmup, weight_decay, clip_norm, b1=0.9, b2=0.999, eps=1e-8):
    """The official update written out in float64: optax clip → scale_by_adam → lr → wd → schedule."""
    params = {"kernel": KERNEL0.copy(), "bias": BIAS0.copy()}
    first = {k: np.zeros_like(v) for k, v in params.items()}
    second = {k: np.zeros_like(v) for k, v in params.items()}
    clipped_steps = []
    for step, (g_kernel, g_bias) in enumerate(GRADIENTS):
        grads = {"kernel": g_kernel, "bias": g_bias}
        norm = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
        if norm >= clip_norm:
            grads = {k: g * clip_norm / norm for k, g in grads.items()}
            clipped_steps.append(step)
        multiplier = reference_schedule(step, 1.0, total, warmup)
        t = step + 1
        for name in params:
            first[name] = b1 * first[name] + (1 - b1) * grads[name]
            second[name] = b2 * second[name] + (1 - b2) * grads[name] ** 2
            adam = (first[name] / (1 - b1**t)) / (np.sqrt(second[name] / (1 - b2**t)) + eps)
            update = base_lr * adam
            if name == "kernel":
                update = update + weight_decay * params[name]
            params[name] = params[name] - multiplier * update
    return params, clipped_steps


def test_scheduled_decay_adam_matches_hand_rolled_update():
    import keras

    from funmatch.optim import make_optimizer

    base_lr, total, warmup, weight_decay, clip_norm = 0.05, 6, 2, 0.1, 1.0
    expected, clipped_steps = reference_updates(base_lr, total, warmup, weight_decay, clip_norm)
    assert clipped_steps == [2]

    kernel = keras.Variable(KERNEL0.astype("float32"), name="kernel")
    bias = keras.Variable(BIAS0.astype("float32"), name="bias")
    optimizer = make_optimizer(
        "adam", learning_rate=base_lr, total_steps=total, warmup_steps=warmup,
        weight_decay=weight_decay, clip_norm=clip_norm,
    )
    for g_kernel, g_bias in GRADIENTS:
        optimizer.apply_gradients(
            [(g_kernel.astype("float32"), kernel), (g_bias.astype("float32"), bias)]
        )
    assert int(optimizer.iterations) == len(GRADIENTS)
    np.testing.assert_allclose(np.asarray(kernel), expected["kernel"], rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(bias), expected["bias"], rtol=2e-6, atol=1e-7)
    # The same run without clipping ends elsewhere: the clip was really applied.
    unclipped, _ = reference_updates(base_lr, total, warmup, weight_decay, clip_norm=1e9)
    assert np.abs(unclipped["kernel"] - expected["kernel"]).max() > 1e-3


def test_decay_on_kernels_only_and_not_scaled_by_lr():
    """With zero gradients Adam's update is 0, so only the decay moves the weights."""
    import keras

    from funmatch.optim import ScheduledDecayAdam, make_optimizer, warmup_cosine

    layer = keras.layers.Dense(3)
    layer.build((None, 2))
    kernel0, bias0 = (np.asarray(v).copy() for v in (layer.kernel, layer.bias))
    bias0 = bias0 + 1.0
    layer.bias.assign(bias0)
    optimizer = make_optimizer("adam", learning_rate=0.01, total_steps=10, warmup_steps=0, weight_decay=0.2)
    assert isinstance(optimizer, ScheduledDecayAdam)
    zeros = [np.zeros(v.shape, "float32") for v in (layer.kernel, layer.bias)]
    optimizer.apply_gradients(zip(zeros, [layer.kernel, layer.bias]))
    # multiplier(0) = 1 without warmup: kernel ← kernel·(1 − wd), independent of lr = 0.01.
    np.testing.assert_allclose(np.asarray(layer.kernel), kernel0 * (1 - 0.2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.bias), bias0, rtol=0)
    assert optimizer.decays(layer.kernel) and not optimizer.decays(layer.bias)

    # A custom pattern decays what it names.
    custom = ScheduledDecayAdam(
        learning_rate=warmup_cosine(0.01, 10, 0), weight_decay=0.1, decay_pattern=r"bias$"
    )
    custom.build([layer.kernel, layer.bias])
    assert custom.decays(layer.bias) and not custom.decays(layer.kernel)


def test_keras_adamw_decay_is_scaled_by_lr():
    """make_optimizer("adamw") is Keras' rule: w ← w − lr·wd·w (still kernels only)."""
    import keras

    from funmatch.optim import make_optimizer

    layer = keras.layers.Dense(3, bias_initializer="ones")
    layer.build((None, 2))
    kernel0 = np.asarray(layer.kernel).copy()
    optimizer = make_optimizer("adamw", learning_rate=0.01, total_steps=10, warmup_steps=0, weight_decay=0.2)
    zeros = [np.zeros(v.shape, "float32") for v in (layer.kernel, layer.bias)]
    optimizer.apply_gradients(zip(zeros, [layer.kernel, layer.bias]))
    np.testing.assert_allclose(np.asarray(layer.kernel), kernel0 * (1 - 0.01 * 0.2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.bias), 1.0)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "lion", "muon"])
def test_every_named_optimizer_takes_a_step_and_serialises(name):
    import keras

    from funmatch.optim import make_optimizer

    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    before = np.asarray(layer.kernel).copy()
    optimizer = make_optimizer(name, learning_rate=0.01, total_steps=10, warmup_steps=0, weight_decay=1e-3)
    grads = [np.full(v.shape, 0.5, "float32") for v in (layer.kernel, layer.bias)]
    optimizer.apply_gradients(zip(grads, [layer.kernel, layer.bias]))
    assert not np.allclose(np.asarray(layer.kernel), before)
    config = keras.optimizers.serialize(optimizer)
    restored = keras.optimizers.deserialize(config)
    assert type(restored) is type(optimizer)
    assert restored.get_config()["clip_norm"] == 1.0
    assert float(restored.learning_rate) == pytest.approx(0.01)


def test_unknown_optimizer_lists_names():
    from funmatch.optim import make_optimizer

    with pytest.raises(FunmatchError, match="adam, adamw, sgd, lion, muon"):
        make_optimizer("rmsprop", learning_rate=0.1, total_steps=10, warmup_steps=0)


def test_optimizer_state_survives_model_save_and_load(tmp_path):
    """Save a compiled model mid-training; the reloaded optimizer continues identically."""
    import keras

    from funmatch.optim import make_optimizer

    def build():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(0))])
        model.compile(
            optimizer=make_optimizer("adam", learning_rate=0.05, total_steps=20, warmup_steps=2, weight_decay=0.01),
            loss="mse",
        )
        return model

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 3)).astype("float32")
    model = build()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert int(restored.optimizer.iterations) == 4
    for original, loaded in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(original), np.asarray(loaded))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    restored.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for original, loaded in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_allclose(original, loaded, rtol=1e-6, atol=1e-7)
