"""Logits of a model on a split, every example counted once, and the one eval pp builder.

`predict_logits` runs a model on the padded eval batches of `funmatch.data.pipeline.eval_dataset`
and drops the padding with the `_mask` key. Each model is evaluated at its own resolution R with
`decode|resize_small(S)|central_crop(R)|value_range(-1, 1)`, S = round(R / crop_fraction).
"""

from __future__ import annotations


import numpy as np

from funmatch.errors import FunmatchError


# The paper's eval pp: resize_small(160)|central_crop(128).
DEFAULT_CROP_FRACTION = 128 / 160


def eval_pp(resolution: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> str:
    """The eval pp spec at `resolution`: resize the shorter side to R / crop_fraction, central-crop R."""
    if not 0 < crop_fraction <= 1:
        raise FunmatchError(f"--crop-fraction must be in (0, 1], got {crop_fraction}")
    small = int(round(resolution / crop_fraction))
    return f'decode|resize_small({small})|central_crop({resolution})|value_range(-1, 1)|keep("image", "label", "index")'


def predict_logits(model, dataset, *, image_key: str = "image", progress: bool = False) -> dict[str, np.ndarray]:
    """Logits [N, C], labels [N] and example indices [N] (when present) of the real examples.

    `dataset` yields dicts with `image_key`, `label` and `_mask` (padding rows have mask 0).
    """
    logits, labels, indices = [], [], []
    iterator = dataset
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(dataset, desc="evaluate", unit="batch", leave=False)
    for batch in iterator:
        mask = np.asarray(batch["_mask"]).astype(bool)
        # numpy in: a tf.Tensor from tf.data cannot enter a jax.jit-ed predict step.
        out = np.asarray(model.predict_on_batch(np.asarray(batch[image_key])), dtype=np.float32)
        logits.append(out[mask])
        labels.append(np.asarray(batch["label"])[mask])
        if "index" in batch:
            indices.append(np.asarray(batch["index"])[mask])
    result = {
        "logits": np.concatenate(logits) if logits else np.zeros((0, 0), np.float32),
        "labels": np.concatenate(labels).astype(np.int64) if labels else np.zeros((0,), np.int64),
    }
    if indices:
        result["index"] = np.concatenate(indices).astype(np.int64)
    return result


def split_logits(model, data_dir, split, spec, batch_size, max_examples=0) -> dict[str, np.ndarray]:
    """Logits of `model` on `split`; with `max_examples`, on a strided subset (every k-th example,
    so that a class-sorted split still gives a subset spread over all classes).

    With several processes each evaluates its own share (the split's shard blocks, read by no other
    process; `pipeline.eval_dataset(by_file=True)`) and the shares are gathered, so every process returns
    the whole result, each example counted once, in index order.
    """
    from funmatch import runtime
    from funmatch.data import pipeline

    total = pipeline.num_examples(data_dir, split)
    stride = -(-total // max_examples) if max_examples and total > max_examples else 1
    process_index, process_count = runtime.process_info()
    dataset = pipeline.eval_dataset(data_dir, split, spec, batch_size, process_index=process_index,
                                    process_count=process_count, stride=stride, by_file=True)
    result = predict_logits(model, dataset)
    if process_count == 1:
        return result
    gathered = _gather_processes(result)
    if "index" in gathered:
        order = np.argsort(gathered["index"], kind="stable")
        gathered = {key: value[order] for key, value in gathered.items()}
    return gathered


def _gather_processes(result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every process's rows of `result`, concatenated in process order, on every process (JAX collectives;
    the shares may differ in length by the padding each process dropped)."""
    from jax.experimental import multihost_utils

    count = int(len(result["labels"]))
    counts = np.asarray(multihost_utils.process_allgather(np.array([count], np.int32))).reshape(-1)
    longest = int(counts.max())
    padded = {key: np.concatenate([value, np.zeros((longest - count, *value.shape[1:]), value.dtype)])
              for key, value in result.items()}
    # int64 would be narrowed to int32 by JAX without x64: labels and indices are sent as int32.
    sent = {key: value.astype(np.int32) if value.dtype == np.int64 else value for key, value in padded.items()}
    stacked = multihost_utils.process_allgather(sent)
    return {key: np.concatenate([np.asarray(stacked[key])[p, :n] for p, n in enumerate(counts)]).astype(result[key].dtype)
            for key in result}
