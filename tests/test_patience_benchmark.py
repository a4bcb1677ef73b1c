"""benchmarks/patience.py: done points are skipped, and the table, crossover and figure come from the points'
own summaries."""

import json
import pathlib
import sys

import pytest

from benchmark_scripts import load_script

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "patience.py"


@pytest.fixture(scope="module")
def patience():
    return load_script("patience.py", "patience_benchmark")


def _point(out, patience, budget, seed, fm, everything, subset, cpu):
    workdir = patience.point_dir(out, budget, seed)
    workdir.mkdir(parents=True)
    side = lambda acc: {"accuracy": acc, "agreement": acc + 0.01, "cpu_seconds": cpu, "steps": 100}
    summary = {"budget": budget, "seed": seed, "teacher": {"accuracy": 0.96}, "function_matching": side(fm),
               "labels_all": side(everything), "labels_subset": side(subset)}
    (workdir / "summary.json").write_text(json.dumps(summary))
    (workdir / "point.json").write_text(json.dumps({"load_before": [3.0, 2.0, 1.0], "machine": "test box"}))


def test_done_points_are_skipped_and_the_crossover_is_the_first_budget_ahead(tmp_path, patience, monkeypatch, capsys):
    _point(tmp_path, patience, 1, 0, 0.85, 0.88, 0.83, 360.0)
    _point(tmp_path, patience, 1, 1, 0.86, 0.87, 0.84, 370.0)  # seed mean at 1×: 2 points behind
    _point(tmp_path, patience, 2, 0, 0.89, 0.885, 0.84, 720.0)  # 0.5 ahead at 2×
    monkeypatch.setattr(patience.subprocess, "run", lambda *a, **k: pytest.fail(f"ran a done point: {a}"))
    monkeypatch.setattr(sys, "argv", ["patience.py", "--out", str(tmp_path), "--budgets", "1,2", "--seeds", "1"])
    assert patience.main() == 0
    rows = json.loads((tmp_path / "patience.json").read_text())
    assert [(r["budget"], r["seed"]) for r in rows["rows"]] == [(1, 0), (1, 1), (2, 0)] and rows["crossover"] == 2
    table = (tmp_path / "patience.md").read_text()
    assert "| 1× | 0 | 6.0 | 85.0 / 86.0 % | 88.0 / 89.0 % | 83.0 / 84.0 % | -3.0 | 3.0 |" in table
    assert "function matching ahead of labels on every image): at 2×." in table
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
    assert "| 1× | 0 | 6.0 | 85.0 / 86.0 % | 88.0 / 89.0 % | not run | -3.0 | 3.0 |" in patience.table(rows)
    assert (tmp_path / "patience.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_demo_quotes_the_published_crossover(patience):
    """The demo's summary line names the crossover and the budgets of the committed patience results."""
    from funmatch.commands import demo

    published = json.loads((SCRIPT.parent / "results" / "patience.json").read_text())
    assert published["rows"], "no published patience points"
    assert demo.MEASURED_BUDGETS == tuple(sorted({float(r["budget"]) for r in published["rows"]}))
    assert demo.CROSSOVER == patience.crossover(published["rows"]) == published["crossover"]
