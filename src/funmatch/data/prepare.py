"""`funmatch prepare SOURCE --out DIR`: any source -> TFRecord shards of RGB JPEGs + dataset card.

    funmatch prepare folder:src/funmatch/assets/eurosat_mini --out /tmp/eurosat_mini
    funmatch prepare tfds:oxford_iiit_pet --out data/pets --shorter-side 160
    funmatch prepare folder:photos --val-fraction 0.1 --test-fraction 0.1 --out data/photos

Every image is decoded with Pillow and converted to RGB (grayscale, RGBA/LA/palette with
transparency composited on white, CMYK, 16-bit, first frame of an animation); with
`--shorter-side N` it is downscaled (Lanczos, antialiased; never upscaled) and re-encoded as
JPEG at `--jpeg-quality`. A JPEG that is already RGB, upright and small enough is copied byte
for byte (no generation loss). Files that cannot be decoded stop the run with one error listing
them, unless `--skip-bad`, which leaves them out and records them in the card.

Records are written in a seeded random order (`--shuffle-seed`, default 0; `--keep-order` writes them
in source order), so that a class-sorted source (an ImageFolder, class by class) does not feed training
batches from a sliding window of classes when the split is larger than the shuffle buffer. A listed
source (folder) is permuted in memory; a streamed one (tfds, TFRecords) is spread over temporary
bucket files at random and each bucket is permuted as it is written.

The output is written to a hidden sibling folder and renamed to DIR only when complete, so an
interrupted or failed run never leaves a DIR that looks complete; the hidden folders of killed runs are
removed by the next run. Files of a folder source that are not images (dangling symlinks, other
extensions, sub-folders) are listed in the card's `ignored`; a class left without images (all of them
undecodable, with `--skip-bad`) is an error. A source without a validation split gets none (nothing is
carved silently): `prepare` says so, and training refuses the data naming `--val-fraction`, which carves
that fraction of every class from train, deterministically (by file-name hash).
"""

from __future__ import annotations

import concurrent.futures
import io
import itertools
import os
import pathlib
import shutil
import zlib
from typing import Any

import numpy as np

from funmatch import __version__, outputs
from funmatch.data import sources as sources_lib
from funmatch.errors import FunmatchError

DEFAULT_EXAMPLES_PER_SHARD = 1024
MAX_LISTED_BAD_FILES = 20
MAX_LISTED_IGNORED_FILES = 1000
# Streamed sources are shuffled through temporary bucket files of about this many examples each.
EXAMPLES_PER_BUCKET = 5_000
MAX_BUCKETS = 512


class BadImage(Exception):
    """An input that cannot be decoded as an image."""


def _to_rgb(image):
    """A Pillow image in any mode -> RGB (alpha composited on white; 16-bit scaled to 8-bit)."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit (or wider) data: scale the full range down to 8 bits instead of clipping at 255.
        if values.max(initial=0) > 255:
            values = values / 257.0
        image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def encode_image(data: Any, shorter_side: int | None, jpeg_quality: int) -> tuple[bytes, int, int]:
    """Encoded bytes or a uint8 array -> (RGB JPEG bytes, height, width). Raises BadImage."""
    from PIL import Image, ImageOps

    if isinstance(data, np.ndarray):
        array = data[..., 0] if data.ndim == 3 and data.shape[-1] == 1 else data
        image, original = Image.fromarray(array.astype(np.uint8)), None
    else:
        original = bytes(data)
        if not original:
            raise BadImage("empty file")
        try:
            image = Image.open(io.BytesIO(original))
            image.seek(0)  # first frame of an animation
            image.load()
        except Exception as error:  # Pillow raises many types for corrupt data
            raise BadImage(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": "))
    try:
        source_format = image.format
        # Photos from cameras may be stored sideways with an EXIF orientation tag; store them upright.
        rotated = image.getexif().get(0x0112, 1) not in (0, 1)
        rgb = _to_rgb(ImageOps.exif_transpose(image) if rotated else image)
        width, height = rgb.size
        needs_resize = shorter_side is not None and min(width, height) > shorter_side
        if original is not None and source_format == "JPEG" and image.mode == "RGB" and not rotated and not needs_resize:
            return original, height, width
        if needs_resize:
            # Shorter side exactly `shorter_side`, longer side rounded (at least `shorter_side`).
            scale = shorter_side / min(width, height)
            if width <= height:
                width, height = shorter_side, max(shorter_side, round(height * scale))
            else:
                width, height = max(shorter_side, round(width * scale)), shorter_side
            rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=jpeg_quality)
        return buffer.getvalue(), height, width
    except BadImage:
        raise
    except Exception as error:
        raise BadImage(f"{type(error).__name__}: {error}") from None


def _size_stats(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "max": 0, "mean": 0.0}
    return {"min": int(min(values)), "max": int(max(values)), "mean": round(float(np.mean(values)), 2)}


def source_inputs(source: str, tfds_data_dir: str | None = None) -> dict[str, object]:
    """What `source` reads, as {name: path} for the overwrite guard (`funmatch.outputs.check_output`)."""
    kind, _, rest = source.partition(":")
    if kind == "folder" and rest:
        return {"SOURCE": rest}
    if kind == "tfrecord" and rest:
        import glob

        return {f"SOURCE ({name})": name for name in glob.glob(os.path.expanduser(rest))}
    if kind == "tfds" and tfds_data_dir:
        return {"--tfds-data-dir": tfds_data_dir}
    return {}


def prepare(
    source: str,
    out_dir,
    *,
    splits: list[str] | None = None,
    shorter_side: int | None = None,
    jpeg_quality: int = 95,
    examples_per_shard: int = DEFAULT_EXAMPLES_PER_SHARD,
    workers: int | None = None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    skip_bad: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    name: str | None = None,
    tfds_data_dir: str | None = None,
    shuffle_seed: int | None = 0,
) -> dict:
    """Converts `source` into TFRecord shards + dataset card under `out_dir`; returns the card.

    Args:
      source: `tfds:NAME[:OUT=SPEC,...]`, `folder:PATH` or `tfrecord:GLOB`.
      out_dir: output folder; must not exist or be empty unless `overwrite`.
      splits: output splits to write (default: all the source has).
      shorter_side: downscale so the shorter side is at most this many pixels.
      jpeg_quality: quality of re-encoded JPEGs.
      examples_per_shard: records per TFRecord file.
      workers: threads that decode/resize/encode (default: CPU count, at most 8).
      val_fraction, test_fraction: carve validation/test deterministically from a folder's train images.
      skip_bad: leave undecodable files out (recorded in the card) instead of failing.
      overwrite: replace a non-empty `out_dir`.
      progress: show a tqdm progress bar per split.
      name: dataset name in the card (default: from the source).
      tfds_data_dir: tfds data folder (default: tfds' own, or $TFDS_DATA_DIR).
      shuffle_seed: records are written in a random order drawn from this seed; None: source order.
    """
    out_dir = pathlib.Path(out_dir).expanduser().absolute()
    outputs.check_output(out_dir, overwrite=overwrite, inputs=source_inputs(source, tfds_data_dir))
    if shorter_side is not None and shorter_side < 1:
        raise FunmatchError(f"--shorter-side must be >= 1, got {shorter_side}")
    if not 1 <= jpeg_quality <= 100:
        raise FunmatchError(f"--jpeg-quality must be in 1..100, got {jpeg_quality}")
    if examples_per_shard < 1:
        raise FunmatchError(f"--examples-per-shard must be >= 1, got {examples_per_shard}")
    workers = workers or min(os.cpu_count() or 1, 8)
    opened = sources_lib.open_source(
        source, splits=splits, val_fraction=val_fraction, test_fraction=test_fraction, tfds_data_dir=tfds_data_dir
    )

    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        outputs.remove_leftovers(out_dir)
        temporary = outputs.temporary_name(out_dir)
        if temporary.exists():
            shutil.rmtree(temporary)
        temporary.mkdir()
    except OSError as error:
        raise FunmatchError(f"--out {out_dir}: cannot write there ({error.strerror or error})") from None
    try:
        split_cards, skipped, max_label, seen = {}, [], -1, {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for split, source_split in opened.splits.items():
                try:
                    card, bad, split_max_label, seen[split] = _write_split(
                        temporary, split, source_split, pool,
                        shorter_side=shorter_side, jpeg_quality=jpeg_quality,
                        examples_per_shard=examples_per_shard, chunk=16 * workers, progress=progress,
                        shuffle_seed=shuffle_seed,
                    )
                except FunmatchError:
                    raise
                except Exception as error:
                    if not _is_write_error(error):
                        raise
                    message = getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)
                    raise FunmatchError(
                        f"--out {out_dir}: cannot write split {split!r} ({str(message).splitlines()[0]})"
                    ) from None
                split_cards[split] = card
                skipped.extend(bad)
                max_label = max(max_label, split_max_label)
        skipped.sort(key=lambda item: (item["split"], sources_lib.natural_key(item["id"])))
        if skipped and not skip_bad:
            listed = ", ".join(f"{item['id']} ({item['reason']})" for item in skipped[:MAX_LISTED_BAD_FILES])
            more = len(skipped) - MAX_LISTED_BAD_FILES
            raise FunmatchError(
                f"{source}: {len(skipped)} undecodable file(s): {listed}"
                + (f" and {more} more" if more > 0 else "")
                + " (use --skip-bad to skip them)"
            )
        class_names = opened.class_names or [f"class_{i}" for i in range(max_label + 1)]
        if max_label >= len(class_names):
            raise FunmatchError(f"{source}: label {max_label} out of range for {len(class_names)} class names")
        for split, card in split_cards.items():
            counts = card["per_class_counts"]
            card["per_class_counts"] = [counts.get(i, 0) for i in range(len(class_names))]
            emptied = [class_names[i] for i, n in sorted(seen[split].items()) if n and not counts.get(i, 0)]
            if emptied:
                raise FunmatchError(
                    f"{source}: split {split!r}: class(es) {', '.join(map(repr, emptied[:10]))} have no image left "
                    "(every file undecodable, skipped by --skip-bad); fix or remove those files"
                )
        ignored = list(getattr(opened, "ignored", []))
        card = {
            "name": name or opened.name,
            "class_names": class_names,
            "num_classes": len(class_names),
            "splits": split_cards,
            "source": source,
            "source_details": opened.details,
            "options": {
                "shorter_side": shorter_side,
                "jpeg_quality": jpeg_quality,
                "examples_per_shard": examples_per_shard,
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "skip_bad": skip_bad,
                "order": "source" if shuffle_seed is None else f"shuffled (seed {shuffle_seed})",
            },
            "format": {"image": "JPEG, RGB", "label": "int64", "id": "bytes (utf-8)", "index": "int64 0..N-1"},
            "funmatch_version": __version__,
            "skipped": skipped,
            "num_ignored": len(ignored),
            "ignored": ignored[:MAX_LISTED_IGNORED_FILES],
        }
        from funmatch.data.tfrecords import write_card

        write_card(temporary, card)
        outputs.write_marker(temporary, "prepare")
        # Swap into place: the old DIR (if --overwrite) is removed only after the new one is complete.
        outputs.swap_in(temporary, out_dir)
        return card
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def _is_write_error(error: BaseException) -> bool:
    """OSError (disk full, file too large, read-only) or a TensorFlow file error while writing shards."""
    if isinstance(error, OSError):
        return True
    return type(error).__module__.startswith("tensorflow") and hasattr(error, "message")


def _split_rng(seed: int, split: str):
    return np.random.default_rng([int(seed), zlib.crc32(split.encode())])


def _process(example: sources_lib.SourceExample, shorter_side, jpeg_quality):
    try:
        return example, encode_image(example.load(), shorter_side, jpeg_quality), None
    except BadImage as error:
        return example, None, str(error) or "cannot decode"
    except OSError as error:  # unreadable file
        return example, None, f"cannot read: {error.strerror or error}"


def _write_split(directory, split, source_split, pool, *, shorter_side, jpeg_quality, examples_per_shard, chunk,
                 progress, shuffle_seed=0):
    """Encodes and writes one split, in a seeded random order (source order with `shuffle_seed=None`).

    Returns (split card, bad files, max label, {label: examples in the source, bad ones included}).
    """
    from tqdm.auto import tqdm

    from funmatch.data.tfrecords import SplitWriter  # TensorFlow, imported when a split is written

    writer = SplitWriter(directory, split, examples_per_shard)
    counts: dict[int, int] = {}
    seen: dict[int, int] = {}
    heights, widths, bad = [], [], []
    max_label = -1
    examples = source_split.examples
    buckets = None
    if shuffle_seed is not None:
        rng = _split_rng(shuffle_seed, split)
        if isinstance(examples, (list, tuple)):
            examples = [examples[i] for i in rng.permutation(len(examples))]
        else:
            buckets = _Buckets(directory, split, source_split.size, rng)
    bar = tqdm(total=source_split.size, desc=f"prepare {split}", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        iterator = iter(examples)
        while batch := list(itertools.islice(iterator, chunk)):
            for example, encoded, error in pool.map(lambda e: _process(e, shorter_side, jpeg_quality), batch):
                bar.update(1)
                seen[example.label] = seen.get(example.label, 0) + 1
                if encoded is None:
                    bad.append({"split": split, "id": example.example_id, "reason": error})
                    continue
                if example.label < 0:
                    raise FunmatchError(f"{example.example_id}: negative label {example.label}")
                jpeg, height, width = encoded
                if buckets is not None:
                    buckets.add(jpeg, example.label, example.example_id)
                else:
                    writer.write(jpeg, example.label, example.example_id)
                counts[example.label] = counts.get(example.label, 0) + 1
                heights.append(height)
                widths.append(width)
                max_label = max(max_label, example.label)
        if buckets is not None:
            buckets.write_shuffled(writer)
    finally:
        bar.close()
        num_shards = writer.close()
        if buckets is not None:
            buckets.remove()
    card = {
        "num_examples": writer.num_examples,
        "num_shards": num_shards,
        **writer.card_fields(),
        "per_class_counts": counts,
        "image_size": {"height": _size_stats(heights), "width": _size_stats(widths),
                       "shorter_side": _size_stats([min(h, w) for h, w in zip(heights, widths)])},
        "num_skipped": len(bad),
    }
    return card, bad, max_label, seen


class _Buckets:
    """A bounded-memory shuffle of a stream: each example goes to a random temporary bucket file; the
    buckets are then read one at a time, permuted and written out (a two-pass external shuffle)."""

    def __init__(self, directory, split: str, size: int | None, rng):
        import tensorflow as tf

        count = MAX_BUCKETS // 4 if not size else -(-size // EXAMPLES_PER_BUCKET)
        self.rng = rng
        self.paths = [pathlib.Path(directory) / f".bucket-{split}-{i:04d}" for i in range(max(1, min(count, MAX_BUCKETS)))]
        self.writers = [tf.io.TFRecordWriter(str(p)) for p in self.paths]

    def add(self, jpeg: bytes, label: int, example_id: str) -> None:
        from funmatch.data.tfrecords import serialize_example

        self.writers[self.rng.integers(len(self.writers))].write(serialize_example(jpeg, label, example_id, -1))

    def write_shuffled(self, writer) -> None:
        import tensorflow as tf

        for bucket in self.writers:
            bucket.close()
        self.writers = []
        for path in self.paths:
            records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
            for i in self.rng.permutation(len(records)):
                feature = tf.train.Example.FromString(records[i]).features.feature
                writer.write(feature["image"].bytes_list.value[0], int(feature["label"].int64_list.value[0]),
                             feature["id"].bytes_list.value[0].decode("utf-8"))
            path.unlink()

    def remove(self) -> None:
        for bucket in self.writers:
            bucket.close()
        for path in self.paths:
            path.unlink(missing_ok=True)


__all__ = ["encode_image", "prepare"]
