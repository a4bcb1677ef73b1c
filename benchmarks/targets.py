"""Stored teacher targets vs label training vs online function matching: one table per teacher → student pair.

    python benchmarks/targets.py                   # demo pair + bit_r50x1 <- bit_r101x1 at 64 px (long: tens of minutes)
    python benchmarks/targets.py --quick           # smoke check: small data, tiny BiTs at 32 px (~3 min here)
    python benchmarks/targets.py --pairs demo      # only the demo's models

Pairs:
* demo: the shipped EuroSAT teacher (bit_r26x0.25 at its own resolution, 96 px) -> the demo's student (tiny_cnn
  at 48 px: the teacher's crop, resized), the demo's batch (128), on eurosat_mini's 1,000 training images.

Measured (`--pairs demo`, TensorFlow, 2 idle CPU cores, load 1.7, K = 2): stored-target step 0.87× the label
step (2,437 vs 2,806 img/s), 3.06× online function matching (796 img/s); generation 520 img/s, 0.42× the
teacher's plain forward pass (1,243 img/s); 20 bytes per stored target.
* bit: bit_r101x1 -> bit_r50x1, both at 64 px, batch 64, randomly initialised (cost does not depend on the
  weights), on the same images.

For each pair, in one process (so that the figures share the machine's state), it prints images per
wall-clock second and CPU-seconds per image (`time.process_time`: all threads of the process; robust to other
jobs on a shared machine) of:

* step, labels:  `Supervised(student)` fit on the label pipeline (`supervised_pp`, crop + flip);
* step, stored:  `Distiller(None, student)` fit on `targets.train_dataset` (mixed views regenerated on the
                 host, stored log-probabilities; no teacher);
* step, online:  `Distiller(teacher, student, "function_matching")` fit on the online pipeline (`train_pp`);
* input alone:   each of the three pipelines iterated without a model (what the host delivers);
* generation:    `targets.generate` over the data (K views), against the teacher's plain forward pass
                 (`predict_on_batch` on an in-memory batch repeated: no input cost);

plus bytes per stored view (per example, and per pass over the data) and the process's peak RSS after
each stage. Each step figure is the median of `--windows` timed `fit` epochs of `--steps` steps, after
one untimed epoch (compilation). Targets (the design's): stored ≥ 0.9× labels and ≥ 2.5× online on the
demo pair; generation ≥ 0.9× the plain forward pass.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
MINI = REPO / "src" / "funmatch" / "assets" / "eurosat_mini"


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="demo,bit", help="comma-separated: demo, bit (default both)")
    parser.add_argument("--views", type=int, default=2, help="K views generated (default 2)")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window (default 10)")
    parser.add_argument("--windows", type=int, default=3, help="timed windows per figure; the median is shown")
    parser.add_argument("--per-class", type=int, default=400, help="training images per class (eurosat_mini: <= 400)")
    parser.add_argument("--work-dir", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "funmatch_targets_bench")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 32 images per class, K=1, 2 windows of 3 steps, bit pair as "
                             "bit_r14x0.25 <- bit_r26x0.25 at 32 px")
    args = parser.parse_args(argv)
    if args.quick:
        args.views, args.steps, args.windows, args.per_class = 1, 3, 2, 32
    return args


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def prepare_data(work_dir: pathlib.Path, per_class: int) -> pathlib.Path:
    """eurosat_mini's training split, the first `per_class` images of each class, prepared once."""
    from funmatch.data.prepare import prepare

    out = work_dir / f"data_{per_class}"
    if (out / "dataset.json").is_file():
        return out
    source = work_dir / f"source_{per_class}"
    shutil.rmtree(source, ignore_errors=True)
    for class_dir in sorted((MINI / "train").iterdir()):
        (source / "train" / class_dir.name).mkdir(parents=True)
        for f in sorted(class_dir.iterdir())[:per_class]:
            shutil.copy(f, source / "train" / class_dir.name / f.name)
    prepare(f"folder:{source}", out, progress=False)
    return out


def pair_config(name: str, quick: bool):
    """(config, teacher .keras path or None for a random one)."""
    from funmatch.commands.demo import demo_config, shipped_teacher
    from funmatch.configs import get_config

    if name == "demo":
        return demo_config(quick=False), shipped_teacher()
    if quick:
        return get_config("eurosat:student=bit_r14x0.25,teacher=bit_r26x0.25,student_resolution=32,"
                          "teacher_resolution=32,resize_small=32,batch_size=16,total_steps=100000"), None
    return get_config("eurosat:student=bit_r50x1,teacher=bit_r101x1,student_resolution=64,teacher_resolution=64,"
                      "batch_size=64,total_steps=100000"), None


def time_fit(model, dataset, steps: int, windows: int) -> tuple[float, float]:
    """(median wall s, median CPU s) of a `fit` epoch of `steps` steps, after one untimed epoch."""
    import keras

    records = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.wall, self.cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            records.append((time.perf_counter() - self.wall, time.process_time() - self.cpu))

    model.fit(dataset, epochs=windows + 1, steps_per_epoch=steps, callbacks=[EpochTimer()], verbose=0)
    timed = records[1:]
    return statistics.median(w for w, _ in timed), statistics.median(c for _, c in timed)


def time_iterate(dataset, batches: int) -> tuple[float, float]:
    iterator = iter(dataset)
    for _ in range(2):
        next(iterator)
    with Timer() as timer:
        for _ in range(batches):
            next(iterator)
    return timer.wall, timer.cpu


def run_pair(name: str, args, data_dir: pathlib.Path) -> list[tuple[str, float, float, str]]:
    """Rows (what, img/s wall, CPU-s per image, note)."""
    import keras
    import numpy as np

    from funmatch import models
    from funmatch.data import pipeline
    from funmatch.distill import Distiller, targets
    from funmatch.optim import make_optimizer
    from funmatch.training.distill import train_pp
    from funmatch.training.labels import Supervised, supervised_pp

    config, teacher_path = pair_config(name, args.quick)
    batch, rs, rt = config.batch_size, config.student_resolution, config.teacher_resolution
    num_train = pipeline.num_examples(data_dir, "train")
    rows = []

    def add(what, wall_seconds, cpu_seconds, images, note=""):
        rows.append((what, images / wall_seconds, cpu_seconds / images, note))

    keras.utils.set_random_seed(0)
    if teacher_path is None:
        teacher_path = args.work_dir / f"teacher_{config.teacher}_{rt}.keras"
        if not teacher_path.exists():
            models.create(config.teacher, num_classes=10, resolution=rt).save(teacher_path)
    teacher = models.load(teacher_path)
    teacher.trainable = False

    # --- Generation vs the teacher's plain forward pass. ---
    store = args.work_dir / f"store_{name}_{config.teacher}_{rt}_{args.per_class}_K{args.views}"
    shutil.rmtree(store, ignore_errors=True)
    gen_batch = max(batch, 64)
    with Timer() as timer:
        card = targets.generate(teacher_path, data_dir, store, views=args.views, view_template=targets.view_spec(config.crop_area_min),
                                mixup_p=config.mixup_p, seed=config.seed, batch_size=gen_batch, progress=False)
    add(f"generation (K={args.views}, {num_train} images)", card["generation_seconds"], card["generation_cpu_seconds"],
        num_train * args.views, "views + teacher + writes (the command's own loop)")
    add("generation, whole call", timer.wall, timer.cpu, num_train * args.views,
        f"+ teacher load, hashes, tracing; peak RSS {_peak_rss_mib():,.0f} MiB")
    images = np.random.default_rng(0).uniform(-1, 1, (gen_batch, rt, rt, 3)).astype("float32")
    teacher.predict_on_batch(images)
    repeats = max(2, (num_train * args.views) // gen_batch // 4)
    with Timer() as timer:
        for _ in range(repeats):
            teacher.predict_on_batch(images)
    add("teacher forward alone", timer.wall, timer.cpu, repeats * gen_batch, f"batch {gen_batch}")

    # --- Input pipelines alone. ---
    label_data = lambda start=0: pipeline.train_dataset(  # noqa: E731
        data_dir, "train", supervised_pp(rs, config.crop_area_min), batch, seed=0, start_step=start)
    online_data = lambda start=0: pipeline.train_dataset(  # noqa: E731
        data_dir, "train", train_pp(config, "function_matching"), batch, seed=0, start_step=start)
    stored_data = lambda start=0: targets.train_dataset(store, data_dir, batch, resolution=rs, seed=0,  # noqa: E731
                                                        start_step=start, card=card)
    batches = args.steps * args.windows
    for what, build in (("input alone: labels", label_data), ("input alone: stored (mixed views)", stored_data),
                        ("input alone: online", online_data)):
        wall, cpu = time_iterate(build(), batches)
        add(what, wall, cpu, batches * batch)

    # --- Steps (model + its input pipeline). ---
    def optimizer():
        return make_optimizer(config.optimizer, learning_rate=config.learning_rate, total_steps=config.steps,
                              warmup_steps=config.warmup_steps, weight_decay=config.weight_decay, clip_norm=config.clip_norm)

    steps_images = args.steps * batch
    student = models.create(config.student, num_classes=10, resolution=rs)
    labels = Supervised(student, 10, seed=0)
    labels.compile(optimizer=optimizer())
    wall, cpu = time_fit(labels, label_data(), args.steps, args.windows)
    add("step: labels", wall, cpu, steps_images)
    label_rate = rows[-1][1]

    student = models.create(config.student, num_classes=10, resolution=rs)
    stored = Distiller(None, student, mode="fixed_teacher", temperature=config.temperature, seed=0)
    stored.compile(optimizer=optimizer())
    wall, cpu = time_fit(stored, stored_data(), args.steps, args.windows)
    add("step: stored targets", wall, cpu, steps_images)
    stored_rate = rows[-1][1]

    student = models.create(config.student, num_classes=10, resolution=rs)
    online = Distiller(teacher, student, mode="function_matching", temperature=config.temperature,
                       mixup_p=config.mixup_p, seed=0)
    online.compile(optimizer=optimizer())
    wall, cpu = time_fit(online, online_data(), args.steps, args.windows)
    add("step: online function matching", wall, cpu, steps_images)
    online_rate = rows[-1][1]

    print(f"\n== {name}: {config.teacher} ({rt} px) -> {config.student} ({rs} px), batch {batch}, "
          f"{num_train} training images, K={args.views}; backend {keras.backend.backend()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'':44} {'img/s wall':>11} {'CPU-s/img':>11}")
    for what, rate, cpu_per_image, note in rows:
        print(f"{what:44} {rate:>11,.1f} {cpu_per_image * 1e3:>9.3f}ms  {note}")
    print(f"stored / labels {stored_rate / label_rate:.2f}x (target >= 0.9); stored / online {stored_rate / online_rate:.2f}x; "
          f"generation / plain forward {rows[0][1] / rows[2][1]:.2f}x (target >= 0.9)")
    print(f"bytes per stored target {card['bytes_per_target']} ({card['storage']}); per view (one pass) "
          f"{card['bytes_per_view']:,}; store {card['bytes_total']:,} bytes; peak RSS {_peak_rss_mib():,.0f} MiB")
    return rows


def main(argv=None) -> None:
    args = parse_arguments(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    data_dir = prepare_data(args.work_dir, args.per_class)
    for name in [p.strip() for p in args.pairs.split(",") if p.strip()]:
        if name not in ("demo", "bit"):
            raise SystemExit(f"--pairs: unknown pair {name!r} (demo, bit)")
        run_pair(name, args, data_dir)


if __name__ == "__main__":
    main()
