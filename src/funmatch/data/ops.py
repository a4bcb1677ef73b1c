"""Preprocessing ops: a registry of small ops composed from a spec string (big_vision style).

A spec is ops joined by `|`, each a Python-literal call, e.g.

    decode|inception_crop(128)|flip_lr|copy("image", "teacher")|resize(64)|value_range(-1, 1)

`get_preprocess_fn(spec)` turns it into one function `dict -> dict` that maps a single (unbatched)
example. Every op reads and writes one entry of the dict, chosen with `key=` (default "image");
images are `[H, W, C]` tensors.

Randomness is stateless and per example. The input pipeline puts a per-example seed into the
dict under `RNG_KEY` (int64 `[2]`, derived from the run seed and the example's global position);
each random op folds a fixed salt into it, made from the op's random family, its key and how many
times that (family, key) pair already occurred in the spec. Hence:

* the same example at the same position always gets the same augmentation (exact resume);
* two random ops on different keys draw independent randomness (the "independent" mode);
* `copy("image", "teacher")` after a crop gives the teacher the *same* crop;
* `decode_jpeg_and_inception_crop(s)` picks the same window as `decode|inception_crop(s)` and gives
  the same pixels up to libjpeg's chroma upsampling at the crop border (a level or two), faster.

Without `RNG_KEY` in the dict (eager calls outside the pipeline) the seed `DEFAULT_RNG` is used.

One file over 400 lines on purpose: the registry is a list of small ops that share the seeding rules
above; a reader looks up any op of a spec string here.
"""

from __future__ import annotations

import ast
import zlib
from typing import Callable

import tensorflow as tf

from funmatch.errors import FunmatchError

# Where the per-example seed travels through the pipeline; `keep` and the pipeline drop it.
RNG_KEY = "_rng"
DEFAULT_RNG = (0, 0)

Example = dict[str, tf.Tensor]
Op = Callable[[Example], Example]


class _Registered:
    """A registered op factory, with the name of its random family (None when deterministic)."""

    def __init__(self, factory: Callable[..., Op], random_family: str | None, batchable: bool = False):
        self.factory = factory
        self.random_family = random_family
        self.batchable = batchable


_REGISTRY: dict[str, _Registered] = {}


def register(name: str, *, random_family: str | None = None, batchable: bool = False):
    """Decorator registering `make_op(*args, **kwargs) -> fn(dict) -> dict` under `name`.

    Random ops set `random_family` (ops of one family on one key share their randomness, which is
    what makes the fused decode+crop equal to decode then crop) and receive a keyword `rng_salt`
    (an int) from `get_preprocess_fn`; they must fold it into the example seed (see `op_seed`).
    `batchable` ops are elementwise / key selection: applied to a batch they give the batch of
    their per-example results, so the pipelines run a spec's trailing batchable ops once per batch.
    """

    def decorator(factory):
        _REGISTRY[name] = _Registered(factory, random_family, batchable)
        return factory

    return decorator


def registered_ops() -> list[str]:
    """Names of all registered ops, sorted."""
    return sorted(_REGISTRY)


# ----------------------------------------------------------------------------------------------
# Spec parsing


def parse_spec(spec: str) -> list[tuple[str, tuple, dict]]:
    """Splits a spec into `(op name, positional args, keyword args)`; arguments are Python literals."""
    if not isinstance(spec, str) or not spec.strip():
        raise FunmatchError(f"pp spec {spec!r}: empty (expected ops joined by '|', e.g. 'decode|flip_lr')")
    parsed = []
    for part in spec.split("|"):
        text = part.strip()
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            raise FunmatchError(f"pp spec {spec!r}: cannot parse op {text!r}") from None
        if isinstance(node, ast.Name):
            parsed.append((node.id, (), {}))
            continue
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise FunmatchError(f"pp spec {spec!r}: op {text!r} is not of the form name or name(args)")
        try:
            args = tuple(ast.literal_eval(a) for a in node.args)
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise FunmatchError(
                f"pp spec {spec!r}: op {node.func.id!r} has a non-literal argument in {text!r}"
            ) from None
        parsed.append((node.func.id, args, kwargs))
    return parsed


def _salt(text: str) -> int:
    """A stable (process- and run-independent) 31-bit salt for a string."""
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def get_preprocess_fn(spec: str) -> Op:
    """Composes the ops of `spec` into one function mapping an example dict to a new dict.

    Raises FunmatchError naming the op and the spec for an unknown op or a bad argument.
    """
    return _compose(_build_ops(spec))


def get_split_preprocess_fns(spec: str) -> tuple[Op, Op | None]:
    """(per-example fn, batch fn or None): the spec's trailing run of batchable ops (e.g.
    `value_range`, `keep`) goes into the batch fn, which the pipelines apply after batching —
    the same result, computed once per batch instead of once per image."""
    built = _build_ops(spec)
    split = len(built)
    while split > 0 and built[split - 1][1]:
        split -= 1
    per_example = _compose(built[:split])
    return per_example, (_compose(built[split:]) if split < len(built) else None)


def _compose(built: list[tuple[Op, bool]]) -> Op:
    ops = [op for op, _ in built]

    def preprocess(example: Example) -> Example:
        example = dict(example)
        for op in ops:
            example = op(example)
        return example

    return preprocess


def _build_ops(spec: str) -> list[tuple[Op, bool]]:
    """The spec's ops, each with its `batchable` flag."""
    ops: list[tuple[Op, bool]] = []
    occurrences: dict[tuple[str, str], int] = {}
    for name, args, kwargs in parse_spec(spec):
        if name not in _REGISTRY:
            raise FunmatchError(
                f"pp spec {spec!r}: unknown op {name!r} (known: {', '.join(registered_ops())})"
            )
        registered = _REGISTRY[name]
        if registered.random_family is not None:
            key = kwargs.get("key", "image")
            count = occurrences.get((registered.random_family, key), 0)
            occurrences[(registered.random_family, key)] = count + 1
            kwargs = dict(kwargs, rng_salt=_salt(f"{registered.random_family}/{key}/{count}"))
        try:
            ops.append((registered.factory(*args, **kwargs), registered.batchable))
        except (TypeError, ValueError) as error:
            raise FunmatchError(f"pp spec {spec!r}: bad arguments for op {name!r}: {error}") from None
    return ops


def op_seed(example: Example, salt: int) -> tf.Tensor:
    """The seed (int32/int64 `[2]`) of one random op for this example: the example seed with `salt` folded in."""
    rng = example.get(RNG_KEY)
    if rng is None:
        rng = tf.constant(DEFAULT_RNG, tf.int64)
    return tf.random.experimental.stateless_fold_in(rng, salt)


def _check_key(example: Example, key: str, op_name: str) -> tf.Tensor:
    if key not in example:
        raise FunmatchError(f"pp op {op_name!r}: key {key!r} not in the example (keys: {sorted(example)})")
    return example[key]


def _size_pair(size, op_name: str) -> tuple[int, int]:
    """`size` as (height, width) from an int or a pair of ints."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size, size
    if (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        return int(size[0]), int(size[1])
    raise ValueError(f"{op_name}: size must be a positive int or a pair (height, width), got {size!r}")


def _resize_keep_dtype(image: tf.Tensor, size_hw, method: str = "bilinear", antialias: bool = False) -> tf.Tensor:
    """Resizes `[H, W, C]` to `size_hw`; integer images are rounded and clipped back to their dtype."""
    dtype = image.dtype
    resized = tf.image.resize(image, size_hw, method=method, antialias=antialias)
    if dtype.is_integer:
        resized = tf.saturate_cast(tf.round(resized), dtype)
    else:
        resized = tf.cast(resized, dtype)
    return resized


# ----------------------------------------------------------------------------------------------
# Inception crop window


def sample_crop_window(
    image_shape: tf.Tensor,
    seed: tf.Tensor,
    area_range: tuple[float, float] = (0.05, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[tf.Tensor, tf.Tensor]:
    """Samples an inception-crop window in an image of shape `image_shape` (`[H, W, C]`).

    Exactly the official recipe's sampler (big_vision `inception_crop`):
    `tf.image.sample_distorted_bounding_box` with no boxes and `min_object_covered=0`, area fraction
    in `area_range`, aspect ratio (width / height) in `aspect_range`; here its stateless twin, so the
    window is a function of `seed`. One fused kernel, far cheaper inside tf.data than sampling with
    dozens of small ops.

    Returns:
      (begin, size): int32 `[3]` each, `[offset_y, offset_x, 0]` and `[height, width, -1]`, ready for `tf.slice`.
    """
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.cast(image_shape, tf.int32),
        bounding_boxes=tf.zeros([0, 0, 4], tf.float32),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=aspect_range,
        area_range=area_range,
        use_image_if_no_bounding_boxes=True,
    )
    return begin, size


def _area_range(area_min, area_max, op_name: str) -> tuple[float, float]:
    if not (0 < area_min <= area_max <= 100):
        raise ValueError(f"{op_name}: need 0 < area_min <= area_max <= 100 (percent), got {area_min}, {area_max}")
    return area_min / 100.0, area_max / 100.0


# ----------------------------------------------------------------------------------------------
# The ops


@register("decode")
def make_decode(channels: int = 3, key: str = "image") -> Op:
    """Decodes encoded image bytes (JPEG, PNG, BMP, first GIF frame) to uint8 `[H, W, channels]`."""

    def op(example):
        data = _check_key(example, key, "decode")
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        return {**example, key: image}

    return op


@register("decode_jpeg_and_inception_crop", random_family="inception_crop")
def make_decode_jpeg_and_inception_crop(
    size=None, area_min=5, area_max=100, method: str = "bilinear", key: str = "image", rng_salt: int = 0
) -> Op:
    """Fused `decode|inception_crop(size)` for JPEG bytes: decodes only the crop window.

    Same window (same seed salt) as the unfused ops, without decoding the rest of the image; pixels
    equal up to chroma upsampling at the crop border (libjpeg crop decoding), at most a few levels.
    Output uint8 `[size, size, 3]` (or the crop's own size when `size` is None).
    """
    size_hw = None if size is None else _size_pair(size, "decode_jpeg_and_inception_crop")
    area_range = _area_range(area_min, area_max, "decode_jpeg_and_inception_crop")

    def op(example):
        data = _check_key(example, key, "decode_jpeg_and_inception_crop")
        shape = tf.io.extract_jpeg_shape(data)
        begin, size = sample_crop_window(shape, op_seed(example, rng_salt), area_range)
        window = tf.concat([begin[:2], size[:2]], 0)  # [offset_y, offset_x, height, width]
        image = tf.io.decode_and_crop_jpeg(data, window, channels=3)
        if size_hw is not None:
            image = _resize_keep_dtype(image, size_hw, method)
        return {**example, key: image}

    return op


@register("inception_crop", random_family="inception_crop")
def make_inception_crop(
    size=None, area_min=5, area_max=100, method: str = "bilinear", key: str = "image", rng_salt: int = 0
) -> Op:
    """Random crop with area `area_min`..`area_max` % of the image and aspect 3/4..4/3 (no minimum
    object coverage; the sampler of `tf.image.sample_distorted_bounding_box`), resized to `size`
    (bilinear, keeps the dtype); `size=None` keeps the crop's own size."""
    size_hw = None if size is None else _size_pair(size, "inception_crop")
    area_range = _area_range(area_min, area_max, "inception_crop")

    def op(example):
        image = _check_key(example, key, "inception_crop")
        begin, size = sample_crop_window(tf.shape(image), op_seed(example, rng_salt), area_range)
        image = tf.slice(image, begin, size)
        if size_hw is not None:
            image = _resize_keep_dtype(image, size_hw, method)
        return {**example, key: image}

    return op


def _random_flip(key: str, rng_salt: int, axis: int, op_name: str) -> Op:
    def op(example):
        image = _check_key(example, key, op_name)
        flip = tf.random.stateless_uniform([], seed=op_seed(example, rng_salt)) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, axis=[axis]), lambda: image)
        return {**example, key: image}

    return op


@register("flip_lr", random_family="flip_lr")
def make_flip_lr(key: str = "image", rng_salt: int = 0) -> Op:
    """Flips `[H, W, C]` left-right with probability 1/2."""
    return _random_flip(key, rng_salt, axis=1, op_name="flip_lr")


@register("flip_ud", random_family="flip_ud")
def make_flip_ud(key: str = "image", rng_salt: int = 0) -> Op:
    """Flips `[H, W, C]` upside down with probability 1/2 (valid for overhead imagery, not for photos)."""
    return _random_flip(key, rng_salt, axis=0, op_name="flip_ud")


@register("rot90", random_family="rot90")
def make_rot90(key: str = "image", rng_salt: int = 0) -> Op:
    """Rotates `[H, W, C]` by k x 90 degrees, k uniform in {0, 1, 2, 3} (square images keep their shape).

    With `flip_lr` this samples the 8 symmetries of the square, the usual augmentation for satellite tiles.
    """

    def op(example):
        image = _check_key(example, key, "rot90")
        k = tf.random.stateless_uniform([], seed=op_seed(example, rng_salt), maxval=4, dtype=tf.int32)
        return {**example, key: tf.image.rot90(image, k)}

    return op


@register("resize")
def make_resize(size, method: str = "bilinear", antialias: bool = True, key: str = "image") -> Op:
    """Resizes to `size` (int: square, or (height, width)); keeps the dtype. Antialiased by default
    so that a teacher->student downscale of the same crop does not alias."""
    size_hw = _size_pair(size, "resize")
    if method not in ("bilinear", "bicubic", "nearest", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic"):
        raise ValueError(f"resize: unknown method {method!r}")

    def op(example):
        image = _check_key(example, key, "resize")
        return {**example, key: _resize_keep_dtype(image, size_hw, method, antialias)}

    return op


@register("resize_small")
def make_resize_small(size: int, method: str = "bilinear", antialias: bool = True, key: str = "image") -> Op:
    """Resizes so that the shorter side is `size`, keeping the aspect ratio (longer side rounded)."""
    if not (isinstance(size, int) and size > 0):
        raise ValueError(f"resize_small: size must be a positive int, got {size!r}")

    def op(example):
        image = _check_key(example, key, "resize_small")
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = size / tf.reduce_min(shape)
        new_hw = tf.cast(tf.maximum(tf.round(shape * scale), size), tf.int32)
        return {**example, key: _resize_keep_dtype(image, new_hw, method, antialias)}

    return op


@register("central_crop")
def make_central_crop(size, key: str = "image") -> Op:
    """Crops the central `size` (int or (height, width)) window; the image must be at least that big."""
    crop_h, crop_w = _size_pair(size, "central_crop")

    def op(example):
        image = _check_key(example, key, "central_crop")
        shape = tf.shape(image)
        offset_y = (shape[0] - crop_h) // 2
        offset_x = (shape[1] - crop_w) // 2
        cropped = image[offset_y : offset_y + crop_h, offset_x : offset_x + crop_w]
        cropped = tf.ensure_shape(cropped, [crop_h, crop_w, image.shape[-1]])
        return {**example, key: cropped}

    return op


@register("value_range", batchable=True)
def make_value_range(lo: float, hi: float, in_min: float = 0, in_max: float = 255, clip_values: bool = False,
                     key: str = "image") -> Op:
    """Maps values linearly from [in_min, in_max] to [lo, hi]; output float32."""
    if in_max == in_min:
        raise ValueError("value_range: in_min and in_max must differ")
    scale = (hi - lo) / (in_max - in_min)
    offset = lo - in_min * scale

    def op(example):
        image = tf.cast(_check_key(example, key, "value_range"), tf.float32)
        image = image * scale + offset  # = (image - in_min) / (in_max - in_min) * (hi - lo) + lo
        if clip_values:
            image = tf.clip_by_value(image, min(lo, hi), max(lo, hi))
        return {**example, key: image}

    return op


@register("copy", batchable=True)
def make_copy(inkey: str, outkey: str) -> Op:
    """Copies entry `inkey` to `outkey` (e.g. a teacher view of the same crop)."""
    if not (isinstance(inkey, str) and isinstance(outkey, str)):
        raise ValueError("copy: inkey and outkey must be strings")

    def op(example):
        return {**example, outkey: _check_key(example, inkey, "copy")}

    return op


@register("keep", batchable=True)
def make_keep(*keys: str) -> Op:
    """Keeps only `keys` (drops everything else, including the per-example seed)."""
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError("keep: give one or more key names as strings")

    def op(example):
        return {k: _check_key(example, k, "keep") for k in keys}

    return op


@register("drop", batchable=True)
def make_drop(*keys: str) -> Op:
    """Drops `keys` (missing keys are ignored)."""
    if not all(isinstance(k, str) for k in keys):
        raise ValueError("drop: key names must be strings")

    def op(example):
        return {k: v for k, v in example.items() if k not in keys}

    return op


__all__ = [
    "DEFAULT_RNG",
    "RNG_KEY",
    "get_preprocess_fn",
    "op_seed",
    "parse_spec",
    "register",
    "registered_ops",
    "sample_crop_window",
]

