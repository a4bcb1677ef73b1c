"""ImageNet-shaped data through every stage: 1,281,167 tiny JPEGs in 1,000 classes, at 1/8, 1/2 or full size.

    nice -n 10 python benchmarks/scale.py --scale 0.125          # 160,146 train images (~6 min on one core)
    python benchmarks/scale.py --scale 1 --work /big/disk/scale  # 1,281,167 (~28 min on one core)
    python benchmarks/scale.py --scale 0.125 0.5 1 --work /big/disk/scale

Makes `round(scale · 1,281,167)` train and `round(scale · 25,000)` validation and test images of 1,000
classes (each class a pattern: its own colours and a grating of its own orientation and frequency, shifted
and noised per image, so a model can learn them), `--size` px square (16 by default: the whole set is
~1 GB), written straight as TFRecord files (`tfrecord:` source), and runs each stage as its own process:

* make      the synthetic source (this process; not a funmatch stage);
* prepare   `funmatch prepare tfrecord:...` (shuffled through bucket files, shards of 1,024, digests);
* start-up  a fresh process's card and shard checks of every split (`tfrecords.verify_split`): what a
            run, a store or a tuning trial does at start, with the bytes it reads;
* targets   `funmatch targets --views 2 --top-k 10` with a random 1,000-class teacher (`tiny_cnn_w8`);
* distill   `funmatch distill --targets` for `--steps` steps at the imagenet recipe's shuffle buffer
            (250,000 records) and a batch of 256;
* evaluate  `funmatch evaluate` of the student (and teacher) on the test split;
* unlabeled `add_unlabeled` of a folder of round(scale · 160,146) unlabelled JPEG files (a smaller union).

Per stage: wall and CPU seconds (user + system of the stage's process and its children, `os.wait4`),
images per wall second, peak RSS (the stage process's maximum resident set), and for the store its size
against the estimate of `distill.targets`' row format (K · N · 4k bytes + one .npy header per file). Every
stage, the making of the data included, runs in a child of this small process, whose own pages would
otherwise count in a child's peak RSS.
Targets: peak RSS < 4 GB in every stage, start-up < 10 s, no stage super-linear in N (compare the
per-image figures across scales). The machine and its load average are printed with every table.

Measured 2026-12-07 on a 2-vCPU Intel Xeon VM, TensorFlow, 16 px, each run pinned to one core with
`taskset -c 1` while the other core ran a benchmarks/patience.py point (1/8, 1/2) or the test suite (full);
load average 2.3-4.3. CPU seconds of the stage's process and its children; µs per image (per view for
targets); peak RSS of the stage:

    stage                          1/8: CPU s  µs/img  peak RSS   1/2: CPU s  µs/img  peak RSS   full: CPU s  µs/img  peak RSS
    make (not a stage)                   24.9     150   0.93 GB         85.7     129   0.96 GB         152.9     115   0.96 GB
    prepare                              44.8     269   0.75 GB        149.9     225   0.77 GB         286.9     216   0.79 GB
    start-up checks (fresh process)       3.7      22   0.73 GB          4.4       7   0.73 GB           5.4       4   0.73 GB
      verify_split, all splits        0.11 s, 7.5 MB read (157)   0.54 s, 29.5 MB read (626)     1.17 s, 58.9 MB read (1,252 shards)
    targets (K=2, top-10; per view)      59.0     184   1.16 GB        214.8     168   2.04 GB         454.4     177   3.33 GB
      store vs estimate               12.9 MB, 1.003x             51.5 MB, 1.002x                103.1 MB, 1.002x
    distill --targets (300 steps)        48.7       -   1.65 GB         29.3       -   2.25 GB          40.2       -   2.95 GB
    evaluate (test, 2 models)             6.2     986   0.94 GB          9.7     388   1.30 GB          15.5     310   1.80 GB
    unlabeled union (+1/8 as files)      47.9     266   0.77 GB      stopped*                           428.9     298   0.87 GB

(*: at 1/2 two synthetic unlabelled images fell within `add_unlabeled`'s near-duplicate rule of test images,
and the stage stopped, as it should; the generator then got a per-image brightness field, and the full run
used it: none of its 160,146 unlabelled images is a near-duplicate of its 25,000 test images. The 1/8 and
1/2 runs are from the earlier generator.) Every stage stays under 4 GB, start-up under 10 s, and the CPU per
image stays flat or falls with N (fixed costs; the union's index lookups grow slightly, 266 -> 298 µs).
What grows with N is bounded by a cap: the targets' decoded-image cache (N x 768 bytes at 16 px: 0.98 GB at
full size, under its 1 GiB cap; above the cap each view decodes its image again) and the stored-targets
stream's record-pair shuffle (`SHUFFLE_MAX_BYTES`, 1 GiB); the evaluation's peak grows with the evaluated
split's logits (two models x 1,000 classes per image).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FULL_TRAIN, FULL_EVAL, NUM_CLASSES = 1_281_167, 25_000, 1000
RECORDS_PER_SOURCE_FILE = 10_000
UNLABELED_FRACTION = 0.125  # of the train images, as a folder of files


def class_patterns(size: int):
    """Per class: two RGB colours, a grating direction and frequency (deterministic in the class)."""
    import numpy as np

    rng = np.random.default_rng(1234)
    colours = rng.integers(0, 256, size=(NUM_CLASSES, 2, 3)).astype(np.float32)
    angle = rng.uniform(0, np.pi, NUM_CLASSES)
    frequency = rng.uniform(0.5, 3.0, NUM_CLASSES) * 2 * np.pi / size
    return colours, angle, frequency


def make_images(labels, size: int, rng, patterns):
    """uint8 [n, size, size, 3]: each image its class's grating between its two colours, shifted and noised."""
    import numpy as np

    colours, angle, frequency = patterns
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, len(labels))[:, None, None]
    along = np.cos(angle[labels])[:, None, None] * x + np.sin(angle[labels])[:, None, None] * y
    mix = 0.5 + 0.5 * np.sin(frequency[labels][:, None, None] * along + phase)
    low, high = colours[labels, 0][:, None, None, :], colours[labels, 1][:, None, None, :]
    image = low + mix[..., None] * (high - low) + rng.normal(0, 12, (len(labels), size, size, 3))
    # Images of a class must differ by more than pixel noise, else some are near-duplicates of each other,
    # which `add_unlabeled` refuses across splits: its 8 x 8 grey thumbnail averages the noise away, and with
    # one random patch alone 1/2 scale had a test image and an unlabelled one within its rule. A random 4 x 4
    # brightness field per image (std 24 grey levels, upsampled) and a patch of a random colour at a random place.
    cells = rng.normal(0, 24, (len(labels), 4, 4)).astype(np.float32)
    field = np.repeat(np.repeat(cells, -(-size // 4), axis=1), -(-size // 4), axis=2)[:, :size, :size]
    image += field[..., None]
    side = size // 3
    corners = rng.integers(0, size - side + 1, (len(labels), 2))
    patches = rng.integers(0, 256, (len(labels), 3))
    for k, (top, left) in enumerate(corners):
        image[k, top:top + side, left:left + side] = patches[k]
    return np.clip(image, 0, 255).astype(np.uint8)


def jpeg(array) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_source(out: pathlib.Path, counts: dict[str, int], size: int, unlabeled: int) -> None:
    """TFRecord files `{split}-NNNNN.tfrecord` (features image, label, id) + dataset.json with class names;
    `unlabeled` JPEG files under out/unlabeled/."""
    import numpy as np
    import tensorflow as tf

    from funmatch.data.tfrecords import serialize_example

    patterns = class_patterns(size)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset.json").write_text(json.dumps({"name": "synthetic_imagenet",
                                                 "class_names": [f"class_{c:04d}" for c in range(NUM_CLASSES)]}))
    for split_number, (split, count) in enumerate(counts.items()):
        rng = np.random.default_rng([7, split_number])
        for first in range(0, count, RECORDS_PER_SOURCE_FILE):
            n = min(RECORDS_PER_SOURCE_FILE, count - first)
            labels = (np.arange(first, first + n) % NUM_CLASSES) if split != "train" else rng.integers(0, NUM_CLASSES, n)
            images = make_images(labels, size, rng, patterns)
            with tf.io.TFRecordWriter(str(out / f"{split}-{first // RECORDS_PER_SOURCE_FILE:05d}.tfrecord")) as writer:
                for k in range(n):
                    writer.write(serialize_example(jpeg(images[k]), int(labels[k]), f"{split}/{first + k:07d}", 0))
    rng = np.random.default_rng(99)
    folder = out / "unlabeled"
    for first in range(0, unlabeled, RECORDS_PER_SOURCE_FILE):
        n = min(RECORDS_PER_SOURCE_FILE, unlabeled - first)
        sub = folder / f"{first // RECORDS_PER_SOURCE_FILE:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(make_images(rng.integers(0, NUM_CLASSES, n), size, rng, patterns)):
            (sub / f"u{first + k:07d}.jpg").write_bytes(jpeg(image))


def run_stage(argv, env=None) -> dict:
    """Runs argv as a child; {wall, cpu (user + sys of it and its children), peak_rss_bytes, output}."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"stage failed ({process.returncode}): {' '.join(map(str, argv))}\n{output[-4000:]}")
    # ru_maxrss is the largest of the child and the descendants it waited for, in KiB on Linux.
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_rss_bytes": usage.ru_maxrss * 1024,
            "output": output}


STARTUP_CHECK = """
import json, os, sys, time
start = time.perf_counter()
def read_bytes():
    with open("/proc/self/io") as f:
        return int(next(l for l in f if l.startswith("rchar:")).split()[1])
from funmatch.data import tfrecords
before, t0 = read_bytes(), time.perf_counter()
card = tfrecords.load_card(sys.argv[1])
for split in card["splits"]:
    tfrecords.verify_split(sys.argv[1], split, card)
print(json.dumps({"seconds": time.perf_counter() - t0, "bytes_read": read_bytes() - before,
                  "import_seconds": t0 - start}))
"""


def du(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def store_estimate(views: int, top_k: int, num_train: int, num_files: int) -> int:
    """`distill.targets`' top-k row (uint16 index + float16 value per kept class) and one 128-byte .npy header
    per record file and view (computed here: this process imports no TensorFlow, see `one_scale`)."""
    row = top_k * (2 + 2)
    return views * (num_train * row + num_files * 128)


class _PrintedRows(list):
    """The table's rows; a row is printed when the next one starts, or at `close` (its notes may be added
    after the stage ends)."""

    def append(self, row) -> None:
        if self:
            print_row(*self[-1])
        super().append(row)

    def close(self) -> None:
        if self:
            print_row(*self[-1])


def one_scale(scale: float, args, work: pathlib.Path) -> list[tuple]:
    counts = {"train": round(scale * FULL_TRAIN), "validation": round(scale * FULL_EVAL),
              "test": round(scale * FULL_EVAL)}
    unlabeled = round(UNLABELED_FRACTION * counts["train"])
    source, data, store = work / "source", work / "data", work / "targets"
    for path in (source, data, store, work / "run", work / "union", work / "teacher.keras"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    rows = _PrintedRows()
    cli = [sys.executable, "-m", "funmatch.cli"]
    total = sum(counts.values())

    def stage(name, argv, images, note="", env=None):
        result = run_stage(argv, env)
        rows.append((name, result["wall"], result["cpu"], images, result["peak_rss_bytes"], note))
        return result

    # In a child too: this process stays small (a child's peak RSS counts its parent's pages until exec).
    stage("make (not a stage)", [sys.executable, "-c", (
        f"import sys; sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r}); import scale\n"
        f"scale.make_source(scale.pathlib.Path({str(source)!r}), {counts!r}, {args.size}, {unlabeled})\n")], total)

    try:
        _stages(rows, stage, cli, counts, total, unlabeled, source, data, store, work, args)
    finally:
        rows.close()  # the last row, also when a stage failed
    return rows


def _stages(rows, stage, cli, counts, total, unlabeled, source, data, store, work, args) -> None:
    stage("prepare", [*cli, "prepare", f"tfrecord:{source}/*.tfrecord", "--out", str(data), "--no-progress"], total)
    shards = json.loads((data / "dataset.json").read_text())["splits"]["train"]["num_shards"]
    check = json.loads(stage("start-up checks", [sys.executable, "-c", STARTUP_CHECK, str(data)], total)
                       ["output"].strip().splitlines()[-1])
    rows[-1] = (*rows[-1][:5], f"verify {check['seconds']:.2f} s, {check['bytes_read'] / 1e6:.1f} MB read "
                                f"({shards} train shards)")

    teacher = work / "teacher.keras"
    subprocess.run([sys.executable, "-c", (
        "import sys, numpy as np\nfrom funmatch import models\n"
        f"m = models.create('tiny_cnn_w8', num_classes={NUM_CLASSES}, resolution={args.size})\n"
        "rng = np.random.default_rng(0)\n"
        "[v.assign(rng.normal(0, 0.3, v.shape).astype('float32')) for v in m.trainable_variables]\n"
        f"m.save({str(teacher)!r})\n")], check=True, env={**os.environ, "KERAS_BACKEND": args.backend})
    config = (f"imagenet:student=tiny_cnn_w8,student_resolution={args.size},teacher_resolution={args.size},"
              f"resize_small={round(args.size * 256 / 224)},batch_size={args.batch},total_steps={args.steps},"
              f"warmup_steps={max(1, min(10, args.steps // 4))},checkpoint_every={max(1, args.steps // 2)},eval_every={10 * args.steps},"
              f"eval_batch_size=512,num_train_examples={counts['train']},log_every=50")
    env = {"KERAS_BACKEND": args.backend}
    stage("targets (K=2, top-10)", [*cli, "targets", "--teacher", str(teacher), "--data", str(data), "--config", config,
                                    "--views", "2", "--top-k", "10", "--out", str(store), "--no-progress"],
          2 * counts["train"], env=env)
    estimate = store_estimate(2, 10, counts["train"], shards)
    size = du(store)
    rows[-1] = (*rows[-1][:5], f"store {size / 1e6:.1f} MB, estimate {estimate / 1e6:.1f} MB ({size / estimate:.3f}×)")
    stage(f"distill --targets ({args.steps} steps)", [
        *cli, "distill", "--config", config, "--data", str(data), "--teacher", str(teacher), "--workdir",
        str(work / "run"), "--targets", str(store), "--no-progress"], args.steps * args.batch, env=env)
    stage("evaluate (test)", [*cli, "evaluate", "--student", str(work / "run" / "student.keras"), "--teacher",
                              str(teacher), "--data", str(data), "--split", "test", "--no-latency",
                              "--json", str(work / "evaluate.json")], 2 * counts["test"], env=env)
    report = json.loads((work / "evaluate.json").read_text())
    rows[-1] = (*rows[-1][:5], f"student-teacher top-1 agreement {100 * report['fidelity']['agreement_top1']:.1f} % "
                               f"({report['student']['num_examples']:,} examples each)")
    stage("unlabeled union", [sys.executable, "-c", (
        "import sys\nfrom funmatch.data.unlabeled import add_unlabeled\n"
        "c = add_unlabeled(sys.argv[1], 'folder:' + sys.argv[2], sys.argv[3])\n"
        "print(c['splits']['train_and_unlabeled']['num_examples'])\n"), str(data), str(source / "unlabeled"),
        str(work / "union")], counts["train"] + unlabeled, note=f"{unlabeled:,} files + {counts['train']:,} records")


def print_header(scale: float) -> None:
    print(f"\nscale {scale} ({round(scale * FULL_TRAIN):,} train images, {NUM_CLASSES} classes) on "
          f"{platform.node()}, {os.cpu_count()} CPUs; load average at the start: {load_average()}")
    print(f"{'stage':<30} {'wall s':>9} {'CPU s':>9} {'images':>10} {'img/s':>9} {'CPU µs/img':>11} {'peak RSS':>9}  notes",
          flush=True)


def print_row(name, wall, cpu, images, rss, note) -> None:
    """One stage's figures, printed as soon as the stage ends (with the load average then)."""
    rss_text = f"{rss / 1e9:.2f} GB" if rss else "—"
    print(f"{name:<30} {wall:>9.1f} {cpu:>9.1f} {images:>10,} {images / wall:>9,.0f} {1e6 * cpu / images:>11.1f} "
          f"{rss_text:>9}  {note} [load {load_average()}]", flush=True)


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, nargs="+", default=[0.125], help="fractions of ImageNet's size")
    parser.add_argument("--size", type=int, default=16, help="image side in pixels (16-32)")
    parser.add_argument("--steps", type=int, default=300, help="distillation steps")
    parser.add_argument("--batch", type=int, default=256, help="distillation batch")
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    work = pathlib.Path(args.work) if args.work else pathlib.Path(__import__("tempfile").mkdtemp(prefix="fm_scale_"))
    try:
        for scale in args.scale:
            print_header(scale)
            one_scale(scale, args, work / f"scale_{scale}")
            if not args.keep:
                shutil.rmtree(work / f"scale_{scale}", ignore_errors=True)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
