"""The model card an exported student carries: what taught it, how, and what it reached.

`model_card(model, model_path)` gathers, where known, from the run folder the `.keras` file sits in (a
`funmatch distill` / `labels` workdir: config.json, metrics.json) and from a card beside the file
(`NAME.json`, as the shipped models have):

    teacher        file, arch, its accuracy on the test split
    recipe         recipe, mode, steps, dataset, targets (stored / online)
    student        arch, resolution, preprocessing, test accuracy, agreement with the teacher
    cost           parameters and FLOPs per image (multiply-add = 2, convs + dense)
    int8           test accuracy change of the int8 TFLite file (float32_vs_int8 in the card beside)

A field that is not known is null in the JSON and "not recorded" in the text; nothing is estimated.
`render_markdown(card)` is the README.md of a keras-hub preset folder.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any


def _read_json(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def model_card(model, model_path=None) -> dict[str, Any]:
    """The card of `model` (a funmatch Classifier) loaded from `model_path` (None: only the model itself)."""
    from funmatch.models import contract, count_flops, count_params

    spec = contract(model)
    run, metrics, beside = {}, {}, {}
    if model_path is not None:
        path = pathlib.Path(model_path)
        run = _read_json(path.parent / "config.json")
        metrics = _read_json(path.parent / "metrics.json")
        beside = _read_json(path.with_suffix(".json"))
    split = run.get("test_split", "test")
    int8 = beside.get("float32_vs_int8") or {}
    accuracy = metrics.get(f"{split}_accuracy", beside.get("test_accuracy"))
    int8_change = None
    if "test_accuracy_int8" in int8 and accuracy is not None:
        int8_change = float(int8["test_accuracy_int8"]) - float(accuracy)
    teacher = beside.get("teacher") or {}
    resolution = int(spec["resolution"])
    return {
        "student": {"arch": spec["arch"], "num_classes": spec["num_classes"], "resolution": resolution,
                    "preprocessing": spec.get("preprocessing"), "test_accuracy": accuracy,
                    "test_agreement": metrics.get(f"{split}_agreement", beside.get("test_agreement"))},
        "teacher": {"file": run.get("teacher_path", teacher.get("file")), "arch": teacher.get("arch"),
                    "test_accuracy": metrics.get(f"teacher_{split}_accuracy", teacher.get("test_accuracy"))},
        "recipe": {"recipe": run.get("recipe"), "mode": run.get("mode") or metrics.get("mode"),
                   "steps": metrics.get("step", run.get("steps")), "dataset": run.get("dataset"),
                   "targets": metrics.get("targets")},
        "cost": {"params": int(count_params(model)), "flops_per_image": int(count_flops(model, resolution))},
        "int8": {"test_accuracy_change": int8_change},
        "test_split": split,
    }


def _value(value, percent: bool = False) -> str:
    if value is None:
        return "not recorded"
    if percent:
        return f"{100 * float(value):.1f} %"
    return f"{value:,}" if isinstance(value, int) else str(value)


def render_markdown(card: dict[str, Any], title: str) -> str:
    """The card as a short markdown page."""
    student, teacher, recipe, cost = card["student"], card["teacher"], card["recipe"], card["cost"]
    change = card["int8"]["test_accuracy_change"]
    int8 = "not measured" if change is None else f"{100 * change:+.1f} points"
    rows = [
        ("student", f"{student['arch']}, {student['resolution']} px, {student['num_classes']} classes"),
        (f"student accuracy ({card['test_split']})", _value(student["test_accuracy"], True)),
        ("agreement with the teacher (top-1)", _value(student["test_agreement"], True)),
        ("teacher", _value(teacher["arch"] or teacher["file"])),
        (f"teacher accuracy ({card['test_split']})", _value(teacher["test_accuracy"], True)),
        ("recipe", f"{_value(recipe['recipe'])} ({_value(recipe['mode'])}), {_value(recipe['steps'])} steps, "
                   f"targets {_value(recipe['targets'])}, data {_value(recipe['dataset'])}"),
        ("parameters", _value(cost["params"])),
        ("FLOPs per image", f"{cost['flops_per_image'] / 1e6:,.1f} M (multiply-add = 2, convs + dense)"),
        ("int8 TFLite accuracy change", int8),
    ]
    lines = [f"# {title}", "", "A student distilled with funmatch (function matching).", "",
             "| field | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"
