"""The report's figures: training curves, per-class gaps, the comparison of runs, the augmentation grid.

matplotlib's object API (`matplotlib.figure.Figure`, Agg canvas): no pyplot global state, no display.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from funmatch.reporting.runs import Run, is_number


# Per-class gap chart: beyond this many classes only the worst ones are drawn (the table says so).
MAX_GAP_BARS = 40


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
        if is_number(value) and position is not None and not math.isnan(float(value)):
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
                     if is_number(r.get(f"teacher_{split}_accuracy"))), None)
    full = run.final.get(f"teacher_{split}_accuracy") if run.finished else None
    if periodic is None and not run.finished:
        periodic = run.final.get(f"teacher_{split}_accuracy")
    return periodic, full if is_number(full) else None


def _accuracy_panel(axis, run: Run, x: str) -> None:
    from matplotlib.ticker import MaxNLocator

    drawn = False
    model = "model" if run.is_labels else "student"
    for color, split in zip(_SPLIT_COLORS, run.splits):
        for key, style, what in ((f"{split}_accuracy", "-", "accuracy"), (f"{split}_agreement", "--", "agreement")):
            xs, ys = _series(run, key, x)
            if len(xs):
                axis.plot(xs, 100 * ys, style, color=color, marker="o", markersize=3, label=f"{model} {split} {what}")
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
        if run.finished and is_number(run.final.get(f"{split}_accuracy")) and final_x is not None:
            axis.plot([final_x], [100 * run.final[f"{split}_accuracy"]], "*", color=color, markersize=12,
                      markeredgecolor="black", linestyle="none", label=f"{model} {split} accuracy, final (full split)")
    if not drawn:
        axis.text(0.5, 0.5, "no periodic evaluation logged", ha="center", va="center", transform=axis.transAxes)
    axis.set_xlabel("training step" if x == "step" else "epoch (passes over the training set)")
    axis.xaxis.set_major_locator(MaxNLocator(nbins=7, integer=x == "step"))
    axis.set_ylabel("accuracy / agreement (%)")
    who = "Accuracy" if run.is_labels else "Student accuracy"
    axis.set_title(f"{who} and agreement vs {'step' if x == 'step' else 'epoch'}")
    axis.grid(alpha=0.3)


def time_series(run: Run, key: str, clock: str = "train_seconds") -> tuple[np.ndarray, np.ndarray]:
    """(minutes, values of `key`) over the history; a finished run's curve ends at its final (full-split)
    figure, placed at the run's whole training time. Minutes count from the start of the run's cost: a run
    that recorded the generation of its stored targets (`Run.setup_time`) starts after it."""
    xs, ys = [], []
    offset = run.setup_time(clock)
    for record in run.history:
        value, seconds = record.get(key), run.time_of(record, clock)
        if is_number(value) and seconds is not None and not math.isnan(float(value)):
            xs.append((offset + seconds) / 60)
            ys.append(float(value))
    xs_array, ys_array = np.asarray(xs), np.asarray(ys)
    total = run.training_time(clock)
    if run.finished and is_number(run.final.get(key)) and total is not None and len(xs_array):
        total += offset
        keep = xs_array < total / 60 - 1e-9
        xs_array = np.append(xs_array[keep], total / 60)
        ys_array = np.append(ys_array[keep], float(run.final[key]))
    return xs_array, ys_array


def plot_accuracy_vs_time(runs: Sequence[Run], path: os.PathLike) -> pathlib.Path | None:
    """The report's first figure: each run's accuracy on its main split against training time, the
    teachers' accuracy as horizontal lines. None when no run logged evaluations with training time.

    Training time is the runs' own clock, over all resumes, periodic evaluation excluded: the process's
    CPU time (`train_cpu_seconds`) when every run has it, else time in the training loop (`train_seconds`),
    so runs of different speed compare at equal time. A run that recorded the generation of its stored
    targets starts after it (shaded).
    """
    # CPU time of the process when every run has it: the clock that stays fair on a busy machine.
    clock = "train_cpu_seconds" if runs and all(run.training_time("train_cpu_seconds") is not None for run in runs) \
        else "train_seconds"
    series = []
    for run in runs:
        split = run.main_split
        xs, ys = time_series(run, f"{split}_accuracy", clock) if split else (np.zeros(0), np.zeros(0))
        if len(xs):
            series.append((run, split, xs, ys))
    if not series:
        return None
    entries = len(series) + len(runs)  # an upper bound on the legend's lines (runs + teachers)
    legend_rows = -(-entries // 3)
    figure = _figure(11, 5.6 + 0.25 * legend_rows, left=0.8, right=0.25, top=0.6, bottom=0.8 + 0.25 * legend_rows)
    axis = figure.subplots()
    teachers: dict[float, str] = {}
    for number, (run, split, xs, ys) in enumerate(series):
        color = f"C{number % 10}"
        setup = " (after its targets' generation)" if run.setup_time(clock) else ""
        axis.plot(xs, 100 * ys, marker="o", markersize=4, color=color, label=f"{run.legend}, {split}{setup}")
        if setup:  # the generation of the stored targets, on this run's side of the clock
            axis.axvspan(0, run.setup_time(clock) / 60, color=color, alpha=0.08)
        if run.finished:
            axis.plot(xs[-1:], 100 * ys[-1:], "*", color=color, markersize=13, markeredgecolor="black")
        periodic, full = _teacher_level(run, split)
        teacher = full if full is not None else periodic
        if teacher is not None:
            teachers.setdefault(round(float(teacher), 6), split)
    for teacher, split in sorted(teachers.items(), reverse=True):
        axis.axhline(100 * teacher, color="black", linestyle=":", linewidth=1.5,
                     label=f"teacher, {split}: {100 * teacher:.1f} %")
    splits = {split for _, split, _, _ in series}
    what = f"{next(iter(splits)).capitalize()} accuracy" if len(splits) == 1 else "Accuracy"
    axis.set_title(f"{what} against training time (stars: final full-split figures)")
    axis.set_xlabel("CPU time of the process (minutes; periodic evaluation excluded)" if clock == "train_cpu_seconds"
                    else "training time (minutes; periodic evaluation excluded)")
    axis.set_ylabel("accuracy (%)")
    axis.set_xlim(left=0)
    axis.grid(alpha=0.3)
    # Below the axes: inside, it hid the final points (bottom right is where accuracy ends up).
    handles, labels = axis.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(handles)),
                  fontsize=9, frameon=False)
    return _save(figure, pathlib.Path(path))


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
        what = ("cross-entropy with labels" if run.is_labels
                else "T²·KL" + (f" (T = {temperature:g})" if is_number(temperature) else ""))
        loss_axis.plot(xs, ys, color="tab:red", marker="o", markersize=3, label=f"training loss: {what}")
        if (ys > 0).all() and ys.max() / ys.min() > 10:
            loss_axis.set_yscale("log")
        loss_axis.legend(fontsize=8, loc="upper right")
    else:
        loss_axis.text(0.5, 0.5, "no training loss logged", ha="center", va="center", transform=loss_axis.transAxes)
    loss_axis.set_xlabel("training step")
    loss_axis.xaxis.set_major_locator(MaxNLocator(nbins=7, integer=True))
    loss_axis.set_ylabel(("cross-entropy" if run.is_labels else "T²·KL") + " (mean of each chunk)")
    loss_axis.set_title("Label-training loss vs step" if run.is_labels else "Distillation loss vs step")
    loss_axis.grid(alpha=0.3, which="both")
    _accuracy_panel(step_axis, run, "step")
    _accuracy_panel(epoch_axis, run, "epoch")
    handles, labels = step_axis.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)),
                      fontsize=9, frameon=False)
    model = "model" if run.is_labels else "student"
    figure.suptitle(f"{run.legend}: {model} {run.settings.get('student', '?')}", fontsize=13)
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
        label = run.legend
        for axis, key in ((accuracy_axis, f"{split}_accuracy"), (agreement_axis, f"{split}_agreement")):
            xs, ys = _series(run, key, "epoch")
            final_value, final_epoch = run.final.get(key), run.total_epochs
            if run.finished and is_number(final_value) and final_epoch is not None:
                # The full-split final figure ends the curve (periodic ones may be on a subset).
                keep = xs < final_epoch
                xs, ys = np.append(xs[keep], final_epoch), np.append(ys[keep], float(final_value))
            if len(xs):
                axis.plot(xs, 100 * ys, marker="o", markersize=4, color=color, label=label)
                epochs_seen.extend(xs[xs > 0].tolist())
        teacher = run.final.get(f"teacher_{split}_accuracy")
        if is_number(teacher):
            teachers.setdefault(round(float(teacher), 6), split)
    for number, (teacher, split) in enumerate(sorted(teachers.items())):
        accuracy_axis.axhline(100 * teacher, color="black", linestyle=":", linewidth=1.5,
                              label=f"teacher {split} accuracy" + (f" #{number + 1}" if len(teachers) > 1 else ""))
    log_x = bool(epochs_seen) and max(epochs_seen) / min(epochs_seen) >= 20
    for axis, what in ((accuracy_axis, "Student test accuracy"), (agreement_axis, "Student–teacher agreement (top-1)")):
        if log_x:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            axis.set_xscale("log")
            # Labels at 1, 2, 5 × 10^k only: matplotlib's default labels every minor tick of a
            # short log range, and they overlap.
            axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.xaxis.set_minor_formatter(NullFormatter())
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


# What the teacher sees, by mode, when the batch holds no separate teacher view.
_SHARED_VIEW_ROW = {
    None: "student view\n= teacher view",
    "function_matching": "student view\n= teacher view",
    "consistent": "student view\n= teacher view",
    "fixed_teacher": "student view\n(teacher: eval view)",
    "labels": "training view",
}


def augmentation_subtitle(mode: str | None, mixed: bool, mixup_coefficient: float | None = None) -> str:
    """The grid's second title line: the mixup that was drawn, or that there is none (and, in
    `fixed_teacher`, where the teacher's targets come from)."""
    if mixed:
        coefficient = f"a = {float(mixup_coefficient):.2f}, " if mixup_coefficient is not None else ""
        return f"mixup: {coefficient}image i mixed with image i−1"
    return "no mixup" + ("; the teacher's targets: its eval view, computed once" if mode == "fixed_teacher" else "")


def save_augmentation_grid(batch: dict, mixed: dict, path: os.PathLike, max_images: int = 8, *,
                           mixup_coefficient: float | None = None, mode: str | None = None) -> pathlib.Path:
    """A PNG grid of augmented training inputs, one column per example.

    batch: {"image": [B, H, W, 3] in [-1, 1] (the student view), optional "teacher": [B, H', W', 3]
    (the teacher's view of the same crop, maybe at another resolution)} before mixup.
    mixed: the same keys after mixup (may be empty or lack "teacher").
    Rows: teacher view (when given), student view, student after mixup, teacher after mixup (when
    given). `mixup_coefficient` (the batch's a, when known) is written in the title. `mode` (the
    run's mode, or "labels") names what the single view is when there is no separate teacher view
    (in `fixed_teacher` the teacher's targets come from the eval view, once). Returns `path`.
    """
    if "image" not in batch:
        raise ValueError(f"augmentation grid: batch needs an 'image' key; got {sorted(batch)}")
    rows = []
    if batch.get("teacher") is not None:
        rows.append(("teacher view", _to_unit_range(batch["teacher"], "teacher")))
        rows.append(("student view", _to_unit_range(batch["image"], "image")))
    else:
        rows.append((_SHARED_VIEW_ROW.get(mode, "student view"), _to_unit_range(batch["image"], "image")))
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
    subtitle = augmentation_subtitle(mode, mixed.get("image") is not None, mixup_coefficient)
    figure.suptitle(f"Augmented training inputs\n({subtitle})", fontsize=10)
    return _save(figure, pathlib.Path(path))
