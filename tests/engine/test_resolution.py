"""`funmatch models resolution`: the same weights served at the size that scores best on validation."""

import math

import numpy as np
import pytest

from funmatch import cli, models
from funmatch.evaluation.logits import eval_pp, split_logits
from funmatch.evaluation.resolution import ResolutionScore, best, pick_resolution, score


def test_score_against_hand_computed_accuracy_and_nll():
    accuracy, nll = score(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 0]))
    assert accuracy == 0.5
    # -log softmax: log(1 + e^-2) for the right answer, log(1 + e^1) for the wrong one.
    assert nll == pytest.approx((math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2, rel=1e-12)


def test_best_prefers_accuracy_then_nll_then_the_cheaper_size():
    rows = [ResolutionScore(96, 0.90, 0.30, 10), ResolutionScore(112, 0.95, 0.20, 10),
            ResolutionScore(128, 0.95, 0.10, 10), ResolutionScore(144, 0.95, 0.10, 10)]
    assert best(rows).resolution == 128
    assert best(rows[:2]).resolution == 112


def test_pick_resolution_scores_each_size_like_a_plain_evaluation_and_keeps_the_weights(engine_data, engine_teacher):
    teacher = models.load(engine_teacher)
    scores, chosen = pick_resolution(teacher, engine_data, [48, 64, 80], crop_fraction=1.0)
    assert [s.resolution for s in scores] == [48, 64, 80]
    for s in scores:  # each row is what an evaluation of the resized model gives on validation
        resized = models.create("tiny_cnn_w8", num_classes=4, resolution=s.resolution)
        resized.set_weights(teacher.get_weights())
        out = split_logits(resized, engine_data, "validation", eval_pp(s.resolution, 1.0), 64)
        assert (s.accuracy, s.nll) == pytest.approx(score(out["logits"], out["labels"]), rel=1e-5)
        assert s.examples == 12
    contract = models.contract(chosen)
    assert contract["resolution"] == best(scores).resolution
    assert contract["eval_crop_fraction"] == 1.0
    for got, want in zip(chosen.get_weights(), teacher.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_command_writes_the_model_at_the_chosen_size(engine_data, engine_teacher, tmp_path, capsys):
    out = tmp_path / "served" / "teacher.keras"
    assert cli.main(["models", "resolution", "--model", str(engine_teacher), "--data", str(engine_data),
                     "--resolutions", "64,80", "--crop-fraction", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    chosen = int(printed.split("chose ")[1].split(" px")[0])
    assert models.contract(models.load(out))["resolution"] == chosen in (64, 80)
    assert "validation, 12 images" in printed


@pytest.mark.parametrize("flags, message", [
    (["--resolutions", "96,abc"], "--resolutions '96,abc': expected comma-separated integers"),
    (["--resolutions", "64", "--split", "holdout"], "no split 'holdout'"),
    (["--resolutions", "64", "--out-suffix"], None),
])
def test_bad_flags_are_one_line(engine_data, engine_teacher, tmp_path, capsys, flags, message):
    if message is None:  # an unknown flag is argparse's usage error
        with pytest.raises(SystemExit):
            cli.main(["models", "resolution", "--model", str(engine_teacher), "--data", str(engine_data),
                      "--out", str(tmp_path / "m.keras"), *flags])
        return
    assert cli.main(["models", "resolution", "--model", str(engine_teacher), "--data", str(engine_data),
                     "--out", str(tmp_path / "m.keras"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "m.keras").exists()
