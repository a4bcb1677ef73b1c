"""The training stream: stored targets paired with the views regenerated at the student's resolution,
deterministic and resumable at any step. See `funmatch.distill.targets`."""

from __future__ import annotations

import os
import pathlib

from funmatch.distill.targets.batches import batch_rows, batch_unit_path, batch_views, check_batches_for_run, unit_steps
from funmatch.distill.targets.decoded import decoded_cache_plan, decoded_images, image_at, one_pass_from_decoded
from funmatch.distill.targets.store import _npy_header_bytes, _tf_topk_to_log_probs, load_card, row_dtype, unit_path
from funmatch.distill.targets.views import (
    ViewMaker,
    _log_plan,
    _one_pass,
    _parse,
    _pick,
    _records_from,
    every_view_plan,
    view_cache_plan,
)
from funmatch.errors import FunmatchError

_STUDENT_SALT = 0x5EED5
_ORDER_SALT = 0x0DE5
# Mixes the run seed with the epoch for the per-epoch shuffle seed (as the plain pipeline does).
_EPOCH_SEED_MULTIPLIER = 1_000_003



def float16_bits_to_float32(bits):
    """float16 values given as their uint16 bit patterns -> the same values as float32 (exactly, NaN and ±inf
    included), with integer ops only: no float16 tensor reaches TensorFlow, whose oneDNN build logs an error
    line for float16 on CPUs without AVX-512."""
    import tensorflow as tf

    half = tf.cast(bits, tf.int32)
    sign = tf.bitwise.left_shift(tf.bitwise.bitwise_and(tf.bitwise.right_shift(half, 15), 1), 31)
    exponent = tf.bitwise.bitwise_and(tf.bitwise.right_shift(half, 10), 0x1F)
    mantissa = tf.bitwise.bitwise_and(half, 0x3FF)
    # Normal numbers: rebias the exponent (15 -> 127); inf and NaN (exponent 31) keep an all-ones exponent.
    wide_exponent = tf.where(tf.equal(exponent, 0x1F), 0xFF, exponent - 15 + 127)
    normal = tf.bitcast(tf.bitwise.bitwise_or(tf.bitwise.bitwise_or(sign, tf.bitwise.left_shift(wide_exponent, 23)),
                                              tf.bitwise.left_shift(mantissa, 13)), tf.float32)
    # Zeros and subnormals: mantissa · 2^-24, exact in float32.
    small = tf.cast(mantissa, tf.float32) * (2.0 ** -24)
    small = tf.where(tf.equal(sign, 0), small, -small)
    return tf.where(tf.equal(exponent, 0), small, normal)


def decode_target_rows(batch: dict, card: dict) -> dict:
    """`batch` with its raw "target_row" strings replaced by "teacher_logits" float32 [B, C]
    (log-probabilities; a top-k row's rest of the mass spread by the store's rule)."""
    import tensorflow as tf

    num_classes = int(card["num_classes"])
    rows = batch.pop("target_row")
    if card["storage"] == "full":
        logits = tf.reshape(float16_bits_to_float32(tf.io.decode_raw(rows, tf.uint16)), [-1, num_classes])
    else:
        k = int(card["top_k"])
        index_part = tf.reshape(tf.io.decode_raw(tf.strings.substr(rows, 0, 2 * k), tf.uint16), [-1, k])
        value_part = tf.reshape(float16_bits_to_float32(tf.io.decode_raw(tf.strings.substr(rows, 2 * k, 2 * k),
                                                                         tf.uint16)), [-1, k])
        logits = _tf_topk_to_log_probs(tf.cast(index_part, tf.int32), value_part, num_classes)
    return {**batch, "teacher_logits": logits}


def view_of_epoch(seed: int, num_views: int, epoch):
    """The view read in pass `epoch`: σ_c(epoch mod K), σ_c a seeded permutation per cycle c = epoch // K."""
    import tensorflow as tf

    epoch = tf.cast(epoch, tf.int64)
    cycle, within = epoch // num_views, epoch % num_views
    seed_pair = tf.random.experimental.stateless_fold_in(tf.constant([int(seed), _ORDER_SALT], tf.int64), cycle)
    order = tf.argsort(tf.random.stateless_uniform([num_views], seed=seed_pair), stable=True)
    return tf.cast(tf.gather(order, within), tf.int64)


SHUFFLE_MAX_BYTES = 1 << 30
_CHUNK = 256  # examples of a cached pass gathered at once (the same examples, in the same order)


def shuffle_buffer_plan(paths: list[str], total: int, requested: int, row_bytes: int, *,
                        max_bytes: int | None = None) -> dict:
    """{"buffer": pairs the record-pair shuffle holds, "bytes": their estimated size, "reason": one line}:
    `requested` unless that many (own, partner) record pairs and target rows (mean record size from the
    files on disk) exceed `max_bytes` (default `SHUFFLE_MAX_BYTES`)."""
    max_bytes = SHUFFLE_MAX_BYTES if max_bytes is None else int(max_bytes)
    per_pair = 2 * sum(os.path.getsize(p) for p in paths) / max(total, 1) + row_bytes
    fit = max(1, int(max_bytes // per_pair))
    buffer = min(int(requested), fit)
    reason = (f"shuffle: {buffer:,} record pairs of ~{per_pair / 1024:,.1f} KiB = {buffer * per_pair / 2**20:,.0f} MiB"
              + (f" (the requested {requested:,} would hold {requested * per_pair / 2**20:,.0f} MiB > cap "
                 f"{max_bytes / 2**20:,.0f} MiB)" if buffer < requested else ""))
    return {"buffer": buffer, "bytes": int(buffer * per_pair), "reason": reason}


def train_dataset(
    targets_dir,
    data_dir,
    batch_size: int,
    *,
    resolution: int,
    seed: int = 0,
    start_step: int = 0,
    shuffle_buffer: int | None = None,
    student_spec: str | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    card: dict | None = None,
    view_cache_max_bytes: int | None = None,
    decoded_cache_max_bytes: int | None = None,
    shuffle_max_bytes: int | None = None,
    steps: int | None = None,
):
    """An infinite, deterministic stream of training batches paired with stored targets.

    Args:
      targets_dir: a complete store (`generate`).
      data_dir: the prepared data it was computed on (checked by the caller with `check_card`).
      batch_size: examples per batch on this process.
      resolution: the student's resolution; the views are regenerated at it (function_matching,
        consistent).
      seed: the run seed: order of the views over passes and the shuffle (the views themselves are the
        store's).
      start_step: first batch; batches equal those of a run from 0 at the same step.
      shuffle_buffer: default: the whole (per-process) split, capped at 50,000 pairs. Without the view
        cache the buffer holds undecoded (own, partner) record pairs and target rows, so it is also capped
        in bytes (`shuffle_max_bytes`, see `shuffle_buffer_plan`); with it, only example indices (8 bytes
        each) are shuffled.
      student_spec: fixed_teacher only: the student's own augmentation (a full pp spec), drawn afresh
        at every pass.
      process_index, process_count: this host's share (examples at positions i % count == index).
      view_cache_max_bytes: the view cache's cap (default 1 GiB; 0: off): see `view_cache_plan`; its
        decision is logged ("funmatch.targets"). The batches are the same bits either way.
      decoded_cache_max_bytes: with the view cache, the cap of the decoded images kept in memory (default
        1 GiB; 0: off; format-2 stores only): see `decoded.decoded_cache_plan`. Each pass's views are then
        cut from the decoded images without a JPEG decode. Logged; the same bits either way.
      shuffle_max_bytes: the most bytes of record pairs the shuffle holds without the view cache (default
        1 GiB): the buffer is min(shuffle_buffer, shuffle_max_bytes / (2 x mean record + row)). At
        ImageNet's ~110 KB records that is ~4,900 pairs (about 1 GiB) where 250,000 pairs would hold
        ~55 GB; EuroSAT's whole split (27,000 pairs of ~3 KB) fits under it. Logged when it binds.
      steps: the run's last step (its total), when known: a run that makes more passes than the store has
        views then holds every view once made, with the decoded cache, under the view cache's cap
        (`every_view_plan`): a pass after the first K costs no view making. Logged; the same bits either way.

    A per-batch mixup store (its card's `batches`; `funmatch.distill.targets.batches`) gives its own batches:
    `batch_size` x processes must be its batch, the order, crops and coefficients are the store's (`seed`,
    `shuffle_buffer` and the caches do not apply), and the stream ends after the last stored step.

    Returns:
      tf.data.Dataset of dicts: "image" float32 [B, R, R, 3], "teacher_logits" float32 [B, C]
      (log-probabilities), "label" int64 [B], "index" int64 [B], "view" int64 [B] (a per-batch store: the pass).
    """
    import tensorflow as tf

    from funmatch.data import ops, pipeline

    card = load_card(targets_dir) if card is None else card
    if not card.get("complete"):
        raise FunmatchError(f"--targets {targets_dir}: generation is not complete")
    if batch_size < 1 or start_step < 0:
        raise FunmatchError(f"batch_size must be >= 1 and start_step >= 0, got {batch_size}, {start_step}")
    if card["mode"] == "fixed_teacher" and not student_spec:
        raise FunmatchError("fixed_teacher targets need the student's own augmentation (student_spec)")
    process_index, process_count = pipeline._process_defaults(process_index, process_count)  # noqa: SLF001
    layout = card["data"]
    total = int(layout["num_examples"])
    paths = [str(pathlib.Path(data_dir) / p) for p in layout["files"]]
    starts = [int(s) for s in layout["file_starts"]]
    local_count = pipeline._examples_in_process(total, process_index, process_count)  # noqa: SLF001
    if local_count == 0:
        raise FunmatchError(f"{data_dir}: no training examples for process {process_index} of {process_count}")
    buffer = shuffle_buffer or min(local_count, pipeline.MAX_DEFAULT_SHUFFLE_BUFFER)
    num_views, num_classes = int(card["views"]), int(card["num_classes"])
    row = row_dtype(card["storage"], num_classes, card["top_k"] or 0)
    if card.get("batches"):  # per-batch mixup: the store's own batches, in their order
        return _per_batch_stream(card, targets_dir, data_dir, batch_size, resolution=resolution, start_step=start_step,
                                 process_index=process_index, process_count=process_count, row_bytes=row.itemsize)
    pair_buffer = shuffle_buffer_plan(paths, total, buffer, row.itemsize, max_bytes=shuffle_max_bytes)
    unit_files = [[str(unit_path(targets_dir, card, v, f)) for f in range(len(paths))] for v in range(num_views)]
    headers = [[_npy_header_bytes(p) for p in files] for files in unit_files]
    for v, files in enumerate(unit_files):
        for f, path in enumerate(files):
            expected = headers[v][f] + row.itemsize * layout["file_sizes"][f]
            if os.path.getsize(path) != expected:
                raise FunmatchError(f"{path}: {os.path.getsize(path)} bytes, expected {expected} (a damaged store)")
    unit_files_t, headers_t = tf.constant(unit_files), tf.constant(headers, tf.int64)
    shifts_t = tf.constant(card["partner_shifts"], tf.int64)
    maker = ViewMaker(card, resolution)
    fixed = card["mode"] == "fixed_teacher"
    if fixed:
        student_preprocess = ops.get_preprocess_fn(student_spec)
    seed_t = tf.constant(int(seed), tf.int64)

    def targets_of_view(view):
        files = tf.data.Dataset.from_tensor_slices((unit_files_t[view], headers_t[view]))
        return files.flat_map(lambda path, header: tf.data.FixedLengthRecordDataset(path, row.itemsize, header))

    def one_epoch(epoch):
        view = view_of_epoch(seed, num_views, epoch)
        own = tf.data.TFRecordDataset(paths, buffer_size=8 << 20)
        if maker.needs_partner():
            partners = _records_from(paths, starts, total, tf.gather(shifts_t, view), total)
        else:
            partners = tf.data.Dataset.from_tensors(tf.constant(b"", tf.string)).repeat(total)
        indices = tf.data.Dataset.range(total)
        zipped = tf.data.Dataset.zip(own, partners, targets_of_view(view), indices)
        zipped = zipped.shard(process_count, process_index)
        zipped = zipped.map(lambda a, b, t, i: (a, b, t, i, view, epoch))
        return zipped.shuffle(pair_buffer["buffer"], seed=seed_t * _EPOCH_SEED_MULTIPLIER + epoch,
                              reshuffle_each_iteration=False)

    def make(record, partner, target_row, index, view, epoch):
        record = _parse(record)
        if fixed:  # the student's own augmentation, new at every pass
            rng = tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in(tf.stack([seed_t, _STUDENT_SALT]), epoch), index)
            image = tf.cast(student_preprocess({**record, ops.RNG_KEY: rng})["image"], tf.float32)
        else:
            partner_index = (index + tf.gather(shifts_t, view)) % total
            partner_record = _parse(partner) if maker.needs_partner() else record
            image = maker.mixed(record, partner_record, index, partner_index, view)
        return {"image": image, "target_row": target_row, "label": record["label"], "index": index, "view": view}

    def decode_targets(batch):
        return decode_target_rows(batch, card)

    start_position = start_step * batch_size
    start_epoch, start_offset = divmod(start_position, local_count)
    plan = None if fixed else view_cache_plan(card, resolution, process_count=process_count,
                                              max_bytes=view_cache_max_bytes)
    if plan is not None:
        _log_plan(plan)
    if plan is not None and plan["use"]:
        # One pass's views made once, in record order, the next pass made while this one is read; then
        # the same (target row, index) pairs as below, in the same shuffled order, pick own and partner.
        # The pass also reads its view's target rows ([N] strings), in the background like its views.
        decoded_plan = decoded_cache_plan(card, data_dir, max_bytes=decoded_cache_max_bytes)
        _log_plan(decoded_plan)
        passes = None if steps is None else max(0, -(-int(steps) * batch_size // local_count) - start_epoch)
        every_plan = every_view_plan(card, resolution, passes=passes, process_count=process_count,
                                     max_bytes=view_cache_max_bytes)
        hold_every_view = decoded_plan["use"] and every_plan["use"]
        if decoded_plan["use"]:
            _log_plan(every_plan)

        def pass_of_epoch(epoch, decoded=None):
            view = view_of_epoch(seed, num_views, epoch)
            views = _one_pass(maker, paths, total, view) if decoded is None else \
                one_pass_from_decoded(maker, decoded, total, view)
            made = tf.data.Dataset.zip(views, targets_of_view(view).batch(total))
            return made.map(lambda pass_views, rows: (epoch, view, *pass_views, rows))

        def passes_from(*decoded):  # decoded: the element of `decoded_images` (every image, decoded once)
            return tf.data.Dataset.range(start_epoch, tf.int64.max).flat_map(
                lambda epoch: pass_of_epoch(epoch, decoded or None)).prefetch(1)

        def every_view(pixels, row_splits, shapes, labels):
            """One element: every (view, example)'s partial view, view-major [K·N, ...], its coefficient
            [K·N], the labels [N] and the target rows [K·N] (the same ops as `one_pass_from_decoded`)."""
            def make(position):
                view, index = position // total, position % total
                image = image_at(maker, pixels, row_splits, shapes, index)
                return maker.partial_from_decoded(image, index, view), maker.coefficient(index, view)

            made = tf.data.Dataset.range(num_views * total).map(make, num_parallel_calls=tf.data.AUTOTUNE,
                                                                 deterministic=True).batch(num_views * total)
            rows = tf.data.Dataset.range(num_views).flat_map(targets_of_view).batch(num_views * total)
            return tf.data.Dataset.zip(made, rows).map(lambda views, every_row: (*views, labels, every_row))

        def passes_of_every_view(images, coefficients, labels, rows):
            def pass_of(epoch):
                view = view_of_epoch(seed, num_views, epoch)
                first = view * total
                return (epoch, view, images[first: first + total], coefficients[first: first + total], labels,
                        rows[first: first + total])

            return tf.data.Dataset.range(start_epoch, tf.int64.max).map(pass_of).prefetch(1)

        def examples_of_pass(epoch, view, images, coefficients, labels, rows):
            shift = tf.gather(shifts_t, view)
            indices = tf.data.Dataset.range(total).shard(process_count, process_index)
            indices = indices.shuffle(buffer, seed=seed_t * _EPOCH_SEED_MULTIPLIER + epoch, reshuffle_each_iteration=False)

            def chunk(index):  # gathered _CHUNK examples at a time, then sliced: no function call per example
                return tf.data.Dataset.from_tensor_slices({
                    **_pick(images, coefficients, labels, index, tf.fill(tf.shape(index), view), shift, total),
                    "target_row": tf.gather(rows, index)})

            return indices.batch(_CHUNK).flat_map(chunk)

        def mix(batch):
            image = maker.mixed_batch(batch.pop("own"), batch.pop("partner"), batch.pop("coefficient"))
            return decode_targets({**batch, "image": image})

        with pipeline._without_global_seed():  # noqa: SLF001
            if hold_every_view:
                passes = decoded_images(maker, paths, total).flat_map(every_view).flat_map(passes_of_every_view)
            elif decoded_plan["use"]:
                passes = decoded_images(maker, paths, total).flat_map(passes_from)
            else:
                passes = passes_from()
            stream = passes.flat_map(examples_of_pass)
        stream = stream.skip(start_offset).batch(batch_size, drop_remainder=True)
        stream = stream.map(mix, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return stream.prefetch(tf.data.AUTOTUNE).with_options(pipeline._options())  # noqa: SLF001
    if pair_buffer["buffer"] < buffer:
        _log_plan(pair_buffer)
    with pipeline._without_global_seed():  # noqa: SLF001 (the stream must not depend on TF's global seed)
        stream = tf.data.Dataset.range(start_epoch, tf.int64.max).flat_map(one_epoch)
    stream = stream.skip(start_offset)  # undecoded pairs: cheap
    stream = stream.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    stream = stream.batch(batch_size, drop_remainder=True)
    stream = stream.map(decode_targets, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return stream.prefetch(tf.data.AUTOTUNE).with_options(pipeline._options())  # noqa: SLF001


def _per_batch_stream(card: dict, targets_dir, data_dir, batch_size: int, *, resolution: int, start_step: int,
                      process_index: int, process_count: int, row_bytes: int):
    """`train_dataset` of a per-batch store (`funmatch.distill.targets.batches`): this process's rows of the
    stored batches from `start_step` to the last stored step (the stream ends there)."""
    import tensorflow as tf

    from funmatch.data import pipeline

    layout = card["batches"]
    check_batches_for_run(card, targets_dir, batch_size=batch_size * process_count)
    if start_step >= int(layout["steps"]):
        raise FunmatchError(f"--targets {targets_dir}: holds {layout['steps']} steps of per-batch mixup; a run cannot "
                            f"start at step {start_step}")
    headers = []
    for unit in range(int(layout["units"])):
        path = batch_unit_path(targets_dir, unit)
        if not path.is_file():
            raise FunmatchError(f"{path}: missing (a damaged store)")
        header = _npy_header_bytes(path)
        expected = header + row_bytes * unit_steps(card, unit)[1] * int(layout["size"])
        if os.path.getsize(path) != expected:
            raise FunmatchError(f"{path}: {os.path.getsize(path)} bytes, expected {expected} (a damaged store)")
        headers.append(header)
    steps = int(layout["steps"]) - start_step
    rows = (process_index * batch_size, (process_index + 1) * batch_size)
    views = batch_views(card, data_dir, resolution, start_step=start_step, steps=steps, rows=rows)
    targets = batch_rows(card, targets_dir, row_bytes, headers, start_step=start_step, steps=steps, rows=rows)

    def pair(batch, target_rows):
        batch = {k: v for k, v in batch.items() if k != "step"}
        return decode_target_rows({**batch, "target_row": target_rows}, card)

    stream = tf.data.Dataset.zip(views, targets).map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return stream.prefetch(tf.data.AUTOTUNE).with_options(pipeline._options())  # noqa: SLF001
