"""Generation: the teacher once per stored (example, view), unit by unit, resumable, split over
processes. See `funmatch.distill.targets`."""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import Any

import numpy as np

from funmatch.distill.targets import batches as per_batch
from funmatch.distill.targets.decoded import decoded_cache_plan, decoded_views_dataset
from funmatch.distill.targets.store import (
    CARD_NAME,
    DEFAULT_TOP_K,
    MODES,
    _atomic_write_bytes,
    _atomic_write_json,
    _static_card,
    encode_rows,
    record_files,
    static_keys,
    storage_kind,
    unit_path,
    view_spec,
)
from funmatch.distill.targets.stream import shuffle_buffer_plan
from funmatch.distill.targets.views import _log_plan, _view_runs, view_cache_plan, views_dataset
from funmatch.errors import FunmatchError


def _shard(images: np.ndarray):
    """A batch split over the devices of the global `keras.distribution` (JAX), so that the teacher's
    forward pass runs on all of them; unchanged otherwise (one device)."""
    import keras

    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if distribution is None:
        return images
    return keras.distribution.distribute_tensor(images, distribution.get_data_layout(images.shape))


def generate(
    teacher_path,
    data_dir,
    out_dir,
    *,
    views: int,
    mode: str = "function_matching",
    view_template: str | None = None,
    mixup_p: float = 1.0,
    seed: int = 0,
    split: str = "train",
    top_k: int | None = None,
    batch_size: int = 256,
    process_index: int | None = None,
    process_count: int | None = None,
    progress: bool = True,
    view_cache_max_bytes: int | None = None,
    decoded_cache_max_bytes: int | None = None,
    resolution: int | None = None,
    mixup: str = "per_example",
    batch: int | None = None,
    steps: int | None = None,
    shuffle_buffer: int | None = None,
) -> dict[str, Any]:
    """Compute the teacher's targets on every (example, view) of `split` into `out_dir`; returns the card.

    Args:
      teacher_path: the teacher's .keras file (a funmatch model: its contract gives classes and resolution).
      data_dir: a folder written by `funmatch prepare`.
      out_dir: the store; re-running with the same arguments continues a killed run.
      views: K; mode "fixed_teacher" needs 1.
      mode: "function_matching" (mixed views), "consistent" (the same views, no mixup) or
        "fixed_teacher" (`view_template` is then the teacher's fixed view, a full pp spec).
      view_template: pp template with "{resolution}" (default: `view_spec()`, the recipe's crop + flip).
      mixup_p: Beta(p, p) of the coefficient (function_matching).
      seed: the views' seed (crop windows, flips, partners, coefficients).
      top_k: store the top k log-probabilities (default: all classes up to 128, else 10).
      batch_size: teacher batch (divided over the local devices).
      process_index, process_count: this process's share of the units (default: `runtime.process_info()`).
      view_cache_max_bytes: the view cache's cap (default 0: off; see `view_cache_plan`). Measured on
        2 CPU cores with the demo's teacher, the cache saved no CPU here (the teacher's forward pass is most
        of the cost) and cost wall time (the teacher waits for the first pass), so generation makes each view
        twice unless a cap is given. Its decision is logged (and printed with `progress`); the targets are
        the same bits either way.
      resolution: the teacher's input resolution, as the distillation run will use it (default: the
        teacher's own, from its contract); another resolution runs the same weights at that size
        (`models.with_resolution`: fully convolutional teachers only).
      decoded_cache_max_bytes: the cap of the decoded images kept in memory (default 1 GiB; 0: off;
        format-2 views only; see `decoded.decoded_cache_plan`): every image is then decoded once for all of
        its K views and as every partner, instead of twice per view. Logged; the same bits either way.
      mixup: "per_example" (K views per example, a coefficient and a partner each: the module docstring) or
        "per_batch" (`funmatch.distill.targets.batches`: the `steps` batches of `batch` examples a run will
        see, one coefficient per batch, partners the batch neighbours; `views` must be 1). function_matching
        only.
      batch, steps: per_batch: the run's global batch and number of steps.
      shuffle_buffer: per_batch: records in the shuffle that orders each pass (default: the split, at most
        50,000 and 1 GiB of records, as training's).
    """
    import keras

    from funmatch import models, runtime
    from funmatch.data.tfrecords import load_card as load_data_card

    started = time.time()
    if mode not in MODES:
        raise FunmatchError(f"--mode: stored targets serve {', '.join(MODES)}; got {mode!r}")
    if views < 1:
        raise FunmatchError(f"--views must be >= 1, got {views}")
    if mode == "fixed_teacher" and views != 1:
        raise FunmatchError("--views: fixed_teacher stores one target per example (--views 1)")
    if mode == "fixed_teacher" and not view_template:
        raise FunmatchError("fixed_teacher targets need the teacher's fixed view (an eval pp spec)")
    if mixup not in per_batch.MIXUP_MODES:
        raise FunmatchError(f"--mixup: one of {', '.join(per_batch.MIXUP_MODES)}, got {mixup!r}")
    if mixup == "per_batch" and (mode != "function_matching" or views != 1 or not batch or not steps):
        raise FunmatchError("per-batch mixup: stores the function_matching batches of a run (one view set, the "
                            f"run's batch and steps); got mode {mode!r}, views {views}, batch {batch}, steps {steps}")
    if top_k is not None and top_k < 1:
        raise FunmatchError(f"--top-k must be >= 1, got {top_k}")
    if not pathlib.Path(teacher_path).is_file():
        raise FunmatchError(f"--teacher {teacher_path}: no such file")
    data_card = load_data_card(data_dir)
    num_classes = int(data_card["num_classes"])
    if keras.backend.backend() == "jax":  # DataParallel over all devices: variables replicated, batches sharded
        runtime.distribution_scope()
    teacher = runtime.apply_precision(models.load(teacher_path))  # bf16 on accelerators
    contract = models.contract(teacher)
    if int(contract["num_classes"]) != num_classes:
        raise FunmatchError(f"--teacher {teacher_path}: the teacher has {contract['num_classes']} classes, "
                            f"the dataset has {num_classes}")
    if resolution is not None and int(resolution) != int(contract["resolution"]):
        teacher = runtime.apply_precision(models.with_resolution(teacher, int(resolution)))
    kind = storage_kind(num_classes, top_k)
    top_k = (top_k or DEFAULT_TOP_K) if kind == "top_k" else None
    template = view_template or view_spec()
    if mode != "fixed_teacher" and "{resolution}" not in template:
        raise FunmatchError(f"view template {template!r} has no {{resolution}}")
    paths, sizes = record_files(data_dir, split)
    starts = [int(s) for s in np.cumsum([0] + sizes[:-1])]
    layout = {"num_examples": int(sum(sizes)), "files": [os.path.basename(p) for p in paths],
              "file_sizes": [int(s) for s in sizes], "file_starts": starts}
    if mode == "function_matching" and mixup_p > 0 and layout["num_examples"] < 2:
        raise FunmatchError(f"--data {data_dir}: mixup needs at least 2 examples in {split!r}")
    batches = None
    if mixup == "per_batch":
        from funmatch.data.pipeline import MAX_DEFAULT_SHUFFLE_BUFFER

        requested = shuffle_buffer or min(layout["num_examples"], MAX_DEFAULT_SHUFFLE_BUFFER)
        buffer = shuffle_buffer_plan(paths, layout["num_examples"], requested, 0)["buffer"]
        batches = per_batch.batches_layout(int(batch), int(steps), layout["num_examples"], buffer)
    card = _static_card(mode=mode, teacher_path=teacher_path, teacher_contract=contract, data_dir=data_dir, split=split,
                        data_layout=layout, template=template, mixup_p=mixup_p, seed=seed, views=views, top_k=top_k,
                        kind=kind, num_classes=num_classes, resolution=resolution, batches=batches)
    out_dir = pathlib.Path(out_dir)
    card_path = out_dir / CARD_NAME
    if card_path.exists():
        previous = json.loads(card_path.read_text())
        keys = tuple(dict.fromkeys(static_keys(previous) + static_keys(card)))
        previous_static = {k: previous.get(k) for k in keys}
        current_static = json.loads(json.dumps({k: card.get(k) for k in keys}))
        for part in ("teacher", "data"):  # paths may differ (another machine); hashes may not
            previous_static[part] = {k: v for k, v in (previous_static[part] or {}).items() if k != "path"}
            current_static[part] = {k: v for k, v in current_static[part].items() if k != "path"}
        differing = [k for k in keys if previous_static[k] != current_static[k]]
        if differing:
            raise FunmatchError(f"--out {out_dir} holds targets made with other settings ({', '.join(differing)}); "
                                "use a new --out, or re-run with the same arguments to continue")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(card_path, {**card, "complete": False})

    if process_index is None or process_count is None:
        process_index, process_count = runtime.process_info()
    if batches:  # per-batch mixup: unit u holds steps u·U .. u·U + U - 1, rows in batch order
        units: list = list(range(batches["units"]))
        path_of = lambda unit: per_batch.batch_unit_path(out_dir, unit)  # noqa: E731
        images_of = lambda unit: per_batch.unit_steps(card, unit)[1] * batches["size"]  # noqa: E731
    else:  # one view of one record file each
        units = [(v, f) for v in range(views) for f in range(len(paths))]
        path_of = lambda unit: unit_path(out_dir, card, *unit)  # noqa: E731
        images_of = lambda unit: sizes[unit[1]]  # noqa: E731
    mine = [u for k, u in enumerate(units) if k % process_count == process_index]
    todo = [u for u in mine if not path_of(u).exists()]
    devices = runtime.replica_count() if keras.backend.backend() == "jax" else 1
    batch_size = max(devices, batch_size - batch_size % devices)
    timing_path = out_dir / f"timing-p{process_index:04d}.json"
    timing_before = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    seconds_before, cpu_before = timing_before.get("seconds", 0.0), timing_before.get("cpu_seconds", 0.0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(images_of, mine)), initial=sum(map(images_of, mine)) - sum(map(images_of, todo)),
                   desc=f"targets ({mode}, K={views})", unit="img", dynamic_ncols=True, mininterval=1.0)
    resolution = int(card["teacher"]["resolution"])
    unit_started, cpu_started = time.perf_counter(), time.process_time()
    pending: list[np.ndarray] = []  # logits of the current unit so far
    pending_count = 0
    remaining = list(todo)

    def write_timing():
        _atomic_write_json(timing_path, {"seconds": seconds_before + time.perf_counter() - unit_started,
                                         "cpu_seconds": cpu_before + time.process_time() - cpu_started})

    if todo and batches:
        def predict(images):
            real = int(images.shape[0])
            if real < batch_size:  # pad to a full batch: every device gets an equal share
                images = np.pad(images, [[0, batch_size - real], [0, 0], [0, 0], [0, 0]])
            logits = keras.ops.convert_to_numpy(teacher.predict_on_batch(_shard(images)))[:real]
            return encode_rows(logits, kind, top_k or 0)  # rows held, not logits: a unit is about a pass

        def write(unit, rows):
            _atomic_write_bytes(path_of(unit), lambda f: np.save(f, rows))
            write_timing()

        per_batch.generate_units(card, data_dir, todo, batch_size=batch_size, predict=predict, write=write,
                                 on_batch=None if bar is None else bar.update)
    elif todo:
        runs = _view_runs(todo)
        plan = view_cache_plan(card, resolution, examples_needed=sum(sizes[f] for _, f in todo) // len(runs),
                               max_bytes=view_cache_max_bytes or 0)
        _log_plan(plan, echo=progress)
        decoded_plan = decoded_cache_plan(card, data_dir, max_bytes=decoded_cache_max_bytes)
        _log_plan(decoded_plan, echo=progress)
        if decoded_plan["use"]:  # every image decoded once for all of its views (and as every partner)
            batches = decoded_views_dataset(card, data_dir, todo, resolution, batch_size)
        else:
            batches = views_dataset(card, data_dir, todo, resolution, batch_size, view_cache=plan["use"])
        for batch in batches.as_numpy_iterator():
            images = batch["image"]
            real = int(images.shape[0])
            if real < batch_size:  # pad to a full batch: every device gets an equal share
                images = np.pad(images, [[0, batch_size - real], [0, 0], [0, 0], [0, 0]])
            pending.append(keras.ops.convert_to_numpy(teacher.predict_on_batch(_shard(images)))[:real])
            pending_count += real
            if bar is not None:
                bar.update(real)
            if not remaining or pending_count < sizes[remaining[0][1]]:
                continue  # joined only when a unit is complete: each logit is copied once, not once per batch
            logits = np.concatenate(pending)
            while remaining and len(logits) >= sizes[remaining[0][1]]:  # a unit is complete: write it
                view, file_index = remaining.pop(0)
                rows = encode_rows(logits[: sizes[file_index]], kind, top_k or 0)
                logits = logits[sizes[file_index]:]
                _atomic_write_bytes(unit_path(out_dir, card, view, file_index), lambda f, rows=rows: np.save(f, rows))
                write_timing()
            pending, pending_count = [logits], len(logits)
    if bar is not None:
        bar.close()
    done = all(path_of(u).exists() for u in units)
    if done:
        records = [json.loads(p.read_text()) for p in sorted(out_dir.glob("timing-p*.json"))]
        timings = [r["seconds"] for r in records]
        card.update(complete=True, generation_seconds=float(sum(timings)),
                    generation_cpu_seconds=float(sum(r.get("cpu_seconds", 0.0) for r in records)),
                    generation_seconds_slowest_process=float(max(timings, default=0.0)), processes=len(timings),
                    backend=keras.backend.backend(), devices_per_process=devices, batch_size=batch_size,
                    finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        _atomic_write_json(card_path, card)
    else:
        card = {**card, "complete": False}
    card["this_run_seconds"] = time.time() - started
    return card
