"""Sources that `funmatch prepare` reads: `tfds:NAME[:SPLITS]`, `folder:PATH`, `tfrecord:GLOB`.

A source is opened into a `Source`: class names plus, per output split, a stream of
`SourceExample`s (a stable id, an int label and the image as encoded bytes or a uint8 array).
Opening checks the structure (classes, splits) and raises one-line `FunmatchError`s; decoding and
re-encoding of the images is `prepare`'s job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
from typing import Any, Callable, Iterable

from funmatch.errors import FunmatchError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# Folder names taken as splits, and the split name they map to.
SPLIT_FOLDER_NAMES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation",
                      "test": "test"}

# The paper's splits (big_vision distill configs): output split -> tfds split spec.
TFDS_DEFAULT_SPLITS: dict[str, dict[str, str]] = {
    "oxford_flowers102": {"train": "train", "validation": "validation", "test": "test"},
    "oxford_iiit_pet": {"train": "train[:90%]", "validation": "train[90%:]", "test": "test"},
    "food101": {"train": "train[:90%]", "validation": "train[90%:]", "test": "validation"},
    "sun397": {"train": "train", "validation": "validation", "test": "test"},
}


@dataclasses.dataclass
class SourceExample:
    """One input example. `load()` returns encoded image bytes or a uint8 array [H, W, C]."""

    example_id: str
    label: int
    load: Callable[[], Any]


@dataclasses.dataclass
class SourceSplit:
    """The examples of one output split; `size` is their number when known up front."""

    examples: Iterable[SourceExample]
    size: int | None


@dataclasses.dataclass
class Source:
    """An opened source. `class_names` may be None until the examples were read (tfrecord without card)."""

    name: str
    class_names: list[str] | None
    splits: dict[str, SourceSplit]
    details: dict
    # Files a folder source leaves out (not images: other extensions, dangling symlinks, sub-folders):
    # [{"path": relative path, "reason": ...}]; `prepare` lists them in the card.
    ignored: list[dict] = dataclasses.field(default_factory=list)


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers numerically (`img_2` before `img_10`)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def open_source(
    source: str,
    *,
    splits: list[str] | None = None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    tfds_data_dir: str | None = None,
) -> Source:
    """Parses the SOURCE string and opens it. `splits` restricts the output splits."""
    kind, sep, rest = source.partition(":")
    if not sep or not rest:
        raise FunmatchError(f"SOURCE {source!r}: expected tfds:NAME, folder:PATH or tfrecord:GLOB")
    if kind == "folder":
        opened = _open_folder(rest, val_fraction=val_fraction, test_fraction=test_fraction)
    else:
        if val_fraction or test_fraction:
            raise FunmatchError(f"--val-fraction/--test-fraction only apply to folder: sources, not {kind}:")
        if kind == "tfds":
            opened = _open_tfds(rest, tfds_data_dir=tfds_data_dir)
        elif kind == "tfrecord":
            opened = _open_tfrecord(rest)
        else:
            raise FunmatchError(f"SOURCE {source!r}: unknown kind {kind!r} (expected tfds, folder or tfrecord)")
    if splits:
        missing = [s for s in splits if s not in opened.splits]
        if missing:
            raise FunmatchError(
                f"--splits: {', '.join(missing)} not in {source} (it has: {', '.join(opened.splits)})"
            )
        opened.splits = {s: opened.splits[s] for s in splits}
    return opened


# ------------------------------------------------------------------------------------------------
# folder:PATH


OUTSIDE = "link out of the source folder (not followed)"


def _outside(path: pathlib.Path, root: pathlib.Path | None) -> bool:
    """True when `path` resolves (through links) to a place outside the source folder `root`."""
    if root is None:
        return False
    real = path.resolve()
    return real != root and root not in real.parents


def _image_files(folder: pathlib.Path, ignored: list[pathlib.Path | tuple] | None = None,
                 root: pathlib.Path | None = None) -> list[pathlib.Path]:
    """The image files of a class folder, in natural order; everything else is appended to `ignored`
    as (path, reason). A link to a place outside `root` (the source folder, resolved) is not followed."""
    files = []
    for path in folder.iterdir():
        if path.is_symlink() and not path.exists():
            reason = "dangling symlink"
        elif _outside(path, root):
            reason = OUTSIDE
        elif path.is_dir():
            reason = "sub-folder (not read)"
        elif not path.is_file():
            reason = "not a regular file"
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            reason = f"not an image extension ({'/'.join(IMAGE_EXTENSIONS)})"
        else:
            files.append(path)
            continue
        if ignored is not None:
            ignored.append((path, reason))
    return sorted(files, key=lambda p: natural_key(p.name))


def _class_folders(split_folder: pathlib.Path, ignored: list | None = None,
                   root: pathlib.Path | None = None) -> dict[str, list[pathlib.Path]]:
    classes = {}
    for path in sorted(split_folder.iterdir(), key=lambda p: p.name):
        if not path.is_dir() or path.name.startswith(".") or _outside(path, root):
            if ignored is not None:
                ignored.append((path, "dangling symlink" if path.is_symlink() and not path.exists()
                                else OUTSIDE if path.is_dir() and _outside(path, root)
                                else "hidden folder" if path.is_dir() else "file outside a class folder"))
            continue
        files = _image_files(path, ignored, root)
        if not files:
            raise FunmatchError(f"{path}: empty class folder (no {'/'.join(IMAGE_EXTENSIONS)} files)")
        classes[path.name] = files
    if not classes:
        raise FunmatchError(f"{split_folder}: no class folders found")
    return classes


def _refuse_shared_files(path_text: str, per_split: dict, root: pathlib.Path) -> None:
    """Refuses two paths of different splits that are one file (a link inside the source): a judged image
    would also be trained on."""
    owner: dict[pathlib.Path, tuple[str, pathlib.Path]] = {}
    for split, classes in per_split.items():
        for files in classes.values():
            for file in files:
                real = file.resolve()
                first = owner.setdefault(real, (split, file))
                if first[0] != split:
                    def shown(path):
                        return path.relative_to(root).as_posix() if root in path.parents else str(path)

                    raise FunmatchError(
                        f"folder:{path_text}: {shown(first[1])} ({first[0]}) and {shown(file)} ({split}) are the "
                        "same file through a link; an image may be in one split only")


def _carve(files: list[pathlib.Path], fractions: dict[str, float]) -> dict[str, list[pathlib.Path]]:
    """Deterministically moves round(n * fraction) files of one class into each carved split.

    Files are ranked by the SHA-1 of their name, so the choice does not depend on listing order
    and a file keeps its split when other files are added.
    """
    ranked = sorted(files, key=lambda p: hashlib.sha1(p.name.encode()).hexdigest())
    carved, start = {}, 0
    for split, fraction in fractions.items():
        count = int(round(len(files) * fraction))
        carved[split] = sorted(ranked[start : start + count], key=lambda p: natural_key(p.name))
        start += count
    carved["train"] = sorted(ranked[start:], key=lambda p: natural_key(p.name))
    return carved


def _open_folder(path_text: str, *, val_fraction: float, test_fraction: float) -> Source:
    root = pathlib.Path(path_text).expanduser()
    if not root.is_dir():
        raise FunmatchError(f"folder:{path_text}: not a directory")
    for flag, fraction in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise FunmatchError(f"{flag} must be in [0, 1), got {fraction}")
    real_root = root.resolve()
    subfolders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    split_folders: dict[str, pathlib.Path] = {}
    for folder in subfolders:
        split = SPLIT_FOLDER_NAMES.get(folder.name.lower())
        if split is None:
            continue
        if split in split_folders:  # `val/` + `validation/`, `Train/` + `train/`: which one is meant?
            raise FunmatchError(
                f"folder:{path_text}: folders {split_folders[split].name!r} and {folder.name!r} are both split "
                f"{split!r}; merge them or move one away"
            )
        split_folders[split] = folder
    ignored: list[tuple[pathlib.Path, str]] = []
    if split_folders:
        outside = [split for split, folder in split_folders.items() if _outside(folder, real_root)]
        if outside:
            raise FunmatchError(f"folder:{path_text}: split folder {split_folders[outside[0]].name!r} is a link out "
                                "of the source folder; prepare reads only what lies inside it")
        per_split = {split: _class_folders(folder, ignored, real_root) for split, folder in split_folders.items()}
        layout = "splits"
        ignored += [(p / "", "folder that is not a split (train, validation, val, valid, test)")
                    for p in subfolders if p.name.lower() not in SPLIT_FOLDER_NAMES]
    else:
        per_split = {"train": _class_folders(root, ignored, real_root)}
        layout = "flat"

    # Every split must have the same classes.
    reference_split = "train" if "train" in per_split else next(iter(per_split))
    reference = set(per_split[reference_split])
    for split, classes in per_split.items():
        if set(classes) != reference:
            only_here = sorted(set(classes) - reference)
            missing = sorted(reference - set(classes))
            raise FunmatchError(
                f"folder:{path_text}: class folders of split {split!r} differ from {reference_split!r}"
                f" (missing: {missing[:5]}, extra: {only_here[:5]})"
            )

    _refuse_shared_files(path_text, per_split, root)
    fractions = {s: f for s, f in (("validation", val_fraction), ("test", test_fraction)) if f > 0}
    for split in fractions:
        if split in per_split:
            raise FunmatchError(f"folder:{path_text}: already has a {split!r} split; drop --{'val' if split == 'validation' else 'test'}-fraction")
    if fractions:
        if "train" not in per_split:
            raise FunmatchError(f"folder:{path_text}: no train split to carve validation/test from")
        carved = {split: {} for split in (*fractions, "train")}
        for class_name, files in per_split["train"].items():
            pieces = _carve(files, fractions)
            if not pieces["train"]:
                raise FunmatchError(f"{files[0].parent}: too few images ({len(files)}) to carve validation/test "
                                    f"from, leaving none for train (--val-fraction {val_fraction:g}, "
                                    f"--test-fraction {test_fraction:g})")
            for split, chosen in pieces.items():
                carved[split][class_name] = chosen
        per_split = {**{s: c for s, c in per_split.items() if s != "train"}, **carved}

    class_dirs = sorted(reference)
    class_names = class_dirs
    labels_file = root / "labels.txt"
    if labels_file.is_file():
        lines = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
        if len(lines) == len(class_dirs):
            class_names = lines

    order = [s for s in ("train", "validation", "test") if s in per_split] + sorted(
        s for s in per_split if s not in ("train", "validation", "test"))
    splits = {}
    for split in order:
        examples = [
            SourceExample(
                example_id=file.relative_to(root).as_posix(),
                label=label,
                load=(lambda f=file: f.read_bytes()),
            )
            for label, class_dir in enumerate(class_dirs)
            for file in per_split[split][class_dir]
        ]
        splits[split] = SourceSplit(examples=examples, size=len(examples))
    details = {"kind": "folder", "path": str(root), "layout": layout, "class_dirs": class_dirs,
               "val_fraction": val_fraction, "test_fraction": test_fraction}
    # The root's own files (labels.txt, README, checksums) are metadata, not ignored images.
    listed = [{"path": path.relative_to(root).as_posix() + ("/" if path.is_dir() else ""), "reason": reason}
              for path, reason in ignored if not (path.parent == root and not path.is_dir())]
    return Source(name=root.name, class_names=class_names, splits=splits, details=details, ignored=listed)


# ------------------------------------------------------------------------------------------------
# tfds:NAME[:out=spec,out=spec]


def parse_tfds_source(text: str) -> tuple[str, dict[str, str] | None]:
    """`NAME` or `NAME:train=train[:90%],validation=train[90%:]` -> (name, split map or None)."""
    name, sep, split_text = text.partition(":")
    if not name:
        raise FunmatchError(f"tfds:{text}: missing dataset name")
    if not sep:
        return name, None
    mapping = {}
    for item in split_text.split(","):
        out, eq, spec = item.partition("=")
        if not eq or not out.strip() or not spec.strip():
            raise FunmatchError(f"tfds:{text}: split map item {item!r} is not OUT=TFDS_SPLIT")
        mapping[out.strip()] = spec.strip()
    return name, mapping


def _open_tfds(text: str, *, tfds_data_dir: str | None) -> Source:
    import tensorflow_datasets as tfds

    name, split_map = parse_tfds_source(text)
    try:
        builder = tfds.builder(name, data_dir=tfds_data_dir)
    except Exception as error:  # tfds raises DatasetNotFoundError and friends
        if "not found" in str(error).lower() or type(error).__name__ == "DatasetNotFoundError":
            raise FunmatchError(f"tfds:{name}: unknown tfds dataset {name!r}") from None
        raise FunmatchError(f"tfds:{name}: cannot open the tfds builder ({str(error).splitlines()[0]})") from None
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise FunmatchError(f"tfds:{name}: needs 'image' and 'label' features (has {', '.join(features)})")
    class_names = list(features["label"].names)
    if split_map is None:
        split_map = TFDS_DEFAULT_SPLITS.get(name.split("/")[0].split(":")[0])
        if split_map is None:
            available = list(builder.info.splits)
            if not available:
                raise FunmatchError(f"tfds:{name}: no known splits; give them as tfds:{name}:train=train,test=test")
            split_map = {s: s for s in available}
    try:
        builder.download_and_prepare()
    except Exception as error:
        raise FunmatchError(
            f"tfds:{name}: download/prepare failed ({str(error).splitlines()[0]}); "
            "set TFDS_DATA_DIR or --tfds-data-dir to a folder with the prepared dataset"
        ) from None

    def examples(output_split: str, tfds_split: str):
        dataset = builder.as_dataset(
            split=tfds_split,
            shuffle_files=False,
            decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(add_tfds_id=True),
        )
        for position, example in enumerate(tfds.as_numpy(dataset)):
            example_id = example.get("tfds_id")
            example_id = example_id.decode() if isinstance(example_id, bytes) else f"{name}/{tfds_split}/{position}"
            image = example["image"]
            yield SourceExample(example_id, int(example["label"]), load=(lambda value=image: value))

    splits = {}
    for output_split, tfds_split in split_map.items():
        try:
            size = int(builder.info.splits[tfds_split].num_examples) or None
        except Exception:  # unknown under mocks or for unprepared datasets
            size = None
        splits[output_split] = SourceSplit(examples=examples(output_split, tfds_split), size=size)
    details = {"kind": "tfds", "name": name, "version": str(builder.info.version), "split_map": split_map}
    return Source(name=name.split(":")[0], class_names=class_names, splits=splits, details=details)


# ------------------------------------------------------------------------------------------------
# tfrecord:GLOB

_SPLIT_IN_FILE_NAME = re.compile(r"(?:^|[-_.])(train|validation|valid|val|test)(?=[-_.\[]|$)")


def _split_of_file(path: str) -> str:
    match = _SPLIT_IN_FILE_NAME.search(os.path.basename(path))
    return SPLIT_FOLDER_NAMES[match.group(1)] if match else "train"


def _first_feature(features, names, kind):
    for feature_name in names:
        if feature_name in features:
            values = getattr(features[feature_name], kind).value
            if values:
                return values[0]
    return None


def _open_tfrecord(pattern: str) -> Source:
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(pattern), key=natural_key)
    if not files:
        raise FunmatchError(f"tfrecord:{pattern}: no files match")
    by_split: dict[str, list[str]] = {}
    for path in files:
        by_split.setdefault(_split_of_file(path), []).append(path)

    class_names = None
    name = os.path.basename(os.path.dirname(os.path.abspath(files[0]))) or "dataset"
    card_path = os.path.join(os.path.dirname(files[0]), "dataset.json")
    if os.path.isfile(card_path):
        try:
            card = json.loads(pathlib.Path(card_path).read_text())
            class_names, name = list(card["class_names"]), card.get("name", name)
        except (ValueError, KeyError):
            pass

    def records(path: str):
        """The raw records of one file; a file that is not a TFRecord file is named as the source's fault."""
        iterator = tf.data.TFRecordDataset(path).as_numpy_iterator()
        while True:
            try:
                yield next(iterator)
            except StopIteration:
                return
            except tf.errors.OpError as error:
                reason = re.sub(r"\{\{.*?\}\}", "", str(error.message)).split("(Is this")[0].split("[Op:")[0].strip()
                raise FunmatchError(f"tfrecord:{pattern}: {path} is not a TFRecord file, or is damaged "
                                    f"({reason.splitlines()[0] if reason else type(error).__name__})") from None

    def examples(paths: list[str]):
        for path in paths:
            for position, raw in enumerate(records(path)):
                features = tf.train.Example.FromString(raw).features.feature
                image = _first_feature(features, ("image", "image/encoded", "image_raw"), "bytes_list")
                label = _first_feature(features, ("label", "image/class/label"), "int64_list")
                if image is None or label is None:
                    raise FunmatchError(
                        f"{path}: record {position} has no image bytes ('image' or 'image/encoded') "
                        "or no int64 label ('label' or 'image/class/label')"
                    )
                example_id = _first_feature(features, ("id", "image/filename", "file_name"), "bytes_list")
                example_id = example_id.decode() if example_id else f"{os.path.basename(path)}:{position}"
                yield SourceExample(example_id, int(label), load=(lambda value=image: value))

    splits = {split: SourceSplit(examples=examples(paths), size=None) for split, paths in by_split.items()}
    details = {"kind": "tfrecord", "pattern": pattern, "files": {s: len(p) for s, p in by_split.items()}}
    return Source(name=name, class_names=class_names, splits=splits, details=details)


__all__ = [
    "IMAGE_EXTENSIONS",
    "Source",
    "SourceExample",
    "SourceSplit",
    "TFDS_DEFAULT_SPLITS",
    "natural_key",
    "open_source",
    "parse_tfds_source",
]
