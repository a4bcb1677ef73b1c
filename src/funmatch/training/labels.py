"""Label training (`funmatch teacher`): train the teacher with labels — fine-tune from a checkpoint with BiT-HyperRule,
or train from scratch (the CPU recipes) — and write `teacher.keras` with its validation/test accuracy.

The same `Supervised` wrapper trains the label-only reference student of the demo.
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
    max_wall_seconds: float = 0.0,
) -> dict[str, Any]:
    """Resumable label training of `model` in `workdir`; returns validation/test metrics of the result."""
    from funmatch import runtime
    from funmatch.data import pipeline, tfrecords
    from funmatch.evaluation import fidelity_metrics, split_logits
    from funmatch.training.distill import eval_pp
    from funmatch.training.loop import fit_resumable

    card = tfrecords.load_card(data_dir)
    num_train = int(card["splits"][config.train_split]["num_examples"])
    per_process_batch = runtime.check_batch_size(batch_size, "teacher_batch_size")
    with runtime.distribution_scope():
        wrapper = Supervised(model, num_classes, mixup_p=mixup_p, label_smoothing=label_smoothing, seed=config.seed)
        wrapper.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)

    def make_dataset(start_step: int):
        process_index, process_count = runtime.process_info()
        return pipeline.train_dataset(
            data_dir, config.train_split, supervised_pp(resolution, config.teacher_crop_area_min, config.teacher_augment), per_process_batch, seed=config.seed,
            start_step=start_step, shuffle_buffer=config.shuffle_buffer or None,
            process_index=process_index, process_count=process_count,
        )

    eval_config = dataclasses.replace(config, student_resolution=resolution)
    splits = [config.val_split] + ([config.test_split] if config.test_split != config.val_split else [])

    def evaluate(step: int, max_examples: int | None = None) -> dict[str, float]:
        out = {}
        for split in splits:
            result = split_logits(model, data_dir, split, eval_pp(eval_config, resolution), config.eval_batch_size,
                                  config.eval_max_examples if max_examples is None else max_examples)
            out.update(fidelity_metrics(result["logits"], result["labels"], prefix=f"{split}_"))
        return out

    def groups():
        return {"model": list(model.variables), "optimizer": list(optimizer.variables),
                "rng": [wrapper.seed_generator.state]}

    chunk = min(config.checkpoint_every, steps)
    fit_resumable(
        wrapper, make_dataset, workdir=workdir, total_steps=steps, chunk_steps=chunk, groups=groups,
        images_per_step=batch_size, steps_per_data_epoch=num_train / batch_size,
        keep_checkpoints=config.keep_checkpoints, evaluate=evaluate,
        eval_every=max(chunk, (config.eval_every // chunk) * chunk), progress=progress, description=description,
    )
    return evaluate(steps, max_examples=0)


def train_teacher(config: Config | str, data_dir, workdir, *, init: str | None = None, progress: bool = True,
                  output_name: str = "teacher") -> dict[str, Any]:
    """Train or fine-tune the recipe's teacher (`config.teacher*` fields) on labels.

    Writes `{output_name}.keras` and `{output_name}_metrics.json` in `workdir` (the demo reuses this
    to train its label-only reference student, with `output_name="student"`).
    """
    from funmatch import models
    from funmatch.data import tfrecords
    from funmatch.optim import make_optimizer
    from funmatch.training.checkpoints import atomic_save_keras, atomic_write_text, prepare_workdir

    started = time.time()
    config = get_config(config) if isinstance(config, str) else config
    card = tfrecords.load_card(data_dir)
    for split in (config.train_split, config.val_split, config.test_split):
        if split not in card["splits"]:
            raise FunmatchError(f"--data {data_dir}: no split {split!r} in dataset.json (has {', '.join(card['splits'])})")
    num_train = int(card["splits"][config.train_split]["num_examples"])
    num_classes = int(card["num_classes"])
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
    run = {**config.to_dict(), "data_dir": str(pathlib.Path(data_dir).resolve()), "init": init,
           "teacher_total_steps": steps, "mode": "labels"}
    prepare_workdir(workdir, run)

    keras.utils.set_random_seed(config.seed)  # initialisation is a function of the seed
    if init is None:
        model = models.create(config.teacher, num_classes=num_classes, resolution=config.teacher_resolution)
    elif str(init_file).endswith(".npz"):
        model = models.create(config.teacher, num_classes=num_classes, resolution=config.teacher_resolution)
        models.load_bit_npz(model, init_file, num_classes=num_classes)
    else:
        model = models.load(init_file)
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
    atomic_save_keras(model, workdir / f"{output_name}.keras")
    atomic_write_text(workdir / f"{output_name}_metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
    if progress:
        print(f"funmatch teacher ({output_name}): {config.val_split} accuracy {metrics[f'{config.val_split}_accuracy']:.4f}, "
              f"{config.test_split} accuracy {metrics[f'{config.test_split}_accuracy']:.4f}; "
              f"wrote {workdir / (output_name + '.keras')}")
    return metrics
