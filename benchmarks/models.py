"""Throughput of registry models on the current Keras backend and device (prints a table).

    KERAS_BACKEND=jax        python benchmarks/models.py
    KERAS_BACKEND=tensorflow python benchmarks/models.py
    python benchmarks/models.py --models bit_r26x0.25,tiny_cnn --resolution 64 --batch 64

Defaults: `bit_r50x1` and `bit_r152x2` at 128 px, batch 32, then the small CPU candidates at 64 px.
Both backends go through the same Keras path the trainers use, so the comparison is fair:
forward = `model.predict_on_batch` (jitted: XLA on JAX, tf.function on TensorFlow), forward +
backward = `model.train_on_batch` with `jit_compile="auto"` (SGD step, cross-entropy on logits).
Warm-up calls (compilation) are excluded; the figure is the median over timed calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import funmatch.models as fm  # noqa: E402

LARGE = ["bit_r50x1", "bit_r152x2"]
SMALL = ["bit_r26x0.25", "bit_r14x0.25", "tiny_cnn", "tiny_cnn_w8", "mobilenet_v3_small"]


def _median_seconds(function, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark(name: str, resolution: int, batch: int, warmup: int, repeats: int, num_classes: int = 10) -> dict:
    model = fm.create(name, num_classes, resolution=resolution)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(batch, resolution, resolution, 3)).astype("float32")
    labels = rng.integers(0, num_classes, size=(batch,))
    model.compile(
        optimizer=keras.optimizers.SGD(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile="auto",
    )

    def forward():
        np.asarray(model.predict_on_batch(images))

    def train():
        float(np.asarray(model.train_on_batch(images, labels)))

    forward_seconds = _median_seconds(forward, warmup, repeats)
    train_seconds = _median_seconds(train, warmup, repeats)
    return {
        "name": name,
        "resolution": resolution,
        "batch": batch,
        "params": fm.count_params(model),
        "flops": fm.count_flops(model, resolution),
        "forward": batch / forward_seconds,
        "train": batch / train_seconds,
        "jit": model.jit_compile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="comma-separated names (default: the large and small sets)")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.models:
        plan = [(name, args.resolution or 128) for name in args.models.split(",")]
    else:
        plan = [(name, 128) for name in LARGE] + [(name, 64) for name in SMALL]

    import jax

    device = jax.devices()[0].device_kind if keras.backend.backend() == "jax" else "tf:" + (
        "GPU" if __import__("tensorflow").config.list_physical_devices("GPU") else "CPU")
    print(f"backend={keras.backend.backend()} device={device} cpu_count={os.cpu_count()} batch={args.batch} "
          f"warmup={args.warmup} repeats={args.repeats}")
    print(f"{'model':<20}{'res':>5}{'params':>14}{'GFLOPs/img':>12}{'fwd img/s':>12}{'fwd+bwd img/s':>15}{'jit':>6}")
    for name, resolution in plan:
        row = benchmark(name, resolution, args.batch, args.warmup, args.repeats)
        print(f"{row['name']:<20}{row['resolution']:>5}{row['params']:>14,}{row['flops'] / 1e9:>12.3f}"
              f"{row['forward']:>12.1f}{row['train']:>15.1f}{str(row['jit']):>6}", flush=True)


if __name__ == "__main__":
    main()
