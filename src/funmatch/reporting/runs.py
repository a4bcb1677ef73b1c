"""Reading a distillation workdir (`config.json`, `metrics.jsonl`, `metrics.json`, `evaluation.json`) into a `Run`."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from funmatch.errors import FunmatchError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# `funmatch teacher` runs train these `teacher_*` config fields (e.g. teacher_learning_rate).
TEACHER_RUN_KEYS = ("batch_size", "optimizer", "learning_rate", "weight_decay", "warmup_steps", "mixup_p", "label_smoothing")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


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
        """Passes over the training set at `record`: logged, else step · batch / N from the settings,
        else step × the epochs-per-step ratio of a logged record (settings without N)."""
        if record.get("epoch") is not None:
            return float(record["epoch"])
        step = record.get("step")
        if not is_number(step):
            return None
        batch, examples = self.settings.get("batch_size"), self.settings.get("num_train_examples")
        if batch and examples:
            return float(step) * float(batch) / float(examples)
        logged = next((r for r in reversed(self.history) if is_number(r.get("epoch")) and r.get("step")), None)
        return float(step) * float(logged["epoch"]) / float(logged["step"]) if logged else None

    @property
    def legend(self) -> str:
        """The run's name in legends: its label, with the mode when the label does not say it, and
        "stored targets" for a distillation from a store of teacher targets (no teacher in its step)."""
        words = [] if self.mode in self.label else [self.mode]
        if self.final.get("targets") == "stored":
            words.append("stored targets")
        return f"{self.label} ({', '.join(words)})" if words else self.label

    @property
    def is_labels(self) -> bool:
        """A label-training run (cross-entropy on labels), not a distillation."""
        return self.mode == "labels"

    @property
    def settings(self) -> dict[str, Any]:
        """The run's settings as it ran (config.json, corrected by what the run recorded).

        `funmatch teacher` workdirs keep the recipe's fields and train the `teacher_*` ones: those are
        mapped onto the model-and-schedule keys here. `steps` is the step the run reached when it
        finished (a time budget may stop it early; `planned_steps` keeps the plan), `dataset` the
        prepared dataset's name when the run recorded it.
        """
        out = dict(self.config)
        if self.is_labels and "teacher_total_steps" in out:  # written by `funmatch teacher`
            out.update({key: out[f"teacher_{key}"] for key in TEACHER_RUN_KEYS if f"teacher_{key}" in out})
            out.update(student=out.get("teacher"), student_resolution=out.get("teacher_resolution"),
                       steps=out["teacher_total_steps"], total_steps=out["teacher_total_steps"], epochs=0,
                       teacher="none", teacher_path=None, crop_area_min=out.get("teacher_crop_area_min"))
            for key in ("temperature", "teacher_resolution"):
                out.pop(key, None)
        if self.is_labels:
            out.pop("temperature", None)
            out["mixup_p"] = self.final.get("mixup_p", out.get("mixup_p"))
        for key in ("dataset", "num_train_examples"):
            if self.final.get(key):
                out[key] = self.final[key]
        if is_number(self.final.get("step")) and self.finished:
            out["planned_steps"] = out.get("steps")
            out["steps"] = self.final["step"]
        return out

    def time_of(self, record: dict[str, Any], clock: str = "train_seconds") -> float | None:
        """Training time at `record` (seconds; `clock` "train_seconds" or "train_cpu_seconds")."""
        value = record.get(clock)
        return float(value) if is_number(value) else None

    def setup_time(self, clock: str = "train_seconds") -> float:
        """Seconds spent before training that belong to this run's cost: the generation of its stored teacher
        targets when the run recorded it (`targets_seconds` / `targets_cpu_seconds` in metrics.json), else 0."""
        key = "targets_cpu_seconds" if clock == "train_cpu_seconds" else "targets_seconds"
        value = self.final.get(key)
        return float(value) if is_number(value) else 0.0

    def training_time(self, clock: str = "train_seconds") -> float | None:
        """Training time of the whole run: from metrics.json, else the last logged record."""
        if is_number(self.final.get(clock)):
            return float(self.final[clock])
        return next((float(r[clock]) for r in reversed(self.history) if is_number(r.get(clock))), None)

    @property
    def total_epochs(self) -> float | None:
        """Epochs reached: at the final metrics' step (the planned length for a finished run)."""
        return self.epoch_of({"step": self.final.get("step", self.settings.get("steps"))})

    @property
    def planned_epochs(self) -> float | None:
        steps = self.settings.get("planned_steps") or self.settings.get("steps")
        return self.epoch_of({"step": steps}) if steps else None

    @property
    def status(self) -> str:
        if self.finished:
            return "finished"
        step, planned = self.final.get("step"), self.settings.get("steps")
        if is_number(step) and is_number(planned) and step >= planned:
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
        total = config.get("teacher_total_steps") if config.get("mode") == "labels" else None
        total = total or config.get("steps")
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
        model_file = "teacher.keras" if "teacher_total_steps" in config else "student.keras"
        notes.append(
            "no evaluation.json (per-class gaps, calibration, cost): run "
            f"`funmatch evaluate --student {workdir / model_file} --teacher {teacher} --data {data} "
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
