"""Images without labels for distillation: function matching never reads a label, so images nobody labelled
teach the student as well as labelled ones (the case distillation is for: few labels, many images).

    add_unlabeled("data/eurosat", "folder:photos", "data/eurosat_fm")

writes a prepared dataset that holds every split of `data_dir` unchanged (shards hard-linked, or copied
across file systems) plus one more split, `train_and_unlabeled` (`UNION_SPLIT`): the labelled training
images and the unlabelled ones together, in a seeded random order, unlabelled records with label -1.
Distil on it with `train_split=train_and_unlabeled` (`funmatch distill --unlabeled SOURCE` does all of
this); label training keeps reading `train`. Stored teacher targets are made for the union split like
for any other.

The source is a folder of images (every image file below it, in natural order; sub-folders and class
names are ignored) or a folder written by `funmatch prepare` (the records of its `train` split; its
labels are dropped). `ratio` is the mix: unlabelled images per labelled one in the stream (0: all of
them; r > 0: the first round(r · N_labelled) of a seeded permutation).

Streaming: no image is held in memory. Each labelled record and each unlabelled image (encoded by
`prepare`'s `encode_image` on a few threads) goes to a random temporary bucket file and the buckets are
then permuted one at a time into the new shards (`prepare`'s two-pass external shuffle), so memory is
bounded by one bucket, whatever the number of images.

Near-duplicates of the evaluation images are refused (those splits judge the student): an unlabelled
image is the same as a validation or test image when its perceptual hash (`image_signature`: the signs
of the 8 × 8 lowest 2-D DCT frequencies of a 32 × 32 grayscale thumbnail, against their median) differs in
at most `HASH_DISTANCE` of 64 bits and its 8 × 8 grayscale thumbnail is within `THUMBNAIL_RMSE` grey levels
(root mean square). A re-encoded JPEG, a PNG copy and a resized copy are caught; an almost uniform image
(grey-level deviation below `FLAT_STD`) has no reliable hash and is refused only as a byte-identical copy
(two such images cannot be told apart from their thumbnails either).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import itertools
import os
import pathlib
import shutil
from typing import Any, Iterator

import numpy as np

from funmatch import outputs
from funmatch.errors import FunmatchError

UNION_SPLIT = "train_and_unlabeled"
UNLABELED = -1
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Near-duplicate rule, measured on the 1,500 eurosat_mini validation and test images (1,197 not uniform):
# copies re-encoded as JPEG at quality 75, as PNG, resized by 1/2 or 3/2 are all caught, at quality 40
# 99.1 %; none of the 5,000 other EuroSAT images (the demo's unlabelled set and train) is refused (the
# closest unrelated pairs within 8 bits are 15 grey levels apart).
HASH_DISTANCE = 6
THUMBNAIL_RMSE = 4.0
FLAT_STD = 4.0
_HASH_PIECES = 7  # HASH_DISTANCE + 1 pieces: two hashes within the distance agree on at least one piece
_THUMB = 32
_K = np.arange(_THUMB)
_DCT = np.sqrt(2 / _THUMB) * np.cos(np.pi * (2 * _K[None, :] + 1) * _K[:, None] / (2 * _THUMB))
_DCT[0] /= np.sqrt(2)


def bit_counts(values: np.ndarray) -> np.ndarray:
    """The number of set bits of each uint64 in `values` (numpy 2's `np.bitwise_count`, which numpy
    1.26 lacks)."""
    octets = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8).reshape(-1, 8)
    return np.unpackbits(octets, axis=1).sum(axis=1, dtype=np.int64)


def image_signature(encoded: bytes) -> tuple[int, np.ndarray]:
    """(64-bit perceptual hash, 8 x 8 grayscale thumbnail as float32 [64]) of an encoded image.

    The hash's bits are the 8 x 8 lowest DCT-II frequencies of a 32 x 32 grayscale thumbnail, set where the
    coefficient exceeds their median (DC left out of the median). JPEGs are decoded at a reduced size
    (Pillow's draft mode), so a large image costs little more than a small one.
    """
    from PIL import Image

    image = Image.open(io.BytesIO(encoded))
    image.draft("L", (2 * _THUMB, 2 * _THUMB))
    gray = np.asarray(image.convert("L").resize((_THUMB, _THUMB), Image.Resampling.BILINEAR), np.float64)
    coefficients = (_DCT @ gray @ _DCT.T)[:8, :8].ravel()
    bits = np.packbits(coefficients > np.median(coefficients[1:]))
    thumbnail = gray.reshape(8, 4, 8, 4).mean(axis=(1, 3)).ravel().astype(np.float32)
    return int(bits.view(">u8")[0]), thumbnail


class _Judged:
    """Signatures of the evaluation images, indexed for near-duplicate look-ups (multi-index hashing:
    the 64 bits in `_HASH_PIECES` pieces, one table per piece)."""

    def __init__(self):
        self.hashes, self.thumbnails, self.names = [], [], []
        self.exact: dict[bytes, str] = {}  # SHA-1 of the bytes: byte-identical copies, uniform images included

    def add(self, encoded: bytes, name: str) -> None:
        self.exact[hashlib.sha1(encoded).digest()] = name
        value, thumbnail = image_signature(encoded)
        if thumbnail.std() >= FLAT_STD:
            self.hashes.append(value)
            self.thumbnails.append(thumbnail)
            self.names.append(name)

    def build(self) -> None:
        self.hashes = np.array(self.hashes, dtype=np.uint64)
        self.thumbnails = np.stack(self.thumbnails) if self.thumbnails else np.zeros((0, 64), np.float32)
        bounds = np.linspace(0, 64, _HASH_PIECES + 1).round().astype(int)
        self.pieces = [(int(lo), (1 << int(hi - lo)) - 1) for lo, hi in zip(bounds[:-1], bounds[1:])]
        self.tables = []
        for shift, mask in self.pieces:
            keys = (self.hashes >> np.uint64(shift)) & np.uint64(mask)
            order = np.argsort(keys, kind="stable")
            unique, starts = np.unique(keys[order], return_index=True)
            ends = np.append(starts[1:], len(order))
            self.tables.append({int(k): order[a:b] for k, a, b in zip(unique, starts, ends)})

    def match(self, encoded: bytes) -> str | None:
        """The name of an evaluation image that `encoded` nearly duplicates, else None."""
        if (name := self.exact.get(hashlib.sha1(encoded).digest())) is not None:
            return name
        if not len(self.hashes):
            return None
        value, thumbnail = image_signature(encoded)
        if thumbnail.std() < FLAT_STD:
            return None
        found = [table.get((value >> shift) & mask) for table, (shift, mask) in zip(self.tables, self.pieces)]
        found = [c for c in found if c is not None]
        if not found:
            return None
        candidates = np.unique(np.concatenate(found))
        close = candidates[bit_counts(self.hashes[candidates] ^ np.uint64(value)) <= HASH_DISTANCE]
        if len(close):
            rmse = np.sqrt(((self.thumbnails[close] - thumbnail) ** 2).mean(axis=1))
            if rmse.min() <= THUMBNAIL_RMSE:
                return self.names[int(close[int(np.argmin(rmse))])]
        return None


def _records(data_dir, split: str, info: dict) -> Iterator[dict]:
    """The records of a split, parsed, one at a time (numpy values)."""
    import tensorflow as tf

    from funmatch.data import tfrecords

    files = tfrecords.shard_paths(data_dir, split, info["num_shards"])
    dataset = tf.data.TFRecordDataset(files, buffer_size=1 << 20).map(tfrecords.parse_example)
    return dataset.as_numpy_iterator()


def _unlabeled_source(source: str) -> tuple[int, Any, str]:
    """(number of images, what opens them, what they are) of `source`: "folder:PATH", a prepared folder
    or a plain folder path. `opens` is a list of files, or the prepared folder's (path, card)."""
    from funmatch.data import tfrecords
    from funmatch.data.sources import natural_key

    path = pathlib.Path(source.removeprefix("folder:"))
    if not path.is_dir():
        raise FunmatchError(f"--unlabeled {source}: no such folder")
    if (path / tfrecords.CARD_NAME).is_file():
        card = tfrecords.load_card(path)
        info = tfrecords.split_info(path, "train", card)
        tfrecords.verify_split(path, "train", card)
        return int(info["num_examples"]), (path, info), f"the train split of {path} (labels dropped)"
    files = sorted((p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES),
                   key=lambda p: natural_key(p.relative_to(path).as_posix()))
    if not files:
        raise FunmatchError(f"--unlabeled {source}: no image files ({', '.join(_IMAGE_SUFFIXES)}) in {path}")
    return len(files), files, f"{len(files)} image files below {path}"


def source_fingerprint(source: str, opens=None) -> str:
    """SHA-256 of what `source` holds, not where: a prepared folder's card, or a folder's image files by
    relative path and size (`opens`: `_unlabeled_source`'s, when already listed)."""
    from funmatch.data import tfrecords

    if opens is None:
        opens = _unlabeled_source(source)[1]
    if isinstance(opens, tuple):
        return hashlib.sha256((opens[0] / tfrecords.CARD_NAME).read_bytes()).hexdigest()
    root = pathlib.Path(source.removeprefix("folder:"))
    digest = hashlib.sha256()
    for file in opens:
        digest.update(f"{file.relative_to(root).as_posix()}\t{file.stat().st_size}\n".encode())
    return digest.hexdigest()


def _unlabeled_images(source: str, opens, keep: np.ndarray, *, shorter_side, jpeg_quality,
                      workers: int) -> Iterator[tuple[bytes, str]]:
    """(encoded image, its name) of the kept images of `source`, in source order, a chunk at a time."""
    from funmatch.data.prepare import BadImage, encode_image

    if isinstance(opens, tuple):
        path, info = opens
        for number, record in enumerate(_records(path, "train", info)):
            if keep[number]:
                yield bytes(record["image"]), f"record {number} of {path}"
        return

    def encode(file):
        try:
            return encode_image(file.read_bytes(), shorter_side, jpeg_quality)[0], file
        except (BadImage, OSError):
            return None, file

    kept = (file for number, file in enumerate(opens) if keep[number])
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        while chunk := list(itertools.islice(kept, 16 * workers)):
            for encoded, file in pool.map(encode, chunk):
                if encoded is None:
                    raise FunmatchError(f"--unlabeled {source}: {file} is not a readable image")
                yield encoded, str(file)


def _link_or_copy(src: pathlib.Path, dst: pathlib.Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def add_unlabeled(data_dir, source: str, out_dir, *, ratio: float = 0.0, seed: int = 0,
                  examples_per_shard: int | None = None, workers: int | None = None) -> dict[str, Any]:
    """Writes `out_dir`: `data_dir`'s splits + `UNION_SPLIT` (its train split and the images of `source`).

    Returns the new dataset card. Re-running with the same arguments on an existing `out_dir` returns
    its card without work; the folder appears complete or not at all (written aside, then renamed).
    `workers`: threads that encode the images of a folder (default: CPU count, at most 8).
    """
    from funmatch.data import tfrecords
    from funmatch.data.prepare import _Buckets  # noqa: PLC2701 (the same external shuffle as prepare's)

    if not ratio >= 0:
        raise FunmatchError(f"unlabeled_ratio must be >= 0 (0: every unlabelled image), got {ratio}")
    data_dir, out_dir = pathlib.Path(data_dir), pathlib.Path(out_dir)
    card = tfrecords.load_card(data_dir)
    tfrecords.check_splits(card, data_dir, ["train"])
    # What the union is made of, by content (a copied folder, or the package's images after a reinstall
    # elsewhere, is the same data): the labelled dataset's card and the unlabelled source's fingerprint.
    card_sha256 = hashlib.sha256((data_dir / tfrecords.CARD_NAME).read_bytes()).hexdigest()
    settings = {"data_card_sha256": card_sha256, "ratio": float(ratio), "seed": int(seed)}
    if (out_dir / tfrecords.CARD_NAME).is_file():
        existing = tfrecords.load_card(out_dir)
        by_path = {"source": os.path.abspath(source.removeprefix("folder:")), **settings}  # folders written before
        if (existing.get("unlabeled") or {}).get("identity") in (
                by_path, {"source_sha256": source_fingerprint(source), **settings}):
            return existing
        raise FunmatchError(f"{out_dir}: holds another dataset; choose a new folder or remove it")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FunmatchError(f"{out_dir}: exists and holds no dataset card (files funmatch did not write?); "
                            "name a new folder for the images with and without labels")

    train_info = card["splits"]["train"]
    tfrecords.verify_split(data_dir, "train", card)
    options = card.get("options") or {}
    count, opens, what = _unlabeled_source(source)
    identity = {"source_sha256": source_fingerprint(source, opens), **settings}
    rng = np.random.default_rng([int(seed), 0x0A1B])
    keep = np.ones(count, dtype=bool)
    if ratio > 0:
        keep[:] = False
        keep[rng.permutation(count)[:min(count, round(ratio * int(train_info["num_examples"])))]] = True
    judged = _Judged()
    for split in card["splits"]:
        if split in ("validation", "test", "val"):
            tfrecords.verify_split(data_dir, split, card)
            for record in _records(data_dir, split, card["splits"][split]):
                judged.add(bytes(record["image"]), f"{record['id'].decode()} of the {split!r} split")
    judged.build()

    temporary = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    buckets = None
    try:
        for split, info in card["splits"].items():
            for shard in tfrecords.shard_paths(data_dir, split, info["num_shards"]):
                _link_or_copy(pathlib.Path(shard), temporary / os.path.basename(shard))
        buckets = _Buckets(temporary, UNION_SPLIT, int(train_info["num_examples"]) + int(keep.sum()), rng)
        labelled = 0
        for record in _records(data_dir, "train", train_info):
            buckets.add(bytes(record["image"]), int(record["label"]), record["id"].decode())
            labelled += 1
        images = 0
        for encoded, name in _unlabeled_images(
                source, opens, keep, shorter_side=options.get("shorter_side"),
                jpeg_quality=int(options.get("jpeg_quality") or 95), workers=workers or min(os.cpu_count() or 1, 8)):
            twin = judged.match(encoded)
            if twin:
                raise FunmatchError(f"--unlabeled {source}: {name} is (nearly) the same image as {twin} of {data_dir}, "
                                    "which judges the student; remove it from the unlabelled images")
            buckets.add(encoded, UNLABELED, f"unlabeled/{images:07d}")
            images += 1
        writer = tfrecords.SplitWriter(temporary, UNION_SPLIT,
                                       examples_per_shard or int(options.get("examples_per_shard") or 1024))
        try:
            buckets.write_shuffled(writer)
        finally:
            num_shards = writer.close()
        new_card = dict(card)
        new_card["splits"] = {**card["splits"], UNION_SPLIT: {
            "num_examples": writer.num_examples, "num_shards": num_shards,
            "per_class_counts": list(train_info["per_class_counts"]),  # the labelled ones; the rest have none
            "labelled_examples": labelled, "unlabeled_examples": images,
            **writer.card_fields(),
            **({"image_size": train_info["image_size"]} if "image_size" in train_info else {}),
        }}
        new_card["unlabeled"] = {"split": UNION_SPLIT, "source": what, "images": images,
                                 "labelled": labelled, "ratio": ratio, "identity": identity}
        tfrecords.write_card(temporary, new_card)
        outputs.write_marker(temporary, "unlabeled")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        outputs.swap_in(temporary, out_dir)  # an empty folder there is replaced; nothing else reaches here
    except BaseException:
        if buckets is not None:
            buckets.remove()
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return new_card


__all__ = ["HASH_DISTANCE", "UNION_SPLIT", "UNLABELED", "add_unlabeled", "image_signature"]
