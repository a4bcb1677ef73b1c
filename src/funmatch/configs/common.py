"""The typed recipe config and the `key=value,...` override syntax.

A recipe is a module with `get_config(arg: str = "") -> Config`. `arg` is an override string such as
`"variant=fast,lr=0.001,smoke=true"`; keys are `Config` field names (plus the aliases in `ALIASES`).
The recipe applies its selectors (`data`, `variant`) first, fills in its table values, then applies the
remaining overrides, then `smoke` shrinks everything. Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any

from funmatch.errors import FunmatchError

MODES = ("function_matching", "consistent", "independent", "fixed_teacher")

# Short names accepted on the command line.
ALIASES = {"lr": "learning_rate", "wd": "weight_decay", "T": "temperature", "batch": "batch_size"}


@dataclasses.dataclass
class Config:
    """Everything a distillation (and the matching teacher training) run needs, besides paths."""

    recipe: str = ""
    variant: str = ""
    smoke: bool = False
    # Data. `source` is what `funmatch prepare` takes to build the TFRecords for this recipe.
    dataset: str = ""
    source: str = ""
    train_split: str = "train"
    val_split: str = "validation"
    test_split: str = "test"
    num_train_examples: int = 0  # N in steps = round(epochs * N / batch); the card's count is checked against it.
    # Models.
    student: str = "bit_r50x1"
    teacher: str = "bit_r152x2"  # architecture for `funmatch teacher`
    student_resolution: int = 128
    teacher_resolution: int = 128
    resize_small: int = 160  # eval pp: resize_small(resize_small)|central_crop(resolution)
    # The student's starting weights (`funmatch distill --init`): a funmatch `.keras` file of the student's
    # architecture, classes and resolution ("": the seed's initialisation). Optimizer state and step start fresh.
    student_init: str = ""
    # Distillation.
    mode: str = "function_matching"
    temperature: float = 1.0
    mixup_p: float = 1.0
    crop_area_min: float = 5.0  # percent; smallest inception crop of the distillation views (the paper: 5)
    batch_size: int = 512  # global batch
    epochs: float = 0.0
    total_steps: int = 0  # 0 -> round(epochs * num_train_examples / batch_size)
    warmup_steps: int = 1500
    optimizer: str = "adam"
    learning_rate: float = 0.003
    weight_decay: float = 3e-4
    clip_norm: float = 1.0
    # Teacher training (`funmatch teacher`). Zero values mean BiT-HyperRule for fine-tuning.
    teacher_from_scratch: bool = False
    teacher_optimizer: str = "sgd"
    teacher_learning_rate: float = 0.0
    teacher_weight_decay: float = 0.0
    teacher_batch_size: int = 512
    teacher_steps: int = 0
    teacher_warmup_steps: int = 0
    teacher_mixup_p: float = -1.0  # < 0 -> BiT-HyperRule
    teacher_label_smoothing: float = 0.0
    teacher_crop_area_min: float = 5.0  # percent; inception crop of label training (BiT uses milder crops)
    teacher_augment: str = ""  # extra pp ops after flip_lr in label training, e.g. "flip_ud|rot90"
    # Bookkeeping.
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    eval_every: int = 1000
    eval_batch_size: int = 256
    eval_max_examples: int = 0  # 0 -> the whole split
    shuffle_buffer: int = 0  # 0 -> pipeline default
    # Time budget (0: none). Training stops once either is spent, counted over all resumes with periodic
    # evaluation excluded (`funmatch.training.loop.budget_spent`); the commands' --max-minutes / --max-cpu-minutes.
    max_wall_seconds: float = 0.0
    max_cpu_seconds: float = 0.0
    # Images without labels (`funmatch distill --unlabeled`): unlabelled images per labelled one in the
    # distillation stream (0: all of them).
    unlabeled_ratio: float = 0.0

    @property
    def steps(self) -> int:
        """Training steps: `total_steps` if set, else round(epochs · N / batch)."""
        if self.total_steps:
            return self.total_steps
        if not self.num_train_examples:
            return 0  # unknown until the dataset card is read (see `with_dataset_size`)
        return max(1, round(self.epochs * self.num_train_examples / self.batch_size))

    def with_dataset_size(self, num_train_examples: int) -> "Config":
        """Fill in N from the dataset card where the recipe leaves it open (CPU recipes); see
        `check_dataset_size` for the check against a recipe that fixes N."""
        if self.num_train_examples:
            return self
        return dataclasses.replace(self, num_train_examples=int(num_train_examples))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["steps"] = self.steps
        for key in ("max_wall_seconds", "max_cpu_seconds"):  # no budget: the config.json of earlier runs
            if not out[key]:
                del out[key]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def validate(self) -> "Config":
        """Checks every field up front (before a workdir is written); errors name the key as written in
        `--config` (with its short alias, e.g. `learning_rate (lr)`)."""
        if self.mode not in MODES:
            raise FunmatchError(f"config key 'mode': unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise FunmatchError(f"config key {_key(name)} must be a finite number, got {value}")
        positive = ("batch_size", "student_resolution", "teacher_resolution", "resize_small", "eval_batch_size",
                    "teacher_batch_size", "checkpoint_every", "keep_checkpoints", "log_every", "learning_rate",
                    "temperature")
        for name in positive:
            if getattr(self, name) <= 0:
                raise FunmatchError(f"config key {_key(name)} must be > 0, got {getattr(self, name)}")
        non_negative = ("epochs", "total_steps", "warmup_steps", "weight_decay", "clip_norm", "mixup_p",
                        "teacher_learning_rate", "teacher_weight_decay", "teacher_steps", "teacher_warmup_steps",
                        "teacher_label_smoothing", "eval_every", "eval_max_examples", "shuffle_buffer",
                        "num_train_examples", "max_wall_seconds", "max_cpu_seconds")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise FunmatchError(f"config key {_key(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("crop_area_min", "teacher_crop_area_min"):
            if not 0 < getattr(self, name) <= 100:
                raise FunmatchError(f"config key {name!r} is a percentage of the image area in (0, 100], "
                                    f"got {getattr(self, name)}")
        if self.teacher_label_smoothing >= 1:
            raise FunmatchError(f"config key 'teacher_label_smoothing' must be < 1, got {self.teacher_label_smoothing}")
        if not self.total_steps and not self.epochs:
            raise FunmatchError("config: no training length (set 'epochs' or 'total_steps')")
        if self.steps and self.warmup_steps > self.steps:
            raise FunmatchError(f"config key 'warmup_steps' ({self.warmup_steps}) exceeds the {self.steps} training "
                                "steps; lower warmup_steps or train longer")
        if self.teacher_steps and self.teacher_warmup_steps > self.teacher_steps:
            raise FunmatchError(f"config key 'teacher_warmup_steps' ({self.teacher_warmup_steps}) exceeds "
                                f"teacher_steps ({self.teacher_steps})")
        return self

    def check_dataset_size(self, num_examples: int, *, split: str, data_dir) -> "Config":
        """N from the dataset card: filled in where the recipe leaves it open, else checked against it.

        A recipe that fixes N (the paper's) computes its steps and epoch figures from N; data with
        another training-set size would silently train for another number of epochs, so a mismatch
        is an error that names both ways out.
        """
        num_examples = int(num_examples)
        if not self.num_train_examples:
            return dataclasses.replace(self, num_train_examples=num_examples).validate()
        if self.num_train_examples != num_examples:
            raise FunmatchError(
                f"--data {data_dir}: split {split!r} has {num_examples:,} examples, but recipe {self.recipe!r} is "
                f"defined for num_train_examples={self.num_train_examples:,} (its steps and epochs follow N); "
                f"prepare the recipe's data ({self.source or 'see the recipe'}), or add "
                f"num_train_examples={num_examples} to --config to train on this data"
            )
        return self.validate()


def _key(name: str) -> str:
    """A config key as users write it: `'learning_rate' (lr)`."""
    alias = next((short for short, full in ALIASES.items() if full == name), None)
    return f"{name!r} ({alias})" if alias else repr(name)


def parse_overrides(arg: str) -> dict[str, str]:
    """`"a=1,b=x"` -> {"a": "1", "b": "x"}; a bare key means `key=true`."""
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in (arg or "").split(","))):
        key, sep, value = item.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        out[key] = value.strip() if sep else "true"
    return out


def _convert(field: dataclasses.Field, text: str) -> Any:
    hints = typing.get_type_hints(Config)
    kind = hints[field.name]
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(float(text)) if float(text).is_integer() else int(text)
        if kind is float:
            return float(text)
        return text
    except ValueError:
        raise FunmatchError(f"config override {field.name}={text!r}: expected a {kind.__name__}") from None


def apply_overrides(config: Config, overrides: dict[str, str], *, recipe: str) -> Config:
    """Set fields from strings, converting to the field's type. Unknown keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise FunmatchError(
            f"--config {recipe}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(fields))}"
        )
    values = {k: _convert(fields[k], v) for k, v in overrides.items()}
    return dataclasses.replace(config, **values)


def shrink_for_smoke(config: Config) -> Config:
    """The `smoke` switch: a few tiny steps of the same recipe, for tests (seconds on a CPU)."""
    return dataclasses.replace(
        config,
        smoke=True,
        num_train_examples=0,  # the tiny test data's own N (from its card), whatever the recipe's data
        batch_size=min(config.batch_size, 8),
        teacher_batch_size=min(config.teacher_batch_size, 8),
        total_steps=3,
        teacher_steps=3,
        warmup_steps=1,
        teacher_warmup_steps=1,
        log_every=1,
        checkpoint_every=2,
        eval_every=2,
        eval_batch_size=8,
        eval_max_examples=16,
        shuffle_buffer=64,
    )


def pop_selector(overrides: dict[str, str], key: str, default: str, choices) -> str:
    value = overrides.pop(key, default)
    if value not in choices:
        raise FunmatchError(f"config field {key!r}: unknown value {value!r}; choose one of {', '.join(choices)}")
    return value


def finish(config: Config, overrides: dict[str, str], *, recipe: str) -> Config:
    """The smoke switch first (so explicit overrides win over it), then the overrides, then validate."""
    smoke = overrides.pop("smoke", "false")
    smoke_field = next(f for f in dataclasses.fields(Config) if f.name == "smoke")
    if _convert(smoke_field, smoke):
        config = shrink_for_smoke(config)
    config = apply_overrides(config, overrides, recipe=recipe)
    return config.validate()
