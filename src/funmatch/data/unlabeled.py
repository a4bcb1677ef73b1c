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
them; r > 0: the first round(r · N_labelled) of a seeded permutation). An unlabelled image whose bytes equal
an image of the dataset's validation or test split is an error: those splits judge the student.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
from typing import Any

import numpy as np

from funmatch.errors import FunmatchError

UNION_SPLIT = "train_and_unlabeled"
UNLABELED = -1
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _unlabeled_images(source: str, *, shorter_side: int | None, jpeg_quality: int) -> tuple[list[bytes], str]:
    """(encoded images, what they are) of `source`: "folder:PATH", a prepared folder, or a plain folder path."""
    from funmatch.data import tfrecords
    from funmatch.data.prepare import BadImage, encode_image
    from funmatch.data.sources import natural_key

    path = pathlib.Path(source.removeprefix("folder:"))
    if not path.is_dir():
        raise FunmatchError(f"--unlabeled {source}: no such folder")
    if (path / tfrecords.CARD_NAME).is_file():
        card = tfrecords.load_card(path)
        info = tfrecords.split_info(path, "train", card)
        tfrecords.verify_split(path, "train", card)
        import tensorflow as tf

        files = tfrecords.shard_paths(path, "train", info["num_shards"])
        images = [bytes(tfrecords.parse_example(r)["image"].numpy()) for r in tf.data.TFRecordDataset(files)]
        return images, f"the train split of {path} (labels dropped)"
    files = sorted((p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES),
                   key=lambda p: natural_key(p.relative_to(path).as_posix()))
    if not files:
        raise FunmatchError(f"--unlabeled {source}: no image files ({', '.join(_IMAGE_SUFFIXES)}) in {path}")
    images, bad = [], []
    for file in files:
        try:
            images.append(encode_image(file.read_bytes(), shorter_side, jpeg_quality)[0])
        except BadImage:
            bad.append(file)
    if bad:
        raise FunmatchError(f"--unlabeled {source}: {len(bad)} file(s) are not readable images, e.g. {bad[0]}")
    return images, f"{len(files)} image files below {path}"


def _link_or_copy(src: pathlib.Path, dst: pathlib.Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def add_unlabeled(data_dir, source: str, out_dir, *, ratio: float = 0.0, seed: int = 0,
                  examples_per_shard: int | None = None) -> dict[str, Any]:
    """Writes `out_dir`: `data_dir`'s splits + `UNION_SPLIT` (its train split and the images of `source`).

    Returns the new dataset card. Re-running with the same arguments on an existing `out_dir` returns
    its card without work; the folder appears complete or not at all (written aside, then renamed).
    """
    import tensorflow as tf

    from funmatch.data import tfrecords

    if not ratio >= 0:
        raise FunmatchError(f"unlabeled_ratio must be >= 0 (0: every unlabelled image), got {ratio}")
    data_dir, out_dir = pathlib.Path(data_dir), pathlib.Path(out_dir)
    card = tfrecords.load_card(data_dir)
    tfrecords.check_splits(card, data_dir, ["train"])
    # What the union is made of: the labelled dataset by its card's content (a copied folder is the same data).
    card_sha256 = hashlib.sha256((data_dir / tfrecords.CARD_NAME).read_bytes()).hexdigest()
    identity = {"source": os.path.abspath(source.removeprefix("folder:")), "data_card_sha256": card_sha256,
                "ratio": float(ratio), "seed": int(seed)}
    if (out_dir / tfrecords.CARD_NAME).is_file():
        existing = tfrecords.load_card(out_dir)
        if (existing.get("unlabeled") or {}).get("identity") == identity:
            return existing
        raise FunmatchError(f"{out_dir}: holds another dataset; choose a new folder or remove it")

    train_info = card["splits"]["train"]
    tfrecords.verify_split(data_dir, "train", card)
    options = card.get("options") or {}
    images, what = _unlabeled_images(source, shorter_side=options.get("shorter_side"),
                                     jpeg_quality=int(options.get("jpeg_quality") or 95))
    rng = np.random.default_rng([int(seed), 0x0A1B])
    if ratio > 0:
        keep = min(len(images), round(ratio * int(train_info["num_examples"])))
        images = [images[i] for i in sorted(rng.permutation(len(images))[:keep])]
    judged = {}
    for split in card["splits"]:
        if split in ("validation", "test", "val"):
            files = tfrecords.shard_paths(data_dir, split, card["splits"][split]["num_shards"])
            for record in tf.data.TFRecordDataset(files):
                judged[hashlib.sha1(bytes(tfrecords.parse_example(record)["image"].numpy())).hexdigest()] = split
    for number, image in enumerate(images):
        split = judged.get(hashlib.sha1(image).hexdigest())
        if split:
            raise FunmatchError(f"--unlabeled {source}: image {number} is also in the {split!r} split of {data_dir}, "
                                "which judges the student; remove it from the unlabelled images")

    labelled = []
    files = tfrecords.shard_paths(data_dir, "train", train_info["num_shards"])
    for record in tf.data.TFRecordDataset(files):
        example = tfrecords.parse_example(record)
        labelled.append((bytes(example["image"].numpy()), int(example["label"]), example["id"].numpy().decode()))
    entries = labelled + [(image, UNLABELED, f"unlabeled/{n:07d}") for n, image in enumerate(images)]
    order = rng.permutation(len(entries))

    temporary = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    try:
        for split, info in card["splits"].items():
            for shard in tfrecords.shard_paths(data_dir, split, info["num_shards"]):
                _link_or_copy(pathlib.Path(shard), temporary / os.path.basename(shard))
        writer = tfrecords.SplitWriter(temporary, UNION_SPLIT,
                                       examples_per_shard or int(options.get("examples_per_shard") or 1024))
        for position in order:
            writer.write(*entries[position])
        num_shards = writer.close()
        new_card = dict(card)
        new_card["splits"] = {**card["splits"], UNION_SPLIT: {
            "num_examples": writer.num_examples, "num_shards": num_shards,
            "per_class_counts": list(train_info["per_class_counts"]),  # the labelled ones; the rest have none
            "labelled_examples": len(labelled), "unlabeled_examples": len(images),
            "shard_lengths": writer.shard_lengths, "shard_bytes": writer.shard_bytes,
            **({"image_size": train_info["image_size"]} if "image_size" in train_info else {}),
        }}
        new_card["unlabeled"] = {"split": UNION_SPLIT, "source": what, "images": len(images),
                                 "labelled": len(labelled), "ratio": ratio, "identity": identity}
        tfrecords.write_card(temporary, new_card)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        temporary.rename(out_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return new_card


__all__ = ["UNION_SPLIT", "UNLABELED", "add_unlabeled"]
