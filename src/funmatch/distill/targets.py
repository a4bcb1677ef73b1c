"""Stored teacher targets: the teacher runs once per (example, view); every later student reads its outputs.

Function matching pays a teacher forward pass on every training step. Here the teacher is paid once:
for every training example i and view v < K, the function-matching view is a pure function of
(seed, i, v), the teacher's output on it is stored, and the student's input pipeline regenerates the
very same mixed view at the student's resolution and pairs it with the stored target. Several students,
the modes that fit and every tuning trial then share one store; a student step costs what a
label-training step costs (Apple's "dataset reinforcement", ImageNet+, 2023, for the paper's recipe).

The view of (i, v) (`mode="function_matching"`; records in their on-disk order, i = position 0..N-1):

    rng(i, v)   = fold_in(fold_in((seed, SALT), v), i)               stateless, as every pp op's seed
    own view    = spec(resolution)(record i, rng(i, v))              e.g. inception crop + flip + [-1, 1]
    partner     = j = (i + s_v) mod N, s_v in [1, N-1] seeded per view (stored in the card)
    partner view= spec(resolution)(record j, rng(j, v))              example j's own view v
    coefficient = a = max(u, 1 - u), u ~ Beta(p, p) from rng(i, v)  (one per example and view)
    mixed view  = a · own view + (1 - a) · partner view

The crop window of a view depends on the record and the seed only, never on the output size, so the
teacher (at its resolution) and the student (at its own) see the same window resized, as in online
function matching. Partners come from a second sequential read of the same records, started s_v
records later, so no random access is needed at any scale. Online function matching draws one
coefficient per batch and pairs each image with its batch neighbour; here each example has its own
coefficient and a partner drawn over the whole split: the same distributions (another example of the
data; folded Beta(p, p)) per example, without tying an example's view to the batch it lands in.
`mode="consistent"` is the same with p = 0 (no mixup, no partner). `mode="fixed_teacher"` stores one
target per example (K = 1) from a fixed teacher view (the eval crop); the student's own view stays the
mode's fresh augmentation at every pass.

Store layout (`TARGETS_DIR`):

    targets.json                      the card (`load_card`; complete == true once every file is written)
    view-00003/train-00002.npy        targets of view 3 for the examples of record file 2, in record order
    timing-p0000.json                 generation seconds of each process (summed into the card)

Each `.npy` holds log-probabilities at temperature 1 (log_softmax of the teacher's logits; KL at any T
is unchanged, since softmax(z/T) is invariant to adding a constant to z):

* `num_classes <= 128` ("full"): float16 [n, C], every class.
* otherwise ("top_k"): a structured array [n] with fields `index` (uint16 [k]) and `value`
  (float16 [k]), the k largest log-probabilities. The rule for the rest of the mass: the probability
  the top k leave, 1 − Σ exp(value), is spread uniformly over the other C − k classes (each gets
  log((1 − Σ) / (C − k)), floored at 1e-8 / (C − k)). No class outside the top k gets more than the
  smallest one in it (their mean is at most the k-th probability), so the ranking is kept.

The files are plain `.npy` with fixed-size rows, so training reads them sequentially with
`tf.data.FixedLengthRecordDataset` (no Python in the input pipeline). Generation works unit by unit
(one view of one record file), each written to a temporary file and renamed into place, so a killed
run resumes at the first missing unit; processes split the units (unit u goes to process
u mod process_count) and the teacher's forward pass uses all local devices.

Training reads epoch e (one pass over the data) from view σ_c(e mod K), σ_c a seeded permutation of the
K views for cycle c = e // K: no view repeats before all K were used. Pairs (record, partner record,
target row) are shuffled before decoding, so the training order is free, and the stream is a pure
function of (seed, position): `start_step` resumes it exactly.

Every view of a pass is needed twice (as an example's own view and as another's partner). When three
passes of views fit under a cap (1 GiB by default; `view_cache_plan` decides and says why), training
makes each view once per pass and mixes from memory: the same bits, about a quarter less host CPU per
mixed view here. Generation can do the same (`generate(view_cache_max_bytes=...)`); it is off by default
there, as the teacher's forward pass dominates its cost.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
import time
from typing import Any

import numpy as np

from funmatch.errors import FunmatchError

CARD_NAME = "targets.json"
FORMAT = "funmatch-targets/1"
FULL_MAX_CLASSES = 128
DEFAULT_TOP_K = 10
# Store modes: the distillation modes that can read stored targets.
MODES = ("function_matching", "consistent", "fixed_teacher")
REST_FLOOR = 1e-8  # the smallest total probability the top-k rule leaves to the other classes
_VIEW_SALT = 0x7A4C3
_MIX_SALT = 0x51A7
_STUDENT_SALT = 0x5EED5
_ORDER_SALT = 0x0DE5
_SHIFT_SALT = 0x5A1F7
# Mixes the run seed with the epoch for the per-epoch shuffle seed (as the plain pipeline does).
_EPOCH_SEED_MULTIPLIER = 1_000_003


# ----------------------------------------------------------------------------------------------
# Identities (the card's hashes) and small helpers


def file_sha256(path) -> str:
    """sha256 of a file's bytes (the teacher's identity: the same weights give the same hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_card_sha256(data_dir) -> str:
    """sha256 of a prepared dataset's card (dataset.json): names, classes, splits, counts, options."""
    from funmatch.data.tfrecords import CARD_NAME as DATA_CARD

    path = pathlib.Path(data_dir) / DATA_CARD
    if not path.is_file():
        raise FunmatchError(f"{path}: dataset card not found (is {data_dir} a folder made by `funmatch prepare`?)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write_bytes(path: pathlib.Path, write) -> None:
    """`write(file)` into a temporary sibling, fsync, rename into place (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_json(path: pathlib.Path, value) -> None:
    _atomic_write_bytes(path, lambda f: f.write((json.dumps(value, indent=2, sort_keys=True) + "\n").encode()))


def view_spec(crop_area_min: float = 5.0) -> str:
    """The function-matching view as a pp template (`{resolution}` filled in per model).

    The recipe's train pp of the distillation: inception crop (area `crop_area_min`..100 %) resized to
    the model's resolution, flip, values in [-1, 1]. At equal teacher and student resolutions this is
    exactly the online pipeline's view before mixup.
    """
    area = f", area_min={crop_area_min:g}" if float(crop_area_min) != 5.0 else ""
    return "decode_jpeg_and_inception_crop({resolution}" + area + ")|flip_lr|value_range(-1, 1)"


def fill_spec(template: str, resolution: int) -> str:
    return template.replace("{resolution}", str(int(resolution)))


# ----------------------------------------------------------------------------------------------
# Storage rows: full float16 log-probabilities, or top-k (index, value)


def storage_kind(num_classes: int, top_k: int | None) -> str:
    """"full" for at most 128 classes (unless `top_k` is given explicitly), else "top_k"."""
    if top_k is None:
        return "full" if num_classes <= FULL_MAX_CLASSES else "top_k"
    return "top_k" if top_k < num_classes else "full"


def row_dtype(kind: str, num_classes: int, top_k: int) -> np.dtype:
    if kind == "full":
        return np.dtype(("<f2", (num_classes,)))
    if num_classes > np.iinfo(np.uint16).max + 1:
        raise FunmatchError(f"top-k storage holds class indices as uint16; {num_classes} classes is too many")
    return np.dtype([("index", "<u2", (top_k,)), ("value", "<f2", (top_k,))])


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))).astype(np.float32)


def encode_rows(logits: np.ndarray, kind: str, top_k: int) -> np.ndarray:
    """Teacher logits [n, C] -> the stored rows (see the module docstring)."""
    log_probs = log_softmax(logits)
    if kind == "full":
        return log_probs.astype(np.float16)
    order = np.argsort(-log_probs, axis=-1, kind="stable")[:, :top_k]
    rows = np.empty(len(log_probs), row_dtype(kind, log_probs.shape[1], top_k))
    rows["index"] = order.astype(np.uint16)
    rows["value"] = np.take_along_axis(log_probs, order, axis=-1).astype(np.float16)
    return rows


def decode_rows(rows: np.ndarray, num_classes: int) -> np.ndarray:
    """Stored rows -> float32 log-probabilities [n, C] (the top-k rule fills in the other classes)."""
    if rows.dtype.names is None:
        return rows.astype(np.float32)
    return topk_to_log_probs(rows["index"].astype(np.int64), rows["value"].astype(np.float32), num_classes)


def topk_to_log_probs(indices: np.ndarray, values: np.ndarray, num_classes: int) -> np.ndarray:
    """numpy: top-k (indices [n, k], log-probabilities [n, k]) -> log-probabilities [n, C]."""
    k = indices.shape[-1]
    rest = np.maximum(1.0 - np.exp(values.astype(np.float64)).sum(-1), REST_FLOOR)
    out = np.repeat(np.log(rest / (num_classes - k))[:, None], num_classes, axis=1).astype(np.float32)
    np.put_along_axis(out, indices, values.astype(np.float32), axis=1)
    return out


def _tf_topk_to_log_probs(indices, values, num_classes: int):
    """TensorFlow twin of `topk_to_log_probs` for batches ([B, k] int32, [B, k] float32)."""
    import tensorflow as tf

    k = int(indices.shape[-1])
    rest = tf.maximum(1.0 - tf.reduce_sum(tf.exp(tf.cast(values, tf.float64)), -1), REST_FLOOR)
    fill = tf.cast(tf.math.log(rest / (num_classes - k)), tf.float32)
    out = tf.repeat(fill[:, None], num_classes, axis=1)
    batch = tf.shape(indices)[0]
    rows = tf.repeat(tf.range(batch)[:, None], k, axis=1)
    scatter_at = tf.stack([tf.reshape(rows, [-1]), tf.reshape(indices, [-1])], axis=1)
    return tf.tensor_scatter_nd_update(out, scatter_at, tf.reshape(values, [-1]))


def _npy_header_bytes(path) -> int:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(f)
        else:
            np.lib.format.read_array_header_2_0(f)
        return f.tell()


# ----------------------------------------------------------------------------------------------
# The card


def load_card(targets_dir) -> dict[str, Any]:
    """Reads TARGETS_DIR/targets.json; FunmatchError naming the path when missing or not a store."""
    path = pathlib.Path(targets_dir) / CARD_NAME
    if not path.is_file():
        raise FunmatchError(f"{path}: no targets card (is {targets_dir} a folder written by `funmatch targets`?)")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise FunmatchError(f"{path}: not valid JSON ({error})") from None
    if card.get("format") != FORMAT:
        raise FunmatchError(f"{path}: format {card.get('format')!r}, expected {FORMAT!r}")
    return card


def unit_path(targets_dir, card: dict, view: int, file_index: int) -> pathlib.Path:
    return pathlib.Path(targets_dir) / f"view-{view:05d}" / f"{card['data']['split']}-{file_index:05d}.npy"


def check_card(card: dict, *, teacher_path, data_dir, num_classes: int, mode: str, view_template: str | None,
               teacher_resolution: int, mixup_p: float, split: str, targets_dir="targets") -> None:
    """Refuses a store that does not fit the run: one line per mismatch, all in one FunmatchError.

    Compared: complete, teacher file hash, dataset card hash, split, classes, mode, pp spec (the view
    template; fixed_teacher: not compared, its teacher view is the store's own), teacher resolution,
    mixup p.
    """
    problems = []
    where = f"--targets {targets_dir}"
    if not card.get("complete"):
        problems.append(f"{where}: generation is not complete (re-run `funmatch targets` with the same arguments)")
    if card["teacher"]["sha256"] != file_sha256(teacher_path):
        problems.append(f"{where}: computed with another teacher (sha256 {card['teacher']['sha256'][:12]}…, "
                        f"--teacher {teacher_path} is {file_sha256(teacher_path)[:12]}…)")
    if card["data"]["card_sha256"] != dataset_card_sha256(data_dir):
        problems.append(f"{where}: computed on other data (dataset card {card['data']['card_sha256'][:12]}…, "
                        f"--data {data_dir} has {dataset_card_sha256(data_dir)[:12]}…)")
    if card["data"]["split"] != split:
        problems.append(f"{where}: computed on split {card['data']['split']!r}, the run trains on {split!r}")
    if int(card["num_classes"]) != int(num_classes):
        problems.append(f"{where}: {card['num_classes']} classes, the run has {num_classes}")
    if card["mode"] != mode:
        problems.append(f"{where}: stored for mode {card['mode']!r}, the run's mode is {mode!r}")
    elif mode != "fixed_teacher" and card["view_spec"] != view_template:
        problems.append(f"{where}: pp spec {card['view_spec']!r}, the run's is {view_template!r}")
    if int(card["teacher"]["resolution"]) != int(teacher_resolution):
        problems.append(f"{where}: teacher resolution {card['teacher']['resolution']}, the run's is {teacher_resolution}")
    if mode == "function_matching" and float(card["mixup_p"]) != float(mixup_p):
        problems.append(f"{where}: mixup p {card['mixup_p']:g}, the run's is {float(mixup_p):g}")
    if problems:
        raise FunmatchError("stored targets do not match the run:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------------------------
# Records: file layout, sequential reads from any position


def record_files(data_dir, split: str) -> tuple[list[str], list[int]]:
    """(paths of the split's record files in order, number of records in each)."""
    from funmatch.data.tfrecords import load_card as load_data_card
    from funmatch.data.tfrecords import shard_paths

    card = load_data_card(data_dir)
    if split not in card["splits"]:
        raise FunmatchError(f"--data {data_dir}: no split {split!r} (has {', '.join(card['splits'])})")
    info = card["splits"][split]
    total, num_files = int(info["num_examples"]), int(info["num_shards"])
    paths = shard_paths(data_dir, split, num_files)
    for path in paths:
        if not os.path.isfile(path):
            raise FunmatchError(f"{path}: shard listed in the dataset card is missing")
    per_file = (card.get("options") or {}).get("examples_per_shard")
    if per_file and (num_files - 1) * per_file < total <= num_files * per_file:
        sizes = [per_file] * (num_files - 1) + [total - (num_files - 1) * per_file]
    else:  # no layout in the card: count (one sequential read of the undecoded records)
        import tensorflow as tf

        sizes = [int(tf.data.TFRecordDataset(p).reduce(np.int64(0), lambda n, _: n + 1)) for p in paths]
    if sum(sizes) != total:
        raise FunmatchError(f"--data {data_dir}: split {split!r} has {sum(sizes)} records, its card says {total}")
    return paths, sizes


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


def partner_shifts(seed: int, num_views: int, num_examples: int) -> list[int]:
    """s_v in [1, N-1] for each view (the partner of i in view v is (i + s_v) mod N); stored in the card."""
    if num_examples < 2:
        return [0] * num_views
    rng = np.random.Generator(np.random.PCG64([int(seed), _SHIFT_SALT]))
    return [int(s) for s in rng.integers(1, num_examples, size=num_views)]


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

    def image(self, record, index, view):
        return self.preprocess({**record, self.rng_key: _view_rng(self.seed, index, view)})["image"]

    def partial(self, record, index, view):
        """The view before the spec's trailing elementwise ops (e.g. uint8 after crop + flip)."""
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


# ----------------------------------------------------------------------------------------------
# Generation


def _shard(images: np.ndarray):
    """A batch split over the devices of the global `keras.distribution` (JAX), so that the teacher's
    forward pass runs on all of them; unchanged otherwise (one device)."""
    import keras

    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if distribution is None:
        return images
    return keras.distribution.distribute_tensor(images, distribution.get_data_layout(images.shape))


def _static_card(*, mode, teacher_path, teacher_contract, data_dir, split, data_layout, template, mixup_p, seed,
                 views, top_k, kind, num_classes) -> dict[str, Any]:
    row = row_dtype(kind, num_classes, top_k or 0)
    n = data_layout["num_examples"]
    return {
        "format": FORMAT,
        "mode": mode,
        "teacher": {"path": str(pathlib.Path(teacher_path).resolve()), "sha256": file_sha256(teacher_path),
                    "arch": teacher_contract["arch"], "resolution": int(teacher_contract["resolution"])},
        "data": {"path": str(pathlib.Path(data_dir).resolve()), "card_sha256": dataset_card_sha256(data_dir),
                 **data_layout, "split": split},
        "view_spec": template,
        "mixup_p": float(mixup_p) if mode == "function_matching" else 0.0,
        "seed": int(seed),
        "views": int(views),
        "storage": kind,
        "top_k": int(top_k) if kind == "top_k" else None,
        "num_classes": int(num_classes),
        "values": "log_softmax(teacher logits) at temperature 1, float16",
        "rest_rule": None if kind == "full" else
        "1 - sum(exp(top-k values)) spread uniformly over the other classes (floored at 1e-8)",
        "partner_shifts": partner_shifts(seed, views, n) if mode == "function_matching" and mixup_p > 0 else [0] * views,
        "bytes_per_target": int(row.itemsize),
        "bytes_per_view": int(row.itemsize) * n,
        "bytes_total": int(row.itemsize) * n * int(views),
    }


_STATIC_KEYS = ("format", "mode", "teacher", "data", "view_spec", "mixup_p", "seed", "views", "storage", "top_k",
                "num_classes", "partner_shifts")


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
    card = _static_card(mode=mode, teacher_path=teacher_path, teacher_contract=contract, data_dir=data_dir, split=split,
                        data_layout=layout, template=template, mixup_p=mixup_p, seed=seed, views=views, top_k=top_k,
                        kind=kind, num_classes=num_classes)
    out_dir = pathlib.Path(out_dir)
    card_path = out_dir / CARD_NAME
    if card_path.exists():
        previous = json.loads(card_path.read_text())
        previous_static = {k: previous.get(k) for k in _STATIC_KEYS}
        current_static = json.loads(json.dumps({k: card[k] for k in _STATIC_KEYS}))
        for part in ("teacher", "data"):  # paths may differ (another machine); hashes may not
            previous_static[part] = {k: v for k, v in (previous_static[part] or {}).items() if k != "path"}
            current_static[part] = {k: v for k, v in current_static[part].items() if k != "path"}
        differing = [k for k in _STATIC_KEYS if previous_static[k] != current_static[k]]
        if differing:
            raise FunmatchError(f"--out {out_dir} holds targets made with other settings ({', '.join(differing)}); "
                                "use a new --out, or re-run with the same arguments to continue")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(card_path, {**card, "complete": False})

    if process_index is None or process_count is None:
        process_index, process_count = runtime.process_info()
    units = [(v, f) for v in range(views) for f in range(len(paths))]
    mine = [u for k, u in enumerate(units) if k % process_count == process_index]
    todo = [u for u in mine if not unit_path(out_dir, card, *u).exists()]
    devices = runtime.replica_count() if keras.backend.backend() == "jax" else 1
    batch_size = max(devices, batch_size - batch_size % devices)
    timing_path = out_dir / f"timing-p{process_index:04d}.json"
    timing_before = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    seconds_before, cpu_before = timing_before.get("seconds", 0.0), timing_before.get("cpu_seconds", 0.0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(sizes[f] for _, f in mine), initial=sum(sizes[f] for _, f in mine) - sum(sizes[f] for _, f in todo),
                   desc=f"targets ({mode}, K={views})", unit="img", dynamic_ncols=True, mininterval=1.0)
    resolution = int(contract["resolution"])
    unit_started, cpu_started = time.perf_counter(), time.process_time()
    pending: list[np.ndarray] = []  # logits of the current unit so far
    remaining = list(todo)
    if todo:
        runs = _view_runs(todo)
        plan = view_cache_plan(card, resolution, examples_needed=sum(sizes[f] for _, f in todo) // len(runs),
                               max_bytes=view_cache_max_bytes or 0)
        _log_plan(plan, echo=progress)
        batches = views_dataset(card, data_dir, todo, resolution, batch_size, view_cache=plan["use"])
        for batch in batches.as_numpy_iterator():
            images = batch["image"]
            real = int(images.shape[0])
            if real < batch_size:  # pad to a full batch: every device gets an equal share
                images = np.pad(images, [[0, batch_size - real], [0, 0], [0, 0], [0, 0]])
            pending.append(keras.ops.convert_to_numpy(teacher.predict_on_batch(_shard(images)))[:real])
            if bar is not None:
                bar.update(real)
            logits = np.concatenate(pending)
            while remaining and len(logits) >= sizes[remaining[0][1]]:  # a unit is complete: write it
                view, file_index = remaining.pop(0)
                rows = encode_rows(logits[: sizes[file_index]], kind, top_k or 0)
                logits = logits[sizes[file_index]:]
                _atomic_write_bytes(unit_path(out_dir, card, view, file_index), lambda f, rows=rows: np.save(f, rows))
                _atomic_write_json(timing_path, {"seconds": seconds_before + time.perf_counter() - unit_started,
                                                 "cpu_seconds": cpu_before + time.process_time() - cpu_started})
            pending = [logits]
    if bar is not None:
        bar.close()
    done = all(unit_path(out_dir, card, *u).exists() for u in units)
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


# ----------------------------------------------------------------------------------------------
# Reading for training


def read_targets(targets_dir, card: dict, view: int) -> np.ndarray:
    """All stored rows of one view, in record order (numpy; for checks, tests and fixed_teacher)."""
    files = range(len(card["data"]["files"]))
    return np.concatenate([np.load(unit_path(targets_dir, card, view, f)) for f in files])


def view_of_epoch(seed: int, num_views: int, epoch):
    """The view read in pass `epoch`: σ_c(epoch mod K), σ_c a seeded permutation per cycle c = epoch // K."""
    import tensorflow as tf

    epoch = tf.cast(epoch, tf.int64)
    cycle, within = epoch // num_views, epoch % num_views
    seed_pair = tf.random.experimental.stateless_fold_in(tf.constant([int(seed), _ORDER_SALT], tf.int64), cycle)
    order = tf.argsort(tf.random.stateless_uniform([num_views], seed=seed_pair), stable=True)
    return tf.cast(tf.gather(order, within), tf.int64)


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
      shuffle_buffer: default: the whole (per-process) split, capped at 50,000 pairs.
      student_spec: fixed_teacher only: the student's own augmentation (a full pp spec), drawn afresh
        at every pass.
      process_index, process_count: this host's share (examples at positions i % count == index).
      view_cache_max_bytes: the view cache's cap (default 1 GiB; 0: off): see `view_cache_plan`; its
        decision is logged ("funmatch.targets"). The batches are the same bits either way.

    Returns:
      tf.data.Dataset of dicts: "image" float32 [B, R, R, 3], "teacher_logits" float32 [B, C]
      (log-probabilities), "label" int64 [B], "index" int64 [B], "view" int64 [B].
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
        return zipped.shuffle(buffer, seed=seed_t * _EPOCH_SEED_MULTIPLIER + epoch, reshuffle_each_iteration=False)

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
        rows = batch.pop("target_row")
        if card["storage"] == "full":
            logits = tf.reshape(tf.cast(tf.io.decode_raw(rows, tf.float16), tf.float32), [-1, num_classes])
        else:
            k = int(card["top_k"])
            index_part = tf.reshape(tf.io.decode_raw(tf.strings.substr(rows, 0, 2 * k), tf.uint16), [-1, k])
            value_part = tf.reshape(tf.io.decode_raw(tf.strings.substr(rows, 2 * k, 2 * k), tf.float16), [-1, k])
            logits = _tf_topk_to_log_probs(tf.cast(index_part, tf.int32), tf.cast(value_part, tf.float32), num_classes)
        return {**batch, "teacher_logits": logits}

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
        def pass_of_epoch(epoch):
            view = view_of_epoch(seed, num_views, epoch)
            made = tf.data.Dataset.zip(_one_pass(maker, paths, total, view), targets_of_view(view).batch(total))
            return made.map(lambda pass_views, rows: (epoch, view, *pass_views, rows))

        def examples_of_pass(epoch, view, images, coefficients, labels, rows):
            shift = tf.gather(shifts_t, view)
            indices = tf.data.Dataset.range(total).shard(process_count, process_index)
            indices = indices.shuffle(buffer, seed=seed_t * _EPOCH_SEED_MULTIPLIER + epoch, reshuffle_each_iteration=False)
            return indices.map(lambda index: {
                **_pick(images, coefficients, labels, index, view, shift, total), "target_row": tf.gather(rows, index)})

        def mix(batch):
            image = maker.mixed_batch(batch.pop("own"), batch.pop("partner"), batch.pop("coefficient"))
            return decode_targets({**batch, "image": image})

        with pipeline._without_global_seed():  # noqa: SLF001
            passes = tf.data.Dataset.range(start_epoch, tf.int64.max).flat_map(pass_of_epoch).prefetch(1)
            stream = passes.flat_map(examples_of_pass)
        stream = stream.skip(start_offset).batch(batch_size, drop_remainder=True)
        stream = stream.map(mix, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return stream.prefetch(tf.data.AUTOTUNE).with_options(pipeline._options())  # noqa: SLF001
    with pipeline._without_global_seed():  # noqa: SLF001 (the stream must not depend on TF's global seed)
        stream = tf.data.Dataset.range(start_epoch, tf.int64.max).flat_map(one_epoch)
    stream = stream.skip(start_offset)  # undecoded pairs: cheap
    stream = stream.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    stream = stream.batch(batch_size, drop_remainder=True)
    stream = stream.map(decode_targets, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return stream.prefetch(tf.data.AUTOTUNE).with_options(pipeline._options())  # noqa: SLF001


__all__ = [
    "CARD_NAME",
    "DEFAULT_TOP_K",
    "MODES",
    "ViewMaker",
    "check_card",
    "dataset_card_sha256",
    "decode_rows",
    "encode_rows",
    "file_sha256",
    "folded_beta",
    "generate",
    "load_card",
    "partner_and_coefficient",
    "read_targets",
    "record_files",
    "topk_to_log_probs",
    "train_dataset",
    "views_dataset",
    "view_cache_plan",
    "view_of_epoch",
    "view_spec",
    "VIEW_CACHE_MAX_BYTES",
]
