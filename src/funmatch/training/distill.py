"""The distillation run (`funmatch distill`), top to bottom.

    resume or initialise  ->  check inputs  ->  build teacher (frozen), student, Distiller, optimizer
    ->  restore the latest checkpoint  ->  fit with periodic evaluation and atomic checkpoints
    ->  student.keras + metrics.json

Re-running the same command after a kill continues from the latest complete checkpoint: student
weights, optimizer state, step and the Distiller's random state are restored, and the input pipeline
is repositioned at that step (it is a deterministic function of seed and position).

With stored targets (`targets=DIR`, written by `funmatch targets`) the step runs no teacher: the input
pipeline regenerates each stored view at the student's resolution and pairs it with its stored target
(`funmatch.distill.targets`). `fixed_teacher` keeps its one target per example in such a store as well:
the given one, or its own in the workdir.

A warm start (`init=FILE`, the recipe's `student_init`, `funmatch distill --init`) starts the student from the
weights of a funmatch `.keras` file of the same architecture, classes and resolution (a label-trained
student, an imported or pretrained one); optimizer state and step count start fresh. config.json records the
file and its SHA-256; a resume continues from its checkpoint and never reads the file's weights again, and a
resume with another file is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any

import numpy as np

from funmatch.configs import MODES, Config, get_config
from funmatch.distill.targets import CARD_NAME as TARGETS_CARD
from funmatch.errors import FunmatchError
from funmatch.evaluation.logits import eval_pp as eval_pp_at
from funmatch.evaluation.cache import cached_split_logits, file_sha256, model_key, weights_key
from funmatch.evaluation.evaluate import model_crop_fraction
from funmatch.evaluation.logits import split_logits

TRAIN_KEYS = '"image", "teacher", "label", "index"'


def train_pp(config: Config, mode: str) -> str:
    """The train pp spec: one inception crop + flip shared by teacher and student (except `independent`).

    A teacher at another resolution gets the *same* crop resized: the crop is taken at the larger of
    the two resolutions and copied before resizing the smaller view.
    """
    rs, rt = config.student_resolution, config.teacher_resolution
    area = f", area_min={config.crop_area_min:g}" if config.crop_area_min != 5.0 else ""
    if mode == "independent":
        return (
            f'decode|copy("image", "teacher")|inception_crop({rs}{area})|flip_lr|'
            f'inception_crop({rt}{area}, key="teacher")|flip_lr(key="teacher")|'
            f'value_range(-1, 1)|value_range(-1, 1, key="teacher")|keep({TRAIN_KEYS})'
        )
    if mode == "fixed_teacher":
        return f'decode_jpeg_and_inception_crop({rs}{area})|flip_lr|value_range(-1, 1)|keep("image", "label", "index")'
    crop = max(rs, rt)
    spec = f"decode_jpeg_and_inception_crop({crop}{area})|flip_lr|value_range(-1, 1)"
    if rs != rt:
        spec += '|copy("image", "teacher")'
        if rs != crop:
            spec += f"|resize({rs})"
        if rt != crop:
            spec += f'|resize({rt}, key="teacher")'
        return spec + f"|keep({TRAIN_KEYS})"
    return spec + '|keep("image", "label", "index")'


def eval_pp(config: Config, resolution: int) -> str:
    """Eval pp at `resolution`: resize_small then central crop, with the recipe's crop ratio
    (student_resolution / resize_small, e.g. the paper's 128 / 160) at every resolution."""
    return eval_pp_at(resolution, crop_fraction=config.student_resolution / config.resize_small)


def run_config(config: Config, data_dir, teacher_path) -> dict[str, Any]:
    import keras

    from funmatch.training.checkpoints import data_fields

    out = {**config.to_dict(), **data_fields(data_dir)}
    out["teacher_path"] = str(pathlib.Path(teacher_path).resolve())
    out["teacher_sha256"] = file_sha256(teacher_path)  # another teacher at the same path is another run
    out["backend"] = keras.backend.backend()
    return out


def _check_init(config: Config, workdir: pathlib.Path) -> dict[str, str]:
    """The run-config record of the recipe's warm start (`student_init`): its resolved path and SHA-256; {}
    without one. A workdir holding progress from another start is refused here, in words naming --init."""
    from funmatch.training.checkpoints import run_progress

    record = {}
    if config.student_init:
        path = pathlib.Path(config.student_init)
        if not path.is_file():
            raise FunmatchError(f"--init {path}: no such file")
        record = {"student_init": str(path.resolve()), "student_init_sha256": file_sha256(path)}
    config_path = workdir / "config.json"
    if config_path.is_file() and any(run_progress(workdir)):
        try:
            previous = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return record  # prepare_workdir names the damaged file
        if previous.get("student_init_sha256") != record.get("student_init_sha256"):
            started = (f"{previous.get('student_init')} (sha256 {str(previous['student_init_sha256'])[:12]})"
                       if previous.get("student_init_sha256") else "the seed's initialisation (no --init)")
            given = f"--init {config.student_init}" if record else "no --init"
            raise FunmatchError(f"{given}: workdir {workdir} resumes a run started from {started}; resume with its "
                                "--init, or use a new --workdir")
    return record


def _load_teacher(path, num_classes: int):
    from funmatch import models

    if not pathlib.Path(path).exists():
        raise FunmatchError(f"--teacher {path}: no such file")
    teacher = models.load(path)
    check_finite_weights(teacher, f"--teacher {path}")
    teacher_classes = int(models.contract(teacher)["num_classes"])
    if teacher_classes != num_classes:
        raise FunmatchError(f"--teacher {path}: the teacher has {teacher_classes} classes, the dataset has {num_classes}")
    return teacher


def check_finite_weights(model, what: str) -> None:
    """FunmatchError naming `what` and the first weight of `model` that holds NaN or Inf: a frozen teacher
    like that makes every loss NaN, which would otherwise read as the student's divergence."""
    import keras

    for variable in model.weights:
        if "float" in str(variable.dtype):
            value = keras.ops.convert_to_numpy(keras.ops.all(keras.ops.isfinite(variable.value)))
            if not bool(value):
                raise FunmatchError(f"{what}: the teacher's weight {getattr(variable, 'path', variable.name)} holds "
                                    "NaN or Inf; the teacher file is damaged or its training diverged")


def _teacher_eval(workdir: pathlib.Path, teacher, config: Config, data_dir, splits, key: str | None = None,
                  resolution: int | None = None, crop_fraction: float | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Teacher logits on the eval splits, computed once per run and cached in the workdir under `key`
    (the teacher file's content hash, `model_key`; default: a hash of its weights). Default view: the
    distillation's."""
    key = key or weights_key(teacher)
    spec = (eval_pp(config, config.teacher_resolution) if resolution is None
            else eval_pp_at(resolution, crop_fraction=crop_fraction))
    return {split: cached_split_logits(teacher, key, workdir, data_dir, split, spec, config.eval_batch_size,
                                       config.eval_max_examples) for split in splits}


def save_input_grid(dataset, config: Config, path) -> None:
    """A picture of what the models see: the first training batch's views, and after mixup."""
    import keras

    from funmatch.distill import mixup
    from funmatch.reporting.figures import save_augmentation_grid

    batch = next(iter(dataset.take(1).as_numpy_iterator()))
    views = {k: batch[k] for k in ("image", "teacher") if k in batch}
    mixed, coefficient = {}, None
    if config.mode == "function_matching" and config.mixup_p > 0:
        out, a = mixup(views, seed=keras.random.SeedGenerator(config.seed), p=config.mixup_p)
        mixed = {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}
        coefficient = float(keras.ops.convert_to_numpy(a))
    save_augmentation_grid(views, mixed, path, mixup_coefficient=coefficient, mode=config.mode)


def distill(
    config: Config | str,
    data_dir: os.PathLike,
    teacher_path: os.PathLike,
    workdir: os.PathLike,
    *,
    mode: str | None = None,
    targets: os.PathLike | None = None,
    init: os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Distill the teacher at `teacher_path` into the recipe's student; returns the final metrics.

    `init`: the student's starting weights (a funmatch `.keras` file; overrides the recipe's `student_init`).

    `targets`: a store of the teacher's targets (`funmatch targets`) made for this teacher, data and
    recipe; the step then runs no teacher, and metrics.json says `"targets": "stored"`.
    """
    import keras

    from funmatch import models, runtime
    from funmatch.data import pipeline, tfrecords
    from funmatch.distill import Distiller
    from funmatch.evaluation.metrics import fidelity_metrics
    from funmatch.optim import make_optimizer
    from funmatch.training.checkpoints import atomic_write_text, prepare_workdir, run_progress, save_run_model
    from funmatch.training.loop import epoch_tensorboard, fit_resumable

    started = time.time()
    # --- Configuration and input checks: all before any compute. ---
    config = get_config(config) if isinstance(config, str) else config
    if mode is not None:
        if mode not in MODES:
            raise FunmatchError(f"--mode: unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        config = dataclasses.replace(config, mode=mode)
    if init is not None:
        config = dataclasses.replace(config, student_init=str(init))
    card = tfrecords.load_card(data_dir)
    tfrecords.check_splits(card, data_dir, (config.train_split, config.val_split, config.test_split))
    num_train = int(card["splits"][config.train_split]["num_examples"])
    config = config.check_dataset_size(num_train, split=config.train_split, data_dir=data_dir)
    num_classes = int(card["num_classes"])
    per_process_batch = runtime.check_batch_size(config.batch_size)
    workdir = pathlib.Path(workdir)
    from funmatch.training import targets as stored_targets

    stored_card = None  # the store's card when the targets come from a store (no teacher in the step)
    if targets is not None:  # checked before any compute: one line per mismatch
        stored_card = stored_targets.check_for_run(targets, config, teacher_path=teacher_path, data_dir=data_dir,
                                                   num_classes=num_classes)
    stored = targets is not None or config.mode == "fixed_teacher"
    init_record = _check_init(config, workdir)  # {"student_init": path, "student_init_sha256": ...}, or {}
    warm = bool(init_record) and not any(run_progress(workdir))  # a resume restores its checkpoint instead

    # --- Build: every model inside the distribution scope (several devices), then the workdir. ---
    with runtime.distribution_scope():
        teacher = runtime.apply_precision(_load_teacher(teacher_path, num_classes))  # bf16 on accelerators
        teacher.trainable = False
        keras.utils.set_random_seed(config.seed)  # the student's initialisation is a function of the seed
        student = models.create(config.student, num_classes=num_classes, resolution=config.student_resolution)
        if warm:
            from funmatch.models.importer import warm_start

            warm_start(student, init_record["student_init"])
        runtime.apply_precision(student)  # float32 variables, loss and optimizer state in every precision
        # Stored targets: the Distiller's fixed_teacher step (targets in the batch, views arrive mixed).
        distiller = Distiller(None if stored else teacher, student, mode="fixed_teacher" if stored else config.mode,
                              temperature=config.temperature,
                              mixup_p=config.mixup_p, seed=config.seed)
        optimizer = make_optimizer(config.optimizer, learning_rate=config.learning_rate, total_steps=config.steps,
                                   warmup_steps=config.warmup_steps, weight_decay=config.weight_decay,
                                   clip_norm=config.clip_norm)
        distiller.compile(optimizer=optimizer)
        optimizer.build(student.trainable_variables)
    run = {**run_config(config, data_dir, teacher_path), **init_record}
    if targets is not None:
        run["targets_dir"] = str(pathlib.Path(targets).resolve())
        run["targets_card_sha256"] = file_sha256(pathlib.Path(targets) / TARGETS_CARD)
    # The teacher, the warm start, the data and the store are their content (SHA-256: `CONTENT_FIELDS`; another
    # warm start is refused before, by _check_init, naming --init), not their paths: moved, the run resumes.
    resumed = prepare_workdir(workdir, run)
    if progress:
        print(f"funmatch distill: {'resuming' if resumed else 'starting'} {config.recipe} ({config.mode}) in {workdir}: "
              f"{config.steps} steps of {config.batch_size} images, student {config.student}")

    # --- Teacher: evaluated once; in fixed_teacher mode its train targets are cached. ---
    eval_splits = [config.val_split] + ([config.test_split] if config.test_split != config.val_split else [])
    teacher_key = model_key(teacher_path)
    teacher_eval = _teacher_eval(workdir, teacher, config, data_dir, eval_splits, teacher_key)
    teacher_metrics = {}
    for split, result in teacher_eval.items():
        teacher_metrics.update(fidelity_metrics(result["logits"], result["labels"], prefix=f"teacher_{split}_"))
    own = models.contract(teacher)
    if own["resolution"] != config.teacher_resolution:  # also at the view the teacher was trained and scored at
        for split, result in _teacher_eval(workdir, teacher, config, data_dir, eval_splits, teacher_key,
                                           own["resolution"], model_crop_fraction(teacher)).items():
            teacher_metrics[f"teacher_{split}_accuracy_own_view"] = fidelity_metrics(
                result["logits"], result["labels"])["accuracy"]
        teacher_metrics["teacher_own_view_resolution"] = own["resolution"]
    store_dir = targets
    if targets is None and config.mode == "fixed_teacher":  # one target per example, in the run's own store
        store_dir = stored_targets.fixed_teacher_store(workdir)
        stored_card = stored_targets.generate_for_config(config, teacher_path, data_dir, store_dir, views=1,
                                                         progress=progress)

    def make_dataset(start_step: int):
        process_index, process_count = runtime.process_info()
        if stored_card is not None:
            from funmatch.distill import targets as store

            return store.train_dataset(
                store_dir, data_dir, per_process_batch, resolution=config.student_resolution, seed=config.seed,
                start_step=start_step, shuffle_buffer=config.shuffle_buffer or None, card=stored_card,
                student_spec=train_pp(config, "fixed_teacher") if config.mode == "fixed_teacher" else None,
                process_index=process_index, process_count=process_count, steps=config.steps,
            )
        return pipeline.train_dataset(
            data_dir, config.train_split, train_pp(config, config.mode), per_process_batch, seed=config.seed,
            start_step=start_step, shuffle_buffer=config.shuffle_buffer or None,
            process_index=process_index, process_count=process_count,
        )

    if runtime.is_writer() and not (workdir / "augmentations.png").exists():
        # Stored views arrive mixed: the grid shows them as they are. Drawn by process 0 alone.
        with runtime.local_only():
            save_input_grid(make_dataset(0), dataclasses.replace(config, mixup_p=0.0) if stored else config,
                            workdir / "augmentations.png")

    def student_metrics(max_examples: int, teacher_logits: dict) -> dict[str, float]:
        out = {}
        for split in eval_splits:
            result = split_logits(student, data_dir, split, eval_pp(config, config.student_resolution),
                                  config.eval_batch_size, max_examples)
            out.update(fidelity_metrics(result["logits"], result["labels"],
                                        teacher_logits[split]["logits"][: len(result["labels"])], prefix=f"{split}_"))
        return out

    last_evaluation: dict[str, Any] = {}  # {"step": ..., "metrics": ...} of the latest periodic evaluation

    def evaluate(step: int) -> dict[str, float]:
        out = student_metrics(config.eval_max_examples, teacher_eval)
        out.update({f"teacher_{split}_accuracy": teacher_metrics[f"teacher_{split}_accuracy"] for split in eval_splits})
        last_evaluation.update(step=step, metrics=out)
        return out

    def groups():
        return {
            "student": list(student.variables),
            "optimizer": list(optimizer.variables),
            "rng": [distiller.seed_generator.state],
        }

    chunk = min(config.checkpoint_every, config.steps)
    loop = fit_resumable(
        distiller, make_dataset, workdir=workdir, total_steps=config.steps, chunk_steps=chunk, groups=groups,
        images_per_step=config.batch_size, steps_per_data_epoch=num_train / config.batch_size,
        keep_checkpoints=config.keep_checkpoints, evaluate=evaluate,
        eval_every=max(chunk, (config.eval_every // chunk) * chunk), progress=progress,
        description=f"distill {config.recipe}",
        extra_callbacks=[epoch_tensorboard(workdir / "tensorboard")]
        if runtime.is_writer() else [],
        budget={"max_wall_seconds": config.max_wall_seconds, "max_cpu_seconds": config.max_cpu_seconds},
    )

    # --- Final evaluation on the full splits, student.keras, metrics.json. ---
    # `step`: where training ended (a time budget may stop it before config.steps); the training clocks.
    final = {"step": loop["step"], "mode": config.mode, "recipe": config.recipe, "dataset": card.get("name", config.dataset),
             "train_seconds": loop["train_seconds"], "train_cpu_seconds": loop["train_cpu_seconds"],
             "stopped_by": loop["stopped_by"], "start_step_this_process": loop["start_step"],
             "targets": "stored" if stored_card is not None else "online",
             **teacher_metrics}
    if stored_card is not None and config.mode == "function_matching":  # how the stored views were mixed
        final["targets_mixup"] = stored_card.get("mixup", "per_example")
    if config.eval_max_examples:  # periodic evaluation ran on subsets: evaluate both models on the full splits
        teacher_full = _teacher_eval(workdir / "final_eval", teacher, dataclasses.replace(config, eval_max_examples=0),
                                     data_dir, eval_splits, teacher_key)
        for split in eval_splits:
            final.update(fidelity_metrics(teacher_full[split]["logits"], teacher_full[split]["labels"], prefix=f"teacher_{split}_"))
        final.update(student_metrics(0, teacher_full))
    else:  # the last periodic evaluation was already on the full splits at the final step
        done = last_evaluation.get("step") == loop["step"]
        final.update(last_evaluation["metrics"] if done else student_metrics(0, teacher_eval))
    final["wall_time_sec_this_process"] = time.time() - started
    runtime.apply_precision(student, "float32")  # the file computes in float32 wherever it is loaded
    save_run_model(student, workdir / "student.keras", trained_here=loop["step"] > loop["start_step"],
                   eval_crop_fraction=config.student_resolution / config.resize_small)
    atomic_write_text(workdir / "metrics.json", json.dumps(final, indent=2, sort_keys=True))
    if progress:
        print(f"funmatch distill: done. student {config.test_split} accuracy {final[f'{config.test_split}_accuracy']:.4f}, "
              f"agreement {final[f'{config.test_split}_agreement']:.4f}; wrote {workdir / 'student.keras'}")
    return final
