"""Official BiT checkpoints (`.npz`) -> funmatch BiT models, with a local download cache.

Two layouts are read (detected from the keys):

* big_transfer (BiT-S / BiT-M, `gs://bit_models/BiT-M-R50x1.npz`, ...):
  `resnet/root_block/standardized_conv2d/kernel`,
  `resnet/block{i}/unit{j:02d}/{a,b,c}/standardized_conv2d/kernel`,
  `resnet/block{i}/unit{j:02d}/a/proj/standardized_conv2d/kernel`,
  `resnet/block{i}/unit{j:02d}/{a,b,c}/group_norm/{gamma,beta}`,
  `resnet/group_norm/{gamma,beta}`, `resnet/head/conv2d/{kernel,bias}` (head kernel `[1, 1, C, K]`).
  The GroupNorm `{a,b,c}` of a unit normalises the *input* of conv `{a,b,c}` (pre-activation).
* big_vision `bit_paper` (the function-matching paper's released students, e.g.
  `gs://bit_models/distill/R50x1_224.npz`), optionally under `params/` or `opt/target/`:
  `root_block/conv_root/kernel`, `block{i}/unit{j:02d}/conv{1,2,3}/kernel`,
  `block{i}/unit{j:02d}/conv_proj/kernel`, `block{i}/unit{j:02d}/gn{1,2,3}/{scale,bias}` (`[1,1,1,C]`),
  `norm-pre-head/{scale,bias}`, `head/{kernel,bias}` (kernel `[C, K]`).

Loading is strict: missing, unexpected and mis-shaped keys are all listed in one error and the
model is left untouched. A checkpoint head with another class count than the model is skipped:
the model's head is set to zeros (as a fresh BiT head) and a warning says so.

Checkpoints named by URL (`gs://`, `http(s)://`, anything tf.io.gfile reads) or by a known tag
(`BiT-M-R50x1`, `FunMatch-224px-i1k82.8`; see KNOWN_CHECKPOINTS) are downloaded once into
`cache_dir()` (`$FUNMATCH_CACHE_DIR`, else `~/.cache/funmatch`) under `checkpoints/`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile

import numpy as np

from funmatch.errors import FunmatchError

logger = logging.getLogger("funmatch.models")

BIG_TRANSFER = "big_transfer"
BIT_PAPER = "bit_paper"


def _known_checkpoints() -> dict[str, str]:
    known = {}
    for upstream in ("S", "M"):
        for arch in ("R50x1", "R50x3", "R101x1", "R101x3", "R152x2", "R152x4"):
            for downstream in ("", "-ILSVRC2012"):
                tag = f"BiT-{upstream}-{arch}{downstream}"
                known[tag] = f"gs://bit_models/{tag}.npz"
    # The function-matching paper's ImageNet students (big_vision `bit_paper` vanity names).
    known["FunMatch-224px-i1k82.8"] = "gs://bit_models/distill/R50x1_224.npz"
    known["FunMatch-160px-i1k80.5"] = "gs://bit_models/distill/R50x1_160.npz"
    return known


KNOWN_CHECKPOINTS: dict[str, str] = _known_checkpoints()


def cache_dir() -> str:
    """Where downloads are kept: `$FUNMATCH_CACHE_DIR`, else `~/.cache/funmatch`."""
    return os.environ.get("FUNMATCH_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "funmatch")


def _is_remote(path: str) -> bool:
    return "://" in path


def resolve_checkpoint(path_or_url: str | os.PathLike, *, cache: str | None = None) -> str:
    """A local file path for a checkpoint given as a path, URL / gs:// path, or known tag.

    Remote files are copied once into `<cache>/checkpoints/<hash>_<basename>` (atomically, so an
    interrupted download never leaves a truncated file in the cache) and reused afterwards.
    """
    source = os.fspath(path_or_url)
    source = KNOWN_CHECKPOINTS.get(source, source)
    if not _is_remote(source):
        if not os.path.isfile(source):
            raise FunmatchError(f"{source}: checkpoint file not found")
        return source
    directory = os.path.join(cache or cache_dir(), "checkpoints")
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    local = os.path.join(directory, f"{digest}_{os.path.basename(source.rstrip('/')) or 'checkpoint.npz'}")
    if os.path.isfile(local):
        logger.info("using cached %s for %s", local, source)
        return local
    os.makedirs(directory, exist_ok=True)
    logger.warning("downloading %s to %s", source, local)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as destination:
            if source.startswith(("http://", "https://")):
                import urllib.request

                with urllib.request.urlopen(source) as response:  # noqa: S310 (user-given URL)
                    _copy_stream(response, destination)
            else:
                import tensorflow as tf

                with tf.io.gfile.GFile(source, "rb") as remote:
                    _copy_stream(remote, destination)
        os.replace(temporary, local)
    except FunmatchError:
        raise
    except Exception as error:
        raise FunmatchError(f"{source}: could not download the checkpoint ({type(error).__name__}: {error})") from error
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return local


def _copy_stream(source, destination, chunk_size: int = 1 << 22) -> None:
    while True:
        chunk = source.read(chunk_size)
        if not chunk:
            break
        destination.write(chunk)


def read_checkpoint(path_or_url: str | os.PathLike, *, cache: str | None = None) -> dict[str, np.ndarray]:
    """The checkpoint's arrays by flat "/"-joined name (big_vision `params/` / `opt/target/` prefixes removed)."""
    local = resolve_checkpoint(path_or_url, cache=cache)
    try:
        with open(local, "rb") as file:
            loaded = np.load(io.BytesIO(file.read()), allow_pickle=False)
            arrays = {key: np.asarray(loaded[key]) for key in loaded.files}
    except Exception as error:
        raise FunmatchError(f"{os.fspath(path_or_url)}: not a readable .npz checkpoint ({error})") from error
    for prefix in ("params/", "opt/target/"):
        if any(key.startswith(prefix) for key in arrays):
            arrays = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
            break
    # A checkpoint with NaN/Inf weights (a diverged run, a damaged download) would train or score garbage.
    poisoned = [key for key, value in arrays.items()
                if value.dtype.kind in "fc" and not np.all(np.isfinite(value))]
    if poisoned:
        raise FunmatchError(
            f"{os.fspath(path_or_url)}: {len(poisoned)} array(s) hold NaN/Inf values ({', '.join(poisoned[:4])}"
            + (", ..." if len(poisoned) > 4 else "") + "); refusing to load it"
        )
    # Some big_transfer files name convs `standardized_conv2d_1` etc. (as big_vision also fixes).
    return {re.sub(r"/standardized_conv2d_\d+/", "/standardized_conv2d/", key): value for key, value in arrays.items()}


def detect_layout(arrays: dict[str, np.ndarray]) -> str | None:
    """BIG_TRANSFER, BIT_PAPER, or None when neither root key is present."""
    if "resnet/root_block/standardized_conv2d/kernel" in arrays:
        return BIG_TRANSFER
    if "root_block/conv_root/kernel" in arrays:
        return BIT_PAPER
    return None


def _layer_keys(layer_name: str, layout: str) -> dict[str, str]:
    """Variable name -> checkpoint key for one funmatch BiT layer (see bit.py for layer names)."""
    if layer_name == "root_conv":
        key = "resnet/root_block/standardized_conv2d/kernel" if layout == BIG_TRANSFER else "root_block/conv_root/kernel"
        return {"kernel": key}
    if layer_name == "pre_head_gn":
        if layout == BIG_TRANSFER:
            return {"gamma": "resnet/group_norm/gamma", "beta": "resnet/group_norm/beta"}
        return {"gamma": "norm-pre-head/scale", "beta": "norm-pre-head/bias"}
    if layer_name == "head":
        if layout == BIG_TRANSFER:
            return {"kernel": "resnet/head/conv2d/kernel", "bias": "resnet/head/conv2d/bias"}
        return {"kernel": "head/kernel", "bias": "head/bias"}
    match = re.match(r"^(block\d+)_(unit\d+)_(a|b|c|proj)_(conv|gn)$", layer_name)
    if not match:
        return {}
    block, unit, part, kind = match.groups()
    index = {"a": 1, "b": 2, "c": 3}.get(part)
    if layout == BIG_TRANSFER:
        unit_prefix = f"resnet/{block}/{unit}"
        if part == "proj":
            return {"kernel": f"{unit_prefix}/a/proj/standardized_conv2d/kernel"}
        if kind == "conv":
            return {"kernel": f"{unit_prefix}/{part}/standardized_conv2d/kernel"}
        return {"gamma": f"{unit_prefix}/{part}/group_norm/gamma", "beta": f"{unit_prefix}/{part}/group_norm/beta"}
    unit_prefix = f"{block}/{unit}"
    if part == "proj":
        return {"kernel": f"{unit_prefix}/conv_proj/kernel"}
    if kind == "conv":
        return {"kernel": f"{unit_prefix}/conv{index}/kernel"}
    return {"gamma": f"{unit_prefix}/gn{index}/scale", "beta": f"{unit_prefix}/gn{index}/bias"}


def _squeezed(shape) -> tuple:
    return tuple(int(size) for size in shape if size != 1)


def _summarise(label: str, items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
    return f"{len(items)} {label} [{shown}]"


def _bit_backbone(model):
    from funmatch.models.classifier import Classifier
    from funmatch.models.registry import family

    if isinstance(model, Classifier):
        if family(model.arch) != "bit":
            raise FunmatchError(f"model {model.arch!r} is not a BiT ResNet-V2; BiT .npz checkpoints need a bit_r* model")
        return model.backbone
    names = {layer.name for layer in model.layers}
    if "root_conv" not in names or "pre_head_gn" not in names:
        raise FunmatchError(f"model {model.name!r} is not a funmatch BiT ResNet-V2 (no root_conv / pre_head_gn layers)")
    return model


def checkpoint_num_classes(arrays: dict[str, np.ndarray]) -> int | None:
    """Class count of the checkpoint's head, or None when it has no head."""
    for key in ("resnet/head/conv2d/kernel", "head/kernel"):
        if key in arrays:
            return int(arrays[key].shape[-1])
    return None


def load_bit_npz(model, path_or_url, *, num_classes: int | None = None, resolution: int | None = None, cache: str | None = None, **create_kwargs):
    """Loads an official BiT `.npz` (big_transfer or big_vision `bit_paper` layout) into a BiT model.

    Args:
      model: a `funmatch.models.create("bit_r...")` model, or an arch name (e.g. "bit_r50x1"):
        then the model is created with `num_classes` (default: the checkpoint head's class count),
        `resolution` and `create_kwargs`; for a `bit_paper` checkpoint the root pool pads with
        -inf as big_vision does (`root_pool_padding="min"`) unless `create_kwargs` say otherwise.
      path_or_url: local path, URL / gs:// path (cached, see `resolve_checkpoint`) or known tag.
      num_classes: only with an arch name (a model already has its class count).

    Returns the model. Raises FunmatchError listing missing / unexpected / mis-shaped keys.
    If the checkpoint's head has another class count than the model, the model's head is set to
    zeros and a warning is logged.
    """
    source = os.fspath(path_or_url)
    arrays = read_checkpoint(source, cache=cache)
    layout = detect_layout(arrays)
    if layout is None:
        raise FunmatchError(
            f"{source}: not a BiT checkpoint (neither 'resnet/root_block/standardized_conv2d/kernel' "
            "(big_transfer) nor 'root_block/conv_root/kernel' (big_vision bit_paper) is in it)"
        )
    if isinstance(model, str):
        from funmatch.models.registry import create

        if layout == BIT_PAPER:
            create_kwargs.setdefault("root_pool_padding", "min")
        classes = num_classes or checkpoint_num_classes(arrays)
        if classes is None:
            raise FunmatchError(f"{source}: the checkpoint has no head; pass num_classes")
        model = create(model, classes, resolution=resolution, **create_kwargs)
    elif num_classes is not None and getattr(model, "num_classes", num_classes) != num_classes:
        raise FunmatchError(f"num_classes={num_classes} differs from the model's {model.num_classes}")
    backbone = _bit_backbone(model)

    assignments = []  # (variable, array)
    consumed: set[str] = set()
    missing: list[str] = []
    misshaped: list[str] = []
    head_reset = None
    for layer in backbone.layers:
        keys = _layer_keys(layer.name, layout)
        if layer.name == "head":
            kernel_key = keys["kernel"]
            if kernel_key in arrays:
                checkpoint_kernel = arrays[kernel_key]
                model_kernel = layer.kernel
                if checkpoint_kernel.shape[-1] != model_kernel.shape[-1] and (
                    _squeezed(checkpoint_kernel.shape[:-1]) == _squeezed(model_kernel.shape[:-1])
                ):
                    head_reset = (int(checkpoint_kernel.shape[-1]), int(model_kernel.shape[-1]))
                    consumed.update(key for key in keys.values() if key in arrays)
                    for variable in (layer.kernel, layer.bias):
                        assignments.append((variable, np.zeros(variable.shape, dtype="float32")))
                    continue
        for variable_name, key in keys.items():
            variable = getattr(layer, variable_name)
            if key not in arrays:
                missing.append(key)
                continue
            consumed.add(key)
            value = arrays[key]
            if tuple(value.shape) != tuple(variable.shape):
                if _squeezed(value.shape) != _squeezed(variable.shape):
                    misshaped.append(f"{key} {tuple(value.shape)} (model {layer.name}/{variable_name} {tuple(variable.shape)})")
                    continue
                value = value.reshape(variable.shape)
            assignments.append((variable, value.astype("float32")))
    unexpected = sorted(set(arrays) - consumed)
    problems = []
    if missing:
        problems.append(_summarise("missing", missing))
    if unexpected:
        problems.append(_summarise("unexpected", unexpected))
    if misshaped:
        problems.append(_summarise("mis-shaped", misshaped))
    if problems:
        arch = getattr(model, "arch", backbone.name)
        raise FunmatchError(f"{source}: {layout} checkpoint does not fit {arch}: " + "; ".join(problems))

    for variable, value in assignments:
        variable.assign(value)
    if head_reset is not None:
        logger.warning(
            "%s: checkpoint head has %d classes, the model %d: head re-initialised to zeros",
            source,
            head_reset[0],
            head_reset[1],
        )
    if layout == BIT_PAPER:
        pool = backbone.get_layer("root_pool")
        if pool.pad_with != "min":
            logger.warning(
                "%s: big_vision bit_paper checkpoints were trained with a -inf padded root max-pool; "
                "create the model with root_pool_padding='min' to match exactly",
                source,
            )
    return model


def convert_checkpoint(npz: str, arch: str, out: str, *, num_classes: int | None = None, resolution: int | None = None, cache: str | None = None):
    """`funmatch models convert`: an official `.npz` -> a funmatch `.keras` file. Returns the model."""
    from funmatch.models.classifier import save

    model = load_bit_npz(arch, npz, num_classes=num_classes, resolution=resolution, cache=cache)
    save(model, out)
    return model
