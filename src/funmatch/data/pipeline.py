"""Train and eval `tf.data` pipelines over prepared TFRecords, from a pp spec.

Train: shuffle -> repeat -> map(pp) -> batch(drop_remainder) -> prefetch, infinite. Each epoch is
shuffled with a seed made from (seed, epoch), and every example gets a per-example seed made from
(seed, its global position in the stream), so the stream is a pure function of (seed, position).
Resuming at `start_step=k` therefore skips k * batch_size undecoded records and yields exactly
the batches k, k+1, ... of a fresh run, without decoding what it skips.

Eval: every example exactly once, the last batch padded to `batch_size`; a `_mask` key (float32
[B], 1 for real examples) is in every batch.

Multi-host: when the split has at least as many shards as processes, each process reads only its own
contiguous block of shards (`file_blocks`: process p the shards p·F/P .. (p+1)·F/P - 1), so P processes
read the split once between them; with fewer shards than processes, each reads every record and keeps
those with i % process_count == process_index. `batch_size` is the per-process batch.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np
import tensorflow as tf

from funmatch.data import ops
from funmatch.data.tfrecords import parse_example, read_records, shard_lengths, shard_paths, split_info
from funmatch.errors import FunmatchError

MASK_KEY = "_mask"
# Default shuffle buffer: the whole split when it has at most this many examples.
MAX_DEFAULT_SHUFFLE_BUFFER = 50_000
# Mixes the run seed with the epoch for the per-epoch shuffle seed.
_EPOCH_SEED_MULTIPLIER = 1_000_003


def num_examples(data_dir, split: str) -> int:
    """Number of examples of `split`, from the dataset card."""
    return int(split_info(data_dir, split)["num_examples"])


def _process_defaults(process_index, process_count) -> tuple[int, int]:
    """(index, count) of this process: the arguments, else jax's when jax is already imported, else (0, 1)."""
    if process_index is None or process_count is None:
        jax = sys.modules.get("jax")
        default_index, default_count = (jax.process_index(), jax.process_count()) if jax is not None else (0, 1)
        process_index = default_index if process_index is None else process_index
        process_count = default_count if process_count is None else process_count
    if not (0 <= process_index < process_count):
        raise FunmatchError(f"process_index must be in 0..{process_count - 1}, got {process_index}")
    return int(process_index), int(process_count)


def file_blocks(data_dir, split: str, process_count: int) -> list[range] | None:
    """The shards each process reads: `process_count` contiguous blocks of the split's F shards
    (process p: shards p·F//P .. (p+1)·F//P - 1), or None when there are fewer shards than processes."""
    num_shards = int(split_info(data_dir, split)["num_shards"])
    if num_shards < process_count:
        return None
    return [range(p * num_shards // process_count, (p + 1) * num_shards // process_count) for p in range(process_count)]


def _examples_in_process(total: int, process_index: int, process_count: int) -> int:
    """Examples i in 0..total-1 with i % process_count == process_index."""
    return max(0, (total - process_index + process_count - 1) // process_count)


def _spec_keeps_explicitly(pp_spec: str) -> bool:
    return any(name == "keep" for name, _, _ in ops.parse_spec(pp_spec))


def _finalize(pp_spec: str):
    """After pp: drop the per-example seed, and string tensors unless the spec chose its keys with keep()."""
    drop_strings = not _spec_keeps_explicitly(pp_spec)

    def finalize(example):
        return {
            k: v
            for k, v in example.items()
            if k != ops.RNG_KEY and not (drop_strings and v.dtype == tf.string)
        }

    return finalize


@contextlib.contextmanager
def _without_global_seed():
    """Build datasets with TensorFlow's global seed cleared.

    tf.data derives a shuffle's seeds from (global seed, op seed) once a global seed is set (e.g. by
    `keras.utils.set_random_seed`), which would make the stream depend on global state, and fails
    outright for a global seed of 0 with a tensor op seed. The stream must be a function of the run
    seed and the position only.
    """
    from tensorflow.python.eager import context

    previous = context.global_seed()
    if previous is None:
        yield
        return
    context.set_global_seed(None)
    try:
        yield
    finally:
        context.set_global_seed(previous)


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    options.autotune.enabled = True
    return options


def train_dataset(
    data_dir,
    split: str,
    pp_spec: str,
    batch_size: int,
    *,
    seed: int = 0,
    start_step: int = 0,
    shuffle_buffer: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    cache: bool | None = None,
) -> tf.data.Dataset:
    """An infinite, deterministic stream of training batches.

    Args:
      data_dir: a folder made by `funmatch prepare`.
      split: split name in its card.
      pp_spec: preprocessing spec (see `funmatch.data.ops`), applied per example.
      batch_size: examples per batch on this process.
      seed: run seed; the whole stream is a function of it.
      start_step: first batch to yield; batches equal those of a run from 0 at the same step.
      shuffle_buffer: default: the whole (per-process) split, capped at 50,000. When the buffer covers
        the split, each epoch is a uniform shuffle of it; when it does not (Food101, ImageNet), each epoch
        reads the shards in its own seeded order, interleaved record by record, into the buffer, so that
        the buffer's window differs between epochs (and `prepare` already wrote the records in a random
        order, so a window never holds a few classes only).
      process_index, process_count: this host's share of the split (defaults: jax's, else 0/1).
      cache: keep the undecoded records in memory after the first epoch (default: when the buffer covers
        the split; a split larger than the buffer is streamed from its files every epoch).

    Returns:
      tf.data.Dataset of dicts of batched tensors `[batch_size, ...]` with the keys the pp spec
      produces (string tensors dropped unless kept with `keep(...)`).
    """
    if batch_size < 1:
        raise FunmatchError(f"batch_size must be >= 1, got {batch_size}")
    if start_step < 0:
        raise FunmatchError(f"start_step must be >= 0, got {start_step}")
    process_index, process_count = _process_defaults(process_index, process_count)
    blocks = file_blocks(data_dir, split, process_count)
    block = None if blocks is None else blocks[process_index]
    if block is None:
        local_count = _examples_in_process(num_examples(data_dir, split), process_index, process_count)
    else:
        local_count = sum(shard_lengths(data_dir, split)[i] for i in block)
    if local_count == 0:
        raise FunmatchError(f"{data_dir}: split {split!r} has no examples for process {process_index} of {process_count}")
    buffer = shuffle_buffer or min(local_count, MAX_DEFAULT_SHUFFLE_BUFFER)
    preprocess, batch_fn = ops.get_split_preprocess_fns(pp_spec)
    finalize = _finalize(pp_spec)

    records = read_records(data_dir, split, block)
    windowed = buffer < local_count  # the buffer sees a window of the split: interleave shards per epoch
    if not windowed:
        if block is None:
            records = records.shard(process_count, process_index)
        if cache is None or cache:
            records = records.cache()

    start_position = start_step * batch_size
    start_epoch, start_offset = divmod(start_position, local_count)
    seed_tensor = tf.constant(seed, tf.int64)

    paths = shard_paths(data_dir, split, int(split_info(data_dir, split)["num_shards"]))
    if block is not None:
        paths = [paths[i] for i in block]

    def one_epoch(epoch):
        epoch_seed = seed_tensor * _EPOCH_SEED_MULTIPLIER + epoch
        if not windowed:
            return records.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        # This epoch's shard order, read record by record from up to 16 shards at once.
        files = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=epoch_seed,
                                                                  reshuffle_each_iteration=False)
        interleaved = files.interleave(lambda path: tf.data.TFRecordDataset(path, buffer_size=1 << 20),
                                       cycle_length=min(len(paths), 16), block_length=1,
                                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        interleaved = interleaved.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if block is None:
            interleaved = interleaved.shard(process_count, process_index)
        return interleaved.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)

    with _without_global_seed():
        stream = tf.data.Dataset.range(start_epoch, tf.int64.max).flat_map(one_epoch)
    stream = stream.skip(start_offset)  # undecoded records: cheap
    positions = tf.data.Dataset.counter(start_position, dtype=tf.int64)

    def seed_and_preprocess(example, position):
        # Unique over processes: process p owns the global stream positions p, p + count, ...
        global_position = position * process_count + process_index
        return finalize(preprocess({**example, ops.RNG_KEY: tf.stack([seed_tensor, global_position])}))

    stream = tf.data.Dataset.zip(stream, positions)
    stream = stream.map(seed_and_preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    stream = _apply_batch_fn(stream.batch(batch_size, drop_remainder=True), batch_fn).prefetch(tf.data.AUTOTUNE)
    return stream.with_options(_options())


def _apply_batch_fn(stream: tf.data.Dataset, batch_fn) -> tf.data.Dataset:
    """The spec's trailing batchable ops (value_range, keep, ...), once per batch; `_mask` is kept."""
    if batch_fn is None:
        return stream

    def apply(batch):
        out = batch_fn({k: v for k, v in batch.items() if k != MASK_KEY})
        return {**out, MASK_KEY: batch[MASK_KEY]} if MASK_KEY in batch else out

    return stream.map(apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def eval_dataset(
    data_dir,
    split: str,
    pp_spec: str,
    batch_size: int,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    stride: int = 1,
    by_file: bool = False,
) -> tf.data.Dataset:
    """A finite pass over `split` (over the examples whose index is a multiple of `stride`): every
    example exactly once over the processes, in index order per process.

    Processes share the examples record by record (process p: i % process_count == p), or, with `by_file`
    and at least as many shards as processes, by shard block (`file_blocks`: each process reads only its
    own files). All processes yield the same number of batches (that of the process with the most
    examples), each of exactly `batch_size`; padding examples are zeros with `_mask` 0.

    Returns:
      tf.data.Dataset of dicts of batched tensors with the pp spec's keys plus `_mask` float32 [B].
    """
    if batch_size < 1:
        raise FunmatchError(f"batch_size must be >= 1, got {batch_size}")
    if stride < 1:
        raise FunmatchError(f"stride must be >= 1, got {stride}")
    process_index, process_count = _process_defaults(process_index, process_count)
    total = num_examples(data_dir, split)
    if total == 0:
        raise FunmatchError(f"{data_dir}: split {split!r} is empty")
    blocks = file_blocks(data_dir, split, process_count) if by_file else None
    if blocks is None:
        # Examples i with i % stride == 0, dealt out in turn: process p keeps i % (stride·P) == stride·p.
        local_count = _examples_in_process(total, stride * process_index, stride * process_count)
        max_local = _examples_in_process(total, 0, stride * process_count)
        everything = read_records(data_dir, split)
        mine = everything.shard(stride * process_count, stride * process_index)
    else:
        starts = np.concatenate([[0], np.cumsum(shard_lengths(data_dir, split))])

        def in_block(block):  # indices starts[block.start] .. starts[block.stop] - 1 that are multiples of stride
            return int(-(-starts[block.stop] // stride) - -(-starts[block.start] // stride))

        local_count = in_block(blocks[process_index])
        max_local = max(in_block(block) for block in blocks)
        everything = read_records(data_dir, split, blocks[process_index])
        mine = everything if stride == 1 else everything.filter(lambda r: r["index"] % stride == 0)
    num_batches = -(-max_local // batch_size)
    padding = num_batches * batch_size - local_count

    preprocess, batch_fn = ops.get_split_preprocess_fns(pp_spec)
    finalize = _finalize(pp_spec)

    def real(example):
        return {**finalize(preprocess(example)), MASK_KEY: tf.constant(1.0, tf.float32)}

    def fake(example):
        # A zeroed copy of the first example, so padded entries have valid shapes and dtypes.
        return {**{k: tf.zeros_like(v) for k, v in finalize(preprocess(example)).items()},
                MASK_KEY: tf.constant(0.0, tf.float32)}

    stream = mine.map(real, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if padding:
        stream = stream.concatenate(everything.take(1).map(fake).repeat(padding))
    stream = _apply_batch_fn(stream.batch(batch_size, drop_remainder=True), batch_fn).prefetch(tf.data.AUTOTUNE)
    return stream.with_options(_options())


__all__ = ["MASK_KEY", "eval_dataset", "file_blocks", "num_examples", "train_dataset"]
