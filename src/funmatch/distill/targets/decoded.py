"""The decoded-image cache: every image of the split decoded once and held in memory, so that all of its
views (K in generation, one per pass in training, own and partner alike) are cut from it without another
JPEG decode. See `funmatch.distill.targets`.

Only views cut from the fully decoded image (format 2, `ViewMaker.decodes_whole`) can be served so: a
crop-decoded JPEG (format 1) differs from a crop of the decoded image at the window's border. The images
are held as one flat uint8 tensor with row splits (any mix of image sizes), inside the input pipeline;
they are used when their estimated size fits under a cap (default 1 GiB; EuroSAT's 27,000 64 px images
take 332 MB, eurosat_mini's 1,000 take 12 MB; ImageNet does not fit and keeps one decode per view).
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from funmatch.distill.targets.views import ViewMaker, _parse

DECODED_CACHE_MAX_BYTES = 1 << 30
_SAMPLED_IMAGES = 32  # images decoded to estimate the cache's size (the largest of them times N)


def decoded_cache_plan(card: dict, data_dir, *, max_bytes: int | None = None) -> dict[str, Any]:
    """Whether a pipeline over this store decodes every image once and keeps it (see above), and why.

    Returns {"use": bool, "bytes": the estimate (the largest of the first 32 decoded images times N),
    "max_bytes": the cap, "reason": one line}.
    """
    max_bytes = DECODED_CACHE_MAX_BYTES if max_bytes is None else int(max_bytes)
    maker = ViewMaker(card, int(card["teacher"]["resolution"]))
    plan = {"use": False, "bytes": 0, "max_bytes": max_bytes}
    if not maker.decodes_whole():
        return {**plan, "reason": "decoded cache: not used (this store's views are crop-decoded: format "
                                  f"{card['format']!r}, one decode per view)"}
    if int(card["views"]) == 1 and not maker.needs_partner():
        return {**plan, "reason": "decoded cache: not used (one view per image and no partner: one decode each)"}
    if max_bytes <= 0:
        return {**plan, "reason": "decoded cache: off (cap 0)"}
    estimate = _estimate_bytes(maker, card, data_dir)
    size = f"{int(card['data']['num_examples']):,} images ~ {estimate / 2**20:,.0f} MiB decoded"
    plan["bytes"] = estimate
    if estimate > max_bytes:
        return {**plan, "reason": f"decoded cache: not used ({size} > cap {max_bytes / 2**20:,.0f} MiB): "
                                  "one decode per view"}
    return {**plan, "use": True, "reason": f"decoded cache: {size} <= cap {max_bytes / 2**20:,.0f} MiB: "
                                           "each image decoded once for all of its views"}


def _estimate_bytes(maker: ViewMaker, card: dict, data_dir) -> int:
    import tensorflow as tf

    path = pathlib.Path(data_dir) / card["data"]["files"][0]
    largest = 0
    for serialized in tf.data.TFRecordDataset(str(path)).take(_SAMPLED_IMAGES):
        largest = max(largest, int(tf.size(maker.decoded(_parse(serialized)))))
    return int(largest) * int(card["data"]["num_examples"])


def decoded_images(maker: ViewMaker, paths: list[str], total: int):
    """One element (pixels uint8 [sum of H·W·C], row_splits int64 [N + 1], shapes int64 [N, 3], labels [N]):
    every image decoded, in record order (in parallel)."""
    import tensorflow as tf

    def decode(serialized):
        record = _parse(serialized)
        image = maker.decoded(record)
        return {"pixels": tf.reshape(image, [-1]), "shape": tf.shape(image, out_type=tf.int64),
                "label": record["label"]}

    records = tf.data.TFRecordDataset(paths, buffer_size=8 << 20)
    made = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    made = made.ragged_batch(total)
    return made.map(lambda b: (b["pixels"].flat_values, b["pixels"].row_splits, b["shape"], b["label"]))


def image_at(maker: ViewMaker, pixels, row_splits, shapes, index):
    """Image `index` of `decoded_images`' element, uint8 [H, W, C] (with the decode's static shape)."""
    import tensorflow as tf

    image = tf.reshape(pixels[row_splits[index]: row_splits[index + 1]], shapes[index])
    return tf.ensure_shape(image, [None, None, maker.channels])


def one_pass_from_decoded(maker: ViewMaker, decoded, total: int, view):
    """`views._one_pass` from the decoded images (`decoded`: the element of `decoded_images`): the same
    element, the same bits, no decode."""
    import tensorflow as tf

    pixels, row_splits, shapes, labels = decoded

    def make(index):
        image = image_at(maker, pixels, row_splits, shapes, index)
        return maker.partial_from_decoded(image, index, view), maker.coefficient(index, view), labels[index]

    made = tf.data.Dataset.range(total).map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return made.batch(total)


def decoded_views_dataset(card: dict, data_dir, units: list[tuple[int, int]], resolution: int, batch_size: int):
    """`views.views_dataset` (the same batches, the same bits) with every image decoded once for all the
    views of `units`: the own and the partner view are cut from the decoded images in memory."""
    import tensorflow as tf

    layout = card["data"]
    paths = [str(pathlib.Path(data_dir) / p) for p in layout["files"]]
    total = int(layout["num_examples"])
    starts_t, sizes_t = tf.constant(layout["file_starts"], tf.int64), tf.constant(layout["file_sizes"], tf.int64)
    shifts_t = tf.constant(card["partner_shifts"], tf.int64)
    units_t = tf.constant(np.asarray(units, np.int64).reshape(-1, 2))
    maker = ViewMaker(card, resolution)

    def from_decoded(pixels, row_splits, shapes, labels):
        def unit(pair):
            start = tf.gather(starts_t, pair[1])
            indices = tf.data.Dataset.range(start, start + tf.gather(sizes_t, pair[1]))
            return indices.map(lambda i: (i, pair[0]))

        def make(index, view):
            own = maker.partial_from_decoded(image_at(maker, pixels, row_splits, shapes, index), index, view)
            if not maker.needs_partner():
                return {"image": maker.finish(own[None])[0], "index": index, "view": view}
            j = (index + tf.gather(shifts_t, view)) % total
            partner = maker.partial_from_decoded(image_at(maker, pixels, row_splits, shapes, j), j, view)
            image = maker.mixed_batch(own[None], partner[None], maker.coefficient(index, view)[None])[0]
            return {"image": image, "index": index, "view": view}

        examples = tf.data.Dataset.from_tensor_slices(units_t).flat_map(unit)
        return examples.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    dataset = decoded_images(maker, paths, total).flat_map(from_decoded)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
