"""Label training: teachers (`funmatch teacher`) and label-trained reference students (`funmatch labels`).

Both write a workdir in the distillation runs' scheme, so `funmatch report` compares them with
distillations: `config.json`, `metrics.jsonl` (one record per chunk, periodic evaluation),
`metrics.json` (final full-split metrics, `mode: "labels"`, training time), `augmentations.png`,
and the model (`teacher.keras`, or `student.keras` for `train_labels`).

`train_labels` trains any registry model (by default the recipe's student) on labels with the
distillation's own recipe: the same images, inception crop range and flip, batch, optimizer and
schedule shape (warmup, then cosine over the recipe's steps), without the teacher in the loss. With a
teacher file its agreement with the teacher is measured as in a distillation. A time budget
(`max_wall_seconds` / `max_cpu_seconds`) stops any of these runs, distillations included, at the same
clock (see `funmatch.training.loop.budget_spent`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import keras

from funmatch.configs import Config, get_config
from funmatch.distill.mixup import mixup
from funmatch.errors import FunmatchError


# --- BiT-HyperRule (Kolesnikov et al. 2020, big_transfer `bit_hyperrule.py`): small pure functions. ---

def hyperrule_schedule(dataset_size: int) -> list[int]:
    """Step boundaries [warmup end, decay, decay, decay, end] from the training-set size."""
    if dataset_size < 20_000:
        return [100, 200, 300, 400, 500]
    if dataset_size < 500_000:
        return [500, 3000, 6000, 9000, 10_000]
    return [500, 6000, 12_000, 18_000, 20_000]


def hyperrule_mixup(dataset_size: int) -> float:
    """Mixup alpha: none for small datasets, 0.1 from 20k images."""
    return 0.0 if dataset_size < 20_000 else 0.1


def hyperrule_learning_rate(batch_size: int, base: float = 0.003) -> float:
    return base * batch_size / 512


@keras.saving.register_keras_serializable(package="funmatch")
class HyperRuleSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `base_lr` over the first boundary, then ÷10 at each later boundary but the last."""

    def __init__(self, base_lr: float, boundaries: list[int]):
        self.base_lr = float(base_lr)
        self.boundaries = [int(b) for b in boundaries]

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        lr = self.base_lr * ops.minimum(step / float(self.boundaries[0]), 1.0)
        for boundary in self.boundaries[1:-1]:
            lr = ops.where(step >= boundary, lr / 10.0, lr)
        return lr

    def get_config(self):
        return {"base_lr": self.base_lr, "boundaries": self.boundaries}


# --- Supervised training wrapper. ---

class Supervised(keras.Model):
    """Train `model` on labels: softmax cross-entropy on (mixed-up) one-hot labels.

    Batches are dicts with `image` [B, H, W, 3] in [-1, 1] and `label` [B]. Mixup uses the same
    coefficient and partner (roll by one) for images and labels.
    """

    def __init__(self, model, num_classes: int, *, mixup_p: float = 0.0, label_smoothing: float = 0.0, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.num_classes = int(num_classes)
        self.mixup_p = float(mixup_p)
        self.label_smoothing = float(label_smoothing)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    def call(self, batch, training=False):
        images = batch["image"]
        targets = keras.ops.one_hot(keras.ops.cast(batch["label"], "int32"), self.num_classes)
        if training and self.mixup_p > 0:
            mixed, coefficient = mixup({"image": images}, seed=self.seed_generator, p=self.mixup_p, image_keys=("image",))
            images = mixed["image"]
            targets = coefficient * targets + (1.0 - coefficient) * keras.ops.roll(targets, 1, axis=0)
        return {"logits": self.model(images, training=training), "targets": targets}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = self.loss_fn(y_pred["targets"], y_pred["logits"])
        correct = keras.ops.cast(
            keras.ops.equal(keras.ops.argmax(y_pred["logits"], axis=-1), keras.ops.argmax(y_pred["targets"], axis=-1)),
            "float32",
        )
        self.accuracy_tracker.update_state(correct)
        return loss

    @property
    def metrics(self):
        return [*super().metrics, self.accuracy_tracker]


def supervised_pp(resolution: int, area_min: float = 5.0, augment: str = "") -> str:
    """Label training pp: an inception crop (area `area_min`..100 %) + flip (+ `augment` ops), values in [-1, 1]."""
    augment = augment.strip("|")
    extra = f"|{augment}" if augment else ""
    return (f"decode_jpeg_and_inception_crop({resolution}, area_min={area_min:g})|flip_lr{extra}|value_range(-1, 1)|"
            'keep("image", "label", "index")')


def _read_data(config: Config | str, data_dir) -> tuple[Config, dict, int, int]:
    """(config, dataset card, training-set size, number of classes); the recipe's splits are checked."""
    from funmatch.data import tfrecords

    config = get_config(config) if isinstance(config, str) else config
    card = tfrecords.load_card(data_dir)
    tfrecords.check_splits(card, data_dir, (config.train_split, config.val_split, config.test_split))
    return config, card, int(card["splits"][config.train_split]["num_examples"]), int(card["num_classes"])


def train_supervised(
    model,
    config: Config,
    data_dir,
    workdir,
    *,
    num_classes: int,
    resolution: int,
    steps: int,
    batch_size: int,
    optimizer,
    mixup_p: float,
    label_smoothing: float = 0.0,
    progress: bool = True,
    description: str = "train",
    pp: str | None = None,
    teacher=None,
) -> dict[str, Any]:
    """Resumable label training of `model` in `workdir`.

    `pp`: the training pp spec (default: the recipe's teacher augmentation at `resolution`). `teacher`:
    a Keras model whose agreement with `model` is measured at every evaluation (as in a distillation;
    it takes no part in training). Stops at `steps` or when the recipe's time budget is spent.

    Returns the final metrics in the distillation scheme: `{split}_accuracy` (and with a teacher
    `{split}_agreement`, `{split}_kl`, `teacher_{split}_accuracy`) on the full splits, `step`,
    `train_seconds`, `train_cpu_seconds` and `stopped_by` (the budget that stopped it, or None).
    """
    from funmatch import models, runtime
    from funmatch.data import pipeline, tfrecords
    from funmatch.evaluation import fidelity_metrics, split_logits
    from funmatch.training.distill import _teacher_eval, eval_pp, save_input_grid
    from funmatch.training.loop import fit_resumable

    workdir = pathlib.Path(workdir)
    card = tfrecords.load_card(data_dir)
    num_train = int(card["splits"][config.train_split]["num_examples"])
    per_process_batch = runtime.check_batch_size(batch_size, "teacher_batch_size")
    with runtime.distribution_scope():
        runtime.apply_precision(model)  # bf16 compute on accelerators; float32 variables, loss, optimizer state
        wrapper = Supervised(model, num_classes, mixup_p=mixup_p, label_smoothing=label_smoothing, seed=config.seed)
        wrapper.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)
    pp = pp or supervised_pp(resolution, config.teacher_crop_area_min, config.teacher_augment)

    def make_dataset(start_step: int):
        process_index, process_count = runtime.process_info()
        return pipeline.train_dataset(
            data_dir, config.train_split, pp, per_process_batch, seed=config.seed,
            start_step=start_step, shuffle_buffer=config.shuffle_buffer or None,
            process_index=process_index, process_count=process_count,
        )

    if runtime.is_writer() and not (workdir / "augmentations.png").exists():
        with runtime.local_only():  # drawn by process 0 alone
            save_input_grid(make_dataset(0), dataclasses.replace(config, mode="labels"), workdir / "augmentations.png")

    # The recipe's eval view at this model's resolution, never cropping more than the whole image (a teacher
    # above resize_small, e.g. eurosat's 64 px teacher with resize_small 48, sees the whole tile).
    eval_config = dataclasses.replace(config, student_resolution=resolution,
                                      resize_small=max(config.resize_small, resolution))
    splits = [config.val_split] + ([config.test_split] if config.test_split != config.val_split else [])
    teacher_logits, teacher_metrics = None, {}
    if teacher is not None:
        teacher_config = dataclasses.replace(eval_config, teacher_resolution=int(models.contract(teacher)["resolution"]))
        teacher_logits = _teacher_eval(workdir, teacher, teacher_config, data_dir, splits)
        for split, result in teacher_logits.items():
            teacher_metrics.update(fidelity_metrics(result["logits"], result["labels"], prefix=f"teacher_{split}_"))

    def evaluate(step: int, max_examples: int | None = None, teacher_eval=None) -> dict[str, float]:
        teacher_eval = teacher_eval or teacher_logits
        out = {}
        for split in splits:
            result = split_logits(model, data_dir, split, eval_pp(eval_config, resolution), config.eval_batch_size,
                                  config.eval_max_examples if max_examples is None else max_examples)
            reference = teacher_eval[split]["logits"][: len(result["labels"])] if teacher_eval else None
            out.update(fidelity_metrics(result["logits"], result["labels"], reference, prefix=f"{split}_"))
            if teacher_eval:
                out[f"teacher_{split}_accuracy"] = teacher_metrics[f"teacher_{split}_accuracy"]
        return out

    def groups():
        return {"model": list(model.variables), "optimizer": list(optimizer.variables),
                "rng": [wrapper.seed_generator.state]}

    chunk = min(config.checkpoint_every, steps)
    loop = fit_resumable(
        wrapper, make_dataset, workdir=workdir, total_steps=steps, chunk_steps=chunk, groups=groups,
        images_per_step=batch_size, steps_per_data_epoch=num_train / batch_size,
        keep_checkpoints=config.keep_checkpoints, evaluate=evaluate,
        eval_every=max(chunk, (config.eval_every // chunk) * chunk), progress=progress, description=description,
        budget={"max_wall_seconds": config.max_wall_seconds, "max_cpu_seconds": config.max_cpu_seconds},
    )
    final = {"step": loop["step"], "mode": "labels", "recipe": config.recipe, "dataset": card.get("name", config.dataset),
             "num_train_examples": num_train, "mixup_p": mixup_p, "train_seconds": loop["train_seconds"],
             "train_cpu_seconds": loop["train_cpu_seconds"], "stopped_by": loop["stopped_by"],
             "start_step_this_process": loop["start_step"], **teacher_metrics}
    full_teacher = None
    if teacher is not None and config.eval_max_examples:  # periodic teacher logits are on subsets
        full_config = dataclasses.replace(teacher_config, eval_max_examples=0)
        full_teacher = _teacher_eval(workdir / "final_eval", teacher, full_config, data_dir, splits)
        for split in splits:
            final.update(fidelity_metrics(full_teacher[split]["logits"], full_teacher[split]["labels"], prefix=f"teacher_{split}_"))
        teacher_metrics.update({k: v for k, v in final.items() if k.startswith("teacher_")})
    final.update(evaluate(loop["step"], max_examples=0, teacher_eval=full_teacher))
    return final


def _write_results(model, workdir: pathlib.Path, model_name: str, metrics: dict[str, Any], legacy_metrics: bool,
                   eval_crop_fraction: float | None = None) -> None:
    from funmatch import runtime
    from funmatch.training.checkpoints import atomic_write_text, save_run_model

    runtime.apply_precision(model, "float32")  # the file computes in float32 wherever it is loaded
    # The file carries the view it was scored at: `funmatch evaluate` uses it by default. A rerun of a
    # finished run keeps the file (and its SHA-256) as it was.
    save_run_model(model, workdir / f"{model_name}.keras", eval_crop_fraction=eval_crop_fraction,
                   trained_here=metrics["step"] > metrics["start_step_this_process"])
    text = json.dumps(metrics, indent=2, sort_keys=True)
    if legacy_metrics:  # `{name}_metrics.json`: read by scripts/ship_teacher.py and the notebooks
        atomic_write_text(workdir / f"{model_name}_metrics.json", text)
    atomic_write_text(workdir / "metrics.json", text)


def train_teacher(config: Config | str, data_dir, workdir, *, init: str | None = None, progress: bool = True,
                  output_name: str = "teacher") -> dict[str, Any]:
    """Train or fine-tune the recipe's teacher (`config.teacher*` fields) on labels.

    Writes `{output_name}.keras`, `{output_name}_metrics.json` and `metrics.json` (the distillation
    runs' scheme, `mode: "labels"`) in `workdir`; returns the metrics.
    """
    from funmatch import models
    from funmatch.optim import make_optimizer
    from funmatch.training.checkpoints import data_fields, prepare_workdir

    started = time.time()
    config, card, num_train, num_classes = _read_data(config, data_dir)
    workdir = pathlib.Path(workdir)

    if init is None and not config.teacher_from_scratch:
        raise FunmatchError(
            f"--init: recipe {config.recipe!r} fine-tunes its teacher ({config.teacher}) from a checkpoint; "
            "pass --init PATH (.npz or .keras), or set teacher_from_scratch=true"
        )
    init_file = None
    if init is not None:
        from funmatch.models.checkpoints import resolve_checkpoint

        init_file = resolve_checkpoint(init)  # a path, a URL / gs:// path (cached locally) or a known tag
    batch = config.teacher_batch_size
    if config.teacher_steps:
        steps = config.teacher_steps
        boundaries = None
    else:
        boundaries = hyperrule_schedule(num_train)
        steps = boundaries[-1]
    mixup_p = config.teacher_mixup_p if config.teacher_mixup_p >= 0 else hyperrule_mixup(num_train)
    # `mode` names what this run is (reports show it): label training, not one of the distillation modes.
    run = {**config.to_dict(), **data_fields(data_dir), "init": init, "teacher_total_steps": steps,
           "mode": "labels"}
    prepare_workdir(workdir, run)

    keras.utils.set_random_seed(config.seed)  # initialisation is a function of the seed
    from funmatch import runtime

    with runtime.distribution_scope():  # the model lives on every device (several devices)
        if init is None:
            model = models.create(config.teacher, num_classes=num_classes, resolution=config.teacher_resolution)
        elif str(init_file).endswith(".npz"):
            model = models.create(config.teacher, num_classes=num_classes, resolution=config.teacher_resolution)
            models.load_bit_npz(model, init_file, num_classes=num_classes)
        else:
            # Fine-tuning at another resolution: the same weights (BiT is fully convolutional), a new contract.
            model = models.with_resolution(models.load(init_file), config.teacher_resolution)
    if config.teacher_from_scratch or config.teacher_learning_rate:
        optimizer = make_optimizer(
            config.teacher_optimizer, learning_rate=config.teacher_learning_rate or hyperrule_learning_rate(batch),
            total_steps=steps, warmup_steps=config.teacher_warmup_steps or min(500, steps // 10),
            weight_decay=config.teacher_weight_decay, clip_norm=config.clip_norm,
        )
    else:
        schedule = HyperRuleSchedule(hyperrule_learning_rate(batch), boundaries or [max(1, steps // 20), steps])
        optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    if progress:
        print(f"funmatch teacher: {config.teacher} on {num_train} images, {steps} steps of {batch}, mixup {mixup_p}")
    metrics = train_supervised(
        model, config, data_dir, workdir, num_classes=num_classes, resolution=config.teacher_resolution, steps=steps,
        batch_size=batch, optimizer=optimizer, mixup_p=mixup_p, label_smoothing=config.teacher_label_smoothing,
        progress=progress, description=f"{output_name} {config.teacher} (labels)",
    )
    metrics.update({"arch": config.teacher, "steps": steps, "wall_time_sec_this_process": time.time() - started})
    _write_results(model, workdir, output_name, metrics, legacy_metrics=True,
                   eval_crop_fraction=config.teacher_resolution / max(config.resize_small, config.teacher_resolution))
    if progress:
        print(f"funmatch {'teacher' if output_name == 'teacher' else f'labels ({output_name})'}: {config.val_split} accuracy {metrics[f'{config.val_split}_accuracy']:.4f}, "
              f"{config.test_split} accuracy {metrics[f'{config.test_split}_accuracy']:.4f}; "
              f"wrote {workdir / (output_name + '.keras')}")
    return metrics


def train_labels(config: Config | str, data_dir, workdir, *, model: str = "student", teacher_path=None,
                 mixup_p: float = 0.0, progress: bool = True) -> dict[str, Any]:
    """Train a registry model on labels with the distillation recipe's own settings (the reference run).

    Args:
      config: the distillation recipe (a Config or "recipe:key=value,..."). Its student resolution,
        crop range (`crop_area_min`) + flip, batch, steps, optimizer, learning rate, weight decay,
        warmup and schedule are used as a distillation would; `max_wall_seconds` / `max_cpu_seconds`
        stop the run at a time budget.
      model: "student" (the recipe's student) or any registry name (e.g. "bit_r26x0.25").
      teacher_path: optional teacher `.keras`; only its agreement with the model is measured.
      mixup_p: mixup of label training (0: none; function matching's mixup belongs to its loss).

    Writes `student.keras`, `config.json` (the settings as run, `mode: "labels"`), `metrics.jsonl`
    and `metrics.json` in `workdir` (re-running resumes); returns the final metrics.
    """
    from funmatch import models
    from funmatch.optim import make_optimizer
    from funmatch.training.checkpoints import data_fields, prepare_workdir
    from funmatch.training.distill import _load_teacher

    started = time.time()
    config, card, num_train, num_classes = _read_data(config, data_dir)
    config = config.with_dataset_size(num_train)
    arch = config.student if model == "student" else model
    models.family(arch)  # an unknown name is a FunmatchError naming close ones, before any work
    if config.student_init:  # never ignored silently: this reference trains from the seed's initialisation
        raise FunmatchError(f"config key 'student_init' ({config.student_init}): a warm start is funmatch distill's "
                            "(--init); funmatch labels trains its model from the seed")
    if mixup_p < 0:
        raise FunmatchError(f"--mixup must be >= 0, got {mixup_p}")
    from funmatch import runtime

    with runtime.distribution_scope():  # every model is created inside it (several devices)
        teacher = _load_teacher(teacher_path, num_classes) if teacher_path is not None else None
    workdir = pathlib.Path(workdir)
    # config.json says what this run is: the trained model is `student`, `teacher` only measures agreement.
    run_config = dataclasses.replace(
        config, student=arch, mode="labels", mixup_p=float(mixup_p), total_steps=config.steps, epochs=0.0,
        teacher=str(models.contract(teacher)["arch"]) if teacher is not None else "none",
        teacher_resolution=int(models.contract(teacher)["resolution"]) if teacher is not None else 0,
    )
    from funmatch.evaluation.cache import file_sha256

    run = {**run_config.to_dict(), **data_fields(data_dir),
           "teacher_path": str(pathlib.Path(teacher_path).resolve()) if teacher_path is not None else None,
           "teacher_sha256": file_sha256(teacher_path) if teacher_path is not None else None,  # moved: resumes
           "backend": keras.backend.backend()}
    for field in ("temperature", "teacher_from_scratch", "teacher_optimizer", "teacher_learning_rate",
                  "teacher_weight_decay", "teacher_batch_size", "teacher_steps", "teacher_warmup_steps",
                  "teacher_mixup_p", "teacher_label_smoothing", "teacher_crop_area_min", "teacher_augment"):
        run.pop(field, None)  # not used by this run
    resumed = prepare_workdir(workdir, run)
    if progress:
        print(f"funmatch labels: {'resuming' if resumed else 'starting'} {arch} @ {config.student_resolution} px on labels "
              f"in {workdir}: {config.steps} steps of {config.batch_size} images")

    keras.utils.set_random_seed(config.seed)  # initialisation is a function of the seed
    from funmatch import runtime

    with runtime.distribution_scope():  # the model lives on every device (several devices)
        network = models.create(arch, num_classes=num_classes, resolution=config.student_resolution)
    optimizer = make_optimizer(config.optimizer, learning_rate=config.learning_rate, total_steps=config.steps,
                               warmup_steps=config.warmup_steps, weight_decay=config.weight_decay,
                               clip_norm=config.clip_norm)
    metrics = train_supervised(
        network, config, data_dir, workdir, num_classes=num_classes, resolution=config.student_resolution,
        steps=config.steps, batch_size=config.batch_size, optimizer=optimizer, mixup_p=mixup_p,
        progress=progress, description=f"labels {arch}", teacher=teacher,
        pp=supervised_pp(config.student_resolution, config.crop_area_min),
    )
    metrics.update({"arch": arch, "wall_time_sec_this_process": time.time() - started})
    _write_results(network, workdir, "student", metrics, legacy_metrics=False,
                   eval_crop_fraction=config.student_resolution / max(config.resize_small, config.student_resolution))
    if progress:
        agreement = metrics.get(f"{config.test_split}_agreement")
        print(f"funmatch labels: done. {config.test_split} accuracy {metrics[f'{config.test_split}_accuracy']:.4f}"
              + (f", agreement {agreement:.4f}" if agreement is not None else "")
              + f" after {metrics['step']} steps ({metrics['train_seconds'] / 60:.1f} min of training); "
              f"wrote {workdir / 'student.keras'}")
    return metrics
