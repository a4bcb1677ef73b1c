"""The views: the mixed view of (example i, view v) as a pure function of (seed, i, v) (`ViewMaker`),
partners and coefficients, the view cache, and generation's stream of views. See
`funmatch.distill.targets`."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from funmatch.distill.targets.store import fill_spec

_VIEW_SALT = 0x7A4C3
_MIX_SALT = 0x51A7


def _parse(serialized):
    from funmatch.data.tfrecords import parse_example

    return parse_example(serialized)


def _records_from(paths: list[str], starts: list[int], total: int, position, count):
    """The `count` undecoded records from `position` on (wrapping to record 0 at the end), read
    sequentially from the file that holds `position`; `position`/`count` may be tensors."""
    import tensorflow as tf

    paths_t = tf.constant(paths + paths)
    starts_t = tf.constant(starts, tf.int64)
    position = tf.cast(position, tf.int64) % total
    first = tf.cast(tf.searchsorted(starts_t, [position], side="right")[0] - 1, tf.int32)
    files = paths_t[first: first + len(paths) + 1]  # enough files to wrap once
    records = tf.data.TFRecordDataset(files, buffer_size=8 << 20)
    return records.skip(position - tf.gather(starts_t, first)).take(tf.cast(count, tf.int64))


# ----------------------------------------------------------------------------------------------
# Views (TensorFlow, per example)


def _view_rng(seed: int, index, view):
    """The per-example seed of view `view` of example `index` (int64 [2])."""
    import tensorflow as tf

    base = tf.constant([int(seed), _VIEW_SALT], tf.int64)
    per_view = tf.random.experimental.stateless_fold_in(base, tf.cast(view, tf.int64))
    return tf.random.experimental.stateless_fold_in(per_view, tf.cast(index, tf.int64))


def folded_beta(p: float, rng):
    """a = max(u, 1 − u), u ~ Beta(p, p), from the stateless seed `rng`; 1.0 when p = 0."""
    import tensorflow as tf

    if p == 0:
        return tf.constant(1.0, tf.float32)
    seed = tf.random.experimental.stateless_fold_in(rng, _MIX_SALT)
    if p == 1.0:
        u = tf.random.stateless_uniform([], seed=seed, dtype=tf.float32)
    else:
        seeds = tf.random.experimental.stateless_split(seed, 2)
        first = tf.random.stateless_gamma([], seed=seeds[0], alpha=p, dtype=tf.float32)
        second = tf.random.stateless_gamma([], seed=seeds[1], alpha=p, dtype=tf.float32)
        u = first / (first + second)
    return tf.maximum(u, 1.0 - u)


class ViewMaker:
    """Builds the mixed view of (record i, record j, i, v) at a resolution; the one code path shared by
    generation (teacher resolution) and training (student resolution)."""

    def __init__(self, card: dict, resolution: int):
        from funmatch.data import ops

        self.seed = int(card["seed"])
        self.mixup_p = float(card["mixup_p"])
        self.mode = card["mode"]
        spec = card["view_spec"] if self.mode == "fixed_teacher" else fill_spec(card["view_spec"], resolution)
        self.preprocess = ops.get_preprocess_fn(spec)
        # The same spec split in two: the per-example ops (decode, crop, flip: uint8 out) and the trailing
        # elementwise ones (value_range), which the view cache applies to whole batches.
        self.per_example, self.batch_fn = ops.get_split_preprocess_fns(spec)
        self.rng_key = ops.RNG_KEY
        # A spec that decodes the whole image first (format 2: `decode|inception_crop(...)|...`) splits once
        # more: the decode, once per image, and the per-view ops, so that one decoded image serves all of its
        # views (`partial_from_decoded`; `funmatch.distill.targets.decoded`). The random ops keep their salts
        # (`decode` draws nothing), so the views are the same bits either way.
        head, _, rest = spec.partition("|")
        first = ops.parse_spec(head)[0]
        # (fixed_teacher's one eval view per image: its spec stays whole, as it may keep other keys)
        whole = self.mode != "fixed_teacher" and bool(rest.strip()) and first[0] == "decode"
        self.decode = ops.get_preprocess_fn(head) if whole else None
        self.per_view = ops.get_split_preprocess_fns(rest)[0] if whole else None
        self.view_fn = ops.get_preprocess_fn(rest) if whole else None
        # decode's static shape (graph-mode decode_image leaves the channels unknown)
        self.channels = (first[1][0] if first[1] else first[2].get("channels", 3)) if whole else None

    def decodes_whole(self) -> bool:
        """Whether the views are cut from the fully decoded image (one decode can serve every view)."""
        return self.decode is not None

    def decoded(self, record):
        import tensorflow as tf

        return tf.ensure_shape(self.decode(record)["image"], [None, None, self.channels])

    def partial_from_decoded(self, image, index, view):
        """`partial` of the record whose decoded image is `image` (`decodes_whole` specs only)."""
        import tensorflow as tf

        out = self.per_view({"image": image, self.rng_key: _view_rng(self.seed, index, view)})["image"]
        return tf.ensure_shape(out, [None, None, self.channels])  # a crop's slice leaves the channels unknown

    def image(self, record, index, view):
        if self.decodes_whole():
            import tensorflow as tf

            rng = _view_rng(self.seed, index, view)
            out = self.view_fn({**record, "image": self.decoded(record), self.rng_key: rng})["image"]
            return tf.ensure_shape(out, [None, None, self.channels])
        return self.preprocess({**record, self.rng_key: _view_rng(self.seed, index, view)})["image"]

    def partial(self, record, index, view):
        """The view before the spec's trailing elementwise ops (e.g. uint8 after crop + flip)."""
        if self.decodes_whole():
            return self.partial_from_decoded(self.decoded(record), index, view)
        return self.per_example({**record, self.rng_key: _view_rng(self.seed, index, view)})["image"]

    def coefficient(self, index, view):
        return folded_beta(self.mixup_p if self.needs_partner() else 0.0, _view_rng(self.seed, index, view))

    def finish(self, images):
        """float32 views from a batch of `partial` views: the trailing elementwise ops, applied to the batch
        (the same values, bit for bit, as per example)."""
        import tensorflow as tf

        if self.batch_fn is not None:
            images = self.batch_fn({"image": images})["image"]
        return tf.cast(images, tf.float32)

    def mixed_batch(self, own, partner, coefficients):
        """`mixed` for a batch of `partial` own and partner views and their coefficients [B]: the same
        float32 operations element by element, so the same bits."""
        a = coefficients[:, None, None, None]
        return a * self.finish(own) + (1.0 - a) * self.finish(partner)

    def mixed(self, record, partner, index, partner_index, view):
        """float32 [R, R, 3]: a · view(i) + (1 − a) · view(j), with a from (seed, i, v)."""
        import tensorflow as tf

        own = tf.cast(self.image(record, index, view), tf.float32)
        if self.mode != "function_matching" or self.mixup_p == 0:
            return own
        a = folded_beta(self.mixup_p, _view_rng(self.seed, index, view))
        return a * own + (1.0 - a) * tf.cast(self.image(partner, partner_index, view), tf.float32)

    def needs_partner(self) -> bool:
        return self.mode == "function_matching" and self.mixup_p > 0


def partner_and_coefficient(card: dict, index: int, view: int) -> tuple[int, float]:
    """(partner j, coefficient a) of example `index` in view `view` (for checks and tests)."""
    n = int(card["data"]["num_examples"])
    j = (index + card["partner_shifts"][view]) % n
    p = float(card["mixup_p"]) if card["mode"] == "function_matching" else 0.0
    a = float(folded_beta(p, _view_rng(int(card["seed"]), index, view)))
    return j, a


# ----------------------------------------------------------------------------------------------
# The view cache: each example's view decoded once per pass (mixed views)
#
# In view v the partner of i is j = i + s_v, whose view is example j's own view v: every view of a pass
# is needed twice, once as an example's own view and once as another's partner. Without the cache each
# is decoded, cropped and resized twice (a second sequential read gives the partners). With it, one pass
# makes every example's view once, in record order, as the spec's per-example ops leave it (uint8 after
# crop + flip), holds them in memory, and mixes own and partner views batch by batch with the spec's
# trailing elementwise ops (value_range). Same operations on the same values: the same bits. The next
# pass is made while the current one is read, so up to three passes are held: the cache is used when
# 3 x (bytes of one pass) <= the cap (default 1 GiB), on one process (several processes each read only
# their share of the examples, for which the two reads are the cheaper path).

VIEW_CACHE_MAX_BYTES = 1 << 30
_PASSES_HELD = 3


def view_cache_plan(card: dict, resolution: int, *, process_count: int = 1, examples_needed: int | None = None,
                    max_bytes: int | None = None) -> dict[str, Any]:
    """Whether a pipeline over this store holds a pass's views in memory (see above), and why.

    Returns {"use": bool, "bytes": estimated bytes held (3 passes), "max_bytes": the cap, "reason": one line}.
    `examples_needed`: generation's examples per pass, when it makes only some record files of a view (the
    cache makes all N views of the pass, so it pays only when at least half of them are needed).
    """
    max_bytes = VIEW_CACHE_MAX_BYTES if max_bytes is None else int(max_bytes)
    n = int(card["data"]["num_examples"])
    maker = ViewMaker(card, resolution)
    per_view = _partial_bytes(maker, resolution)
    held = _PASSES_HELD * n * (per_view or 0)
    plan = {"use": False, "bytes": int(held), "max_bytes": max_bytes}
    if not maker.needs_partner():
        return {**plan, "reason": "view cache: not used (no mixup partner: each view is made once anyway)"}
    if per_view is None:
        return {**plan, "reason": "view cache: not used (the spec's views have no fixed size)"}
    if process_count > 1:
        return {**plan, "reason": f"view cache: not used ({process_count} processes: each makes only its share)"}
    if examples_needed is not None and 2 * examples_needed < n:
        return {**plan, "reason": f"view cache: not used ({examples_needed} of {n} examples per pass needed)"}
    size = f"{n:,} views x {per_view:,} B x {_PASSES_HELD} passes = {held / 2**20:,.0f} MiB"
    if held > max_bytes:
        return {**plan, "reason": f"view cache: not used ({size} > cap {max_bytes / 2**20:,.0f} MiB): "
                                  "each view decoded twice per pass"}
    return {**plan, "use": True, "reason": f"view cache: {size} <= cap {max_bytes / 2**20:,.0f} MiB: "
                                           "each view decoded once per pass"}


def every_view_plan(card: dict, resolution: int, *, passes: int | None, process_count: int = 1,
                    max_bytes: int | None = None) -> dict[str, Any]:
    """Whether a training stream that makes `passes` passes holds every view of every example once made
    (K·N `partial` views, made once for the whole run), and why.

    Pays when the run makes more passes than the store has views (K): each pass after the first K then
    costs a gather and a mix, no view making. Needs what the view cache needs, plus the known number of
    passes; held: K + 2 passes (the views, the pass being read and the next one), under the view cache's
    cap. Returns {"use", "bytes", "max_bytes", "reason"} like `view_cache_plan`.
    """
    max_bytes = VIEW_CACHE_MAX_BYTES if max_bytes is None else int(max_bytes)
    n, views = int(card["data"]["num_examples"]), int(card["views"])
    maker = ViewMaker(card, resolution)
    per_view = _partial_bytes(maker, resolution) if maker.needs_partner() else None
    held = (views + 2) * n * (per_view or 0)
    plan = {"use": False, "bytes": int(held), "max_bytes": max_bytes}
    if per_view is None or process_count > 1:
        return {**plan, "reason": "every view held: not used (no view cache)"}
    if passes is None or passes <= views:
        return {**plan, "reason": f"every view held: not used ({'an unknown number of' if passes is None else passes} "
                                  f"passes over {views} stored views: no view is made twice)"}
    size = f"{views} views x {n:,} examples x {per_view:,} B (+ 2 passes) = {held / 2**20:,.0f} MiB"
    if held > max_bytes:
        return {**plan, "reason": f"every view held: not used ({size} > cap {max_bytes / 2**20:,.0f} MiB)"}
    return {**plan, "use": True, "reason": f"every view held: {size} <= cap {max_bytes / 2**20:,.0f} MiB: each view "
                                           f"made once for the run's {passes:,} passes"}


def _partial_bytes(maker: ViewMaker, resolution: int) -> int | None:
    """Bytes of one `partial` view (static shape and dtype of the spec's per-example ops), else None."""
    import tensorflow as tf

    from funmatch.data.tfrecords import FEATURES

    record = {k: tf.TensorSpec([], spec.dtype) for k, spec in FEATURES.items()}
    try:
        spec = tf.function(lambda r: maker.partial(r, tf.constant(0, tf.int64), tf.constant(0, tf.int64))) \
            .get_concrete_function(record).structured_outputs
        finished = tf.function(maker.finish).get_concrete_function(
            tf.TensorSpec([None, *spec.shape], spec.dtype)).structured_outputs
    except Exception:  # noqa: BLE001 (a spec whose trailing ops need other keys: no cache)
        return None
    if not spec.shape.is_fully_defined() or finished.shape[1:] != spec.shape:
        return None
    return int(spec.shape.num_elements()) * spec.dtype.size


def _one_pass(maker: ViewMaker, paths: list[str], total: int, view):
    """One element: every example's `partial` view v [N, ...], its coefficient [N] and label [N], in
    record order (decoded in parallel)."""
    import tensorflow as tf

    def make(record, index):
        record = _parse(record)
        return maker.partial(record, index, view), maker.coefficient(index, view), record["label"]

    records = tf.data.Dataset.zip(tf.data.TFRecordDataset(paths, buffer_size=8 << 20), tf.data.Dataset.range(total))
    made = records.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return made.batch(total)


def _pick(images, coefficients, labels, index, view, shift, total):
    """One example of a cached pass: its own and its partner's `partial` views, coefficient and label."""
    import tensorflow as tf

    return {"own": tf.gather(images, index), "partner": tf.gather(images, (index + shift) % total),
            "coefficient": tf.gather(coefficients, index), "label": tf.gather(labels, index), "index": index,
            "view": view}


def _log_plan(plan: dict, echo: bool = False) -> None:
    import logging
    import sys

    logging.getLogger("funmatch.targets").info(plan["reason"])
    if echo:
        print(plan["reason"], file=sys.stderr, flush=True)


def _view_runs(units: list[tuple[int, int]]) -> list[tuple[int, list[int]]]:
    """`units` as runs of consecutive units of one view: [(view, [record files])]."""
    runs: list[tuple[int, list[int]]] = []
    for view, file_index in units:
        if runs and runs[-1][0] == view:
            runs[-1][1].append(int(file_index))
        else:
            runs.append((int(view), [int(file_index)]))
    return runs


def views_dataset(card: dict, data_dir, units: list[tuple[int, int]], resolution: int, batch_size: int, *,
                  view_cache: bool = False):
    """tf.data batches {"image": [B, R, R, 3], "index": [B], "view": [B]} of the views of `units` ((view,
    record file) pairs), unit after unit, each in record order; one stream (batches may span two units),
    so that the teacher's batches stay full and the pipeline is built once per process.

    `view_cache` (see `view_cache_plan`): each run of units of one view makes all the views of that pass
    once and mixes them from memory; the next run's pass is made while this one is read. The same bits.
    """
    import tensorflow as tf

    if view_cache:
        return _cached_views_dataset(card, data_dir, units, resolution, batch_size)

    layout = card["data"]
    paths = [str(pathlib.Path(data_dir) / p) for p in layout["files"]]
    starts, total = [int(s) for s in layout["file_starts"]], int(layout["num_examples"])
    starts_t, sizes_t = tf.constant(starts, tf.int64), tf.constant(layout["file_sizes"], tf.int64)
    paths_t, shifts_t = tf.constant(paths), tf.constant(card["partner_shifts"], tf.int64)
    maker = ViewMaker(card, resolution)
    units_t = tf.constant(np.asarray(units, np.int64).reshape(-1, 2))

    def unit(pair):
        view, file_index = pair[0], pair[1]
        start, count = tf.gather(starts_t, file_index), tf.gather(sizes_t, file_index)
        own = tf.data.TFRecordDataset(tf.gather(paths_t, file_index), buffer_size=8 << 20)
        if maker.needs_partner():
            partners = _records_from(paths, starts, total, start + tf.gather(shifts_t, view), count)
        else:
            partners = tf.data.Dataset.from_tensors(tf.constant(b"", tf.string)).repeat(count)
        indices = tf.data.Dataset.range(start, start + count)
        return tf.data.Dataset.zip(own, partners, indices).map(lambda a, b, i: (a, b, i, view))

    def make(record, partner, index, view):
        record = _parse(record)
        partner_index = (index + tf.gather(shifts_t, view)) % total
        partner_record = _parse(partner) if maker.needs_partner() else record
        return {"image": maker.mixed(record, partner_record, index, partner_index, view), "index": index, "view": view}

    dataset = tf.data.Dataset.from_tensor_slices(units_t).flat_map(unit)
    dataset = dataset.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _cached_views_dataset(card: dict, data_dir, units: list[tuple[int, int]], resolution: int, batch_size: int):
    import tensorflow as tf

    layout = card["data"]
    paths = [str(pathlib.Path(data_dir) / p) for p in layout["files"]]
    total = int(layout["num_examples"])
    starts_t, sizes_t = tf.constant(layout["file_starts"], tf.int64), tf.constant(layout["file_sizes"], tf.int64)
    shifts_t = tf.constant(card["partner_shifts"], tf.int64)
    maker = ViewMaker(card, resolution)
    runs = _view_runs(units)
    width = max(len(files) for _, files in runs)
    run_views = tf.constant([view for view, _ in runs], tf.int64)
    run_files = tf.constant([files + [-1] * (width - len(files)) for _, files in runs], tf.int64)

    def one_run(view, files):
        return _one_pass(maker, paths, total, view).map(lambda images, coefficients, labels: (
            view, files, images, coefficients, labels))

    def examples(view, files, images, coefficients, labels):
        shift = tf.gather(shifts_t, view)
        files = tf.boolean_mask(files, files >= 0)
        indices = tf.data.Dataset.from_tensor_slices(files).flat_map(lambda f: tf.data.Dataset.range(
            tf.gather(starts_t, f), tf.gather(starts_t, f) + tf.gather(sizes_t, f)))
        def mixed(i):  # per example: at the teacher's resolution whole-batch float ops are memory-bound
            picked = _pick(images, coefficients, labels, i, view, shift, total)
            image = maker.mixed_batch(picked["own"][None], picked["partner"][None], picked["coefficient"][None])[0]
            return {"image": image, "index": i, "view": view}

        return indices.map(mixed, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    passes = tf.data.Dataset.from_tensor_slices((run_views, run_files)).flat_map(one_run).prefetch(1)
    return passes.flat_map(examples).batch(batch_size).prefetch(tf.data.AUTOTUNE)
