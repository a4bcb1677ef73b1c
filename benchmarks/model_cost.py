"""Cost of registry models as `funmatch evaluate` reports it, and the time of a full evaluation.

    KERAS_BACKEND=jax python benchmarks/model_cost.py [--models tiny_cnn@64 bit_r26x0.25@64 bit_r50x1@128]
                                                      [--repeats 20] [--evaluate]

For each `name@resolution` (random weights, 10 classes): parameters, FLOPs per image, `.keras` size,
and the latency of a compiled forward pass (jax.jit / tf.function with XLA) at batch 1 and 64,
median of `--repeats` calls after warm-up, with the throughput it implies. The load average is
printed too: on a shared machine, latency is only comparable between runs at a similar load.

With `--evaluate`: prepares the shipped eurosat_mini (1,000 test images, 64 px) into a temporary
folder and times `evaluate_models(student=tiny_cnn, teacher=bit_r26x0.25)` on its test split, with and
without the latency measurement (the models are untrained: this measures the tool, not accuracy).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
EUROSAT_MINI = REPO / "src" / "funmatch" / "assets" / "eurosat_mini"


def parse_model(text: str) -> tuple[str, int]:
    name, _, resolution = text.partition("@")
    return name, int(resolution or 64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny_cnn@64", "bit_r26x0.25@64", "bit_r50x1@128"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--evaluate", action="store_true")
    args = parser.parse_args()

    import keras

    from funmatch import models
    from funmatch.evaluation import device_name, evaluate_models, model_cost

    print(f"backend {keras.backend.backend()} on {device_name()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    header = f"{'model':<22}{'params':>10}{'MFLOPs':>10}{'size MB':>9}{'b1 ms':>9}{'b64 ms':>10}{'b64 img/s':>11}"
    print(header)
    print("-" * len(header))
    for text in args.models:
        name, resolution = parse_model(text)
        model = models.create(name, num_classes=10, resolution=resolution)
        cost = model_cost(model, None, resolution, latency=True, latency_repeats=args.repeats, latency_max_seconds=20)
        latency = cost["latency"]
        print(f"{text:<22}{cost['params']:>10,}{cost['flops_per_image'] / 1e6:>10.1f}{cost['size_bytes'] / 1e6:>9.2f}"
              f"{latency['batch_1']['median_ms']:>9.2f}{latency['batch_64']['median_ms']:>10.1f}"
              f"{latency['batch_64']['throughput_images_per_sec']:>11,.0f}")
    print(f"(latency compiler: {cost['latency_compiler']}; load average after: {os.getloadavg()[0]:.1f})")

    if args.evaluate:
        from funmatch.data.prepare import prepare

        with tempfile.TemporaryDirectory() as directory:
            data_dir = pathlib.Path(directory) / "eurosat_mini"
            started = time.perf_counter()
            prepare(f"folder:{EUROSAT_MINI}", data_dir, splits=["test"], progress=False)
            print(f"prepared eurosat_mini test in {time.perf_counter() - started:.1f} s")
            student = models.create("tiny_cnn", num_classes=10, resolution=64)
            teacher = models.create("bit_r26x0.25", num_classes=10, resolution=64)
            for latency in (False, True):
                started = time.perf_counter()
                report = evaluate_models(student, teacher, data_dir=data_dir, split="test", batch_size=64,
                                         latency=latency, latency_repeats=args.repeats)
                print(f"evaluate_models(tiny_cnn, bit_r26x0.25) on {report['data']['num_examples']} images, "
                      f"latency={latency}: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
