"""The store: its card (identities, layout, the checks against a run), its rows (full float16
log-probabilities or top-k) and the record files it was computed on. See `funmatch.distill.targets`."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from typing import Any

import numpy as np

from funmatch.errors import FunmatchError

CARD_NAME = "targets.json"
FORMAT = "funmatch-targets/2"
# Format 1 cut each view from a crop-decoded JPEG (`decode_jpeg_and_inception_crop`); format 2 from the fully
# decoded image (`decode|inception_crop`), so that one decode serves every view of an image. A format-1
# store is still read, with its own views (its card's pp spec), bit for bit.
FORMAT_1 = "funmatch-targets/1"
FORMATS = (FORMAT_1, FORMAT)
FULL_MAX_CLASSES = 128
DEFAULT_TOP_K = 10
# Store modes: the distillation modes that can read stored targets.
MODES = ("function_matching", "consistent", "fixed_teacher")
REST_FLOOR = 1e-8  # the smallest total probability the top-k rule leaves to the other classes
_SHIFT_SALT = 0x5A1F7
STORED_TEMPERATURE = 1.0  # the rows are log_softmax(teacher logits / 1)


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

    The recipe's train pp of the distillation: the image decoded whole, an inception crop (area
    `crop_area_min`..100 %) resized to the model's resolution, flip, values in [-1, 1]. The crop window
    is the online pipeline's (the same sampler and seed); its pixels are cut from the fully decoded image,
    so that one decode serves all the views of an image (a crop-decoded JPEG differs at the window's
    border by a few levels on about a third of the crops).
    """
    area = f", area_min={crop_area_min:g}" if float(crop_area_min) != 5.0 else ""
    return "decode|inception_crop({resolution}" + area + ")|flip_lr|value_range(-1, 1)"


def template_in_format(template: str | None, card_format: str) -> str | None:
    """The run's view template as a store of `card_format` writes it: format 1 cropped while decoding."""
    if template is None or card_format != FORMAT_1:
        return template
    return template.replace("decode|inception_crop(", "decode_jpeg_and_inception_crop(", 1)


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


def store_serves_temperature(card: dict, temperature: float) -> bool:
    """Whether the store gives the teacher's targets at `temperature`: a full store at every temperature
    (softmax(z/T) of the stored log-probabilities is the teacher's, up to float16); a top-k store only at
    the temperature its rows were stored at (1): elsewhere its evenly spread rest of the mass is biased."""
    return card["storage"] == "full" or float(temperature) == STORED_TEMPERATURE


def load_card(targets_dir) -> dict[str, Any]:
    """Reads TARGETS_DIR/targets.json; FunmatchError naming the path when missing or not a store."""
    path = pathlib.Path(targets_dir) / CARD_NAME
    if not path.is_file():
        raise FunmatchError(f"{path}: no targets card (is {targets_dir} a folder written by `funmatch targets`?)")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise FunmatchError(f"{path}: not valid JSON ({error})") from None
    if card.get("format") not in FORMATS:
        raise FunmatchError(f"{path}: format {card.get('format')!r}, expected one of {', '.join(FORMATS)} "
                            "(re-run `funmatch targets` with this funmatch into a new --out)")
    if card["format"] != FORMAT_1:  # format 1 had no digest; its cards are read as they are
        _check_digest(card, path)
    return card


def unit_path(targets_dir, card: dict, view: int, file_index: int) -> pathlib.Path:
    return pathlib.Path(targets_dir) / f"view-{view:05d}" / f"{card['data']['split']}-{file_index:05d}.npy"


def identity_problems(card: dict, *, teacher_path, data_dir, num_classes: int, split: str, teacher_resolution: int,
                      who: str = "the run") -> list[str]:
    """What makes a store another store than the one `who` needs, whatever its mode, views or temperature:
    complete, teacher file hash, dataset card hash, split, classes, teacher resolution (one clause each)."""
    problems = []
    if not card.get("complete"):
        problems.append("generation is not complete (re-run `funmatch targets` with the same arguments)")
    teacher_sha, data_sha = file_sha256(teacher_path), dataset_card_sha256(data_dir)
    if card["teacher"]["sha256"] != teacher_sha:
        problems.append(f"computed with another teacher (sha256 {card['teacher']['sha256'][:12]}…, "
                        f"--teacher {teacher_path} is {teacher_sha[:12]}…)")
    if card["data"]["card_sha256"] != data_sha:
        problems.append(f"computed on other data (dataset card {card['data']['card_sha256'][:12]}…, "
                        f"--data {data_dir} has {data_sha[:12]}…)")
    if card["data"]["split"] != split:
        problems.append(f"computed on split {card['data']['split']!r}, {who} trains on {split!r}")
    if int(card["num_classes"]) != int(num_classes):
        problems.append(f"{card['num_classes']} classes, {who} has {num_classes}")
    if int(card["teacher"]["resolution"]) != int(teacher_resolution):
        problems.append(f"teacher resolution {card['teacher']['resolution']}, {who}'s is {teacher_resolution}")
    return problems


def check_card(card: dict, *, teacher_path, data_dir, num_classes: int, mode: str, view_template: str | None,
               teacher_resolution: int, mixup_p: float, split: str, targets_dir="targets",
               temperature: float | None = None) -> None:
    """Refuses a store that does not fit the run: one line per mismatch, all in one FunmatchError.

    Compared: the store's identity (`identity_problems`), mode, pp spec (the view template; fixed_teacher:
    not compared, its teacher view is the store's own), mixup p, and the temperature a top-k store serves.
    """
    where = f"--targets {targets_dir}"
    problems = identity_problems(card, teacher_path=teacher_path, data_dir=data_dir, num_classes=num_classes,
                                 split=split, teacher_resolution=teacher_resolution)
    if card["mode"] != mode:
        problems.append(f"stored for mode {card['mode']!r}, the run's mode is {mode!r}")
    elif mode != "fixed_teacher" and card["view_spec"] != template_in_format(view_template, card["format"]):
        problems.append(f"pp spec {card['view_spec']!r}, the run's is {template_in_format(view_template, card['format'])!r}")
    if mode == "function_matching" and float(card["mixup_p"]) != float(mixup_p):
        problems.append(f"mixup p {card['mixup_p']:g}, the run's is {float(mixup_p):g}")
    if temperature is not None and not store_serves_temperature(card, temperature):
        problems.append(f"top-{card['top_k']} targets are exact only at temperature {STORED_TEMPERATURE:g}, "
                        f"the run's is {float(temperature):g} (set temperature={STORED_TEMPERATURE:g}, or store every "
                        f"class: --top-k {card['num_classes']})")
    if problems:
        raise FunmatchError("stored targets do not match the run:\n  " + "\n  ".join(f"{where}: {p}" for p in problems))


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


def partner_shifts(seed: int, num_views: int, num_examples: int) -> list[int]:
    """s_v in [1, N-1] for each view (the partner of i in view v is (i + s_v) mod N); stored in the card."""
    if num_examples < 2:
        return [0] * num_views
    rng = np.random.Generator(np.random.PCG64([int(seed), _SHIFT_SALT]))
    return [int(s) for s in rng.integers(1, num_examples, size=num_views)]


def _static_card(*, mode, teacher_path, teacher_contract, data_dir, split, data_layout, template, mixup_p, seed,
                 views, top_k, kind, num_classes, resolution: int | None = None,
                 batches: dict | None = None) -> dict[str, Any]:
    """The card of a new store (its digest included); `resolution`: the teacher's input (default its own);
    `batches`: a per-batch mixup store's layout (`batches.batches_layout`), rows in batch order."""
    row = row_dtype(kind, num_classes, top_k or 0)
    n = data_layout["num_examples"]
    stored = int(batches["size"]) * int(batches["steps"]) if batches else n * int(views)
    own = int(teacher_contract["resolution"])
    card = {
        "format": FORMAT,
        "mode": mode,
        "teacher": {"path": str(pathlib.Path(teacher_path).resolve()), "sha256": file_sha256(teacher_path),
                    "arch": teacher_contract["arch"], "resolution": int(resolution or own), "own_resolution": own},
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
        "partner_shifts": partner_shifts(seed, views, n) if mode == "function_matching" and mixup_p > 0 and not batches
        else [0] * views,
        "bytes_per_target": int(row.itemsize),
        "bytes_per_view": int(row.itemsize) * n,
        "bytes_total": int(row.itemsize) * stored,
    }
    if batches:  # per-batch mixup: the partners are batch neighbours; the card says which batches are stored
        card.update(mixup="per_batch", batches=dict(batches))
    return {**card, "digest": card_digest(card)}


_STATIC_KEYS = ("format", "mode", "teacher", "data", "view_spec", "mixup_p", "seed", "views", "storage", "top_k",
                "num_classes", "partner_shifts")
_BATCH_KEYS = ("mixup", "batches")  # defining fields of per-batch stores only (earlier cards' digests stand)


def static_keys(card: dict) -> tuple[str, ...]:
    """The keys that define `card`'s views and rows."""
    return _STATIC_KEYS + tuple(k for k in _BATCH_KEYS if k in card)


def defining_fields(card: dict) -> dict[str, Any]:
    """The fields that define the stored views and rows, flat ("seed", "teacher.sha256", "data.file_sizes",
    ...); paths are left out (a store may move to another machine; the hashes may not change)."""
    fields: dict[str, Any] = {}
    for key in static_keys(card):
        value = card.get(key)
        if isinstance(value, dict):
            fields.update({f"{key}.{sub}": v for sub, v in value.items() if sub != "path"})
        else:
            fields[key] = value
    return fields


def _sha(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def card_digest(card: dict) -> dict[str, Any]:
    """{"sha256": of all defining fields, "fields": {field: sha256 of its value (16 hex)}}: written into the
    card at generation and checked by `load_card`, so that an edited card is refused, naming the field."""
    fields = defining_fields(card)
    return {"sha256": _sha(fields), "fields": {k: _sha(v)[:16] for k, v in sorted(fields.items())}}


def _check_digest(card: dict, path) -> None:
    recorded = card.get("digest")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("fields"), dict):
        raise FunmatchError(f"{path}: no digest of the fields that define the stored views (format "
                            f"{card.get('format')!r} has one); re-run `funmatch targets` into a new --out")
    current = card_digest(card)
    if current["sha256"] == recorded.get("sha256"):
        return
    fields = sorted(set(current["fields"]) | set(recorded["fields"]))
    edited = [k for k in fields if current["fields"].get(k) != recorded["fields"].get(k)] or ["digest"]
    raise FunmatchError(f"{path}: {', '.join(edited)} changed after the targets were computed (the card's digest "
                        "does not match); restore the card or re-run `funmatch targets` into a new --out")



def read_targets(targets_dir, card: dict, view: int) -> np.ndarray:
    """All stored rows of one view, in record order (numpy; for checks, tests and fixed_teacher)."""
    files = range(len(card["data"]["files"]))
    return np.concatenate([np.load(unit_path(targets_dir, card, view, f)) for f in files])
