"""benchmarks/patience.py: done points are skipped, and the table, crossover and figure come from the points'
own summaries."""

import json
import pathlib
import subprocess
import sys

import pytest

from benchmark_scripts import load_script

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "patience.py"


@pytest.fixture(scope="module")
def patience():
    return load_script("patience.py", "patience_benchmark")


def _point(out, patience, budget, seed, fm, everything, subset, cpu, views=16, fm_weight_decay=None):
    workdir = patience.point_dir(out, budget, seed, views)
    workdir.mkdir(parents=True)
    if fm_weight_decay is not None:  # the sides' config.json, as the runs write them
        for side, settings in (("function_matching", {"learning_rate": 0.01, "weight_decay": fm_weight_decay}),
                               ("labels_all", {"learning_rate": 0.03, "weight_decay": 1e-4, "mixup_p": 0.0})):
            (workdir / side).mkdir()
            (workdir / side / "config.json").write_text(json.dumps({**settings, "optimizer": "adam", "seed": seed}))
    side = lambda acc: {"accuracy": acc, "agreement": acc + 0.01, "cpu_seconds": cpu, "steps": 100}
    summary = {"budget": budget, "seed": seed, "teacher": {"accuracy": 0.96}, "function_matching": {**side(fm), "views": views},
               "labels_all": side(everything), "labels_subset": side(subset)}
    (workdir / "summary.json").write_text(json.dumps(summary))
    (workdir / "point.json").write_text(json.dumps({"load_before": [3.0, 2.0, 1.0], "machine": "test box"}))


def _ran(ran, tail):
    """A child process that did its work (the tests' stand-in for subprocess.run)."""
    ran.append(tail)
    return subprocess.CompletedProcess(tail, 0)


def test_done_points_are_skipped_and_the_crossover_is_the_first_budget_ahead(tmp_path, patience, monkeypatch, capsys):
    _point(tmp_path, patience, 1, 0, 0.85, 0.88, 0.83, 360.0, fm_weight_decay=1e-3)
    _point(tmp_path, patience, 1, 1, 0.86, 0.87, 0.84, 370.0, fm_weight_decay=1e-3)  # seed mean at 1×: 2 points behind
    _point(tmp_path, patience, 2, 0, 0.89, 0.885, 0.84, 720.0, fm_weight_decay=1e-3)  # 0.5 ahead at 2×
    monkeypatch.setattr(patience.subprocess, "run", lambda *a, **k: pytest.fail(f"ran a done point: {a}"))
    monkeypatch.setattr(sys, "argv", ["patience.py", "--out", str(tmp_path), "--budgets", "1,2", "--seeds", "1"])
    assert patience.main() == 0
    rows = json.loads((tmp_path / "patience.json").read_text())
    assert [(r["budget"], r["seed"]) for r in rows["rows"]] == [(1, 0), (1, 1), (2, 0)] and rows["crossover"] == 2
    table = (tmp_path / "patience.md").read_text()
    assert "| 1× | 0 | 16 | 6.0 | 100 % | 85.0 / 86.0 % | 88.0 / 89.0 % | 83.0 / 84.0 % | not run | -3.0 | – | 3.0 |" in table
    assert "function matching ahead of labels on every image): at 2×." in table
    assert "Settings, function matching: optimizer adam, learning_rate 0.01, weight_decay 0.001." in table
    assert "Settings, labels, every image: optimizer adam, learning_rate 0.03, weight_decay 0.0001, mixup_p 0." in table
    assert (tmp_path / "patience.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "skipped" in capsys.readouterr().out
    # Behind at every budget: no crossover, and the table says within which budgets.
    assert patience.crossover(patience.collect(tmp_path)[:2]) is None
    assert "none within the measured budgets (1×)." in patience.table(patience.collect(tmp_path)[:2])


def test_budgets_must_be_positive_numbers(patience):
    assert patience._budgets("1,2,4") == [1.0, 2.0, 4.0]
    for bad in ("", "1,x", "0,1"):
        with pytest.raises(SystemExit, match="--budgets"):
            patience._budgets(bad)


def test_points_without_the_subset_reference_are_tabled_and_drawn(tmp_path, patience):
    _point(tmp_path, patience, 1, 0, 0.85, 0.88, 0.83, 360.0)
    summary_path = patience.point_dir(tmp_path, 1, 0) / "summary.json"
    summary = json.loads(summary_path.read_text())
    del summary["labels_subset"]  # --references all: labels on every image only
    summary_path.write_text(json.dumps(summary))
    rows = patience.write_results(tmp_path)
    assert "labels_subset" not in rows[0]
    assert "| 1× | 0 | 16 | 6.0 | 100 % | 85.0 / 86.0 % | 88.0 / 89.0 % | not run | not run | -3.0 | – | 3.0 |" in patience.table(rows)
    assert (tmp_path / "patience.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_warm_starts_run_beside_done_points_only_and_are_tabled(tmp_path, patience, monkeypatch, capsys):
    _point(tmp_path, patience, 1, 0, 0.85, 0.88, 0.83, 360.0)
    _point(tmp_path, patience, 1, 1, 0.86, 0.87, 0.84, 370.0)
    warm = {"cpu_seconds": 365.0, "steps": 1400, "label_steps": 2600, "label_cpu_seconds": 100.0, "fraction": 0.5}
    (patience.point_dir(tmp_path, 1, 1) / "warm_start.json").write_text(json.dumps({**warm, "accuracy": 0.9,
                                                                                    "agreement": 0.91}))
    ran = []
    monkeypatch.setattr(patience.subprocess, "run", lambda command, **k: _ran(ran, command[-3:]))
    monkeypatch.setattr(sys, "argv", ["patience.py", "--out", str(tmp_path), "--budgets", "1,2", "--seeds", "2",
                                      "--warm-start"])
    assert patience.main() == 0
    # Only the done point without a warm start gets one; no point (2×) is run by --warm-start.
    assert ran == [["--warm-point", "1", "0"]]
    rows = patience.collect(tmp_path)
    assert "warm_start" not in rows[0] and rows[1]["warm_start"]["accuracy"] == 0.9
    table = patience.table(rows)
    assert "| 1× | 1 | 16 | 6.2 | 100 % | 86.0 / 87.0 % | 87.0 / 88.0 % | 84.0 / 85.0 % | 90.0 / 91.0 % | -1.0 | +3.0 | 3.0 |" in table
    # The seed mean is over the seeds the warm start ran at: 3 points ahead at 1×.
    assert "then function matching with `--init`), ahead of labels on every image: at 1×." in table
    assert patience.crossover(rows, "warm_start") == 1 and patience.crossover(rows) is None
    assert json.loads((tmp_path / "patience.json").read_text())["warm_start_crossover"] == 1


def test_the_warm_start_fills_the_cpu_time_the_labels_left(patience):
    # 600 CPU s for 3,000 steps: 0.2 s a step. Labels used half: 1,500 steps fill the rest.
    assert patience.warm_steps(600.0, 3000, 300.0, 100) == 1500
    assert patience.warm_steps(600.0, 3000, 310.0, 100) == 1400  # 1,450 fit: whole intervals, rounded down
    assert patience.warm_steps(600.0, 3000, 620.0, 100) == 100  # the labels overran: one interval, the budget stops it


def test_an_underfilled_label_run_is_run_again_and_replaces_the_first(tmp_path, patience, monkeypatch):
    _point(tmp_path, patience, 1, 0, 0.85, 0.88, 0.83, 360.0)  # labels used all of function matching's time
    _point(tmp_path, patience, 1, 1, 0.86, 0.84, 0.83, 370.0)
    point = patience.point_dir(tmp_path, 1, 1)
    summary = json.loads((point / "summary.json").read_text())
    summary["labels_all"]["cpu_seconds"] = 0.8 * 370.0  # stopped at its planned steps, a fifth of the time unused
    (point / "summary.json").write_text(json.dumps(summary))
    assert [patience.needs_refill(patience.point_dir(tmp_path, 1, s)) for s in (0, 1)] == [False, True]
    ran = []
    monkeypatch.setattr(patience.subprocess, "run", lambda command, **k: _ran(ran, command[-3:]))
    monkeypatch.setattr(sys, "argv", ["patience.py", "--out", str(tmp_path), "--budgets", "1", "--seeds", "2", "--refill"])
    assert patience.main() == 0
    assert ran == [["--refill-point", "1", "1"]]
    refill = {"accuracy": 0.87, "agreement": 0.88, "cpu_seconds": 368.0, "steps": 120,
              "first_run": {"accuracy": 0.84, "agreement": 0.85, "cpu_seconds": 296.0, "steps": 100}}
    (point / "labels_all_refill.json").write_text(json.dumps(refill))
    assert not patience.needs_refill(point)
    row = patience.collect(tmp_path)[1]
    assert row["labels_all"]["accuracy"] == 0.87 and row["labels_all"]["first_run"]["accuracy"] == 0.84
    assert "| 1× | 1 | 16 | 6.2 | 99 % | 86.0 / 87.0 % | 87.0 / 88.0 % |" in patience.table(patience.collect(tmp_path))


def test_points_with_other_views_are_their_own_method(tmp_path, patience, monkeypatch):
    _point(tmp_path, patience, 1, 0, 0.85, 0.88, 0.83, 360.0)
    _point(tmp_path, patience, 2, 0, 0.89, 0.88, 0.83, 365.0, views=4)  # twice the steps from 4 views: same CPU
    assert patience.point_dir(tmp_path, 2, 0, 4).name == "b2_s0_k4"
    rows = patience.collect(tmp_path)
    assert "function_matching_k4" in rows[1] and "function_matching" not in rows[1] and rows[1]["views"] == 4
    assert patience.crossover(rows) is None and patience.crossover(rows, "function_matching_k4") == 2
    table = patience.table(rows)
    assert "| 2× | 0 | 4 | 6.1 | 100 % | 89.0 / 90.0 % | 88.0 / 89.0 % |" in table
    assert "none within the measured budgets (1×)." in table
    assert "K = 4 stored views (the budget counts its steps; 6.1 CPU min on average), ahead of labels on every " \
           "image: at 2×." in table
    assert list(patience._methods(rows))[:2] == ["function_matching", "function_matching_k4"]
    ran = []
    monkeypatch.setattr(patience.subprocess, "run", lambda command, **k: _ran(ran, command[-5:]))
    monkeypatch.setattr(sys, "argv", ["patience.py", "--out", str(tmp_path), "--budgets", "1,2", "--views", "4"])
    assert patience.main() == 0
    assert ran == [["--views", "4", "--point", "1", "0"]]  # b2_s0_k4 is done; b1_s0 is K = 16's
    # Another K keeps its own targets beside the same prepared datasets.
    (tmp_path / "store" / "data").mkdir(parents=True)
    store = patience._store(tmp_path, 4)
    assert store.name == "store_k4" and (store / "data").resolve() == (tmp_path / "store" / "data").resolve()
    assert patience._store(tmp_path, 16) == tmp_path / "store"


def test_the_demo_quotes_the_published_crossover(patience):
    """The demo's summary line names the crossover and the budgets of the committed patience results."""
    from funmatch.commands import demo

    published = json.loads((SCRIPT.parent / "results" / "patience.json").read_text())
    assert published["rows"], "no published patience points"
    assert patience.VIEWS == demo.VIEWS  # the benchmark's default points are the demo's
    demo_views = [r for r in published["rows"] if r.get("views", patience.VIEWS) == demo.VIEWS]
    assert demo.MEASURED_BUDGETS == tuple(sorted({float(r["budget"]) for r in demo_views}))
    assert demo.CROSSOVER == patience.crossover(published["rows"]) == published["crossover"]


def test_the_refill_is_sized_by_the_first_runs_steps_after_start_up(tmp_path, patience, monkeypatch):
    """Its plan counts the first run's start-up once, and its data is the point's own store (K = 4 here, with
    no K = 16 store beside it)."""
    from funmatch.commands import demo
    from funmatch.training import labels

    _point(tmp_path, patience, 2, 0, 0.85, 0.84, 0.83, 600.0, views=4)
    point = patience.point_dir(tmp_path, 2, 0, 4)
    summary = json.loads((point / "summary.json").read_text())
    summary["teacher"]["path"] = str(tmp_path / "teacher.keras")
    summary["labels_all"].update(cpu_seconds=480.0, train_cpu_seconds=480.0, steps=4000)  # 80 %: it stopped early
    (point / "summary.json").write_text(json.dumps(summary))
    (point / "labels_speed.json").write_text(json.dumps({"cpu_seconds_per_step": 0.1, "startup_cpu_seconds": 80.0}))
    for name in ("data", "data_all_labels"):
        (tmp_path / "store_k4" / name).mkdir(parents=True)
    trained = []

    def train_labels(config, data_dir, workdir, **kwargs):
        trained.append((config, data_dir))
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "metrics.jsonl").write_text(json.dumps({"step": config.total_steps, "train_cpu_seconds": 590.0}) + "\n")

    monkeypatch.setattr(labels, "train_labels", train_labels)
    monkeypatch.setattr(demo, "_resolution", lambda path: 112)
    import funmatch.evaluation
    monkeypatch.setattr(funmatch.evaluation, "evaluate_models", lambda student, teacher, data_dir, **k: (
        {"student": {"accuracy_top1": 0.9}, "fidelity": {"agreement_top1": 0.91}, "data": str(data_dir)}))
    side = patience.refill_labels(tmp_path, 2, 0, 4)
    # (480 - 80) / 4000 = 0.1 CPU s a step; (600 - 80) / 0.1 = 5200 steps (with 480 / 4000 it would be 4333 -> 4300).
    (config, data_dir), = trained
    assert config.total_steps == 5200 and side["planned_from"] == pytest.approx(0.1)
    assert data_dir == tmp_path / "store_k4" / "data_all_labels"
    assert json.loads((point / "labels_all_refill" / "evaluation.json").read_text())["data"] == str(tmp_path / "store_k4" / "data")
    assert side["cpu_seconds"] == 590.0 and side["first_run"]["accuracy"] == 0.84 and not patience.needs_refill(point)


def test_a_warm_start_distils_from_its_label_student_on_every_run(tmp_path, patience, monkeypatch):
    """The distillation's --init is the label run's own student file, on a re-run too (a finished label run
    rerun leaves its file as it was: tests/engine/test_student_init.py)."""
    from funmatch.commands import demo
    from funmatch.training import distill

    _point(tmp_path, patience, 1, 0, 0.85, 0.88, 0.83, 600.0)
    point = patience.point_dir(tmp_path, 1, 0)
    summary = json.loads((point / "summary.json").read_text())
    summary["teacher"]["path"] = str(tmp_path / "teacher.keras")
    summary["function_matching"]["targets_cpu_seconds"] = 100.0
    (point / "summary.json").write_text(json.dumps(summary))
    saves, inits = [], []

    def label_student(out, name, config, data_dir, teacher_path, cpu_seconds, progress):
        workdir = out / name
        workdir.mkdir(parents=True, exist_ok=True)
        saves.append(f"run {len(saves)}")
        if not (workdir / "student.keras").exists():  # a finished run, rerun, keeps its file
            (workdir / "student.keras").write_text(saves[-1])
        (workdir / "metrics.jsonl").write_text(json.dumps({"step": 1000, "train_cpu_seconds": cpu_seconds}) + "\n")
        return workdir

    def run_distill(config, data_dir, teacher, workdir, *, targets, init, progress):
        inits.append((pathlib.Path(init), pathlib.Path(init).read_text()))
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "metrics.jsonl").write_text(json.dumps({"step": config.total_steps, "train_cpu_seconds": 240.0}) + "\n")

    monkeypatch.setattr(demo, "_label_student", label_student)
    monkeypatch.setattr(demo, "_resolution", lambda path: 112)
    monkeypatch.setattr(distill, "distill", run_distill)
    import funmatch.evaluation
    monkeypatch.setattr(funmatch.evaluation, "evaluate_models", lambda *a, **k: (
        {"student": {"accuracy_top1": 0.9}, "fidelity": {"agreement_top1": 0.91}}))
    first = patience.run_warm_start(tmp_path, 1, 0)
    patience.run_warm_start(tmp_path, 1, 0)  # killed before warm_start.json: run again
    label_file = point / "warm_start" / "labels_all" / "student.keras"
    assert saves == ["run 0", "run 1"] and inits == [(label_file, "run 0"), (label_file, "run 0")]
    # 500 training CPU s: the labels took 250, the distillation 240 of the 250 left; the targets count too.
    assert first["cpu_seconds"] == 100.0 + 250.0 + 240.0 and first["label_cpu_seconds"] == 250.0


def test_the_modes_exclude_each_other_and_a_failed_child_stops_in_one_line(tmp_path, patience, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["patience.py", "--out", str(tmp_path), "--refill", "--warm-start"])
    with pytest.raises(SystemExit) as exit_:
        patience.main()
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    monkeypatch.setattr(patience.subprocess, "run", lambda command, **k: subprocess.CompletedProcess(command, 1))
    monkeypatch.setattr(sys, "argv", ["patience.py", "--out", str(tmp_path), "--budgets", "1"])
    with pytest.raises(SystemExit, match=r"patience: 1× seed 0: point stopped \(exit 1\).*a re-run resumes"):
        patience.main()
    # The child itself: a point without its summary says which file, in one line.
    monkeypatch.setattr(sys, "argv", ["patience.py", "--out", str(tmp_path), "--refill-point", "1", "0"])
    with pytest.raises(SystemExit, match=r"patience: 1× seed 0: .*summary.json"):
        patience.main()
