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
        if run.finished and is_number(run.final.get(f"{split}_accuracy")) and final_x is not None:
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
                       label="training loss T²·KL" + (f" (T = {temperature:g})" if is_number(temperature) else ""))
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
