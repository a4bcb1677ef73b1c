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

import dataclasses
import datetime
import html
import json
import os
import pathlib
import re
import shutil
from typing import Any, Sequence


from funmatch.errors import FunmatchError
from funmatch.reporting.figures import plot_accuracy_vs_time, plot_class_gaps, plot_comparison, plot_training_curves
from funmatch.reporting.runs import _label_runs, load_run
from funmatch.reporting.tables import (Table, class_gap_table, class_gaps, comparison_table, config_table, evaluation_tables,
                                       final_metrics_table, format_value)


MANIFEST_NAME = ".funmatch-report.json"

AUGMENTATION_CAPTIONS = {
    "function_matching": "Augmented training inputs: the view teacher and student share, and after mixup",
    "consistent": "Augmented training inputs: the view teacher and student share (no mixup)",
    "independent": "Augmented training inputs: the teacher's and the student's independent views",
    "fixed_teacher": "Augmented training inputs of the student (the teacher's targets come from the eval view, once)",
    "labels": "Augmented training inputs (label training)",
}


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


def write_report(workdirs: Sequence[os.PathLike] | os.PathLike, out_dir: os.PathLike, *, title: str | None = None,
                 names: Sequence[str] | None = None) -> pathlib.Path:
    """Write index.html, summary.md and the PNG plots for `workdirs` into `out_dir`; returns index.html.

    With two or more workdirs the page starts with a comparison table and an accuracy-vs-epochs plot
    across runs. `names` (one per workdir) name the runs in legends and headings instead of their
    workdirs' names. Files a previous report wrote into `out_dir` are replaced; other files are kept.
    """
    if isinstance(workdirs, (str, os.PathLike)):
        workdirs = [workdirs]
    if not workdirs:
        raise FunmatchError("report: give at least one workdir")
    if names is not None and (len(names) != len(workdirs) or len(set(names)) != len(names) or not all(names)):
        raise FunmatchError(f"report: need one distinct, non-empty name per workdir ({len(workdirs)}), got {list(names)}")
    runs = [load_run(w) for w in workdirs]
    _label_runs(runs)
    for run, name in zip(runs, names or ()):
        run.label = name
    out_dir = pathlib.Path(out_dir)
    previous = _claim_out_dir(out_dir)
    written: list[str] = []

    def target(name: str) -> pathlib.Path:
        written.append(name)
        return out_dir / name

    sections = []
    # The first figure: accuracy against training time, every run, the teacher as a line.
    if plot_accuracy_vs_time(runs, out_dir / "accuracy-vs-time.png") is not None:
        target("accuracy-vs-time.png")
        sections.append(_Section("accuracy-vs-time", "Accuracy against training time", "", [], [
            Picture("accuracy-vs-time.png", "Each run's accuracy (test split, else validation) at its periodic evaluations "
                                            "against its training time; stars: the final full-split figures; dotted: "
                                            "the teacher's accuracy"),
        ]))
    if len(runs) > 1:
        plot_comparison(runs, target("comparison.png"))
        sections.append(_Section("comparison", "Comparison", f"{len(runs)} runs", [], [
            comparison_table(runs),
            Picture("comparison.png", "Test accuracy and top-1 agreement with the teacher against epochs, one line "
                                     "per run (the last point is the final full-split figure); dotted: the teacher's accuracy"),
        ]))
    for index, run in enumerate(runs, start=1):
        prefix = f"run{index}-{_slug(run.label)}"
        notes = list(run.notes)
        name = f"{prefix}-curves.png"
        plot_training_curves(run, target(name))
        loss = "the cross-entropy with labels" if run.is_labels else "the distillation loss (T²·KL)"
        blocks: list[Any] = [
            final_metrics_table(run, index),
            Picture(name, f"Training curves: {loss}, and the accuracy (solid) and top-1 agreement "
                         "with the teacher (dashed, where measured) on each eval split; dotted: the teacher's accuracy; "
                         "stars: the final full-split accuracy"),
        ]
        if run.augmentations is not None:
            name = f"{prefix}-augmentations.png"
            destination = target(name)
            if not (destination.exists() and destination.samefile(run.augmentations)):
                shutil.copyfile(run.augmentations, destination)
            blocks.append(Picture(name, AUGMENTATION_CAPTIONS.get(run.mode, "Augmented training inputs")))
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
        steps = run.final.get("step", run.settings.get("steps"))
        epochs = run.total_epochs
        seconds = run.training_time()
        subtitle = (f"{run.workdir.resolve()} — mode {run.mode}, {steps} steps"
                    + (f" ({epochs:.4g} epochs)" if epochs is not None else "")
                    + (f", {format_value('train_seconds', seconds)} of training" if seconds is not None else "")
                    + ("" if run.finished else f" — unfinished ({run.settings.get('steps', '?')} steps planned)"))
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
