"""The Distiller: frozen teacher, labels out of the gradient, the four modes, eval masking, NaN guard."""

import numpy as np
import pytest

from funmatch.errors import FunmatchError

pytestmark = pytest.mark.both_backends


DEFAULT = object()


def make_distiller(models, mode="function_matching", teacher=DEFAULT, student=None, **kwargs):
    from funmatch.distill import Distiller
    from funmatch.optim import make_optimizer

    if teacher is DEFAULT:
        teacher = models.conv_classifier(12, seed=10, batch_norm=True)
    student = student if student is not None else models.conv_classifier(8, seed=20)
    distiller = Distiller(teacher, student, mode=mode, temperature=kwargs.pop("temperature", 2.0), **kwargs)
    distiller.compile(
        optimizer=make_optimizer("adam", learning_rate=0.05, total_steps=10, warmup_steps=0, weight_decay=1e-3)
    )
    return distiller


def weights(model):
    return [np.asarray(w).copy() for w in model.weights]


def test_one_step_changes_student_not_teacher(models):
    distiller = make_distiller(models)
    batch = models.random_batch(teacher_resolution=12)
    teacher_before, student_before = weights(distiller.teacher), weights(distiller.student)
    history = distiller.fit(models.as_dataset(batch), epochs=1, verbose=0)
    assert set(history.history) >= {"loss", "agreement", "accuracy"}
    assert np.isfinite(history.history["loss"][0]) and history.history["loss"][0] > 0
    for before, after in zip(teacher_before, weights(distiller.teacher)):  # BatchNorm stats included
        np.testing.assert_array_equal(before, after)
    changed = [not np.array_equal(b, a) for b, a in zip(student_before, weights(distiller.student))]
    assert all(changed)
    # The optimizer tracks the student's trainable variables only: iteration + 2 slots each.
    assert len(distiller.optimizer.variables) == 1 + 2 * len(distiller.student.trainable_variables)
    assert not distiller.teacher.trainable_variables


def test_labels_do_not_affect_the_update(models):
    batch = models.random_batch(teacher_resolution=12)
    other_labels = dict(batch, label=np.roll(batch["label"], 3))
    results = []
    for data in (batch, other_labels):
        distiller = make_distiller(models, seed=7)
        distiller.fit(models.as_dataset(data), epochs=1, verbose=0)
        results.append(weights(distiller.student))
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)


def probe_distiller(models, mode, teacher_pool=1, resolution=4):
    """Teacher and student are pixel probes: equal logits ⇔ equal input pixels."""
    teacher = models.pixel_probe(resolution * teacher_pool, pool=teacher_pool, trainable_identity=True)
    student = models.pixel_probe(resolution, trainable_identity=True)
    return make_distiller(models, mode=mode, teacher=teacher, student=student, temperature=1.0)


def upsampled_teacher_view(batch, factor):
    """The same "crop" at factor× the resolution (pixel repeat): average pooling undoes it."""
    return np.repeat(np.repeat(batch["image"], factor, axis=1), factor, axis=2)


def seed_state(distiller):
    return np.asarray(distiller.seed_generator.state).copy()


def test_consistent_mode_feeds_identical_pixels(models):
    distiller = probe_distiller(models, "consistent")
    batch = models.random_batch(resolution=4)
    state = seed_state(distiller)
    history = distiller.fit(models.as_dataset(batch), epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(0.0, abs=1e-6)
    assert history.history["agreement"][0] == 1.0
    np.testing.assert_array_equal(seed_state(distiller), state)  # no mixup drawn
    outputs = distiller(batch, training=True)  # no mixup either: logits are the raw pixels
    np.testing.assert_allclose(np.asarray(outputs["teacher"]), batch["image"].reshape(8, -1), rtol=1e-6)


def test_function_matching_mixes_both_views_alike_at_two_resolutions(models):
    factor = 2
    distiller = probe_distiller(models, "function_matching", teacher_pool=factor)
    batch = models.random_batch(resolution=4)
    batch["teacher"] = upsampled_teacher_view(batch, factor)
    # In the compiled train step: zero loss means both probes saw the same mixed pixels.
    state = seed_state(distiller)
    history = distiller.fit(models.as_dataset(batch), epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(0.0, abs=1e-6)
    assert not np.array_equal(seed_state(distiller), state)  # a mixup coefficient was drawn
    # Eagerly: the logits are a·x_i + (1 − a)·x_{i−1} for one a, for student and teacher alike.
    fresh = probe_distiller(models, "function_matching", teacher_pool=factor)
    outputs = fresh(batch, training=True)
    images = batch["image"].reshape(8, -1)
    partners = np.roll(images, 1, axis=0)
    student = np.asarray(outputs["student"])
    a = float(np.sum((student - partners) * (images - partners)) / np.sum((images - partners) ** 2))
    assert 0.5 <= a < 1.0
    np.testing.assert_allclose(student, a * images + (1 - a) * partners, atol=1e-5)
    np.testing.assert_allclose(np.asarray(outputs["teacher"]), student, atol=1e-5)
    # Not training (evaluation): no mixup.
    np.testing.assert_allclose(np.asarray(fresh(batch, training=False)["student"]), images, atol=1e-6)


def test_independent_mode_uses_the_separate_teacher_view(models):
    distiller = probe_distiller(models, "independent")
    batch = models.random_batch(resolution=4, teacher_resolution=4)
    history = distiller.fit(models.as_dataset(batch), epochs=1, verbose=0)
    assert history.history["loss"][0] > 0.1
    outputs = probe_distiller(models, "independent")(batch, training=True)  # untrained probes
    np.testing.assert_allclose(np.asarray(outputs["teacher"]), batch["teacher"].reshape(8, -1), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(outputs["student"]), batch["image"].reshape(8, -1), rtol=1e-6)
    with pytest.raises(FunmatchError, match="'teacher' view"):
        distiller(models.random_batch(resolution=4), training=True)


def test_fixed_teacher_uses_cached_logits_and_never_calls_the_teacher(models):
    import keras

    from funmatch.distill import DistillationLoss

    class ExplodingTeacher(keras.Model):
        def call(self, inputs, training=False):
            raise AssertionError("the teacher must not be called in fixed_teacher mode")

    student = models.conv_classifier(8, seed=20)
    batch = models.random_batch()
    batch["teacher_logits"] = np.random.default_rng(1).normal(size=(8, 5)).astype("float32") * 3
    expected_loss = float(
        DistillationLoss(temperature=2.0)(batch["teacher_logits"], student.predict_on_batch(batch["image"]))
    )
    distiller = make_distiller(models, mode="fixed_teacher", teacher=ExplodingTeacher(), student=student)
    history = distiller.fit(models.as_dataset(batch), epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(expected_loss, rel=1e-4)
    # Without any teacher model at all, too.
    no_teacher = make_distiller(
        models, mode="fixed_teacher", teacher=None, student=models.conv_classifier(8, seed=20)
    )
    assert no_teacher.teacher is None
    history = no_teacher.fit(models.as_dataset(batch), epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(expected_loss, rel=1e-4)


def test_eval_masking_counts_each_real_example_once(models):
    distiller = make_distiller(models)
    full = models.random_batch(seed=1, teacher_resolution=12)
    padded = models.random_batch(seed=2, teacher_resolution=12)
    full["_mask"] = np.ones(8, "float32")
    padded["_mask"] = np.array([1, 1, 1, 0, 0, 0, 0, 0], "float32")
    # Poison the padding: labels that the student always gets right, big logits differences.
    student_pred = [np.asarray(distiller.student.predict_on_batch(b["image"])) for b in (full, padded)]
    teacher_pred = [np.asarray(distiller.teacher.predict_on_batch(b["teacher"])) for b in (full, padded)]
    padded["label"][3:] = student_pred[1].argmax(axis=1)[3:]
    keep = [np.ones(8, bool), padded["_mask"].astype(bool)]
    correct = sum(int((s.argmax(1) == b["label"])[k].sum()) for s, b, k in zip(student_pred, (full, padded), keep))
    agree = sum(int((s.argmax(1) == t.argmax(1))[k].sum()) for s, t, k in zip(student_pred, teacher_pred, keep))
    from funmatch.distill import distance

    kls = np.concatenate(
        [np.asarray(distance(s, t, "kl", temperature=2.0))[k] for s, t, k in zip(student_pred, teacher_pred, keep)]
    )
    result = distiller.evaluate(models.as_dataset(full, padded), verbose=0, return_dict=True)
    assert result["accuracy"] == pytest.approx(correct / 11, abs=1e-6)
    assert result["agreement"] == pytest.approx(agree / 11, abs=1e-6)
    assert result["kl"] == pytest.approx(kls.mean(), rel=1e-4)


def test_bad_configuration_errors(models):
    from funmatch.distill import Distiller

    student = models.conv_classifier(8)
    with pytest.raises(FunmatchError, match="unknown distillation mode 'mixed'.*function_matching"):
        Distiller(student, student, mode="mixed")
    with pytest.raises(FunmatchError, match="needs a teacher"):
        Distiller(None, student, mode="consistent")
    distiller = Distiller(None, student, mode="fixed_teacher")
    with pytest.raises(FunmatchError, match="teacher_logits"):
        distiller(models.random_batch(), training=True)


@pytest.mark.parametrize("mixup_p", [1.0, 0.5])
def test_train_step_compiles_with_xla(models, mixup_p):
    """With a GPU/TPU Keras compiles the step with XLA (jit_compile="auto"); mixup must lower there."""
    from funmatch.distill import Distiller
    from funmatch.optim import make_optimizer

    distiller = Distiller(models.conv_classifier(12, seed=10), models.conv_classifier(8, seed=20),
                          mode="function_matching", mixup_p=mixup_p)
    distiller.compile(optimizer=make_optimizer("adam", learning_rate=0.05, total_steps=10, warmup_steps=0),
                      jit_compile=True)
    before = weights(distiller.student)
    history = distiller.fit(models.as_dataset(models.random_batch(teacher_resolution=12)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(b, a) for b, a in zip(before, weights(distiller.student)))
