"""A real search in one process: every trial is a distillation run; best-K disk bound; resume; summary."""

import csv
import json
import socket
import time

import pytest

from funmatch.errors import FunmatchError
from funmatch.tuning.search import tune
from funmatch.tuning import load_trials, summarize

CONFIG = "eurosat:smoke=true"


@pytest.mark.slow
def test_search_keeps_best_model_resumes_and_summarizes(tiny_data, tiny_teacher, tmp_path):
    search_dir = tmp_path / "search"
    common = dict(teacher_path=tiny_teacher, space=["lr=0.001,0.01;T=1,2"], axes=["lr", "T"], keep_best=1,
                  verbose=False, seed=5)
    result = tune(CONFIG, tiny_data, search_dir, max_trials=2, **common)
    assert result["trials"] == 2
    trials_dir = search_dir / "trials"
    rows, _ = load_trials(search_dir)
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    for row in rows:  # each trial was a real run with its own values, reported under the objective's name
        run = json.loads((trials_dir / row["trial_id"] / "config.json").read_text())
        metrics = json.loads((trials_dir / row["trial_id"] / "metrics.json").read_text())
        assert run["learning_rate"] == row["values"]["learning_rate"]
        assert run["temperature"] == row["values"]["temperature"]
        assert row["score"] == pytest.approx(metrics["validation_accuracy"])
        assert row["metrics"]["val_agreement"] == pytest.approx(metrics["validation_agreement"])

    def kept():
        return sorted(p.name for p in trials_dir.iterdir() if (p / "student.keras").exists())

    # Disk bound: one model (the best trial's), and no trial keeps checkpoints once it ended.
    assert kept() == [result["best"]["trial_id"]]
    assert not list(trials_dir.glob("*/checkpoints"))
    first_mtimes = {p.name: (p / "metrics.json").stat().st_mtime_ns for p in trials_dir.iterdir()}

    # Re-running the command resumes: the search is extended to 3 trials, the first two are not re-run.
    result = tune(CONFIG, tiny_data, search_dir, max_trials=3, **common)
    assert result["trials"] == 3
    assert {p.name: (p / "metrics.json").stat().st_mtime_ns for p in trials_dir.iterdir() if p.name in first_mtimes} == first_mtimes
    assert len(kept()) == 1 and kept() == [result["best"]["trial_id"]]
    rows, _ = load_trials(search_dir)
    assert len({(r["values"]["learning_rate"], r["values"]["temperature"]) for r in rows}) == 3  # no repeats

    paths = summarize(search_dir, echo=False)
    with open(paths["csv"]) as f:
        table = list(csv.reader(f))
    assert table[0][:5] == ["trial", "status", "val_accuracy", "learning_rate", "temperature"]
    assert len(table) == 4
    assert paths["markdown"].read_text().count("| COMPLETED |") == 3
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Another objective in the same folder would mix two searches.
    with pytest.raises(FunmatchError, match="other settings"):
        tune(CONFIG, tiny_data, search_dir, max_trials=3, objective="val_agreement", **common)


def test_bad_input_is_a_clear_error(tiny_data, tiny_teacher, tmp_path):
    with pytest.raises(FunmatchError, match="unknown hyperparameter 'lrate'"):
        tune(CONFIG, tiny_data, tmp_path / "a", teacher_path=tiny_teacher, space=["lrate=0.1,0.2"])
    with pytest.raises(FunmatchError, match="empty search space"):
        tune(CONFIG, tiny_data, tmp_path / "b", teacher_path=tiny_teacher, axes=[""])
    with pytest.raises(FunmatchError, match="--teacher"):
        tune(CONFIG, tiny_data, tmp_path / "c", teacher_path=tmp_path / "missing.keras")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unreachable_chief_fails_after_the_connect_timeout(tiny_data, tiny_teacher, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(FunmatchError, match="no chief answered within 1 s"):
        tune(CONFIG, tiny_data, tmp_path / "w", teacher_path=tiny_teacher, role="worker",
             chief=f"127.0.0.1:{port}", connect_timeout_s=1.0)
    assert time.monotonic() - started < 10
