"""Tests of `funmatch.evaluation`: metrics against hand-computed values, and `evaluate_models` end to end.

The end-to-end fixture is a prepared dataset of 8 uniformly coloured 16 x 16 images, one per colour
code k = 4·[red] + 2·[green] + [blue] (each channel 0 or 255), in 3 classes. The models map an
image to the one-hot code of its colour (robust to JPEG and resizing: only the sign of each
channel's mean counts) and then to a row of a logit table chosen by hand, so every metric is known
exactly (see `CASES`).
"""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest

from funmatch.errors import FunmatchError

# ----------------------------------------------------------------------------------------------
# Hand-made fixture
# ----------------------------------------------------------------------------------------------

CLASS_NAMES = ["a_class", "b_class", "c_class"]
# code k: (label, (teacher prediction, confidence), (student prediction, confidence))
CASES = {
    0: (0, (0, 0.9), (0, 0.7)),
    1: (0, (0, 0.9), (1, 0.5)),
    2: (0, (0, 0.7), (0, 0.9)),
    3: (1, (1, 0.9), (1, 0.7)),
    4: (1, (1, 0.7), (1, 0.5)),
    5: (1, (2, 0.5), (2, 0.7)),
    6: (2, (2, 0.9), (0, 0.5)),
    7: (2, (2, 0.9), (2, 0.9)),
}
# By hand from CASES:
TEACHER_ACCURACY = 7 / 8  # only code 5 wrong
STUDENT_ACCURACY = 5 / 8  # codes 1, 5, 6 wrong
AGREEMENT = 6 / 8  # codes 1 and 6 differ
# Teacher: conf 0.9 (5 right) -> 5·0.1; conf 0.7 (2 right) -> 2·0.3; conf 0.5 (1 wrong) -> 0.5.
TEACHER_ECE = (0.5 + 0.6 + 0.5) / 8
# Student: conf 0.7 (2 of 3 right) -> 3·|2/3 − 0.7|; 0.5 (1 of 3) -> 3·|1/3 − 0.5|; 0.9 (2 of 2) -> 2·0.1.
STUDENT_ECE = (0.1 + 0.5 + 0.2) / 8
# Per class (student, teacher): a 2/3 vs 3/3, b 2/3 vs 2/3, c 1/2 vs 2/2 -> worst first: c, a, b.
PER_CLASS = [("c_class", 1 / 2, 1.0, -1 / 2), ("a_class", 2 / 3, 1.0, -1 / 3), ("b_class", 2 / 3, 2 / 3, 0.0)]


def probabilities(prediction: int, confidence: float, num_classes: int = 3) -> np.ndarray:
    """[confidence at `prediction`, the rest shared equally]."""
    p = np.full(num_classes, (1 - confidence) / (num_classes - 1))
    p[prediction] = confidence
    return p


def logit_row(prediction: int, confidence: float, num_classes: int = 3) -> np.ndarray:
    """Logits whose softmax is `probabilities(prediction, confidence)`: log(c (C-1) / (1-c)) at prediction, else 0."""
    row = np.zeros(num_classes, np.float32)
    row[prediction] = math.log(confidence * (num_classes - 1) / (1 - confidence))
    return row


def expected_kl_mean() -> float:
    """Mean of KL(p_teacher ‖ p_student) = Σ p_t log(p_t / p_s), from the closed-form probabilities."""
    values = []
    for _, teacher, student in CASES.values():
        p_t, p_s = probabilities(*teacher), probabilities(*student)
        values.append(float(np.sum(p_t * np.log(p_t / p_s))))
    return float(np.mean(values))


def logit_table(which: int) -> np.ndarray:
    """[8 codes, 3 classes] logit table; which = 1 teacher, 2 student."""
    return np.stack([logit_row(*CASES[code][which]) for code in range(8)])


def make_colour_model(table: np.ndarray, resolution: int, hidden_identity: bool = False):
    """A funmatch Classifier: image -> one-hot colour code [8] -> (identity Dense 8) -> Dense(table)."""
    import keras

    from funmatch.models import Classifier

    @keras.saving.register_keras_serializable(package="funmatch_tests")
    class ColourCode(keras.layers.Layer):
        """[B, H, W, 3] -> one-hot [B, 8] of 4·(red > 0) + 2·(green > 0) + (blue > 0) of the channel means."""

        def call(self, images):
            means = keras.ops.mean(images, axis=(1, 2))
            bits = keras.ops.cast(means > 0, "int32")
            code = bits[:, 0] * 4 + bits[:, 1] * 2 + bits[:, 2]
            return keras.ops.one_hot(code, 8)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 8)

    images = keras.Input((None, None, 3))
    x = ColourCode(name="colour_code")(images)
    if hidden_identity:
        hidden = keras.layers.Dense(8, name="identity")
        x = hidden(x)
        hidden.set_weights([np.eye(8, dtype=np.float32), np.zeros(8, np.float32)])
    head = keras.layers.Dense(3, name="table")
    logits = head(x)
    head.set_weights([table.astype(np.float32), np.zeros(3, np.float32)])
    backbone = keras.Model(images, logits)
    return Classifier(backbone, arch="colour_table", num_classes=3, resolution=resolution)


@pytest.fixture(scope="module")
def colour_dataset(tmp_path_factory):
    """Prepared dataset with a `test` split of the 8 colour-code images (3 classes: 3 + 3 + 2)."""
    from PIL import Image

    from funmatch.data.prepare import prepare

    root = tmp_path_factory.mktemp("colour_src")
    for code, (label, _, _) in CASES.items():
        colour = tuple(255 if code & bit else 0 for bit in (4, 2, 1))
        folder = root / "test" / CLASS_NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), colour).save(folder / f"code_{code}.png")
    out = tmp_path_factory.mktemp("colour") / "prepared"
    prepare(f"folder:{root}", out, progress=False, workers=1, examples_per_shard=3)
    return out


@pytest.fixture(scope="module")
def colour_models(tmp_path_factory):
    """(student .keras path at 8 px, teacher in-memory model at 12 px)."""
    student = make_colour_model(logit_table(2), resolution=8)
    path = tmp_path_factory.mktemp("colour_models") / "student.keras"
    student.save(path)
    teacher = make_colour_model(logit_table(1), resolution=12, hidden_identity=True)
    return path, teacher


# ----------------------------------------------------------------------------------------------
# Pure metrics (numpy)
# ----------------------------------------------------------------------------------------------


def test_ece_matches_hand_computed_case():
    from funmatch.evaluation import expected_calibration_error

    labels = np.array([label for label, _, _ in CASES.values()])
    assert expected_calibration_error(logit_table(1), labels) == pytest.approx(TEACHER_ECE, abs=1e-6)
    assert expected_calibration_error(logit_table(2), labels) == pytest.approx(STUDENT_ECE, abs=1e-6)


def test_ece_bins_are_right_closed_and_perfect_calibration_is_zero():
    from funmatch.evaluation import expected_calibration_error

    # Confidence 0.6 = 9/15 sits on a bin edge: it belongs to bin (8/15, 9/15]. Two examples at 0.6,
    # one of them correct, and two at 1/3 (uniform logits; arg-max 0), one of them correct.
    logits = np.stack([logit_row(0, 0.6), logit_row(0, 0.6), np.zeros(3), np.zeros(3)])
    labels = np.array([0, 1, 0, 1])
    # bin of 0.6: accuracy 1/2, confidence 0.6 -> 0.1 · 2; bin of 1/3 (argmax 0): accuracy 1/2 -> (1/2 − 1/3) · 2.
    expected = (0.1 * 2 + (0.5 - 1 / 3) * 2) / 4
    assert expected_calibration_error(logits, labels) == pytest.approx(expected, abs=1e-6)
    # Confidence 0.75 with exactly 3 of 4 right: calibrated.
    logits = np.stack([logit_row(1, 0.75)] * 4)
    assert expected_calibration_error(logits, np.array([1, 1, 1, 0])) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(expected_calibration_error(np.zeros((0, 3)), np.zeros((0,), np.int64)))


def test_ece_is_invariant_to_shifting_logits_and_stable_for_large_ones():
    from funmatch.evaluation import expected_calibration_error

    labels = np.array([label for label, _, _ in CASES.values()])
    shifted = logit_table(1) + 1000.0
    assert expected_calibration_error(shifted, labels) == pytest.approx(TEACHER_ECE, abs=1e-4)


def test_topk_accuracy_with_six_classes():
    from funmatch.evaluation import topk_accuracy

    logits = np.array([[6, 5, 4, 3, 2, 1], [1, 2, 3, 4, 5, 6], [0.1, 9, 0.2, 0.3, 0.4, 0.5]], np.float32)
    # Row 0: label 5 is the smallest logit (not in the top 5); rows 1 and 2: the label is the arg-max.
    labels = np.array([5, 5, 1])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(2 / 3)
    assert topk_accuracy(logits, labels, 5) == pytest.approx(2 / 3)
    # Row 0: label 4 is 5th (in the top 5, not top 1); rows 1 and 2: label 0 is the smallest.
    labels = np.array([4, 0, 0])
    assert topk_accuracy(logits, labels, 1) == 0.0
    assert topk_accuracy(logits, labels, 5) == pytest.approx(1 / 3)


def test_per_class_accuracy_and_table_sorted_worst_first():
    from funmatch.evaluation import per_class_accuracy, per_class_table

    labels = np.array([label for label, _, _ in CASES.values()])
    student, counts = per_class_accuracy(logit_table(2), labels, 4)  # class 3 has no examples
    teacher, _ = per_class_accuracy(logit_table(1), labels, 4)
    np.testing.assert_allclose(student[:3], [2 / 3, 2 / 3, 1 / 2])
    np.testing.assert_allclose(teacher[:3], [1, 2 / 3, 1])
    assert counts.tolist() == [3, 3, 2, 0] and math.isnan(student[3])
    rows = per_class_table([*CLASS_NAMES, "empty"], counts, student, teacher)
    assert [row["class_name"] for row in rows] == ["c_class", "a_class", "b_class", "empty"]
    for row, (name, s, t, gap) in zip(rows, PER_CLASS):
        assert row["student_accuracy"] == pytest.approx(s) and row["teacher_accuracy"] == pytest.approx(t)
        assert row["gap"] == pytest.approx(gap)
    # Without a teacher: by student accuracy, ties in class order.
    rows = per_class_table(CLASS_NAMES, counts[:3], student[:3])
    assert [row["class_name"] for row in rows] == ["c_class", "a_class", "b_class"]
    assert rows[0]["gap"] is None and rows[0]["teacher_accuracy"] is None


def test_time_calls_takes_median_inputs_after_warmup_and_respects_the_cap():
    from funmatch.evaluation import time_calls

    calls = []
    ticks = iter([0.0, 1.0, 1.0, 4.0, 4.0, 6.0, 6.0, 106.0, 106.0, 107.0])

    durations = time_calls(lambda: calls.append(1), repeats=5, warmup=2, max_seconds=50.0, clock=lambda: next(ticks))
    assert len(calls) == 2 + 4  # two warm-up calls, then stops after the cap (106 s > 50 s, >= 3 calls)
    assert durations == [1.0, 3.0, 2.0, 100.0]


def test_eval_pp_scales_resize_small():
    from funmatch.evaluation import eval_pp

    assert eval_pp(128).startswith("decode|resize_small(160)|central_crop(128)|value_range(-1, 1)")
    assert "resize_small(64)|central_crop(64)" in eval_pp(64, 1.0)
    with pytest.raises(FunmatchError, match="crop-fraction"):
        eval_pp(64, 1.5)


# ----------------------------------------------------------------------------------------------
# evaluate_models end to end
# ----------------------------------------------------------------------------------------------


@pytest.mark.both_backends
def test_evaluate_models_matches_hand_computed_values(colour_dataset, colour_models):
    from funmatch.evaluation import evaluate_models, format_summary

    student_path, teacher = colour_models
    # batch 3 over 8 examples: the last batch is padded; each model at its own resolution.
    report = evaluate_models(student_path, teacher, data_dir=colour_dataset, split="test", batch_size=3,
                             latency=True, latency_repeats=2)
    json.dumps(report, allow_nan=False)  # plain JSON
    assert report["schema"] == "funmatch.evaluate/1"
    assert report["data"]["num_examples"] == 8 and report["data"]["class_names"] == CLASS_NAMES
    student, teacher_block = report["student"], report["teacher"]
    assert student["num_examples"] == teacher_block["num_examples"] == 8
    assert student["resolution"] == 8 and "central_crop(8)" in student["eval_pp"] and "resize_small(10)" in student["eval_pp"]
    assert teacher_block["resolution"] == 12 and "central_crop(12)" in teacher_block["eval_pp"]
    assert student["path"] == str(student_path) and teacher_block["path"] is None
    assert student["accuracy_top1"] == pytest.approx(STUDENT_ACCURACY)
    assert teacher_block["accuracy_top1"] == pytest.approx(TEACHER_ACCURACY)
    assert student["accuracy_top5"] == teacher_block["accuracy_top5"] == 1.0  # 3 classes
    assert student["ece"] == pytest.approx(STUDENT_ECE, abs=1e-5)
    assert teacher_block["ece"] == pytest.approx(TEACHER_ECE, abs=1e-5)
    fidelity = report["fidelity"]
    assert fidelity["agreement_top1"] == pytest.approx(AGREEMENT)
    assert fidelity["agreement_top5"] == 1.0
    assert fidelity["kl_mean"] == pytest.approx(expected_kl_mean(), abs=1e-5)
    assert [(r["class_name"], r["num_examples"]) for r in report["per_class"]] == [("c_class", 2), ("a_class", 3), ("b_class", 3)]
    for row, (name, s, t, gap) in zip(report["per_class"], PER_CLASS):
        assert row["student_accuracy"] == pytest.approx(s) and row["teacher_accuracy"] == pytest.approx(t)
        assert row["gap"] == pytest.approx(gap)
    # Cost: student Dense 8->3 (27 weights, 2·8·3 FLOPs); teacher adds an 8->8 Dense (72 weights, 128 FLOPs).
    assert student["params"] == 27 and teacher_block["params"] == 99
    assert student["flops_per_image"] == 48 and teacher_block["flops_per_image"] == 176
    assert student["size_bytes"] > 0 and teacher_block["size_bytes"] > 0
    ratios = report["ratios"]
    assert ratios["params"] == pytest.approx(99 / 27) and ratios["flops_per_image"] == pytest.approx(176 / 48)
    assert ratios["size_bytes"] == pytest.approx(teacher_block["size_bytes"] / student["size_bytes"])
    for block in (student, teacher_block):
        for batch in (1, 64):
            latency = block["latency"][f"batch_{batch}"]
            assert latency["batch_size"] == batch and latency["repeats"] == 2
            assert 0 < latency["min_ms"] <= latency["median_ms"]
            assert latency["throughput_images_per_sec"] == pytest.approx(batch / (latency["median_ms"] / 1e3))
    assert ratios["latency_batch_64"] == pytest.approx(
        teacher_block["latency"]["batch_64"]["median_ms"] / student["latency"]["batch_64"]["median_ms"])
    summary = format_summary(report)
    assert "62.50 %" in summary and "87.50 %" in summary and "c_class" in summary and "-50.00 pt" in summary


def test_a_reused_teacher_is_run_and_timed_once_for_several_students(colour_dataset, colour_models, tmp_path,
                                                                      monkeypatch):
    """`reuse`: the demo evaluates three students against one teacher; the teacher's pass over the split and
    its latency are measured once, and its block is the same; a rewritten file is evaluated again."""
    from funmatch.evaluation import evaluate as module

    student_path, teacher = colour_models
    teacher_path = tmp_path / "teacher.keras"
    teacher.save(teacher_path)
    passes, timed = [], []
    real_logits, real_cost = module._logits_on_split, module.model_cost
    monkeypatch.setattr(module, "_logits_on_split", lambda model, *a, **k: passes.append(a[-1]) or real_logits(model, *a, **k))
    monkeypatch.setattr(module, "model_cost", lambda model, path, *a, **k: timed.append(path) or real_cost(model, path, *a, **k))
    other_student = tmp_path / "other_student.keras"
    shutil.copyfile(student_path, other_student)
    reuse = {}
    first = module.evaluate_models(student_path, teacher_path, data_dir=colour_dataset, latency=True, latency_repeats=2,
                                   reuse=reuse)
    second = module.evaluate_models(other_student, teacher_path, data_dir=colour_dataset, latency=True, latency_repeats=2,
                                    reuse=reuse)
    assert passes == ["student", "teacher", "student"] and timed == [str(student_path), str(teacher_path), str(other_student)]
    assert second["teacher"] == first["teacher"] and second["fidelity"] == first["fidelity"]
    assert second["teacher"]["accuracy_top1"] == pytest.approx(TEACHER_ACCURACY)
    assert second["ratios"]["latency_batch_64"] == pytest.approx(
        first["teacher"]["latency"]["batch_64"]["median_ms"] / second["student"]["latency"]["batch_64"]["median_ms"])
    # Other latency settings, or the same path holding a new file: evaluated again.
    module.evaluate_models(student_path, teacher_path, data_dir=colour_dataset, latency=False, reuse=reuse)
    assert passes[-2:] == ["student", "teacher"]
    teacher.save(teacher_path)
    os.utime(teacher_path, ns=(1, 1))
    module.evaluate_models(other_student, teacher_path, data_dir=colour_dataset, latency=False, reuse=reuse)
    assert passes[-2:] == ["student", "teacher"] and len(passes) == 7


@pytest.mark.both_backends
def test_evaluate_student_alone_and_every_batch_size_counts_each_example_once(colour_dataset, colour_models):
    from funmatch.evaluation import evaluate_models

    student_path, _ = colour_models
    for batch_size in (1, 5, 8, 64):
        report = evaluate_models(student_path, data_dir=colour_dataset, batch_size=batch_size, latency=False)
        assert report["student"]["num_examples"] == 8
        assert report["student"]["accuracy_top1"] == pytest.approx(STUDENT_ACCURACY)
    assert report["teacher"] is None and report["fidelity"] is None and report["ratios"] is None
    assert report["student"]["latency"] is None and report["student"]["latency_compiler"] is None
    assert [row["class_name"] for row in report["per_class"]] == ["c_class", "a_class", "b_class"]


@pytest.mark.both_backends
def test_evaluate_cli_writes_json_and_prints_summary(colour_dataset, colour_models, tmp_path, capsys):
    from funmatch.cli import main

    student_path, teacher = colour_models
    teacher_path = tmp_path / "teacher.keras"
    teacher.save(teacher_path)
    out = tmp_path / "eval" / "evaluation.json"
    code = main(["evaluate", "--student", str(student_path), "--teacher", str(teacher_path), "--data", str(colour_dataset),
                 "--split", "test", "--json", str(out), "--batch-size", "4", "--no-latency"])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report) == {"schema", "backend", "device", "data", "student", "teacher", "fidelity", "per_class", "ratios"}
    assert set(report["student"]) == {"path", "arch", "resolution", "eval_pp", "num_examples", "accuracy_top1", "accuracy_top5",
                                      "ece", "params", "flops_per_image", "size_bytes", "latency", "latency_compiler"}
    assert report["teacher"]["path"] == str(teacher_path) and report["teacher"]["arch"] == "colour_table"
    assert report["fidelity"]["agreement_top1"] == pytest.approx(AGREEMENT)
    assert report["ratios"]["latency_batch_1"] is None  # no latency measured
    printed = capsys.readouterr().out
    assert "top-1 agreement 75.00 %" in printed and str(out) in printed


@pytest.mark.both_backends
def test_evaluate_errors_name_the_flag(colour_dataset, colour_models, tmp_path, capsys):
    import keras

    from funmatch.cli import main
    from funmatch.evaluation import evaluate_models
    from funmatch.models import Classifier

    student_path, _ = colour_models
    with pytest.raises(FunmatchError, match="no split 'validation'"):
        evaluate_models(student_path, data_dir=colour_dataset, split="validation", latency=False)
    with pytest.raises(FunmatchError, match="--teacher .*missing.keras: no such file"):
        evaluate_models(student_path, tmp_path / "missing.keras", data_dir=colour_dataset, latency=False)
    images = keras.Input((None, None, 3))
    five = keras.Model(images, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(images)))
    with pytest.raises(FunmatchError, match="--student .*5 outputs, the dataset 3 classes"):
        evaluate_models(Classifier(five, arch="x", num_classes=5, resolution=8), data_dir=colour_dataset, latency=False)
    with pytest.raises(FunmatchError, match="resolution is unknown"):
        evaluate_models(five, data_dir=colour_dataset, latency=False)
    assert main(["evaluate", "--student", str(tmp_path / "nope.keras"), "--data", str(colour_dataset), "--no-latency"]) == 2
    assert "--student" in capsys.readouterr().err
