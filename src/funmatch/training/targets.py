"""Stored teacher targets for a recipe: what a recipe's mode stores, generation for a recipe, and the check
of a store against a distillation run (the store itself: `funmatch.distill.targets`).

    function_matching  K mixed views per example: the recipe's crop + flip, a partner, a folded Beta(p, p)
    consistent         the same K views, no mixup
    fixed_teacher      one target per example from the teacher's eval view (the student's own view is drawn
                       afresh at every pass, as the mode defines it)
    independent        does not fit: its teacher view is drawn independently of the student's at every step

function_matching stores mix per example by default; `mixup="per_batch"` stores the run's own batches instead
(one coefficient per batch, batch neighbours as partners: `funmatch.distill.targets.batches`), for the
recipe's global batch and steps, which a run on the store must keep.
"""

from __future__ import annotations

import pathlib
from typing import Any

from funmatch.configs import Config
from funmatch.errors import FunmatchError

STORED_MODES = ("function_matching", "consistent", "fixed_teacher")


def teacher_view(config: Config, mode: str) -> str:
    """The stored view of `mode`: a pp template with {resolution} (function_matching, consistent), or the
    teacher's eval pp at its resolution (fixed_teacher)."""
    from funmatch.distill import targets as store
    from funmatch.evaluation.logits import eval_pp

    if mode == "fixed_teacher":
        return eval_pp(config.teacher_resolution, crop_fraction=config.student_resolution / config.resize_small)
    return store.view_spec(config.crop_area_min)


def check_mode(mode: str) -> None:
    if mode not in STORED_MODES:
        raise FunmatchError(f"mode {mode!r} cannot use stored targets (its teacher view changes at every step); "
                            f"stored targets serve {', '.join(STORED_MODES)}")


def generate_for_config(config: Config, teacher_path, data_dir, out_dir, *, views: int, mode: str | None = None,
                        top_k: int | None = None, batch_size: int | None = None, progress: bool = True,
                        mixup: str = "per_example") -> dict[str, Any]:
    """`funmatch.distill.targets.generate` with the recipe's views, seed, split and mixup p; `mixup="per_batch"`:
    the recipe's `steps` batches of `batch_size` (and its shuffle buffer), `views` 1."""
    from funmatch import runtime
    from funmatch.distill import targets as store

    mode = mode or config.mode
    check_mode(mode)
    if mixup == "per_batch":  # a recipe counted in epochs has its steps once N is known (as `distill` reads it)
        from funmatch.data.pipeline import num_examples

        config = config.check_dataset_size(num_examples(data_dir, config.train_split), split=config.train_split,
                                           data_dir=data_dir)
    with runtime.process_local():  # several processes: each runs its own units alone, never waiting on another
        card = store.generate(
            teacher_path, data_dir, out_dir, views=views, mode=mode, view_template=teacher_view(config, mode),
            mixup_p=config.mixup_p if mode == "function_matching" else 0.0, seed=config.seed, split=config.train_split,
            top_k=top_k, batch_size=batch_size or config.eval_batch_size, progress=progress,
            resolution=config.teacher_resolution, mixup=mixup,
            **(dict(batch=config.batch_size, steps=config.steps, shuffle_buffer=config.shuffle_buffer or None)
               if mixup == "per_batch" else {}),
        )
    if runtime.process_info()[1] > 1:  # every unit is written: the last process to finish completed the card
        runtime.barrier("funmatch targets")
        card = {**store.load_card(out_dir), "this_run_seconds": card["this_run_seconds"]}
    return card


def check_for_run(targets_dir, config: Config, *, teacher_path, data_dir, num_classes: int) -> dict[str, Any]:
    """The store's card when it fits the run (teacher, data, classes, mode, pp spec, resolution, mixup p,
    temperature: a top-k store serves only the temperature it was stored at);
    else FunmatchError with one line per mismatch."""
    from funmatch.distill import targets as store

    check_mode(config.mode)
    if not pathlib.Path(teacher_path).is_file():
        raise FunmatchError(f"--teacher {teacher_path}: no such file")
    card = store.load_card(targets_dir)
    from funmatch.distill.targets.batches import check_batches_for_run

    check_batches_for_run(card, targets_dir, batch_size=config.batch_size, steps=config.steps)  # per-batch stores
    store.check_card(card, teacher_path=teacher_path, data_dir=data_dir, num_classes=num_classes, mode=config.mode,
                     view_template=teacher_view(config, config.mode), teacher_resolution=config.teacher_resolution,
                     mixup_p=config.mixup_p, split=config.train_split, targets_dir=targets_dir,
                     temperature=config.temperature)
    return card


def fits(targets_dir, config: Config) -> bool:
    """Whether a store's views are those of `config` (mode, pp spec, mixup p) and its rows serve the run's
    temperature (`store_serves_temperature`: a top-k store only its own): a tuning trial uses the store
    when they do, and runs online otherwise (teacher and data are checked by the run itself)."""
    from funmatch.distill import targets as store

    if config.mode not in STORED_MODES:
        return False
    card = store.load_card(targets_dir)
    if card["mode"] != config.mode or not store.store_serves_temperature(card, config.temperature):
        return False
    batches = card.get("batches")  # a per-batch store serves its own batch size, up to its steps
    if batches and (config.batch_size != batches["size"] or config.steps > batches["steps"]):
        return False
    if config.mode == "fixed_teacher":
        return True
    return card["view_spec"] == store.template_in_format(teacher_view(config, config.mode), card["format"]) and (
        config.mode != "function_matching" or float(card["mixup_p"]) == float(config.mixup_p))


def fixed_teacher_store(workdir: pathlib.Path) -> pathlib.Path:
    """Where a fixed_teacher run without --targets keeps its own store."""
    return pathlib.Path(workdir) / "teacher_targets"


__all__ = ["STORED_MODES", "check_for_run", "check_mode", "fits", "fixed_teacher_store", "generate_for_config",
           "teacher_view"]
