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
    # The run ends with the report's path, a five-line summary and the verdict at equal CPU time.
    tail = printed.strip().splitlines()[-6:]
    assert tail[0] == f"report: {summary['report']}"
    assert tail[1].startswith("teacher: test accuracy") and tail[2].startswith("function matching:")
    assert tail[3].startswith("labels, labelled subset:") and "1,000 labelled" in tail[3]
    assert tail[4].startswith("labels, every image:") and "4,900" in tail[4]
    assert tail[5] == demo.verdict(summary, demo.CROSSOVER, demo.MEASURED_BUDGETS) and "equal CPU time" in tail[5]
    assert "20-step smoke run" in tail[5]  # not the default run's measured budgets
    # Function matching learnt from the stored targets; their generation counts on its side.
    fm = summary["function_matching"]
    assert fm["targets_cpu_seconds"] > 0 and fm["cpu_seconds"] == pytest.approx(fm["targets_cpu_seconds"] + fm["train_cpu_seconds"])
    assert json.loads((out / "function_matching" / "metrics.json").read_text())["targets"] == "stored"
    assert (out / "report" / "index.html").exists()
    for run in ("function_matching", "labels_subset", "labels_all"):
        assert (out / run / "student.keras").exists() and (out / run / "evaluation.json").exists()
        assert 0.0 <= summary[run]["accuracy"] <= 1.0 and 0.0 <= summary[run]["agreement"] <= 1.0
    # The shipped teacher is strong; the student is at least 10x cheaper in FLOPs.
    assert summary["teacher"]["accuracy"] >= 0.85
    assert summary["flops_ratio"] >= 10
    student = models.load(out / "function_matching" / "student.keras")
    assert models.contract(student)["resolution"] == demo.DEMO["student_resolution"]
    # Re-running reuses everything that is done; without progress output the summary is still printed.
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-6:] == tail


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


def test_each_side_trains_with_its_own_swept_settings_and_nothing_else_differs():
    import dataclasses

    distill = dataclasses.replace(demo.demo_config(False), max_cpu_seconds=300.0)
    labels = demo._label_config(distill)
    assert distill.weight_decay == demo.DEMO["weight_decay"] and distill.learning_rate == demo.DEMO["learning_rate"]
    assert (labels.weight_decay, labels.learning_rate) == (demo.LABELS_WEIGHT_DECAY, demo.LABELS_LEARNING_RATE)
    assert labels.train_split == "train" and labels.max_cpu_seconds == 0.0  # sized by the plan, later
    changed = {field.name for field in dataclasses.fields(distill)
               if getattr(distill, field.name) != getattr(labels, field.name)}
    assert changed <= {"weight_decay", "learning_rate", "train_split", "max_cpu_seconds"}


def test_equal_cpu_plan_fills_the_budget_in_whole_checkpoint_intervals():
    """The label runs get the function-matching side's CPU seconds: (budget - start-up) / cost per step,
    rounded down to whole checkpoint intervals, warmup a tenth of a short run, the budget as the hard stop."""
    plan = demo.equal_cpu_plan(360.0, 0.05, 10.0, checkpoint_every=100, warmup_steps=100)
    assert plan["total_steps"] == 7000  # (360 - 10) / 0.05 = 7,000
    assert plan["warmup_steps"] == 100 and plan["eval_every"] == 1100 and plan["max_cpu_seconds"] == 360.0
    uneven = demo.equal_cpu_plan(360.0, 0.07, 10.0, checkpoint_every=100, warmup_steps=100)
    assert uneven["total_steps"] == 5000  # exactly 5,000 fit (not 4,999.99… in floating point)
    rounded = demo.equal_cpu_plan(360.0, 0.06, 10.0, checkpoint_every=100, warmup_steps=100)
    assert rounded["total_steps"] == 5800  # 5,833 fit: rounded down to whole intervals, never over the budget
    tiny = demo.equal_cpu_plan(3.0, 0.05, 10.0, checkpoint_every=100, warmup_steps=100)
    assert tiny["total_steps"] == 100 and tiny["warmup_steps"] == 10  # at least one interval
    with pytest.raises(demo.FunmatchError, match="cannot size a label run"):
        demo.equal_cpu_plan(360.0, 0.0, 10.0, checkpoint_every=100, warmup_steps=100)


def _summary(fm, everything, subset):
    return {"function_matching": {"accuracy": fm}, "labels_all": {"accuracy": everything},
            "labels_subset": {"accuracy": subset}}


def test_verdict_says_who_won_and_where_function_matching_overtakes():
    won = demo.verdict(_summary(0.90, 0.88, 0.85))
    assert won == ("function matching wins at equal CPU time: 2.0 points ahead of labels on every image, "
                   "5.0 points ahead of labels on the labelled subset")
    lost = demo.verdict(_summary(0.86, 0.89, 0.84), crossover=4.0, measured=(1.0, 2.0, 4.0))
    assert lost.startswith("labels on every image win at equal CPU time, by 3.0 points")
    assert "function matching overtook it at 4× this budget" in lost and "2.0 points ahead of labels on the labelled" in lost
    never = demo.verdict(_summary(0.86, 0.89, 0.87), crossover=None, measured=(1.0, 2.0))
    assert "did not overtake it within the measured budgets (1×, 2× the demo's" in never
    assert never.endswith("1.0 points behind labels on the labelled subset")
    assert "no budget where function matching overtakes it has been measured" in demo.verdict(_summary(0.8, 0.9, 0.7))
    quick = _summary(0.86, 0.89, 0.84)
    quick["function_matching"]["steps"], quick["quick"] = 20, True
    quick = demo.verdict(quick, crossover=4.0, measured=(1.0, 4.0))
    assert "a 20-step smoke run" in quick and "4×" not in quick and "by 3.0 points" in quick
    tie = demo.verdict(_summary(0.875, 0.875, 0.9), crossover=2.0)
    assert tie.startswith("function matching ties labels on every image at equal CPU time (function matching overtook")
    assert tie.endswith("2.5 points behind labels on the labelled subset")


def test_all_labels_folder_puts_every_unlabelled_image_in_its_class(tmp_path):
    from funmatch.errors import FunmatchError

    mini, unlabeled = demo.asset("eurosat_mini"), demo.asset("eurosat_unlabeled")
    folder = tmp_path / "all"
    assert demo.all_labels_folder(mini, unlabeled, folder) == 4900
    for split in ("validation", "test"):  # judged on the same images as the other students
        assert sorted(p.name for p in (folder / split).rglob("*.jpg")) == sorted(p.name for p in (mini / split).rglob("*.jpg"))
    sources = dict(line.split() for line in (unlabeled / "SOURCES.txt").read_text().splitlines())
    for copied in sorted((folder / "train").glob("*/u_*.jpg"))[::50]:
        assert sources[copied.name].split("/")[1] == copied.parent.name  # its source's class folder
        assert copied.read_bytes() == (unlabeled / "images" / copied.name).read_bytes()
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    (bad / "LABELS.txt").write_text("u_00000.jpg 10\n")
    with pytest.raises(FunmatchError, match=r"LABELS.txt:1: expected 'NAME CLASS_INDEX' with an index below 10"):
        demo.all_labels_folder(mini, bad, tmp_path / "other")


def test_side_by_side_only_for_a_full_run_on_two_cpu_cores(monkeypatch):
    import os

    from funmatch import runtime

    monkeypatch.setattr(runtime, "accelerator", lambda: "CPU")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5, 7})
    assert demo.side_by_side_cpus(quick=False) == (3, 5)
    assert demo.side_by_side_cpus(quick=True) is None  # the smoke run stays in one process
    monkeypatch.setattr(runtime, "accelerator", lambda: "GPU")
    assert demo.side_by_side_cpus(quick=False) is None  # the models run on the accelerator
    monkeypatch.setattr(runtime, "accelerator", lambda: "CPU")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2})
    assert demo.side_by_side_cpus(quick=False) is None  # one core: one side after the other
    assert demo.side_by_side_cpus(quick=False, force=True) == (2, 2)


def test_run_on_cores_runs_each_job_in_its_own_process_pinned_to_its_cpu():
    import os

    first, second = demo.side_by_side_cpus(quick=False, force=True)
    results = demo.run_on_cores({"a": (first, os.sched_getaffinity, (0,), {}),
                                 "b": (second, os.getpid, (), {})})
    assert results["a"] == {first}  # the job saw only its own CPU
    assert results["b"] != os.getpid()
    assert os.sched_getaffinity(0) != {first} or first == second  # this process stays as it was


def test_run_on_cores_raises_a_jobs_error_and_stops_the_others():
    import os
    import time

    first, second = demo.side_by_side_cpus(quick=False, force=True)
    started = time.monotonic()
    # A FunmatchError inside a job is raised here as it was; the job still running is stopped.
    with pytest.raises(demo.FunmatchError, match="cannot size a label run"):
        demo.run_on_cores({"bad": (first, demo.equal_cpu_plan, (1.0, 0.0, 0.0), {"checkpoint_every": 1, "warmup_steps": 1}),
                           "slow": (second, time.sleep, (120,), {})})
    # Any other exception too, with the job's traceback as a note (the command line words a file error as usual).
    with pytest.raises(json.JSONDecodeError) as raised:
        demo.run_on_cores({"bad": (first, json.loads, ("{",), {})})
    assert any("raised in the demo's process for 'bad'" in note for note in raised.value.__notes__)
    # A process that dies without a word is one line naming its job.
    with pytest.raises(demo.FunmatchError, match=r"the process of 'dies' ended without a result .*run the same command again"):
        demo.run_on_cores({"dies": (first, os.abort, (), {}), "slow": (second, time.sleep, (120,), {})})
    assert time.monotonic() - started < 100  # neither waited for its two-minute neighbour


@pytest.mark.slow
def test_the_default_demo_runs_each_side_on_one_core_and_the_label_runs_side_by_side(tmp_path):
    """The default demo's layout (`side_by_side`), on a 20-step run: function matching in its own process on one
    core, then the two label references at the same time, one per core, each sized by its own calibration and
    held to function matching's CPU time; a re-run resumes through the same processes."""
    import os

    out = tmp_path / "demo"
    summary = demo.run_demo(out, steps=20, views=2, side_by_side=True, progress=False)
    cores, allowed = summary["cores"], os.sched_getaffinity(0)
    assert set(cores) == {"function_matching", "labels_subset", "labels_all"} and set(cores.values()) <= allowed
    if len(allowed) >= 2:
        assert cores["labels_subset"] != cores["labels_all"]
    assert (out / "labels_subset_speed.json").exists() and (out / "labels_all_speed.json").exists()
    assert not (out / "labels_speed.json").exists()
    fm = summary["function_matching"]
    assert fm["steps"] == 20 and fm["cpu_seconds"] == pytest.approx(fm["targets_cpu_seconds"] + fm["train_cpu_seconds"])
    for name in ("labels_subset", "labels_all"):
        plan = json.loads((out / f"{name}_plan.json").read_text())
        assert plan["max_cpu_seconds"] == pytest.approx(fm["cpu_seconds"])  # the hard stop: function matching's CPU
        assert summary[name]["cpu_seconds"] <= 1.05 * fm["cpu_seconds"]
        assert summary[name]["steps"] == plan["total_steps"] or summary[name]["cpu_seconds"] >= fm["cpu_seconds"]
    again = demo.run_demo(out, steps=20, views=2, side_by_side=True, progress=False)
    for name in ("function_matching", "labels_subset", "labels_all"):
        assert (again[name]["accuracy"], again[name]["steps"]) == (summary[name]["accuracy"], summary[name]["steps"])
