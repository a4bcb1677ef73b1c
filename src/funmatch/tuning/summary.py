"""`funmatch tune --summary SEARCH_DIR`: a table of trials (stdout, CSV, markdown) and a plot of the
objective against each hyperparameter (PNG)."""

from __future__ import annotations

import csv
import json
import math
import pathlib
from typing import Any

from funmatch.errors import FunmatchError
from funmatch.tuning.tuner import MODEL_FILES, OBJECTIVES, PROJECT_NAME

METRIC_COLUMNS = ("val_accuracy", "val_agreement", "val_kl", "test_accuracy", "test_agreement", "test_kl")


def load_trials(search_dir) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (one per trial, sorted by id) and the search settings (tune.json) of `search_dir`."""
    search_dir = pathlib.Path(search_dir)
    settings_path = search_dir / "tune.json"
    if not settings_path.exists():
        raise FunmatchError(f"--summary {search_dir}: no tune.json; not a `funmatch tune` search folder")
    settings = json.loads(settings_path.read_text())
    rows = []
    for path in sorted((search_dir / PROJECT_NAME).glob("trial_*/trial.json")):
        state = json.loads(path.read_text())
        values = state["hyperparameters"].get("values", {})
        metrics = {}
        for name, record in state["metrics"].get("metrics", {}).items():
            observations = record.get("observations", [])
            if observations:
                metrics[name] = float(observations[-1]["value"][0])
        trial_id = state["trial_id"]
        workdir = search_dir / "trials" / trial_id
        model = next((str(workdir / m) for m in MODEL_FILES if (workdir / m).exists()), "")
        rows.append({
            "trial_id": trial_id, "status": state["status"], "score": state.get("score"),
            "values": {k: v for k, v in values.items() if not k.startswith("tuner/")},
            "budget": values.get("tuner/epochs"), "metrics": metrics, "model": model,
        })
    return rows, settings


def _format(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(rows, settings) -> tuple[list[str], list[list[str]]]:
    """Header and cells: trial, status, objective, hyperparameters (the search's axes), metrics, model."""
    axes = [a.split("=")[0] for a in settings.get("axes", [])]
    for row in rows:
        axes += [k for k in row["values"] if k not in axes]
    metrics = [m for m in METRIC_COLUMNS if any(m in r["metrics"] for r in rows)]
    has_budget = any(r["budget"] is not None for r in rows)
    header = ["trial", "status", settings["objective"], *axes, *(["budget"] if has_budget else []),
              *[m for m in metrics if m != settings["objective"]], "model"]
    cells = []
    for r in rows:
        cells.append([r["trial_id"], r["status"], _format(r["score"]), *[_format(r["values"].get(a)) for a in axes],
                      *([_format(r["budget"])] if has_budget else []),
                      *[_format(r["metrics"].get(m)) for m in metrics if m != settings["objective"]], r["model"]])
    return header, cells


def markdown(header, cells) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c if c else " " for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def plot(rows, settings, path) -> None:
    """One panel per hyperparameter: the objective of each completed trial against its value; best in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objective = settings["objective"]
    done = [r for r in rows if r["status"] == "COMPLETED" and r["score"] is not None]
    axes = [a.split("=")[0] for a in settings.get("axes", [])] or sorted({k for r in rows for k in r["values"]})
    columns = min(3, max(1, len(axes)))
    lines = math.ceil(len(axes) / columns)
    figure, panels = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.2 * lines), squeeze=False)
    best = None
    if done:
        best = (max if OBJECTIVES[objective][1] == "max" else min)(done, key=lambda r: r["score"])
    for index, name in enumerate(axes):
        panel = panels[index // columns][index % columns]
        points = [(r["values"][name], r["score"], r is best) for r in done if name in r["values"]]
        if points and all(isinstance(p[0], str) for p in points):
            categories = sorted({p[0] for p in points})
            xs = [categories.index(p[0]) for p in points]
            panel.set_xticks(range(len(categories)), categories, rotation=15, fontsize=8)
        else:
            xs = [float(p[0]) for p in points]
            positive = [x for x in xs if x > 0]
            if positive and len(positive) == len(xs) and max(positive) / min(positive) >= 10:
                panel.set_xscale("log")
        panel.scatter(xs, [p[1] for p in points], c=["tab:red" if p[2] else "tab:blue" for p in points], s=28)
        panel.set_xlabel(name)
        panel.set_ylabel(objective)
        panel.grid(alpha=0.3)
    for index in range(len(axes), lines * columns):
        panels[index // columns][index % columns].axis("off")
    figure.suptitle(f"{settings.get('search', '')} search, {len(done)} completed trials (best in red)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def summarize(search_dir, *, echo: bool = True) -> dict[str, pathlib.Path]:
    """Print the trial table; write summary.csv, summary.md and summary.png in `search_dir`."""
    search_dir = pathlib.Path(search_dir)
    rows, settings = load_trials(search_dir)
    header, cells = table(rows, settings)
    paths = {"csv": search_dir / "summary.csv", "markdown": search_dir / "summary.md", "plot": search_dir / "summary.png"}
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(cells)
    text = markdown(header, cells)
    paths["markdown"].write_text(text)
    plot(rows, settings, paths["plot"])
    if echo:
        print(text, end="")
        print(f"wrote {paths['csv']}, {paths['markdown']}, {paths['plot']}")
    return paths


__all__ = ["load_trials", "markdown", "plot", "summarize", "table"]
