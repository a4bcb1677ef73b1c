"""TFRecord shards and the dataset card: the on-disk format between `prepare` and the pipelines.

Layout of a prepared dataset folder:

    DIR/<split>-00000-of-000NN.tfrecord   tf.train.Example records, in `index` order
    DIR/dataset.json                      the card (see `load_card`)

Each record holds `image` (bytes: an RGB JPEG), `label` (int64), `id` (bytes: a stable example
id such as the source file's relative path) and `index` (int64: 0..N-1, the example's position in
its split; used to key per-example caches such as teacher logits). Example i of a split lives in
shard i // examples_per_shard, so reading the shards in order gives the examples in index order.
Sizes always come from the card, never from file names.

The card also keeps each shard's record count, byte size and content digests (`shard_lengths`,
`shard_bytes`, `shard_sha256`: SHA-256 of the whole file, `shard_probe`: SHA-256 of its first and last
`PROBE_BYTES`), computed as each shard is finished. Resume positions and epoch figures are computed from
the counts, and stored targets are paired with records by position, so `read_records` checks the files
against the card once per process (`verify_split`: file sizes, the probe digests, then the record
headers, without decoding; about 32 KiB and 12 bytes per record read, not the split): a truncated,
replaced, hand-edited split, or a shard of another `prepare` (another shuffle seed, same size), stops the
run with one line naming the shard. `verify_split(..., full=True)` (`verify_dataset`) re-hashes every
byte against `shard_sha256`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import tensorflow as tf

from funmatch.errors import FunmatchError

CARD_NAME = "dataset.json"
_REQUIRED_CARD_FIELDS = ("name", "class_names", "num_classes", "splits")
_REQUIRED_SPLIT_FIELDS = ("num_examples", "num_shards", "per_class_counts")
# The start-up check hashes this many bytes at each end of a shard (`shard_probe`).
PROBE_BYTES = 16 << 10

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
        self.shard_lengths: list[int] = []  # records per shard, in shard order
        self.shard_bytes: list[int] = []  # file size per shard (after close)
        self.shard_sha256: list[str] = []  # SHA-256 of each finished shard file
        self.shard_probe: list[str] = []  # `probe_digest` of each finished shard file
        self._partial_paths: list[pathlib.Path] = []
        self._writer: tf.io.TFRecordWriter | None = None

    def write(self, image: bytes, label: int, example_id: str) -> int:
        """Appends one example; returns its index."""
        if self.num_examples % self.examples_per_shard == 0:
            self._close_current()
            path = self.directory / f"{self.split}-{len(self._partial_paths):05d}.partial"
            self._partial_paths.append(path)
            self._writer = tf.io.TFRecordWriter(str(path))
            self.shard_lengths.append(0)
        index = self.num_examples
        self._writer.write(serialize_example(image, label, example_id, index))
        self.num_examples += 1
        self.shard_lengths[-1] += 1
        return index

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            # Hashed as soon as it is finished (still in the page cache), never re-read from a cold disk.
            self.shard_sha256.append(file_sha256(self._partial_paths[-1]))
            self.shard_probe.append(probe_digest(self._partial_paths[-1]))

    def close(self) -> int:
        """Finishes the shards (renames them to their final names); returns the number of shards."""
        self._close_current()
        num_shards = len(self._partial_paths)
        self.shard_bytes = []
        for i, path in enumerate(self._partial_paths):
            final = self.directory / shard_name(self.split, i, num_shards)
            path.rename(final)
            self.shard_bytes.append(final.stat().st_size)
        return num_shards

    def card_fields(self) -> dict:
        """The per-shard figures of the split's card entry (after `close`)."""
        return {"shard_lengths": list(self.shard_lengths), "shard_bytes": list(self.shard_bytes),
                "shard_sha256": list(self.shard_sha256), "shard_probe": list(self.shard_probe)}


def file_sha256(path) -> str:
    """SHA-256 (hex) of a whole file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def probe_digest(path) -> str:
    """SHA-256 (hex) of a file's size, its first and its last `PROBE_BYTES` (all of it when smaller):
    a shard of another `prepare` of the same source (other records first and last) differs here."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    fd = os.open(path, os.O_RDONLY)
    try:
        digest.update(os.pread(fd, min(size, PROBE_BYTES), 0))
        if size > PROBE_BYTES:
            digest.update(os.pread(fd, min(size - PROBE_BYTES, PROBE_BYTES), max(PROBE_BYTES, size - PROBE_BYTES)))
    finally:
        os.close(fd)
    return digest.hexdigest()


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
        check_splits(card, data_dir, [split])
    return card["splits"][split]


def check_splits(card: dict, data_dir, splits) -> None:
    """FunmatchError naming the first of `splits` the card lacks, the splits it has, and the way out."""
    for split in splits:
        if split not in card["splits"]:
            hint = {"validation": "; re-run `funmatch prepare` with --val-fraction 0.1 to carve one from train",
                    "test": "; re-run `funmatch prepare` with --test-fraction 0.1 to carve one from train"}.get(split, "")
            raise FunmatchError(
                f"--data {data_dir}: no split {split!r} in {CARD_NAME} (it has: {', '.join(card['splits'])}){hint}"
            )


def count_records(path) -> int:
    """Records in a TFRecord file, from the 12-byte length headers alone: each header is read with one
    `pread` and the payload skipped (no buffered read-ahead: 12 bytes per record, not a buffer's worth).

    Raises FunmatchError naming the file when it ends inside a record (truncated).
    """
    import struct

    count, size = 0, os.path.getsize(path)
    unpack, pread = struct.Struct("<Q").unpack_from, os.pread
    fd = os.open(path, os.O_RDONLY)
    try:
        position = 0
        while position < size:
            header = pread(fd, 12, position)  # uint64 length + uint32 masked CRC of the length
            if len(header) < 12:
                raise FunmatchError(f"{path}: truncated inside the header of record {count} (re-run `funmatch prepare`)")
            position += 12 + unpack(header)[0] + 4
            if position > size:
                raise FunmatchError(f"{path}: truncated inside record {count} (re-run `funmatch prepare`)")
            count += 1
    finally:
        os.close(fd)
    return count


_VERIFIED: set = set()


def verify_split(data_dir, split: str, card: dict | None = None, *, full: bool = False) -> None:
    """Checks the records of `split` against its card: every shard present, of the recorded size,
    probe digest and record count, and the counts summing to `num_examples`. Cards written before the
    per-shard figures were kept are checked by counting records. Done once per process and card/shard
    state. `full`: also re-hash every shard against `shard_sha256` (reads the whole split)."""
    card = load_card(data_dir) if card is None else card
    info = split_info(data_dir, split, card)
    paths = shard_paths(data_dir, split, info["num_shards"])
    card_path = pathlib.Path(data_dir) / CARD_NAME
    try:
        state = (str(pathlib.Path(data_dir).resolve()), split, card_path.stat().st_mtime_ns,
                 tuple((s.st_size, s.st_mtime_ns, s.st_ino) for s in map(os.stat, paths)), full)
    except FileNotFoundError as error:
        raise FunmatchError(f"{error.filename}: shard listed in the dataset card is missing") from None
    if state in _VERIFIED:
        return
    where = f"{card_path} (split {split!r})"
    figures = {}
    for key in ("shard_lengths", "shard_bytes", "shard_probe", "shard_sha256"):
        if info.get(key) is not None:
            if len(info[key]) != len(paths):
                raise FunmatchError(f"{where}: {len(info[key])} {key} for {len(paths)} shards; re-run `funmatch prepare`")
            figures[key] = info[key]
    lengths, sizes = figures.get("shard_lengths"), figures.get("shard_bytes")
    if lengths is not None and sum(lengths) != int(info["num_examples"]):
        raise FunmatchError(
            f"{where}: num_examples is {info['num_examples']} but its shards hold {sum(lengths)} records "
            "(shard_lengths); the card was edited or is damaged: re-run `funmatch prepare`"
        )
    total = 0
    for i, path in enumerate(paths):
        if sizes is not None and os.path.getsize(path) != int(sizes[i]):
            raise FunmatchError(
                f"{path}: {os.path.getsize(path)} bytes, the dataset card says {sizes[i]} (truncated or replaced); "
                "re-run `funmatch prepare`"
            )
        count = count_records(path)
        if lengths is not None and count != int(lengths[i]):
            raise FunmatchError(f"{path}: holds {count} records, the dataset card says {lengths[i]}; re-run `funmatch prepare`")
        if "shard_probe" in figures and probe_digest(path) != figures["shard_probe"][i]:
            raise FunmatchError(
                f"{path}: not the shard the dataset card was written with (its content digest differs: "
                f"another `funmatch prepare`?); use the folder it came from or re-run `funmatch prepare`"
            )
        if full and "shard_sha256" in figures and file_sha256(path) != figures["shard_sha256"][i]:
            raise FunmatchError(f"{path}: content differs from the SHA-256 in the dataset card (damaged or replaced); "
                                "re-run `funmatch prepare`")
        total += count
    if total != int(info["num_examples"]):
        raise FunmatchError(
            f"{where}: num_examples is {info['num_examples']} but its shards hold {total} records; "
            "the card was edited or is damaged: re-run `funmatch prepare`"
        )
    _VERIFIED.add(state)


def verify_dataset(data_dir) -> dict[str, int]:
    """Re-hashes every shard of every split against the card (`verify_split(full=True)`); returns
    {split: shards checked}. FunmatchError naming the first shard that differs."""
    card = load_card(data_dir)
    for split in card["splits"]:
        verify_split(data_dir, split, card, full=True)
    return {split: int(info["num_shards"]) for split, info in card["splits"].items()}


def shard_lengths(data_dir, split: str, card: dict | None = None) -> list[int]:
    """Records per shard of `split`: the card's figures (checked by `verify_split`), or counted for a card
    written before they were kept."""
    card = load_card(data_dir) if card is None else card
    info = split_info(data_dir, split, card)
    if info.get("shard_lengths") is not None:
        return [int(n) for n in info["shard_lengths"]]
    return [count_records(p) for p in shard_paths(data_dir, split, info["num_shards"])]


def read_records(data_dir, split: str, shards: range | None = None) -> tf.data.Dataset:
    """The undecoded records of `split` (of its shards numbered in `shards` only, when given), in index
    order (deterministic), checked against the card once per process (`verify_split`).

    Yields dicts `{"image": string (JPEG bytes), "label": int64, "id": string, "index": int64}`.
    """
    info = split_info(data_dir, split)
    paths = shard_paths(data_dir, split, info["num_shards"])
    for path in paths:
        if not os.path.isfile(path):
            raise FunmatchError(f"{path}: shard listed in the dataset card is missing")
    verify_split(data_dir, split)
    if shards is not None:
        paths = [paths[i] for i in shards]
    records = tf.data.TFRecordDataset(paths, buffer_size=8 << 20)
    return records.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


__all__ = [
    "CARD_NAME",
    "FEATURES",
    "SplitWriter",
    "check_splits",
    "count_records",
    "file_sha256",
    "load_card",
    "parse_example",
    "probe_digest",
    "read_records",
    "serialize_example",
    "shard_name",
    "shard_lengths",
    "shard_paths",
    "split_info",
    "verify_dataset",
    "verify_split",
    "write_card",
]
