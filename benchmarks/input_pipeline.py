"""Input-pipeline throughput: funmatch's train pipeline vs a seed-style tf.data pipeline.

    python benchmarks/input_pipeline.py [--data-dir DIR] [--batches 30] [--sizes 64 128]

Both read the same prepared Flowers102 train TFRecords (prepared once, at shorter side 160, into
--data-dir; the shared copy has shorter side 128 and prepare never upscales, so the records are the
shared JPEGs byte for byte) and produce batches of 256 float32 images in [-1, 1]:

* funmatch: `train_dataset(..., "decode_jpeg_and_inception_crop(S)|flip_lr|value_range(-1, 1)|keep(...)")`
  (crop window sampled from the JPEG header, only the window decoded; stateless per-example seeds;
  records cached in memory; mixup happens later, on device), and the same without value_range
  ("uint8 out": batches stay uint8, 4x less host memory traffic; scale on device).
* seed-style: full decode, then per image `tf.image.sample_distorted_bounding_box`
  (min_object_covered=0.1), `tf.image.resize`, random flip, scale to [-1, 1]; batch; `tf.reverse` mixup
  on the batch.

Prints images/s of each at every size and their ratio (the issue's target: >= 1.5x), per wall-clock
second and per CPU second of the process (the latter is robust to other jobs on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from funmatch.data.pipeline import train_dataset  # noqa: E402
from funmatch.data.prepare import prepare  # noqa: E402
from funmatch.data.tfrecords import load_card, read_records  # noqa: E402

BATCH_SIZE = 256
REPO = pathlib.Path(__file__).resolve().parents[1]


def seed_style_dataset(data_dir, size: int) -> tf.data.Dataset:
    """The pipeline of the seed notebooks, on the same records."""

    def augment(example):
        image = tf.io.decode_jpeg(example["image"], channels=3)
        begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
            min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.05, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        image = tf.slice(image, begin, crop_size)
        image = tf.image.resize(image, [size, size])
        image = tf.image.random_flip_left_right(image)
        image = image / 127.5 - 1.0
        return image, tf.one_hot(example["label"], 102)

    def mixup(images, labels):
        weight = tf.random.uniform([], 0.0, 1.0)
        return (weight * images + (1 - weight) * tf.reverse(images, [0]),
                weight * labels + (1 - weight) * tf.reverse(labels, [0]))

    dataset = read_records(data_dir, "train").shuffle(1020).repeat()
    dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(BATCH_SIZE, drop_remainder=True).map(mixup, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def funmatch_dataset(data_dir, size: int, uint8: bool = False) -> tf.data.Dataset:
    """The recipe's train pp (fused decode+crop); with `uint8`, value_range is left to the device."""
    value_range = "" if uint8 else "|value_range(-1, 1)"
    spec = f'decode_jpeg_and_inception_crop({size})|flip_lr{value_range}|keep("image", "label")'
    return train_dataset(data_dir, "train", spec, BATCH_SIZE, seed=0)


def measure(dataset: tf.data.Dataset, batches: int, warmup: int = 4) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of this process) over `batches` batches.

    CPU time counts every tf.data thread of this process, so it stays meaningful when other jobs
    share the machine (wall-clock figures then drop for both pipelines alike).
    """
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    images = batches * BATCH_SIZE
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=pathlib.Path,
                        default=pathlib.Path(tempfile.gettempdir()) / "funmatch_bench" / "flowers102_160")
    parser.add_argument("--source", default=str(REPO.parent / "shared" / "data" / "flowers102"))
    parser.add_argument("--batches", type=int, default=30, help="timed batches per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per pipeline (best is reported)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    args = parser.parse_args()
    if not (args.data_dir / "dataset.json").is_file():
        prepare(f"folder:{args.source}", args.data_dir, splits=["train"], shorter_side=160, progress=False)
    card = load_card(args.data_dir)
    print(f"records: {args.data_dir} (train: {card['splits']['train']['num_examples']} images, shorter side "
          f"{card['splits']['train']['image_size']['shorter_side']['min']}-{card['splits']['train']['image_size']['shorter_side']['max']} px); "
          f"batch {BATCH_SIZE}; {os.cpu_count()} CPU cores; tf {tf.__version__}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print(f"{'size':>5} {'pipeline':>18} | {'img/s wall':>10} {'ratio':>6} | {'img/s CPU':>10} {'ratio':>6}")
    for size in args.sizes:
        builders = {
            "seed-style": lambda: seed_style_dataset(args.data_dir, size),
            "funmatch": lambda: funmatch_dataset(args.data_dir, size),
            "funmatch uint8 out": lambda: funmatch_dataset(args.data_dir, size, uint8=True),
        }
        results = {name: [] for name in builders}
        for _ in range(args.repeats):  # interleaved, so that load from other jobs hits all alike
            for name, build in builders.items():
                results[name].append(measure(build(), args.batches))
        best = {name: (max(r[0] for r in rs), max(r[1] for r in rs)) for name, rs in results.items()}
        seed_wall, seed_cpu = best["seed-style"]
        for name, (wall, cpu) in best.items():
            print(f"{size:>5} {name:>18} | {wall:>10.0f} {wall / seed_wall:>5.2f}x | {cpu:>10.0f} {cpu / seed_cpu:>5.2f}x")

if __name__ == "__main__":
    main()
