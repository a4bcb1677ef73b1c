"""Numbers formatted for people, and the report's tables (run config, final metrics, comparison, per class).

Every cell keeps its exact value and the JSON key it came from, so a page can be read back.
"""

from __future__ import annotations

import dataclasses
import html
import math
from typing import Any, Sequence

import numpy as np

from funmatch.reporting.runs import Run, is_number


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
    "batch_size", "steps", "epochs", "num_train_examples", "temperature", "mixup_p", "crop_area_min", "optimizer",
    "learning_rate", "weight_decay", "warmup_steps", "clip_norm", "max_wall_seconds", "max_cpu_seconds", "seed",
    "backend", "data_dir", "teacher_path",
)
# Label-training runs: the trained model is "model", the teacher (if any) only measures agreement.
LABEL_ROW_NAMES = {"student": "model", "student_resolution": "resolution", "teacher": "teacher (agreement only)"}


# ----------------------------------------------------------------------------------------------
# Number formatting and tables
# ----------------------------------------------------------------------------------------------

_PERCENT_WORDS = {"accuracy", "agreement", "ece"}




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
    if not is_number(value):
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
    if "seconds" in words:  # durations: train_seconds, train_cpu_seconds, max_wall_seconds
        return f"{value_f / 60:.1f} min" if abs(value_f) >= 60 else f"{value_f:.1f} s"
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
        number = is_number(value)
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
    """The settings the run ran with (see `Run.settings`), training time and the budget that stopped it."""
    settings = run.settings
    rows = []
    for key in CONFIG_ROWS:
        name = LABEL_ROW_NAMES.get(key, key) if run.is_labels else key
        if key == "epochs":
            epochs = run.total_epochs if run.finished else run.planned_epochs
            if epochs is not None:  # passes over the training set of the steps run (or planned)
                rows.append([Cell("epochs (from steps)"), Cell(format_value(key, epochs), epochs)])
            continue
        if key == "steps" and "planned_steps" in settings and settings["planned_steps"] != settings.get("steps"):
            rows.append([Cell("steps (run / planned)"), Cell.metric(key, settings["steps"], "step")])
            rows.append([Cell("planned steps"), Cell.metric(key, settings["planned_steps"])])
            continue
        if key in ("max_wall_seconds", "max_cpu_seconds") and not settings.get(key):
            continue
        if key in settings:
            rows.append([Cell(name), Cell.metric(key, settings[key])])
    for key, title in (("train_seconds", "training time"), ("train_cpu_seconds", "training CPU time (process)")):
        seconds = run.training_time(key)
        if seconds is not None:
            rows.append([Cell(title), Cell.metric(key, seconds)])
    if run.final.get("stopped_by"):
        rows.append([Cell("stopped by"), Cell(f"its time budget ({run.final['stopped_by']})")])
    return Table(f"config-{index}", "Run settings", ["setting", "value"], rows,
                 caption=f"from {run.workdir / 'config.json'}, with the steps, dataset and time the run recorded")


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
               "teacher accuracy", "student − teacher", "training time", "CPU time"]
    rows = []
    for run in runs:
        split = run.main_split
        accuracy = run.final.get(f"{split}_accuracy")
        teacher = run.final.get(f"teacher_{split}_accuracy")
        gap = accuracy - teacher if is_number(accuracy) and is_number(teacher) else None
        rows.append([
            Cell(run.label),
            Cell(run.mode),
            Cell(str(run.settings.get("student", "?"))),
            Cell(run.status),
            Cell.metric("steps", run.final.get("step", run.settings.get("steps"))),
            Cell.metric("epochs", run.total_epochs),
            Cell(str(split)),
            Cell.metric(f"{split}_accuracy", accuracy),
            Cell.metric(f"{split}_agreement", run.final.get(f"{split}_agreement")),
            Cell.metric(f"{split}_kl", run.final.get(f"{split}_kl")),
            Cell.metric(f"teacher_{split}_accuracy", teacher),
            Cell(format_value("accuracy_gap", gap), gap),  # derived: no JSON key
            Cell.metric("train_seconds", run.training_time("train_seconds")),
            Cell.metric("train_cpu_seconds", run.training_time("train_cpu_seconds")),
        ])
    return Table("comparison", "Comparison of runs", columns, rows,
                 caption="final metrics on each run's test split (validation when a run has no test split); "
                         "training time: time in the training loop over all resumes, periodic evaluation excluded; "
                         "CPU time: the process's CPU seconds over the same span (all cores)")


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
        spreads = latency_ratio_spreads(models)
        for batch, (low, high) in spreads.items():
            rows.append([Cell(f"ratios.latency_batch_{batch} spread"), Cell(f"{low:.2f}×–{high:.2f}×", numeric=True)])
        caption = "ratios are teacher ÷ student"
        if spreads:
            caption += ("; a latency ratio is the ratio of the two medians, its spread the range the quartiles allow "
                        "(teacher p25 ÷ student p75 to teacher p75 ÷ student p25): timings on a shared machine vary")
        elif any(key.startswith("ratios.latency") for key in flat_rest):
            caption += "; latency ratios are ratios of two medians measured one after the other, and vary with the machine's load"
        tables.append(Table(f"evaluation-shared-{index}", "Evaluation: fidelity, cost ratios, setup",
                            ["quantity", "value"], rows, caption=caption))
    return tables


def latency_ratio_spreads(models: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """{batch: (low, high)} teacher ÷ student latency ratios from the quartiles (`p25_ms`, `p75_ms`)."""
    student, teacher = (models.get(name) or {} for name in ("student", "teacher"))
    out = {}
    for key, block in (student.get("latency") or {}).items():
        other = (teacher.get("latency") or {}).get(key) or {}
        values = [block.get("p25_ms"), block.get("p75_ms"), other.get("p25_ms"), other.get("p75_ms")]
        if all(is_number(v) and v > 0 for v in values):
            out[key.removeprefix("batch_")] = (values[2] / values[1], values[3] / values[0])
    return out


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
            student = next((v for k, v in entry.items() if "student" in k and is_number(v)), None)
            teacher = next((v for k, v in entry.items() if "teacher" in k and is_number(v)), None)
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
            gap = s - t if is_number(s) and is_number(t) else None
            rows.append({"name": str(name), "student": s, "teacher": t, "gap": gap, "count": None})

    def finite(value):
        return is_number(value) and math.isfinite(float(value))

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
