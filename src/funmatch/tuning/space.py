"""The search space: the paper's sweep axes, `--space` overrides, and trial values -> `Config`.

An axis is a `Config` field (or an alias such as `lr`, `wd`, `T`, `mixup`, `crop`) with either a list
of values (a keras-tuner `Choice`) or a range (`Float`, linear or log). The text syntax of `--space`:

    "lr=0.001,0.003;T=1,2"           two axes, each a list of values (';' separates axes)
    "wd=1e-5..1e-3:log"              a log-uniform range;  "mixup=0..1" a uniform one
    "T=10"                           a single value: the axis is held fixed at 10

Axes named in `--space` replace the default axes of the same name; the others keep their defaults.
`--axes lr,T` restricts the search to those axes (the rest stay at the recipe's values).

Crop mode: the `mode` axis (alias `crop`) chooses between *consistent* teaching (`function_matching`:
teacher and student see the same crop, plus mixup) and a *fixed teacher* (`fixed_teacher`: teacher
logits computed once on the eval view). `consistent` and `independent` may be listed explicitly.
Mixup only acts in `function_matching`, so `mixup_p` is a conditional axis, active only for that mode
(the oracle does not spend trials on mixup values that have no effect).

Temperature and stored targets (`--targets`): the `T` axis stays in the search. A full store (up to
128 classes) is exact at every T; a top-k store is exact only at the temperature it was stored at, so a
trial at another T runs online (the teacher in every step), and says so in one line, as does a trial whose
views the store does not hold (`funmatch.tuning.stored`). Such trials cost a teacher forward pass per
step and see fresh views rather than the store's K; restrict the axis (`--space T=1`) to keep a search
on the store alone.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from funmatch.configs import MODES, Config
from funmatch.errors import FunmatchError

# Command-line names -> Config fields (the config's own aliases plus tuning-specific ones).
AXIS_ALIASES = {
    "lr": "learning_rate",
    "wd": "weight_decay",
    "T": "temperature",
    "mixup": "mixup_p",
    "crop": "mode",
    "teacher_lr": "teacher_learning_rate",
    "batch": "batch_size",
    "steps": "total_steps",
}

# Fields that cannot be tuned: identity of the run, paths, bookkeeping.
NOT_TUNABLE = {
    "recipe", "variant", "smoke", "dataset", "source", "train_split", "val_split", "test_split",
    "num_train_examples", "student", "teacher", "seed", "log_every", "checkpoint_every", "keep_checkpoints",
    "eval_every", "eval_batch_size", "eval_max_examples",
}


@dataclasses.dataclass(frozen=True)
class Axis:
    """One hyperparameter: a list of `values`, or a range `low..high` (`log` for log-uniform)."""

    name: str  # a Config field name
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def describe(self) -> str:
        if self.is_range:
            return f"{self.name}={self.low:g}..{self.high:g}{':log' if self.log else ''}"
        return f"{self.name}={','.join(str(v) for v in self.values)}"


def default_axes(target: str = "student") -> dict[str, Axis]:
    """The paper's sweep axes (distillation) or the teacher's fine-tuning learning rate."""
    if target == "teacher":
        return {"teacher_learning_rate": Axis("teacher_learning_rate", values=(0.001, 0.003, 0.01, 0.03))}
    return {
        "learning_rate": Axis("learning_rate", values=(0.001, 0.003, 0.01)),
        "weight_decay": Axis("weight_decay", low=1e-5, high=1e-3, log=True),
        "temperature": Axis("temperature", values=(1.0, 2.0, 5.0, 10.0)),
        "mixup_p": Axis("mixup_p", values=(0.0, 0.1, 0.5, 1.0)),
        "mode": Axis("mode", values=("function_matching", "fixed_teacher")),
        "epochs": Axis("epochs", values=()),  # filled from the recipe: (epochs/3, epochs, 3·epochs)
    }


def _field_types() -> dict[str, type]:
    return typing.get_type_hints(Config)


def canonical_name(name: str) -> str:
    """`lr` -> `learning_rate`; unknown or untunable names are a FunmatchError listing the known ones."""
    name = name.strip()
    field = AXIS_ALIASES.get(name, name)
    types = _field_types()
    if field not in types or field in NOT_TUNABLE or types[field] is bool:
        known = sorted(set(AXIS_ALIASES) | {f for f, t in types.items() if f not in NOT_TUNABLE and t is not bool})
        raise FunmatchError(f"--space: unknown hyperparameter {name!r}; known names: {', '.join(known)}")
    return field


def _convert(field: str, text: str) -> Any:
    kind = _field_types()[field]
    try:
        if kind is int:
            value = float(text)
            if not value.is_integer():
                raise ValueError(text)
            return int(value)
        if kind is float:
            return float(text)
    except ValueError:
        raise FunmatchError(f"--space {field}: {text!r} is not a {kind.__name__}") from None
    if field == "mode" and text not in MODES:
        raise FunmatchError(f"--space mode: unknown mode {text!r}; choose among {', '.join(MODES)}")
    return text


def parse_axis(text: str) -> Axis:
    """One `name=values` item of `--space` -> `Axis`."""
    name, sep, body = text.partition("=")
    if not sep:
        raise FunmatchError(f"--space {text!r}: expected NAME=VALUES, e.g. lr=0.001,0.003 or wd=1e-5..1e-3:log")
    field = canonical_name(name)
    body = body.strip()
    if not body:
        raise FunmatchError(f"--space {name.strip()}: no values (empty axis); give a list or a range LOW..HIGH")
    if ".." in body:
        log = body.endswith(":log")
        low_text, _, high_text = body.removesuffix(":log").partition("..")
        if _field_types()[field] not in (int, float):
            raise FunmatchError(f"--space {field}: a range needs a numeric field")
        try:
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise FunmatchError(f"--space {field}: bad range {body!r}; expected LOW..HIGH or LOW..HIGH:log") from None
        if not low < high:
            raise FunmatchError(f"--space {field}: empty range {body!r} (LOW must be < HIGH)")
        if log and low <= 0:
            raise FunmatchError(f"--space {field}: a log range needs LOW > 0, got {low:g}")
        return Axis(field, low=low, high=high, log=log)
    values = [v.strip() for v in body.split(",")]
    if any(not v for v in values):
        raise FunmatchError(f"--space {field}: empty value in {body!r}")
    converted = tuple(dict.fromkeys(_convert(field, v) for v in values))  # dedupe, keep order
    return Axis(field, values=converted)


def parse_space(items: list[str] | None) -> dict[str, Axis]:
    """All `--space` flags (each may hold several `;`-separated axes) -> {field: Axis}."""
    out: dict[str, Axis] = {}
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(";"))):
            axis = parse_axis(part)
            out[axis.name] = axis
    return out


def resolve_axes(
    config: Config, overrides: dict[str, Axis], *, target: str = "student", only: list[str] | None = None,
    hyperband: bool = False,
) -> dict[str, Axis]:
    """Defaults for `target`, replaced by `overrides`, restricted to `only`; checks the space is not empty.

    The default `epochs` axis is the recipe's length ×(1/3, 1, 3). Under hyperband the schedule length
    is hyperband's own budget, so an `epochs`/`total_steps` axis is dropped there (see `trial_config`).
    """
    axes = default_axes(target)
    if "epochs" in axes:
        if config.total_steps:  # a recipe fixed in steps (smoke): tune the step count instead
            base = config.total_steps
            del axes["epochs"]
            axes["total_steps"] = Axis("total_steps", values=tuple(dict.fromkeys(max(1, round(base * f)) for f in (1 / 3, 1, 3))))
        else:
            axes["epochs"] = Axis("epochs", values=tuple(dict.fromkeys(round(float(config.epochs) * f, 6) for f in (1 / 3, 1, 3))))
    if target == "teacher":
        student_axes = set(default_axes("student")) - {"epochs"}
        bad = sorted(set(overrides) & student_axes)
        if bad:
            raise FunmatchError(f"--space {', '.join(bad)}: not used by --target teacher (it tunes teacher_* fields)")
    axes.update(overrides)
    if overrides.get("epochs") is not None:
        axes.pop("total_steps", None)
    if overrides.get("total_steps") is not None:
        axes.pop("epochs", None)
    if only is not None:
        wanted = [canonical_name(n) for n in only if n.strip()]
        if "epochs" in wanted and "epochs" not in axes and "total_steps" in axes:
            wanted = ["total_steps" if n == "epochs" else n for n in wanted]
        missing = sorted(set(wanted) - set(axes))
        if missing:
            raise FunmatchError(f"--axes {', '.join(missing)}: not in the search space; add it with --space")
        axes = {name: axes[name] for name in wanted}
    if hyperband:
        axes.pop("epochs", None)
        axes.pop("total_steps", None)
    if not axes:
        raise FunmatchError("empty search space: no hyperparameter to tune (check --axes / --space)")
    for axis in axes.values():
        if not axis.is_range and not axis.values:
            raise FunmatchError(f"--space {axis.name}: no values (empty axis)")
    return axes


def build_hyperparameters(axes: dict[str, Axis]):
    """keras-tuner `HyperParameters` for `axes`; `mixup_p` is conditional on a mode axis with mixup."""
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    ordered = sorted(axes.values(), key=lambda a: a.name != "mode")  # a parent must exist before its child
    mode_axis = axes.get("mode")
    mixup_condition = None
    if mode_axis is not None and not mode_axis.is_range and len(mode_axis.values) > 1 and "function_matching" in mode_axis.values:
        mixup_condition = ["function_matching"]
    for axis in ordered:
        parent = ("mode", mixup_condition) if axis.name == "mixup_p" and mixup_condition else (None, None)
        if axis.is_range:
            hp.Float(axis.name, axis.low, axis.high, sampling="log" if axis.log else "linear",
                     parent_name=parent[0], parent_values=parent[1])
        elif len(axis.values) == 1:
            hp.Fixed(axis.name, axis.values[0], parent_name=parent[0], parent_values=parent[1])
        else:
            numeric = all(isinstance(v, (int, float)) for v in axis.values)
            hp.Choice(axis.name, list(axis.values), ordered=numeric, parent_name=parent[0], parent_values=parent[1])
    return hp


def trial_config(config: Config, values: dict[str, Any], *, hyperband_fraction: float | None = None) -> Config:
    """The recipe `config` with one trial's `values` (keras-tuner's `tuner/*` keys are bookkeeping).

    Under hyperband, `hyperband_fraction` = tuner/epochs / max_epochs scales the schedule length of the
    recipe (every trial runs its own full warmup + cosine schedule of that length, from scratch).
    """
    types = _field_types()
    changes: dict[str, Any] = {}
    for name, value in values.items():
        if name.startswith("tuner/"):
            continue
        kind = types[name]
        changes[name] = kind(value) if kind in (int, float) else value
    if "epochs" in changes:
        changes["total_steps"] = 0  # epochs only count when no step count is fixed
    out = dataclasses.replace(config, **changes)
    if hyperband_fraction is not None:
        if out.total_steps:
            out = dataclasses.replace(out, total_steps=max(1, math.ceil(out.total_steps * hyperband_fraction)))
        else:
            out = dataclasses.replace(out, epochs=out.epochs * hyperband_fraction)
    return out.validate()


__all__ = [
    "AXIS_ALIASES",
    "Axis",
    "build_hyperparameters",
    "canonical_name",
    "default_axes",
    "parse_axis",
    "parse_space",
    "resolve_axes",
    "trial_config",
]
