"""`funmatch report WORKDIR... --out DIR`: what a distillation run produced, in numbers and pictures.

Reads each distillation workdir (written by `funmatch distill`):

    config.json       the run configuration                                   (required)
    metrics.jsonl     one record per chunk: train_* logs, periodic evaluation  (required, or metrics.json)
    metrics.json      final full-split metrics                                 (optional: run unfinished)
    evaluation.json   `funmatch evaluate --json` output                        (optional)
    augmentations.png the augmented training inputs (see `save_augmentation_grid`) (optional)

and writes into DIR:

    index.html        a self-contained page: CSS inline, no scripts needed, no network; the images are
                      PNG files next to it, referenced by relative paths (copy the folder to share it)
    summary.md        the same tables in markdown, linking the same PNGs
    *.png             training curves per run, per-class gap chart, augmentation grid, and with
                      several workdirs the comparison plot (accuracy and agreement against epochs)
    .funmatch-report.json   the list of files this report wrote; a re-run replaces exactly those

Every number in a table cell carries its exact value in a `data-value` attribute (and the JSON key
it came from in `data-key`), so tests and scripts can read the page back without parsing formatted
text. What a workdir lacks is said on the page, with the command that would produce it.

Plots use matplotlib's object API (`matplotlib.figure.Figure`, Agg canvas): no pyplot global state
and no display is needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import html
import json
import math
import os
import pathlib
import re
import shutil
from typing import Any, Sequence

import numpy as np

from funmatch.errors import FunmatchError

MANIFEST_NAME = ".funmatch-report.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Per-class gap chart: beyond this many classes only the worst ones are drawn (the table says so).
MAX_GAP_BARS = 40
# Per-class table: the worst classes listed on the page.
MAX_GAP_ROWS = 10

# Final-metrics table: (column title, key suffix after "{split}_"); teacher columns are prefixed.
STUDENT_COLUMNS = (
    ("accuracy", "accuracy"),
    ("top-5 accuracy", "accuracy_top5"),
    ("agreement", "agreement"),
    ("top-5 agreement", "agreement_top5"),
    ("KL(teacher ‖ student)", "kl"),
)
TEACHER_COLUMNS = (
    ("teacher accuracy", "accuracy"),
    ("teacher top-5 accuracy", "accuracy_top5"),
)

CONFIG_ROWS = (
    "recipe", "variant", "mode", "dataset", "student", "teacher", "student_resolution", "teacher_resolution",
    "batch_size", "steps", "epochs", "num_train_examples", "temperature", "mixup_p", "optimizer",
    "learning_rate", "weight_decay", "warmup_steps", "clip_norm", "seed", "backend", "data_dir", "teacher_path",
)


# ----------------------------------------------------------------------------------------------
# Reading a workdir
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One distillation workdir, read.

    `history`: the metrics.jsonl records sorted by step, one per step (a resumed run may have logged
    a chunk twice; the later record wins). `final`: metrics.json, or when the run has not finished,
    the last record that holds evaluation results (`finished` is then False). `notes`: what is
    missing or was repaired, in words, for the page.
    """

    workdir: pathlib.Path
    config: dict[str, Any]
    history: list[dict[str, Any]]
    final: dict[str, Any]
    finished: bool
    evaluation: dict[str, Any] | None
    augmentations: pathlib.Path | None
    notes: list[str]
    label: str = ""

    @property
    def mode(self) -> str:
        return str(self.final.get("mode") or self.config.get("mode") or "?")

    @property
    def splits(self) -> list[str]:
        """The evaluation splits, validation first: from the config, else found in the metric keys."""
        records = [self.final, *self.history]
        configured = [self.config.get("val_split"), self.config.get("test_split")]
        found = [s for s in dict.fromkeys(configured) if s and any(f"{s}_accuracy" in r for r in records)]
        if found:
            return found
        keys = dict.fromkeys(k for r in records for k in r)
        return [
            k[: -len("_accuracy")]
            for k in keys
            if k.endswith("_accuracy") and k != "accuracy" and not k.startswith(("teacher_", "train_"))
        ]

    @property
    def main_split(self) -> str | None:
        """The split the comparison uses: the config's test split when evaluated, else the last one."""
        splits = self.splits
        test = self.config.get("test_split")
        return test if test in splits else (splits[-1] if splits else None)

    def epoch_of(self, record: dict[str, Any]) -> float | None:
        """Passes over the training set at `record`: logged, else step · batch / N from the config."""
        if record.get("epoch") is not None:
            return float(record["epoch"])
        batch, examples = self.config.get("batch_size"), self.config.get("num_train_examples")
        if record.get("step") is not None and batch and examples:
            return float(record["step"]) * float(batch) / float(examples)
        return None

    @property
    def total_epochs(self) -> float | None:
        """Epochs reached: at the final metrics' step (the planned length for a finished run)."""
        return self.epoch_of({"step": self.final.get("step", self.config.get("steps"))})

    @property
    def planned_epochs(self) -> float | None:
        return self.epoch_of({"step": self.config.get("steps")}) if self.config.get("steps") else None

    @property
    def status(self) -> str:
        if self.finished:
            return "finished"
        step, planned = self.final.get("step"), self.config.get("steps")
        if _is_number(step) and _is_number(planned) and step >= planned:
            return "trained; no final evaluation (no metrics.json)"
        return f"unfinished ({step if step is not None else '?'}/{planned if planned is not None else '?'} steps)"


def _read_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FunmatchError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise FunmatchError(f"{path}: cannot read ({e.strerror})") from None


def _read_history(path: pathlib.Path, notes: list[str]) -> list[dict[str, Any]]:
    """metrics.jsonl -> records sorted by step, the last record of each step kept.

    A truncated last line (a run killed while appending) is dropped with a note; a bad line
    elsewhere is an error naming the line.
    """
    lines = path.read_text().splitlines()
    by_step: dict[Any, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):
                notes.append(f"{path.name}: ignored a truncated last line (line {number})")
                continue
            raise FunmatchError(f"{path}:{number}: not valid JSON ({e})") from None
        if not isinstance(record, dict):
            raise FunmatchError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        by_step[record.get("step", f"line{number}")] = record
    return sorted(by_step.values(), key=lambda r: (r.get("step") is None, r.get("step") or 0))


def load_run(workdir: os.PathLike) -> Run:
    """Read a distillation workdir; a clear FunmatchError names the workdir when it holds no metrics."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise FunmatchError(f"workdir {workdir}: no such directory")
    notes: list[str] = []
    config_path = workdir / "config.json"
    config = _read_json(config_path) if config_path.exists() else {}
    if not config_path.exists():
        notes.append("no config.json: run settings unknown")
    if not isinstance(config, dict):
        raise FunmatchError(f"{config_path}: expected a JSON object")

    history_path, final_path = workdir / "metrics.jsonl", workdir / "metrics.json"
    if not history_path.exists() and not final_path.exists():
        raise FunmatchError(
            f"workdir {workdir}: no metrics.jsonl or metrics.json; is it a `funmatch distill` workdir "
            "that has finished at least one chunk?"
        )
    history = _read_history(history_path, notes) if history_path.exists() else []
    if not history_path.exists():
        notes.append("no metrics.jsonl: no training curves")

    if final_path.exists():
        final = _read_json(final_path)
        if not isinstance(final, dict):
            raise FunmatchError(f"{final_path}: expected a JSON object")
        finished = True
    else:
        evaluated = [r for r in history if any(k.endswith("_accuracy") and not k.startswith(("train_", "teacher_")) for k in r)]
        final = dict(evaluated[-1] if evaluated else (history[-1] if history else {}))
        finished = False
        where = f"step {final.get('step')}" if final.get("step") is not None else "the last record"
        total = config.get("steps")
        notes.append(
            f"no metrics.json: the run has not finished{f' ({total} steps planned)' if total else ''}; "
            f"final numbers are the periodic evaluation at {where}"
        )
    if not history and not final:
        raise FunmatchError(f"workdir {workdir}: metrics.jsonl is empty and there is no metrics.json")

    subset = config.get("eval_max_examples")
    if subset and history:
        notes.append(
            f"periodic evaluations (the curves) used the first {subset} examples of each split (eval_max_examples); "
            "the final numbers" + (" use the full splits" if finished else " shown here are from such a subset")
        )

    evaluation = None
    evaluation_path = workdir / "evaluation.json"
    if evaluation_path.exists():
        evaluation = _read_json(evaluation_path)
        if not isinstance(evaluation, dict):
            raise FunmatchError(f"{evaluation_path}: expected a JSON object")
    else:
        teacher = config.get("teacher_path", "TEACHER.keras")
        data = config.get("data_dir", "DATA")
        split = config.get("test_split", "test")
        recipe = f" --config {config['recipe']}" if config.get("recipe") else ""  # the run's eval pp ratio
        notes.append(
            "no evaluation.json (per-class gaps, calibration, cost): run "
            f"`funmatch evaluate --student {workdir / 'student.keras'} --teacher {teacher} --data {data} "
            f"--split {split}{recipe} --json {evaluation_path}`"
        )

    augmentations = workdir / "augmentations.png"
    if augmentations.exists():
        if augmentations.read_bytes()[: len(PNG_SIGNATURE)] != PNG_SIGNATURE:
            raise FunmatchError(f"{augmentations}: not a PNG file")
    else:
        augmentations = None
        notes.append("no augmentations.png: no grid of augmented training inputs (the training entry writes it)")

    return Run(workdir, config, history, final, finished, evaluation, augmentations, notes)


def _label_runs(runs: Sequence[Run]) -> None:
    """Short unique labels: the workdir name, or its path when two names collide."""
    names = [run.workdir.name or str(run.workdir) for run in runs]
    for run, name in zip(runs, names):
        run.label = name if names.count(name) == 1 else str(run.workdir)


# ----------------------------------------------------------------------------------------------
# Number formatting and tables
# ----------------------------------------------------------------------------------------------

_PERCENT_WORDS = {"accuracy", "agreement", "ece"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def format_value(key: str, value: Any) -> str:
    """How a metric reads on the page, chosen from its key.

    Fractions (accuracy, agreement, ECE) as percent with two decimals, per-class gaps as signed
    percentage points, KL and losses with four decimals, ratios as "12.3×", counts with thousands
    separators, large floats with an SI suffix. None or NaN reads "n/a".
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not _is_number(value):
        return str(value)
    # Words of the last dotted component: "cost.size_bytes" -> {"size", "bytes"}.
    words = set(key.lower().rsplit(".", 1)[-1].split("_"))
    value_f = float(value)
    if math.isnan(value_f):
        return "n/a"
    if math.isinf(value_f):
        return "∞" if value_f > 0 else "−∞"
    if "gap" in words:
        return f"{100 * value_f:+.2f} pp"
    if words & _PERCENT_WORDS:
        return f"{100 * value_f:.2f} %"
    if key.lower().startswith(("ratio.", "ratios.")) or "ratio" in words:
        return f"{value_f:.2f}×"
    if words & {"kl", "loss"}:
        return f"{value_f:.4f}"
    if "bytes" in words:
        return f"{value_f / 2**20:.2f} MiB" if value_f >= 2**20 else f"{value_f / 2**10:.1f} KiB"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    magnitude = abs(value_f)
    if magnitude >= 1e6:
        for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
            if magnitude >= scale:
                return f"{value_f / scale:.3g} {suffix}"
    if magnitude >= 100:
        return f"{value_f:,.1f}"
    if value_f.is_integer():
        return f"{value_f:g}"
    return f"{value_f:.4g}"


def _exact(value: Any) -> str:
    """A cell's exact value: `repr` of a float round-trips through `float()`."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


@dataclasses.dataclass
class Cell:
    """A table cell: shown `text`; for a number, its exact `value` and the JSON `key` it came from."""

    text: str
    value: Any = None
    key: str | None = None
    numeric: bool = False  # right-aligned like numbers even when the value is missing ("n/a")

    @classmethod
    def metric(cls, key: str, value: Any, source_key: str | None = None) -> "Cell":
        number = _is_number(value)
        return cls(format_value(key, value), value if number else None, source_key or key, numeric=number or value is None)


@dataclasses.dataclass
class Table:
    """A titled table; `name` becomes the HTML id (`table-{name}`) that tests look up."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = []
        for row in self.rows:
            cells = []
            for i, cell in enumerate(row):
                attributes = ""
                if cell.key is not None:
                    attributes += f' data-key="{html.escape(cell.key)}"'
                if cell.value is not None:
                    attributes += f' data-value="{_exact(cell.value)}"'
                if cell.value is not None or cell.numeric:
                    attributes += ' class="num"'
                tag = "th" if i == 0 else "td"
                cells.append(f"<{tag}{attributes}>{html.escape(cell.text)}</{tag}>")
            body.append(f"<tr>{''.join(cells)}</tr>")
        caption = f'<p class="caption">{html.escape(self.caption)}</p>' if self.caption else ""
        return (
            f'<h3>{html.escape(self.title)}</h3>{caption}'
            f'<table id="table-{html.escape(self.name)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>'
        )

    def to_markdown(self) -> str:
        def escape(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        lines = [f"### {self.title}", ""]
        if self.caption:
            lines += [self.caption, ""]
        lines.append("| " + " | ".join(escape(c) for c in self.columns) + " |")
        numeric = [any(len(row) > i and (row[i].value is not None or row[i].numeric) for row in self.rows)
                   for i in range(len(self.columns))]
        lines.append("|" + "|".join("---:" if numeric[i] and i else "---" for i in range(len(self.columns))) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(escape(cell.text) for cell in row) + " |")
        return "\n".join(lines) + "\n"


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b": scalar}; lists are left out (per-class arrays get their own chart)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif not isinstance(value, (list, tuple)):
            out[name] = value
    return out


def config_table(run: Run, index: int) -> Table:
    rows = []
    for key in CONFIG_ROWS:
        if key == "epochs" and run.planned_epochs is not None and not run.config.get("epochs"):
            # The recipe set steps directly: show the passes over the training set they make.
            rows.append([Cell("epochs (from steps)"), Cell(format_value(key, run.planned_epochs), run.planned_epochs)])
        elif key in run.config:
            rows.append([Cell(key), Cell.metric(key, run.config[key])])
    return Table(f"config-{index}", "Run settings", ["setting", "value"], rows, caption=f"from {run.workdir / 'config.json'}")


def final_metrics_table(run: Run, index: int) -> Table:
    """Rows: the eval splits. Columns: student accuracy, agreement, KL, teacher accuracy, examples."""
    columns = ["split"] + [title for title, _ in STUDENT_COLUMNS] + [title for title, _ in TEACHER_COLUMNS] + ["examples"]
    rows = []
    for split in run.splits:
        row = [Cell(split)]
        for _, suffix in STUDENT_COLUMNS:
            key = f"{split}_{suffix}"
            row.append(Cell.metric(key, run.final.get(key)))
        for _, suffix in TEACHER_COLUMNS:
            key = f"teacher_{split}_{suffix}"
            row.append(Cell.metric(key, run.final.get(key)))
        key = f"{split}_num_examples"
        row.append(Cell.metric(key, run.final.get(key)))
        rows.append(row)
    source = "metrics.json (full splits)" if run.finished else f"metrics.jsonl at step {run.final.get('step')} (run unfinished)"
    return Table(f"final-{index}", "Final student and teacher metrics", columns, rows, caption=f"from {source}")


def comparison_table(runs: Sequence[Run]) -> Table:
    """One row per run on its main (test) split: the paper's mode / patience comparison."""
    columns = ["run", "mode", "student", "status", "steps", "epochs", "split", "accuracy", "agreement", "KL(teacher ‖ student)",
               "teacher accuracy", "student − teacher"]
    rows = []
    for run in runs:
        split = run.main_split
        accuracy = run.final.get(f"{split}_accuracy")
        teacher = run.final.get(f"teacher_{split}_accuracy")
        gap = accuracy - teacher if _is_number(accuracy) and _is_number(teacher) else None
        rows.append([
            Cell(run.label),
            Cell(run.mode),
            Cell(str(run.config.get("student", "?"))),
            Cell(run.status),
            Cell.metric("steps", run.final.get("step", run.config.get("steps"))),
            Cell.metric("epochs", run.total_epochs),
            Cell(str(split)),
            Cell.metric(f"{split}_accuracy", accuracy),
            Cell.metric(f"{split}_agreement", run.final.get(f"{split}_agreement")),
            Cell.metric(f"{split}_kl", run.final.get(f"{split}_kl")),
            Cell.metric(f"teacher_{split}_accuracy", teacher),
            Cell(format_value("accuracy_gap", gap), gap),  # derived: no JSON key
        ])
    return Table("comparison", "Comparison of runs", columns, rows,
                 caption="final metrics on each run's test split (validation when a run has no test split)")


# ----------------------------------------------------------------------------------------------
# evaluation.json (written by `funmatch evaluate --json`)
# ----------------------------------------------------------------------------------------------

MODEL_NAMES = ("student", "teacher")


def _evaluation_models(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{model name: its metrics dict}, from top-level "student"/"teacher" or a "models" dict."""
    container = evaluation.get("models") if isinstance(evaluation.get("models"), dict) else evaluation
    return {name: container[name] for name in MODEL_NAMES if isinstance(container.get(name), dict)}


def evaluation_tables(evaluation: dict[str, Any], index: int) -> list[Table]:
    """The evaluate numbers: a per-model table (metric × model) and a table of everything else.

    Whatever scalar the JSON holds is shown (nested keys joined with "."), so new keys appear
    without changes here; lists (per-class values) go to the gap chart and table instead.
    """
    tables = []
    models = _evaluation_models(evaluation)
    if models:
        flat = {name: _flatten(values) for name, values in models.items()}
        keys = list(dict.fromkeys(k for values in flat.values() for k in values))
        # Text (paths, architecture, pp spec) first, then the numbers in the JSON's order.
        text_keys = [k for k in keys if any(isinstance(flat[m].get(k), str) for m in flat)]
        rows = []
        for key in text_keys + [k for k in keys if k not in text_keys]:
            row = [Cell(key)]
            for name in flat:
                value = flat[name].get(key)
                row.append(Cell.metric(key, value, source_key=f"{name}.{key}") if key in flat[name] else Cell("—"))
            rows.append(row)
        split = (evaluation.get("data") or {}).get("split") if isinstance(evaluation.get("data"), dict) else evaluation.get("split")
        tables.append(Table(f"evaluation-models-{index}", "Evaluation: each model", ["metric", *flat], rows,
                            caption="from evaluation.json (funmatch evaluate)" + (f", split {split}" if split else "")))
    # Model blocks (also a null "teacher") belong to the table above; null sections (no teacher:
    # fidelity, ratios) are left out and said in a note by the caller.
    rest = {k: v for k, v in evaluation.items() if k not in MODEL_NAMES and k != "models" and v is not None}
    flat_rest = _flatten(rest)
    if flat_rest:
        rows = [[Cell(key), Cell.metric(key, value)] for key, value in flat_rest.items()]
        tables.append(Table(f"evaluation-shared-{index}", "Evaluation: fidelity, cost ratios, setup",
                            ["quantity", "value"], rows, caption="ratios are teacher ÷ student"))
    return tables


def _class_name(entry: dict[str, Any], position: int) -> str:
    for key in ("name", "class_name", "label_name", "label", "class", "class_index", "index"):
        if key in entry:
            return str(entry[key])
    return str(position)


def _find_gap_list(values: Any) -> list[dict[str, Any]] | None:
    """The first list of dicts with a "gap" key, searched breadth-first."""
    queue = [values]
    while queue:
        value = queue.pop(0)
        if isinstance(value, list) and value and all(isinstance(v, dict) and "gap" in v for v in value):
            return value
        if isinstance(value, dict):
            queue.extend(value.values())
    return None


def class_gaps(evaluation: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Per-class rows {name, student, teacher, gap, count}, worst first.

    Read from a list of per-class dicts with a "gap" key (evaluate's `per_class`: student/teacher
    accuracy from the keys that name them), or computed from per-model per-class accuracy lists
    ("per_class_accuracy"). Sorted by gap = student − teacher ascending; without a teacher (gaps
    null) by student accuracy. None when the evaluation has no per-class figures.
    """
    rows = []
    entries = _find_gap_list(evaluation)
    if entries is not None:
        for position, entry in enumerate(entries):
            student = next((v for k, v in entry.items() if "student" in k and _is_number(v)), None)
            teacher = next((v for k, v in entry.items() if "teacher" in k and _is_number(v)), None)
            rows.append({"name": _class_name(entry, position), "student": student, "teacher": teacher,
                         "gap": entry["gap"], "count": entry.get("num_examples", entry.get("count"))})
    else:
        models = _evaluation_models(evaluation)
        per_class = {}
        for name, values in models.items():
            found = next((v for k, v in values.items() if "per_class" in k and isinstance(v, (list, dict))), None)
            if isinstance(found, dict):  # {"accuracy": [...]} or {class name: accuracy}
                found = found.get("accuracy", found)
            per_class[name] = found
        student, teacher = per_class.get("student"), per_class.get("teacher")
        if student is None:
            return None
        if teacher is not None and len(teacher) != len(student):
            return None
        if isinstance(student, dict):
            names = list(student)
            teacher = [teacher.get(n) for n in names] if isinstance(teacher, dict) else teacher
            student = [student[n] for n in names]
        else:
            data = evaluation.get("data") if isinstance(evaluation.get("data"), dict) else {}
            names = evaluation.get("class_names") or data.get("class_names") or list(range(len(student)))
        teacher = teacher if teacher is not None else [None] * len(student)
        for name, s, t in zip(names, student, teacher):
            gap = s - t if _is_number(s) and _is_number(t) else None
            rows.append({"name": str(name), "student": s, "teacher": t, "gap": gap, "count": None})

    def finite(value):
        return _is_number(value) and math.isfinite(float(value))

    with_gap = [r for r in rows if finite(r["gap"])]
    if with_gap:
        return sorted(with_gap, key=lambda r: float(r["gap"]))
    with_student = [r for r in rows if finite(r["student"])]
    return sorted(with_student, key=lambda r: float(r["student"])) if with_student else None


def class_gap_table(gaps: list[dict[str, Any]], index: int, limit: int = MAX_GAP_ROWS) -> Table:
    rows = [[Cell(g["name"]), Cell.metric("num_examples", g["count"]), Cell.metric("student_accuracy", g["student"]),
             Cell.metric("teacher_accuracy", g["teacher"]), Cell.metric("gap", g["gap"])] for g in gaps[:limit]]
    for row in rows:
        for cell in row[1:]:
            cell.key = None  # per-class values: located by row, not by a JSON key
    shown = f"the worst {min(limit, len(gaps))} of {len(gaps)} classes" if len(gaps) > limit else f"all {len(gaps)} classes"
    if any(g["gap"] is not None for g in gaps):
        title, caption = "Per-class accuracy, worst gap first", f"{shown}; a negative gap is a class where the student falls behind the teacher"
    else:
        title, caption = "Per-class student accuracy, worst first", f"{shown}; no teacher in evaluation.json, so no gaps"
    return Table(f"class-gaps-{index}", title, ["class", "examples", "student", "teacher", "student − teacher"], rows, caption=caption)


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------


def _figure(width: float, height: float, *, left: float, right: float, top: float, bottom: float,
            wspace: float = 0.2, hspace: float = 0.2):
    """A figure with fixed margins, given in inches (so they hold for any figure size).

    Fixed margins rather than constrained layout: the layout engine took over half of each plot's
    time (seconds per report on a 2-core CPU) for no visible gain on these regular grids.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                           wspace=wspace, hspace=hspace)
    return figure


def _save(figure, path: pathlib.Path) -> pathlib.Path:
    figure.savefig(path, format="png", dpi=100)
    return path


def _series(run: Run, key: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) over the history where `key` was logged; x is "step" or "epoch"."""
    xs, ys = [], []
    for record in run.history:
        value = record.get(key)
        position = record.get("step") if x == "step" else run.epoch_of(record)
        if _is_number(value) and position is not None and not math.isnan(float(value)):
            xs.append(float(position))
            ys.append(float(value))
    return np.asarray(xs), np.asarray(ys)


_SPLIT_COLORS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown")


def _teacher_level(run: Run, split: str) -> tuple[float | None, float | None]:
    """(teacher accuracy on the periodic-eval examples, on the full split) for the horizontal lines.

    They differ when periodic evaluation used a subset (`eval_max_examples`): each is drawn against
    the student figures measured on the same examples.
    """
    periodic = next((r[f"teacher_{split}_accuracy"] for r in reversed(run.history)
                     if _is_number(r.get(f"teacher_{split}_accuracy"))), None)
    full = run.final.get(f"teacher_{split}_accuracy") if run.finished else None
    if periodic is None and not run.finished:
        periodic = run.final.get(f"teacher_{split}_accuracy")
    return periodic, full if _is_number(full) else None


def _accuracy_panel(axis, run: Run, x: str) -> None:
    from matplotlib.ticker import MaxNLocator

    drawn = False
    for color, split in zip(_SPLIT_COLORS, run.splits):
        for key, style, what in ((f"{split}_accuracy", "-", "accuracy"), (f"{split}_agreement", "--", "agreement")):
            xs, ys = _series(run, key, x)
            if len(xs):
                axis.plot(xs, 100 * ys, style, color=color, marker="o", markersize=3, label=f"student {split} {what}")
                drawn = True
        periodic, full = _teacher_level(run, split)
        subset = bool(run.config.get("eval_max_examples"))
        if periodic is not None:
            label = f"teacher {split} accuracy" + (" (same subset)" if subset and drawn else "")
            axis.axhline(100 * periodic, color=color, linestyle=":", linewidth=1.5, label=label)
        if full is not None and (periodic is None or not math.isclose(full, periodic)):
            axis.axhline(100 * full, color=color, linestyle="-.", linewidth=1.2, alpha=0.8,
                         label=f"teacher {split} accuracy (full split)")
        final_x = run.final.get("step") if x == "step" else run.total_epochs
        if run.finished and _is_number(run.final.get(f"{split}_accuracy")) and final_x is not None:
            axis.plot([final_x], [100 * run.final[f"{split}_accuracy"]], "*", color=color, markersize=12,
                      markeredgecolor="black", linestyle="none", label=f"student {split} accuracy, final (full split)")
    if not drawn:
        axis.text(0.5, 0.5, "no periodic evaluation logged", ha="center", va="center", transform=axis.transAxes)
    axis.set_xlabel("training step" if x == "step" else "epoch (passes over the training set)")
    axis.xaxis.set_major_locator(MaxNLocator(nbins=7, integer=x == "step"))
    axis.set_ylabel("accuracy / agreement (%)")
    axis.set_title(f"Student accuracy and agreement vs {'step' if x == 'step' else 'epoch'}")
    axis.grid(alpha=0.3)


def plot_training_curves(run: Run, path: os.PathLike) -> pathlib.Path:
    """Three panels: distillation loss vs step; accuracy/agreement vs step; the same vs epoch.

    One legend below the panels serves the two accuracy panels (same lines, other x-axis).
    """
    from matplotlib.ticker import MaxNLocator

    figure = _figure(16, 5.8, left=0.75, right=0.15, top=0.65, bottom=1.55, wspace=0.22)
    loss_axis, step_axis, epoch_axis = figure.subplots(1, 3)
    xs, ys = _series(run, "train_loss", "step")
    if len(xs):
        temperature = run.config.get("temperature")
        loss_axis.plot(xs, ys, color="tab:red", marker="o", markersize=3,
                       label="training loss T²·KL" + (f" (T = {temperature:g})" if _is_number(temperature) else ""))
        if (ys > 0).all() and ys.max() / ys.min() > 10:
            loss_axis.set_yscale("log")
        loss_axis.legend(fontsize=8, loc="upper right")
    else:
        loss_axis.text(0.5, 0.5, "no training loss logged", ha="center", va="center", transform=loss_axis.transAxes)
    loss_axis.set_xlabel("training step")
    loss_axis.xaxis.set_major_locator(MaxNLocator(nbins=7, integer=True))
    loss_axis.set_ylabel("distillation loss (mean over each logged chunk)")
    loss_axis.set_title("Distillation loss vs step")
    loss_axis.grid(alpha=0.3, which="both")
    _accuracy_panel(step_axis, run, "step")
    _accuracy_panel(epoch_axis, run, "epoch")
    handles, labels = step_axis.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)),
                      fontsize=9, frameon=False)
    figure.suptitle(f"{run.label}: {run.mode}, student {run.config.get('student', '?')}", fontsize=13)
    return _save(figure, pathlib.Path(path))


def plot_class_gaps(gaps: list[dict[str, Any]], path: os.PathLike, *, title: str = "", max_classes: int = MAX_GAP_BARS) -> pathlib.Path:
    """Horizontal bars of student − teacher accuracy per class, worst at the top."""
    shown = gaps[:max_classes]
    longest = max((len(str(g["name"])) for g in shown), default=1)
    figure = _figure(9, 1.4 + 0.26 * len(shown), left=0.3 + 0.068 * min(longest, 40), right=0.25, top=0.45, bottom=0.65)
    axis = figure.subplots()
    values = np.array([100 * float(g["gap"]) for g in shown])
    positions = np.arange(len(shown))
    colors = ["tab:red" if v < 0 else "tab:green" for v in values]
    axis.barh(positions, values, color=colors)
    axis.set_yticks(positions, [g["name"] for g in shown], fontsize=8)
    axis.invert_yaxis()  # worst first, at the top
    axis.axvline(0, color="black", linewidth=0.8)
    low, high = min(0.0, float(values.min(initial=0.0))), max(0.0, float(values.max(initial=0.0)))
    padding = max(1.0, 0.08 * (high - low))
    axis.set_xlim(low - padding, high + padding)
    axis.margins(y=0.01)
    axis.set_xlabel("student − teacher accuracy (percentage points)")
    suffix = f" (worst {len(shown)} of {len(gaps)} classes)" if len(gaps) > len(shown) else ""
    axis.set_title((title or "Per-class accuracy gap") + suffix)
    axis.grid(axis="x", alpha=0.3)
    return _save(figure, pathlib.Path(path))


def plot_comparison(runs: Sequence[Run], path: os.PathLike) -> pathlib.Path:
    """Across runs: test accuracy and agreement vs epochs (the paper's patience / consistency plots)."""
    figure = _figure(14, 5.4, left=0.7, right=0.15, top=0.7, bottom=0.6, wspace=0.16)
    accuracy_axis, agreement_axis = figure.subplots(1, 2)
    epochs_seen: list[float] = []
    teachers: dict[float, str] = {}
    for number, run in enumerate(runs):
        split = run.main_split
        color = f"C{number % 10}"
        label = f"{run.label} ({run.mode})"
        for axis, key in ((accuracy_axis, f"{split}_accuracy"), (agreement_axis, f"{split}_agreement")):
            xs, ys = _series(run, key, "epoch")
            final_value, final_epoch = run.final.get(key), run.total_epochs
            if run.finished and _is_number(final_value) and final_epoch is not None:
                # The full-split final figure ends the curve (periodic ones may be on a subset).
                keep = xs < final_epoch
                xs, ys = np.append(xs[keep], final_epoch), np.append(ys[keep], float(final_value))
            if len(xs):
                axis.plot(xs, 100 * ys, marker="o", markersize=4, color=color, label=label)
                epochs_seen.extend(xs[xs > 0].tolist())
        teacher = run.final.get(f"teacher_{split}_accuracy")
        if _is_number(teacher):
            teachers.setdefault(round(float(teacher), 6), split)
    for number, (teacher, split) in enumerate(sorted(teachers.items())):
        accuracy_axis.axhline(100 * teacher, color="black", linestyle=":", linewidth=1.5,
                              label=f"teacher {split} accuracy" + (f" #{number + 1}" if len(teachers) > 1 else ""))
    log_x = bool(epochs_seen) and max(epochs_seen) / min(epochs_seen) >= 20
    for axis, what in ((accuracy_axis, "Student test accuracy"), (agreement_axis, "Student–teacher agreement (top-1)")):
        if log_x:
            axis.set_xscale("log")
        axis.set_xlabel("epochs (passes over the training set)" + (", log scale" if log_x else ""))
        axis.set_ylabel(f"{'accuracy' if axis is accuracy_axis else 'agreement'} (%)")
        axis.set_title(f"{what} vs epochs")
        axis.grid(alpha=0.3, which="both")
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8, loc="best")
    figure.suptitle("Runs compared: patience (longer schedules) and consistency (modes)", fontsize=13)
    return _save(figure, pathlib.Path(path))


def _to_unit_range(images: np.ndarray, key: str) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"augmentation grid: {key!r} must be [B, H, W, 3] images in [-1, 1]; got shape {images.shape}")
    return np.clip((images + 1.0) / 2.0, 0.0, 1.0)


def save_augmentation_grid(batch: dict, mixed: dict, path: os.PathLike, max_images: int = 8, *,
                           mixup_coefficient: float | None = None) -> pathlib.Path:
    """A PNG grid of augmented training inputs, one column per example.

    batch: {"image": [B, H, W, 3] in [-1, 1] (the student view), optional "teacher": [B, H', W', 3]
    (the teacher's view of the same crop, maybe at another resolution)} before mixup.
    mixed: the same keys after mixup (may be empty or lack "teacher").
    Rows: teacher view (when given), student view, student after mixup, teacher after mixup (when
    given). `mixup_coefficient` (the batch's a, when known) is written in the mixup rows' labels.
    Returns `path`.
    """
    if "image" not in batch:
        raise ValueError(f"augmentation grid: batch needs an 'image' key; got {sorted(batch)}")
    rows = []
    if batch.get("teacher") is not None:
        rows.append(("teacher view", _to_unit_range(batch["teacher"], "teacher")))
        rows.append(("student view", _to_unit_range(batch["image"], "image")))
    else:
        rows.append(("student view\n= teacher view", _to_unit_range(batch["image"], "image")))
    mixed = mixed or {}
    if mixed.get("image") is not None:
        rows.append(("student\nafter mixup", _to_unit_range(mixed["image"], "mixed image")))
    if mixed.get("teacher") is not None:
        rows.append(("teacher\nafter mixup", _to_unit_range(mixed["teacher"], "mixed teacher")))
    columns = max(1, min(int(max_images), min(len(images) for _, images in rows)))
    figure = _figure(1.55 * columns + 1.3, 1.6 * len(rows) + 0.75, left=1.2, right=0.1, top=0.75, bottom=0.1,
                     wspace=0.08, hspace=0.1)
    axes = np.asarray(figure.subplots(len(rows), columns, squeeze=False))
    for row, (title, images) in enumerate(rows):
        for column in range(columns):
            axis = axes[row, column]
            image = images[column]
            axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                        vmin=0, vmax=1, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(f"{title}\n{image.shape[0]}×{image.shape[1]} px", fontsize=9)
            if row == 0:
                axis.set_title(f"#{column}", fontsize=9)
    coefficient = f"a = {float(mixup_coefficient):.2f}, " if mixup_coefficient is not None else ""
    figure.suptitle(f"Augmented training inputs\n(mixup: {coefficient}image i mixed with image i−1)", fontsize=10)
    return _save(figure, pathlib.Path(path))


# ----------------------------------------------------------------------------------------------
# The page and the summary
# ----------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 1.5em 2em; color: #1d2330; background: #fff; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #dfe3ea; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin: 1.4em 0 0.4em; font-size: 1.05em; }
.meta, .caption { color: #5b6474; font-size: 0.9em; margin: 0.2em 0 0.6em; }
table { border-collapse: collapse; font-size: 0.88em; margin-bottom: 0.8em; }
th, td { border: 1px solid #dfe3ea; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
td { max-width: 22em; overflow-wrap: break-word; }
thead th { background: #f3f5f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfd; }
figure { margin: 0.8em 0 1.2em; } figure img { max-width: 100%; height: auto; border: 1px solid #eef0f4; }
figcaption { color: #5b6474; font-size: 0.88em; }
.notes { background: #fff8e5; border-left: 4px solid #f0b429; padding: 0.4em 1em; font-size: 0.9em; }
.notes code { word-break: break-all; }
.table { overflow-x: auto; max-width: 100%; }
.row { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
.row .caption { max-width: 34em; }
.row figure { flex: 1 1 440px; }
nav a { margin-right: 1em; }
"""


@dataclasses.dataclass
class Picture:
    """A PNG next to the page, with its caption."""

    file_name: str
    caption: str


@dataclasses.dataclass
class _Section:
    """A run's (or the comparison's) content, rendered to HTML and markdown alike.

    `blocks` are shown in order; a block is a Table, a Picture, or a list of them that the page
    lays out side by side where the width allows (markdown lists them one after another).
    """

    anchor: str
    title: str
    subtitle: str
    notes: list[str]
    blocks: list[Any]


def _html_note(note: str) -> str:
    # Commands are written between backticks in notes; show them as code.
    parts = note.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _html_block(block: Any) -> str:
    if isinstance(block, Table):
        return f'<div class="table">{block.to_html()}</div>'
    if isinstance(block, Picture):
        return (
            f'<figure><img src="{html.escape(block.file_name)}" alt="{html.escape(block.caption)}">'
            f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
        )
    return f'<div class="row">{"".join(_html_block(b) for b in block)}</div>'


def _render_html(title: str, sections: list[_Section], generated: str) -> str:
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = []
    for section in sections:
        parts = [f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>']
        if section.subtitle:
            parts.append(f'<p class="meta">{html.escape(section.subtitle)}</p>')
        if section.notes:
            items = "".join(f"<li>{_html_note(n)}</li>" for n in section.notes)
            parts.append(f'<div class="notes"><strong>Notes (what is missing, repaired or measured differently):</strong><ul>{items}</ul></div>')
        parts.extend(_html_block(block) for block in section.blocks)
        parts.append("</section>")
        body.append("".join(parts))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>"
        f"<h1>{html.escape(title)}</h1><p class=\"meta\">{html.escape(generated)}</p><nav>{nav}</nav>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _markdown_block(block: Any) -> list[str]:
    if isinstance(block, Table):
        return [block.to_markdown()]
    if isinstance(block, Picture):
        return [f"![{block.caption}]({block.file_name})", ""]
    return [line for b in block for line in _markdown_block(b)]


def _render_markdown(title: str, sections: list[_Section], generated: str) -> str:
    lines = [f"# {title}", "", generated, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.subtitle:
            lines += [section.subtitle, ""]
        if section.notes:
            lines += [f"> {note}  " for note in section.notes] + [""]
        for block in section.blocks:
            lines += _markdown_block(block)
    return "\n".join(lines)


def _claim_out_dir(out_dir: pathlib.Path) -> list[str]:
    """Create `out_dir`; return the files a previous report wrote there (to be replaced).

    A folder with an index.html or summary.md that funmatch did not write is left alone: error.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise FunmatchError(f"--out {out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST_NAME
    if manifest.exists():
        try:
            files = json.loads(manifest.read_text()).get("files", [])
        except (json.JSONDecodeError, AttributeError):
            raise FunmatchError(f"{manifest}: not a funmatch report manifest; remove it or choose another --out") from None
        return [f for f in files if isinstance(f, str) and "/" not in f and f not in ("", ".", "..")]
    foreign = [name for name in ("index.html", "summary.md") if (out_dir / name).exists()]
    if foreign:
        raise FunmatchError(
            f"--out {out_dir}: holds {', '.join(foreign)} not written by `funmatch report` "
            f"(no {MANIFEST_NAME}); choose another folder"
        )
    return []


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:40] or "run"


def write_report(workdirs: Sequence[os.PathLike] | os.PathLike, out_dir: os.PathLike, *, title: str | None = None) -> pathlib.Path:
    """Write index.html, summary.md and the PNG plots for `workdirs` into `out_dir`; returns index.html.

    With two or more workdirs the page starts with a comparison table and an accuracy-vs-epochs plot
    across runs. Files a previous report wrote into `out_dir` are replaced; other files are kept.
    """
    if isinstance(workdirs, (str, os.PathLike)):
        workdirs = [workdirs]
    if not workdirs:
        raise FunmatchError("report: give at least one workdir")
    runs = [load_run(w) for w in workdirs]
    _label_runs(runs)
    out_dir = pathlib.Path(out_dir)
    previous = _claim_out_dir(out_dir)
    written: list[str] = []

    def target(name: str) -> pathlib.Path:
        written.append(name)
        return out_dir / name

    sections = []
    if len(runs) > 1:
        plot_comparison(runs, target("comparison.png"))
        sections.append(_Section("comparison", "Comparison", f"{len(runs)} runs", [], [
            comparison_table(runs),
            Picture("comparison.png", "Student test accuracy and top-1 agreement with the teacher against epochs, one line "
                                     "per run (the last point is the final full-split figure); dotted: the teacher's accuracy"),
        ]))
    for index, run in enumerate(runs, start=1):
        prefix = f"run{index}-{_slug(run.label)}"
        notes = list(run.notes)
        name = f"{prefix}-curves.png"
        plot_training_curves(run, target(name))
        blocks: list[Any] = [
            final_metrics_table(run, index),
            Picture(name, "Training curves: the distillation loss, and the student's accuracy (solid) and top-1 agreement "
                         "with the teacher (dashed) on each eval split; dotted: the teacher's accuracy; "
                         "stars: the final full-split accuracy"),
        ]
        if run.augmentations is not None:
            name = f"{prefix}-augmentations.png"
            destination = target(name)
            if not (destination.exists() and destination.samefile(run.augmentations)):
                shutil.copyfile(run.augmentations, destination)
            blocks.append(Picture(name, "Augmented training inputs: teacher view, student view, and after mixup"))
        if run.evaluation is not None:
            blocks.append(evaluation_tables(run.evaluation, index))
            if not isinstance(run.evaluation.get("teacher"), dict) and not isinstance(run.evaluation.get("models"), dict):
                notes.append("evaluation.json was made without --teacher: no fidelity, cost ratios or per-class gaps")
            gaps = class_gaps(run.evaluation)
            if gaps and gaps[0]["gap"] is not None:
                name = f"{prefix}-class-gaps.png"
                plot_class_gaps(gaps, target(name), title=f"{run.label}: per-class accuracy, student − teacher")
                blocks.append([class_gap_table(gaps, index),
                               Picture(name, "Per-class accuracy gap (student − teacher), worst class at the top")])
            elif gaps:
                blocks.append(class_gap_table(gaps, index))
            else:
                notes.append("evaluation.json has no per-class accuracy: no per-class gap chart")
        blocks.append(config_table(run, index))
        steps = run.final.get("step", run.config.get("steps"))
        epochs = run.total_epochs
        subtitle = (f"{run.workdir.resolve()} — mode {run.mode}, {steps} steps"
                    + (f" ({epochs:.4g} epochs)" if epochs is not None else "")
                    + ("" if run.finished else f" — unfinished ({run.config.get('steps', '?')} steps planned)"))
        sections.append(_Section(f"run-{index}", run.label, subtitle, notes, blocks))

    from funmatch import __version__

    generated = f"funmatch {__version__} report, generated {datetime.datetime.now().isoformat(timespec='seconds')}"
    title = title or ("funmatch report: " + ", ".join(run.label for run in runs[:4]) + (" …" if len(runs) > 4 else ""))
    page = target("index.html")
    page.write_text(_render_html(title, sections, generated), encoding="utf-8")
    target("summary.md").write_text(_render_markdown(title, sections, generated), encoding="utf-8")
    for stale in set(previous) - set(written):
        (out_dir / stale).unlink(missing_ok=True)
    (out_dir / MANIFEST_NAME).write_text(json.dumps({"files": written}, indent=1))
    return page


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR", help="`funmatch distill` workdir(s); two or more add a comparison")
    parser.add_argument("--out", required=True, help="folder for index.html, summary.md and the PNG plots (created)")
    parser.add_argument("--title", default=None, help="page title (default: from the workdir names)")


def main(args: argparse.Namespace) -> int:
    page = write_report(args.workdirs, args.out, title=args.title)
    print(f"funmatch report: wrote {page} (and summary.md, plots) for {len(args.workdirs)} run(s)")
    return 0


__all__ = [
    "Run",
    "class_gaps",
    "format_value",
    "load_run",
    "plot_class_gaps",
    "plot_comparison",
    "plot_training_curves",
    "save_augmentation_grid",
    "write_report",
]
