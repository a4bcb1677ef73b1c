"""The device check: distil bit_r50x1 <- bit_r152x2 at 128 px with the paper's batch on a GPU or TPU machine.

    python benchmarks/accelerator.py                 # on a lent GPU/TPU machine: ~5-8 minutes
    python benchmarks/accelerator.py --quick --allow-cpu   # tiny models, small batch: checks the script on CPU

One short script (at most ~8 minutes, `--budget-seconds`) for a machine with an accelerator:

1. `funmatch.runtime.setup()`: JAX backend, TensorFlow (the input pipeline) kept on the CPU, bf16 compute
   where the chip has it (`--precision`), `keras.distribution.DataParallel` over every local chip.
2. Synthesises JPEGs on the host and writes them as TFRecords with `funmatch prepare` (the real format).
3. Host input: img/s of the real training pipeline (`pipeline.train_dataset` with the distillation's
   `train_pp`: decode + inception crop + flip at 128 px), on the host's CPUs alone.
4. Device compute: `Distiller.fit` (function_matching: mixup, teacher forward, student forward/backward,
   T²·KL, the recipe's Adam with clipping and decoupled weight decay) on one batch already materialised
   in memory, repeated: compile time (the first step), median step time, img/s, MFU.
5. End to end: the same `fit` fed by the real pipeline (img/s; below the compute figure when the host's
   input is the bottleneck).

MFU = (teacher forward FLOPs + 3 x student forward FLOPs) per image x img/s / (chips x the chip's dense
bf16 peak); FLOPs are `funmatch.models.count_flops` (2 x multiply-adds, convolutions and dense layers).
Target: >= 40 % MFU on an H100/H200-class GPU. On a machine with no accelerator the script prints
"not measured" and exits 0 (use `--allow-cpu` to run it there anyway).

The batch is the paper's ImageNet batch (4096); if it does not fit in the chips' memory the script halves
it and says so. Prints one line per figure and a final `RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

# Dense bf16 peak TFLOP/s per chip, by the runtime's device_kind (lower case, first match wins).
# T4 has no bf16: its fp16 tensor-core peak is given (funmatch runs T4s in float32: MFU vs 65 is a bound).
PEAK_TFLOPS = [
    ("h200", 989.0), ("h100", 989.0), ("gh200", 989.0), ("a100", 312.0), ("l4", 121.0), ("a10", 125.0),
    ("t4", 65.0), ("v100", 125.0), ("tpu v6", 918.0), ("tpu v5 lite", 197.0), ("tpu v5e", 197.0),
    ("tpu v5p", 459.0), ("tpu v5", 459.0), ("tpu v4", 275.0), ("tpu v3", 123.0), ("tpu v2", 46.0),
]


def peak_tflops(device_kind: str) -> float | None:
    kind = device_kind.lower()
    return next((peak for key, peak in PEAK_TFLOPS if key in kind), None)


def synthesise(out_dir: pathlib.Path, count: int, size: int = 160, classes: int = 10) -> pathlib.Path:
    """`count` smooth random JPEGs in `classes` folders, prepared as TFRecords (train + a small validation)."""
    import numpy as np
    from PIL import Image

    from funmatch.data.prepare import prepare

    rng = np.random.default_rng(0)
    source = out_dir / "images"
    for split, n in (("train", count), ("validation", classes)):
        for i in range(n):
            folder = source / split / f"class{i % classes:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            low = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(low).resize((size, size), Image.BILINEAR).save(folder / f"{i:06d}.jpg", quality=90)
    data = out_dir / "data"
    prepare(f"folder:{source}", data, progress=False)
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="global batch (default: the paper's 4096)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--student", default="bit_r50x1")
    parser.add_argument("--teacher", default="bit_r152x2")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--steps", type=int, default=20, help="timed compute steps after the compile step")
    parser.add_argument("--images", type=int, default=8192, help="synthetic training images")
    parser.add_argument("--budget-seconds", type=float, default=480.0, help="later phases are skipped past this")
    parser.add_argument("--quick", action="store_true", help="tiny models, batch 16, 64 px: a check of the script")
    parser.add_argument("--allow-cpu", action="store_true", help="run on a machine with no accelerator")
    parser.add_argument("--workdir", default=None, help="where the synthetic TFRecords go (default: a temp folder)")
    args = parser.parse_args(argv)
    if args.quick:
        args.student, args.teacher, args.resolution = "tiny_cnn_w8", "tiny_cnn_w16", 64
        args.batch, args.steps, args.images = min(args.batch, 16), min(args.steps, 3), min(args.images, 64)
    started = time.perf_counter()
    result: dict = {"student": args.student, "teacher": args.teacher, "resolution": args.resolution}

    from funmatch import runtime

    os.environ.setdefault("KERAS_BACKEND", "jax")
    if runtime.detect_accelerator() == "CPU" and not args.allow_cpu:
        print("device check: not measured (no GPU or TPU on this machine; --allow-cpu runs it on the CPU)")
        print("RESULT " + json.dumps({**result, "measured": False}))
        return 0
    info = runtime.setup(precision=args.precision)
    result.update({k: info[k] for k in ("backend", "accelerator", "device_kind", "chips", "hosts", "precision")})

    import keras
    import numpy as np
    import tensorflow as tf

    from funmatch import models
    from funmatch.configs import get_config
    from funmatch.data import pipeline
    from funmatch.distill import Distiller
    from funmatch.optim import make_optimizer
    from funmatch.training.distill import train_pp

    def left() -> float:
        return args.budget_seconds - (time.perf_counter() - started)

    # --- Data on the host. ---
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="funmatch_device_check_"))
    t = time.perf_counter()
    data = synthesise(workdir, args.images)
    result["synthesise_seconds"] = round(time.perf_counter() - t, 1)
    print(f"synthesised {args.images} JPEGs as TFRecords in {result['synthesise_seconds']} s ({data})")
    config = _at_resolution(get_config("imagenet"), args.resolution)  # the recipe's optimiser, mixup, temperature
    spec = train_pp(config, "function_matching")

    # --- Host input throughput (the real pipeline, CPUs only). ---
    def real_dataset(batch):
        return pipeline.train_dataset(data, "train", spec, batch, seed=0, process_index=0, process_count=1)

    t, seen = time.perf_counter(), 0
    for i, batch in enumerate(real_dataset(min(args.batch, 256))):
        seen += int(batch["image"].shape[0])
        if i == 0:
            t = time.perf_counter()
            seen = 0
        if time.perf_counter() - t > min(30.0, max(5.0, left() / 10)):
            break
    result["host_input_img_per_s"] = round(seen / max(time.perf_counter() - t, 1e-9), 1)
    print(f"host input: {result['host_input_img_per_s']:,.0f} img/s (decode + inception crop + flip at "
          f"{args.resolution} px, {os.cpu_count()} CPUs)")

    # --- Models, FLOPs. ---
    num_classes = 10
    flops_teacher = models.count_flops(models.create(args.teacher, num_classes=1000, resolution=args.resolution),
                                       args.resolution)
    flops_student = models.count_flops(models.create(args.student, num_classes=1000, resolution=args.resolution),
                                       args.resolution)
    flops_per_image = flops_teacher + 3 * flops_student
    result.update(teacher_gflops=round(flops_teacher / 1e9, 2), student_gflops=round(flops_student / 1e9, 2))

    def build(batch):
        with runtime.distribution_scope():
            keras.utils.set_random_seed(0)
            teacher = runtime.apply_precision(models.create(args.teacher, num_classes=num_classes,
                                                            resolution=args.resolution))
            teacher.trainable = False
            student = runtime.apply_precision(models.create(args.student, num_classes=num_classes,
                                                            resolution=args.resolution))
            distiller = Distiller(teacher, student, mode="function_matching", temperature=config.temperature,
                                  mixup_p=config.mixup_p, seed=0)
            optimizer = make_optimizer(config.optimizer, learning_rate=config.learning_rate, total_steps=10_000,
                                       warmup_steps=100, weight_decay=config.weight_decay, clip_norm=config.clip_norm)
            distiller.compile(optimizer=optimizer)
        return distiller

    def timed_fit(distiller, dataset, steps):
        ends = []

        class Record(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                ends.append(time.perf_counter())

            def on_train_batch_end(self, batch, logs=None):
                float(logs["loss"])  # waits for the step
                ends.append(time.perf_counter())

        distiller.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Record()])
        return np.diff(ends)

    # --- Device compute: one materialised batch, repeated (halved on out-of-memory). ---
    batch = args.batch
    while True:
        try:
            one = next(iter(real_dataset(batch).take(1)))
            fixed = tf.data.Dataset.from_tensors({k: v for k, v in one.items()}).repeat()
            distiller = build(batch)
            times = timed_fit(distiller, fixed, args.steps + 1)
            break
        except Exception as error:  # noqa: BLE001 - out of memory is reported differently per platform
            text = str(error)
            if batch > 8 and ("RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() or "OOM" in text):
                print(f"batch {batch} does not fit ({text.splitlines()[0][:120]}); halving")
                batch //= 2
                keras.backend.clear_session()
                continue
            raise
    compile_seconds, step_seconds = float(times[0]), float(np.median(times[1:]))
    img_per_s = batch / step_seconds
    peak = peak_tflops(info["device_kind"])
    mfu = flops_per_image * img_per_s / (info["chips"] * peak * 1e12) if peak else None
    result.update(batch=batch, compile_seconds=round(compile_seconds, 1), step_seconds=round(step_seconds, 4),
                  img_per_s=round(img_per_s, 1), peak_tflops_per_chip=peak,
                  mfu=round(mfu, 4) if mfu is not None else None)
    print(f"compute: batch {batch}{' (the paper: 4096)' if batch != 4096 else ''}, compile {compile_seconds:.1f} s, "
          f"step {step_seconds * 1e3:.1f} ms, {img_per_s:,.0f} img/s, "
          + (f"MFU {100 * mfu:.1f} % of {info['chips']} × {peak:g} TFLOP/s ({info['device_kind']})" if mfu is not None
             else f"MFU unknown (no peak figure for {info['device_kind']!r})"))

    # --- End to end with the real pipeline. ---
    if left() > 60:
        steps = max(3, min(args.steps, int(left() / max(step_seconds, 1e-3) / 4)))
        times = timed_fit(distiller, real_dataset(batch), steps)
        result["end_to_end_img_per_s"] = round(batch / float(np.median(times[1:])), 1)
        print(f"end to end (real input pipeline): {result['end_to_end_img_per_s']:,.0f} img/s")
    else:
        result["end_to_end_img_per_s"] = None
        print("end to end: skipped (time budget)")
    result.update(measured=True, total_seconds=round(time.perf_counter() - started, 1))
    print("RESULT " + json.dumps(result))
    return 0


def _at_resolution(config, resolution: int):
    import dataclasses

    return dataclasses.replace(config, student_resolution=resolution, teacher_resolution=resolution,
                               resize_small=int(round(resolution * 1.25)))


if __name__ == "__main__":
    sys.exit(main())
