"""TFRecord shards and the dataset card: the on-disk format between `prepare` and the pipelines.

Layout of a prepared dataset folder:

    DIR/<split>-00000-of-000NN.tfrecord   tf.train.Example records, in `index` order
    DIR/dataset.json                      the card (see `load_card`)

Each record holds `image` (bytes: an RGB JPEG), `label` (int64), `id` (bytes: a stable example
id such as the source file's relative path) and `index` (int64: 0..N-1, the example's position in
its split; used to key per-example caches such as teacher logits). Example i of a split lives in
shard i // examples_per_shard, so reading the shards in order gives the examples in index order.
Sizes always come from the card, never from file names.
"""

from __future__ import annotations

import json
import os
import pathlib

import tensorflow as tf

from funmatch.errors import FunmatchError

CARD_NAME = "dataset.json"
_REQUIRED_CARD_FIELDS = ("name", "class_names", "num_classes", "splits")
_REQUIRED_SPLIT_FIELDS = ("num_examples", "num_shards", "per_class_counts")

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "id": tf.io.FixedLenFeature([], tf.string),
    "index": tf.io.FixedLenFeature([], tf.int64),
}


def shard_name(split: str, shard: int, num_shards: int) -> str:
    """`<split>-00000-of-00004.tfrecord` (five digits each)."""
    return f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord"


def shard_paths(data_dir, split: str, num_shards: int) -> list[str]:
    """Paths of all shards of `split`, in index order."""
    return [os.path.join(os.fspath(data_dir), shard_name(split, i, num_shards)) for i in range(num_shards)]


def serialize_example(image: bytes, label: int, example_id: str | bytes, index: int) -> bytes:
    """One serialized tf.train.Example with the four record features."""
    if isinstance(example_id, str):
        example_id = example_id.encode("utf-8")
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[example_id])),
        "index": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(index)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialized record into `{"image": string, "label": int64, "id": string, "index": int64}`."""
    return tf.io.parse_single_example(serialized, FEATURES)


class SplitWriter:
    """Writes the records of one split into shards whose total count is known only at the end.

    Shards are written as `<split>-00000.partial` and renamed to `<split>-00000-of-000NN.tfrecord`
    by `close()`, because skipped bad files and streamed sources (tfds, TFRecords) make the count
    unknown up front. Indices are assigned here, 0..N-1 in write order.
    """

    def __init__(self, directory, split: str, examples_per_shard: int):
        if examples_per_shard < 1:
            raise FunmatchError(f"examples per shard must be >= 1, got {examples_per_shard}")
        self.directory = pathlib.Path(directory)
        self.split = split
        self.examples_per_shard = examples_per_shard
        self.num_examples = 0
        self._partial_paths: list[pathlib.Path] = []
        self._writer: tf.io.TFRecordWriter | None = None

    def write(self, image: bytes, label: int, example_id: str) -> int:
        """Appends one example; returns its index."""
        if self.num_examples % self.examples_per_shard == 0:
            self._close_current()
            path = self.directory / f"{self.split}-{len(self._partial_paths):05d}.partial"
            self._partial_paths.append(path)
            self._writer = tf.io.TFRecordWriter(str(path))
        index = self.num_examples
        self._writer.write(serialize_example(image, label, example_id, index))
        self.num_examples += 1
        return index

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> int:
        """Finishes the shards (renames them to their final names); returns the number of shards."""
        self._close_current()
        num_shards = len(self._partial_paths)
        for i, path in enumerate(self._partial_paths):
            path.rename(self.directory / shard_name(self.split, i, num_shards))
        return num_shards


def write_card(data_dir, card: dict) -> None:
    """Writes `card` as DIR/dataset.json (indented, keys in insertion order)."""
    path = pathlib.Path(data_dir) / CARD_NAME
    path.write_text(json.dumps(card, indent=2) + "\n")


def load_card(data_dir) -> dict:
    """Reads and checks DIR/dataset.json.

    The card holds: `name`, `class_names` (index order), `num_classes`, `splits` ({split:
    {num_examples, per_class_counts, num_shards, image_size}}), `source`, `options`,
    `funmatch_version` and `skipped` (bad files left out with --skip-bad).
    Raises FunmatchError naming the path when it is missing or invalid.
    """
    path = pathlib.Path(data_dir) / CARD_NAME
    if not path.is_file():
        raise FunmatchError(f"{path}: dataset card not found (is {data_dir} a folder made by `funmatch prepare`?)")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FunmatchError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(card, dict):
        raise FunmatchError(f"{path}: expected a JSON object")
    for field in _REQUIRED_CARD_FIELDS:
        if field not in card:
            raise FunmatchError(f"{path}: missing field {field!r}")
    if len(card["class_names"]) != card["num_classes"]:
        raise FunmatchError(f"{path}: num_classes is {card['num_classes']} but class_names has {len(card['class_names'])}")
    if not isinstance(card["splits"], dict):
        raise FunmatchError(f"{path}: field 'splits' must be an object")
    for split, info in card["splits"].items():
        for field in _REQUIRED_SPLIT_FIELDS:
            if field not in info:
                raise FunmatchError(f"{path}: split {split!r} is missing field {field!r}")
    return card


def split_info(data_dir, split: str, card: dict | None = None) -> dict:
    """The card's entry for `split`; FunmatchError naming the available splits if absent."""
    card = load_card(data_dir) if card is None else card
    if split not in card["splits"]:
        raise FunmatchError(
            f"{pathlib.Path(data_dir) / CARD_NAME}: no split {split!r} (available: {', '.join(card['splits'])})"
        )
    return card["splits"][split]


def read_records(data_dir, split: str) -> tf.data.Dataset:
    """The undecoded records of `split`, in index order (deterministic).

    Yields dicts `{"image": string (JPEG bytes), "label": int64, "id": string, "index": int64}`.
    """
    info = split_info(data_dir, split)
    paths = shard_paths(data_dir, split, info["num_shards"])
    for path in paths:
        if not os.path.isfile(path):
            raise FunmatchError(f"{path}: shard listed in the dataset card is missing")
    records = tf.data.TFRecordDataset(paths, buffer_size=8 << 20)
    return records.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


__all__ = [
    "CARD_NAME",
    "FEATURES",
    "SplitWriter",
    "load_card",
    "parse_example",
    "read_records",
    "serialize_example",
    "shard_name",
    "shard_paths",
    "split_info",
    "write_card",
]
