"""Per-batch mixup for stored targets (`funmatch targets --mixup per-batch`): the paper's mixup, with the
batches themselves fixed by (seed, step), so that generation computes the teacher on exactly the batches
training will see. See `funmatch.distill.targets` for the per-example stores (the default).

The batches (global batch B, steps t = 0 .. S-1; records in their on-disk order, i = position 0..N-1):

    order       pass e over the split = the records shuffled with a buffer of `shuffle_buffer` records,
                seed (seed, e) (the online pipeline's bounded shuffle); the passes follow each other and
                step t takes positions t·B .. t·B + B - 1 of that sequence (batches may span two passes)
    own view    x_b = spec(resolution)(record i_b, rng(i_b, e_b))    e_b the pass of row b: a new crop and
                flip of an image at every pass (the per-example stores' view v = e_b)
    coefficient a_t = max(u, 1 - u), u ~ Beta(p, p) from (seed, t)   ONE per batch
    partner     row b - 1 of the same batch (row 0: row B - 1)       the online step's `roll` by one
    mixed       a_t · x_b + (1 - a_t) · x_{b-1}

The store holds the teacher's rows in batch order (`batches/steps-00003.npy`: steps 3U .. 3U + U - 1, U =
`steps_per_unit`, B rows per step); its card's `batches` records B, S, U and the shuffle buffer. A run on
it must use batch B (the global batch; P processes take rows p·B/P .. (p+1)·B/P - 1 of every batch, and
make the row before their slice as its first row's partner) and at most S steps; it starts at any step t
(`start_step`) with the very batches a run from 0 sees there.

What is the same as online function matching (`funmatch.distill.Distiller`): one coefficient per batch
from a folded Beta(p, p), every image mixed with its batch neighbour (roll by one, never reverse), the same
crop for teacher and student (the teacher's at its resolution), a new crop and flip at every pass, passes
shuffled with a bounded buffer. What is not: the sequence is finite and fixed once stored (S steps; every
student, seed and trial on the store sees the same batches in the same order, where online runs draw their
own with their seed), the batch size is the store's, the crops come from the store's pp seed (the run seed
only initialises the student), and the teacher's outputs are float16 (full) or top-k rows.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from funmatch.distill.targets.views import ViewMaker, _parse, folded_beta
from funmatch.errors import FunmatchError

MIXUP_MODES = ("per_example", "per_batch")
_BATCH_SALT = 0x8B47C
_ORDER_SALT = 0x0B0DE5
_EPOCH_SEED_MULTIPLIER = 1_000_003


def batches_layout(batch_size: int, steps: int, num_examples: int, shuffle_buffer: int) -> dict:
    """The card's `batches` entry: B, S, U (steps per unit file: about one pass, at most S) and the buffer."""
    if batch_size < 2 or steps < 1:
        raise FunmatchError(f"per-batch mixup needs a batch of at least 2 and at least 1 step, got batch "
                            f"{batch_size}, {steps} steps")
    per_unit = max(1, min(int(steps), int(num_examples) // int(batch_size)))
    return {"size": int(batch_size), "steps": int(steps), "steps_per_unit": per_unit,
            "units": math.ceil(int(steps) / per_unit), "shuffle_buffer": int(shuffle_buffer)}


def unit_steps(card: dict, unit: int) -> tuple[int, int]:
    """(first step, number of steps) of unit file `unit`."""
    layout = card["batches"]
    first = unit * layout["steps_per_unit"]
    return first, min(layout["steps_per_unit"], layout["steps"] - first)


def batch_unit_path(targets_dir, unit: int) -> pathlib.Path:
    return pathlib.Path(targets_dir) / "batches" / f"steps-{unit:05d}.npy"


def batch_coefficient(seed: int, mixup_p: float, step):
    """a_t: the one coefficient of batch `step` (folded Beta(p, p); 1.0 when p = 0)."""
    import tensorflow as tf

    rng = tf.random.experimental.stateless_fold_in(tf.constant([int(seed), _BATCH_SALT], tf.int64),
                                                   tf.cast(step, tf.int64))
    return folded_beta(float(mixup_p), rng)


def _ordered_records(card: dict, data_dir, start_position: int):
    """(undecoded record, index, pass) in batch order from global position `start_position` (infinite)."""
    import tensorflow as tf

    from funmatch.data import pipeline

    layout = card["data"]
    paths = [str(pathlib.Path(data_dir) / p) for p in layout["files"]]
    total = int(layout["num_examples"])
    buffer = int(card["batches"]["shuffle_buffer"])
    seed_t = tf.constant(int(card["seed"]) ^ _ORDER_SALT, tf.int64)
    start_epoch, offset = divmod(int(start_position), total)

    def one_pass(epoch):
        records = tf.data.Dataset.zip(tf.data.TFRecordDataset(paths, buffer_size=8 << 20), tf.data.Dataset.range(total))
        records = records.map(lambda record, index: (record, index, epoch))
        return records.shuffle(buffer, seed=seed_t * _EPOCH_SEED_MULTIPLIER + epoch, reshuffle_each_iteration=False)

    with pipeline._without_global_seed():  # noqa: SLF001 (a function of the store's seed and the position only)
        stream = tf.data.Dataset.range(start_epoch, tf.int64.max).flat_map(one_pass)
    return stream.skip(offset)


def batch_views(card: dict, data_dir, resolution: int, *, start_step: int, steps: int, rows: tuple[int, int] | None = None):
    """The mixed batches of steps `start_step` .. `start_step + steps - 1` at `resolution`: dicts "image"
    float32 [n, R, R, 3], "label", "index", "view" (the pass) [n], "step" []; n = the rows `rows` = (lo, hi)
    of every batch (default: all B)."""
    import tensorflow as tf

    size = int(card["batches"]["size"])
    lo, hi = rows or (0, size)
    maker = ViewMaker(card, resolution)
    mixup_p = float(card["mixup_p"]) if card["mode"] == "function_matching" else 0.0
    seed = int(card["seed"])
    wanted = tf.constant(np.arange(lo - 1, hi) % size, tf.int32)  # the row before the slice: its first partner
    batches = _ordered_records(card, data_dir, start_step * size).batch(size, drop_remainder=True).take(steps)

    def pick(batch, step):
        records, indices, epochs = (tf.gather(part, wanted) for part in batch)
        return records, indices, epochs, tf.fill([hi - lo + 1], step)

    def make(record, index, epoch, step):
        parsed = _parse(record)
        image = tf.cast(maker.image(parsed, index, epoch), tf.float32)
        return {"image": image, "label": parsed["label"], "index": index, "view": epoch, "step": step}

    def mix(batch):
        step = batch["step"][0]
        views = batch["image"]
        a = batch_coefficient(seed, mixup_p, step)
        image = a * views[1:] + (1.0 - a) * views[:-1] if mixup_p > 0 else views[1:]
        return {"image": image, "label": batch["label"][1:], "index": batch["index"][1:], "view": batch["view"][1:],
                "step": step}

    examples = tf.data.Dataset.zip(batches, tf.data.Dataset.range(start_step, start_step + steps)).map(pick).unbatch()
    examples = examples.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # No prefetch injected by tf.data: measured in generation (one stream per unit of steps), the injected one
    # held each unit's end for ~40 s after its last batch (TensorFlow 2.21, one core), a third of the store's time.
    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False
    return examples.batch(hi - lo + 1).map(mix, num_parallel_calls=tf.data.AUTOTUNE,
                                           deterministic=True).with_options(options)


def batch_rows(card: dict, targets_dir, row_bytes: int, header_bytes: list[int], *, start_step: int, steps: int,
               rows: tuple[int, int] | None = None):
    """The stored rows of the same steps as `batch_views`, raw ([n] strings of `row_bytes`), in batch order."""
    import tensorflow as tf

    layout = card["batches"]
    size, per_unit = int(layout["size"]), int(layout["steps_per_unit"])
    lo, hi = rows or (0, size)
    first = start_step // per_unit
    files = [str(batch_unit_path(targets_dir, u)) for u in range(first, int(layout["units"]))]
    headers = tf.constant(header_bytes[first:], tf.int64)
    records = tf.data.Dataset.from_tensor_slices((files, headers)).flat_map(
        lambda path, header: tf.data.FixedLengthRecordDataset(path, row_bytes, header))
    batched = records.skip((start_step - first * per_unit) * size).batch(size, drop_remainder=True).take(steps)
    return batched.map(lambda batch: batch[lo:hi])


def check_batches_for_run(card: dict, targets_dir, *, batch_size: int, steps: int | None = None) -> None:
    """One FunmatchError line when a run's global batch or steps do not fit a per-batch store."""
    layout = card.get("batches")
    if not layout:
        return
    if int(batch_size) != int(layout["size"]):
        raise FunmatchError(f"--targets {targets_dir}: holds per-batch mixup for batches of {layout['size']}, the run's "
                            f"batch_size is {batch_size}; set batch_size={layout['size']} or store the run's batches")
    if steps is not None and int(steps) > int(layout["steps"]):
        raise FunmatchError(f"--targets {targets_dir}: holds {layout['steps']} steps of per-batch mixup, the run needs "
                            f"{steps}; lower total_steps or store as many steps (funmatch targets --mixup per-batch "
                            "with the run's recipe)")


def generate_units(card: dict, data_dir, units: list[int], *, batch_size: int, predict, write,
                   on_batch=None) -> None:
    """The teacher on every batch of `units`, each unit's rows written by `write(unit, rows)` in batch order;
    `predict(images)` returns the stored rows of at most `batch_size` images. A unit's images go to the
    teacher in batches of `batch_size`, whatever the run's batch (a run batch of 128 does not pad the teacher's
    256 with 128 blanks); only a unit's last teacher batch may be short."""
    resolution = int(card["teacher"]["resolution"])
    for unit in units:
        first, count = unit_steps(card, unit)
        views = batch_views(card, data_dir, resolution, start_step=first, steps=count).map(lambda b: b["image"])
        pending = []
        for images in views.unbatch().batch(batch_size).prefetch(1).as_numpy_iterator():
            pending.append(predict(images))
            if on_batch is not None:
                on_batch(len(images))
        write(unit, np.concatenate(pending))
