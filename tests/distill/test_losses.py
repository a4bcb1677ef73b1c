"""DistillationLoss and distance() against hand-computed values."""

import math

import numpy as np
import pytest

from funmatch.errors import FunmatchError

pytestmark = pytest.mark.both_backends

TEACHER = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]], dtype="float32")
STUDENT = np.array([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]], dtype="float32")


def hand_kl(teacher_row, student_row, temperature):
    """T²·Σ p log(p/q) with p, q the softmaxes at temperature T, written out with math.exp."""
    teacher_exp = [math.exp(v / temperature) for v in teacher_row]
    student_exp = [math.exp(v / temperature) for v in student_row]
    p = [e / sum(teacher_exp) for e in teacher_exp]
    q = [e / sum(student_exp) for e in student_exp]
    return temperature**2 * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_kl_closed_form_case():
    from funmatch.distill import distance

    # Row 0: log p − log q = [−2, 0, 2] (same normaliser), so KL = 2·(p3 − p1).
    e = math.e
    expected_row0 = 2 * (e**3 - e) / (e + e**2 + e**3)
    # Row 1: q is uniform, so KL = Σ p log p + log 3.
    p = [1 / (2 + e**5), 1 / (2 + e**5), e**5 / (2 + e**5)]
    expected_row1 = sum(v * math.log(v) for v in p) + math.log(3)
    values = np.asarray(distance(STUDENT, TEACHER, "kl", temperature=1.0))
    np.testing.assert_allclose(values, [expected_row0, expected_row1], rtol=1e-5)
    assert expected_row0 == pytest.approx(1.1504, abs=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 10.0])
def test_loss_matches_hand_computation(temperature):
    from funmatch.distill import DistillationLoss

    per_example = [hand_kl(t, s, temperature) for t, s in zip(TEACHER, STUDENT)]
    loss = DistillationLoss(temperature=temperature)
    np.testing.assert_allclose(float(loss(TEACHER, STUDENT)), np.mean(per_example), rtol=1e-5)
    # sample_weight: Keras' sum_over_batch_size divides by B, not by the weights' sum.
    weighted = float(loss(TEACHER, STUDENT, sample_weight=np.array([1.0, 0.0], "float32")))
    np.testing.assert_allclose(weighted, per_example[0] / 2, rtol=1e-5)
    unreduced = DistillationLoss(temperature=temperature, reduction=None)
    np.testing.assert_allclose(np.asarray(unreduced(TEACHER, STUDENT)), per_example, rtol=1e-5)


def test_kl_invariant_to_constant_shift_and_zero_when_equal():
    from funmatch.distill import distance

    base = np.asarray(distance(STUDENT, TEACHER, "kl", temperature=2.0))
    shifted_teacher = np.asarray(distance(STUDENT, TEACHER + 100.0, "kl", temperature=2.0))
    shifted_student = np.asarray(distance(STUDENT - 37.5, TEACHER, "kl", temperature=2.0))
    np.testing.assert_allclose(shifted_teacher, base, rtol=1e-4)
    np.testing.assert_allclose(shifted_student, base, rtol=1e-4)
    same = np.asarray(distance(TEACHER, TEACHER, "kl", temperature=2.0))
    np.testing.assert_allclose(same, 0.0, atol=1e-6)


def test_kl_stable_for_huge_logits():
    from funmatch.distill import distance

    values = np.asarray(distance(STUDENT * 1000.0, TEACHER * 1000.0, "kl"))
    assert np.all(np.isfinite(values))
    # Teacher is one-hot on class 2 for both rows: KL = −log q_2 = (s_max − s_2)·1000 ... row 0: 2000.
    assert values[0] == pytest.approx(2000.0, rel=1e-5)


def test_keras_kl_divergence_on_logits_is_not_the_distillation_loss():
    """Why we write the loss: Keras' kl_divergence (LogitsDistillation's default) on raw logits
    is neither T²·KL of the softmaxes nor invariant to shifting the teacher's logits."""
    import keras

    from funmatch.distill import DistillationLoss

    # Logits inside (0, 1), where Keras' clipping to [eps, 1] does not hide the difference.
    teacher = np.array([[0.2, 0.5, 0.9]], "float32")
    student = np.array([[0.9, 0.5, 0.2]], "float32")
    ours = float(DistillationLoss()(teacher, student))
    keras_value = float(keras.losses.KLDivergence()(teacher, student))
    keras_shifted = float(keras.losses.KLDivergence()(teacher + 0.05, student))
    expected_keras = 0.2 * math.log(0.2 / 0.9) + 0.9 * math.log(0.9 / 0.2)  # Σ t·log(t/s) on logits
    assert keras_value == pytest.approx(expected_keras, rel=1e-4)
    assert ours == pytest.approx(hand_kl(teacher[0], student[0], 1.0), rel=1e-5)
    assert abs(keras_value - ours) > 0.5
    assert abs(keras_shifted - keras_value) > 0.05
    assert float(DistillationLoss()(teacher + 0.05, student)) == pytest.approx(ours, rel=1e-4)


def test_agreement_kinds():
    from funmatch.distill import distance

    teacher = np.array([[0, 9, 1, 2, 3, 4, 5], [9, 0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5, 9]], "float32")
    # Student top-1: 1, 6, 6. Student top-5 of row 1 excludes class 0 (its lowest two: 0, 1).
    student = np.array([[0, 9, 1, 2, 3, 4, 5], [0, 0.5, 1, 2, 3, 4, 9], [0, 1, 2, 3, 4, 5, 9]], "float32")
    np.testing.assert_array_equal(np.asarray(distance(student, teacher, "agree_top1")), [1, 0, 1])
    np.testing.assert_array_equal(np.asarray(distance(student, teacher, "agree_top5")), [1, 0, 1])
    # Teacher's class 0 is 5th in the student's ranking here, so top-5 agrees where top-1 does not.
    student_top5 = np.array([[0, 9, 1, 2, 3, 4, 5], [4, 0.5, 1, 3.5, 5, 6, 9], [0, 1, 2, 3, 4, 5, 9]], "float32")
    np.testing.assert_array_equal(np.asarray(distance(student_top5, teacher, "agree_top5")), [1, 1, 1])
    np.testing.assert_array_equal(np.asarray(distance(student_top5, teacher, "agree_top1")), [1, 0, 1])


def test_unknown_kind_and_bad_temperature():
    from funmatch.distill import DistillationLoss, distance

    with pytest.raises(FunmatchError, match="agree_top1"):
        distance(STUDENT, TEACHER, "cosine")
    with pytest.raises(FunmatchError, match="temperature"):
        DistillationLoss(temperature=0.0)


def test_loss_serialises():
    import keras

    from funmatch.distill import DistillationLoss

    loss = DistillationLoss(temperature=5.0)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, DistillationLoss) and restored.temperature == 5.0
    np.testing.assert_allclose(float(restored(TEACHER, STUDENT)), float(loss(TEACHER, STUDENT)))
