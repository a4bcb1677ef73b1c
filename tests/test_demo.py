"""`funmatch demo --quick`: the README's main job, end to end, on the embedded data and shipped teacher."""

import json

import pytest

from funmatch.commands import demo


def test_shipped_assets_are_present_and_documented():
    teacher = demo.shipped_teacher()
    assert teacher.exists(), "the shipped EuroSAT teacher is missing"
    assert teacher.stat().st_size <= 5 * 2**20
    card = json.loads((teacher.parent / "eurosat_teacher.json").read_text())
    for key in ("command", "wall_time_minutes", "test_accuracy", "data", "arch"):
        assert key in card, key
    mini = demo.asset("eurosat_mini")
    assert sum(f.stat().st_size for f in mini.rglob("*") if f.is_file()) <= 15 * 2**20
    assert (mini / "README.md").exists()


@pytest.mark.slow
@pytest.mark.both_backends
def test_quick_demo_end_to_end(tmp_path, capsys):
    from funmatch import models
    from funmatch.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    # The run ends with the report's path, a four-line summary and the verdict at equal CPU time.
    tail = printed.strip().splitlines()[-5:]
    assert tail[0] == f"report: {summary['report']}"
    assert tail[1].startswith("teacher: test accuracy") and tail[2].startswith("function matching:")
    assert tail[3].startswith("labels only:")
    assert tail[4].startswith(("function matching wins by", "labels win by")) and "equal CPU time" in tail[4]
    # Function matching learnt from the stored targets; their generation counts on its side.
    fm = summary["function_matching"]
    assert fm["targets_cpu_seconds"] > 0 and fm["cpu_seconds"] == pytest.approx(fm["targets_cpu_seconds"] + fm["train_cpu_seconds"])
    assert json.loads((out / "function_matching" / "metrics.json").read_text())["targets"] == "stored"
    assert (out / "report" / "index.html").exists()
    for run in ("function_matching", "labels"):
        assert (out / run / "student.keras").exists() and (out / run / "evaluation.json").exists()
        assert 0.0 <= summary[run]["accuracy"] <= 1.0 and 0.0 <= summary[run]["agreement"] <= 1.0
    # The shipped teacher is strong; the student is at least 10x cheaper in FLOPs.
    assert summary["teacher"]["accuracy"] >= 0.85
    assert summary["flops_ratio"] >= 10
    student = models.load(out / "function_matching" / "student.keras")
    assert models.contract(student)["resolution"] == demo.DEMO["student_resolution"]
    # Re-running reuses everything that is done; without progress output the summary is still printed.
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-5:] == tail


def test_steps_sets_the_distillation_length_and_rejects_nonsense():
    from funmatch.errors import FunmatchError

    default = demo.demo_config(False)
    assert default.steps == demo.DEMO["total_steps"] and default.warmup_steps == demo.DEMO["warmup_steps"]
    longer = demo.demo_config(False, 12_000)
    assert longer.steps == 12_000 and longer.warmup_steps == demo.DEMO["warmup_steps"]
    short = demo.demo_config(False, 30)
    assert short.steps == 30 and short.warmup_steps == 3  # a tenth of a short run
    with pytest.raises(FunmatchError, match="--steps"):
        demo.demo_config(False, 0)
