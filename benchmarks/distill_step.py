"""Images/s of the distillation step: funmatch's `Distiller.fit` vs a hand-written loop (both backends).

    python benchmarks/distill_step.py              # bit_r50x1 <- bit_r101x1, 64 px, batch 64 (~15 min here)
    python benchmarks/distill_step.py --quick      # tiny BiTs at 32 px, batch 8: a smoke check (~2 min)
    python benchmarks/distill_step.py --backends jax --keras-step-loop     # + Keras' train_step, own loop
    python benchmarks/distill_step.py --backends tensorflow --tf-jit-compile true --uniform-mixup  # XLA on TF

The parent process starts one child per backend (`KERAS_BACKEND=jax|tensorflow`, separate
processes, as Keras needs) and prints one table. Each child builds the teacher and student from the
model registry and times, on the same Keras model objects, the same math:

* funmatch: `funmatch.distill.Distiller` (function_matching mode: mixup on device, T²·KL loss,
  agreement metrics) compiled with `funmatch.optim.make_optimizer("adam", ...)` (clip 1.0 → Adam →
  schedule-scaled decoupled weight decay on kernels) and trained with `fit()`, with the compile
  settings `funmatch.training.distill.distill` uses (defaults: `jit_compile="auto"`, `steps_per_execution=1`).
* hand-written: the same teacher/student and the same optimizer object. JAX: one `jax.jit` step
  (student state and optimizer state donated) calling `stateless_call` and
  `optimizer.stateless_apply`; TensorFlow: `tf.function(jit_compile=...)` with a `GradientTape`
  and `optimizer.apply_gradients`. Loss: `funmatch.distill.distance(..., "kl")` averaged over the
  batch, after `funmatch.distill.mixup` with its own seed. No metrics.

Both read the same tf.data dataset: one synthetic in-memory batch of dicts ("image" in [-1, 1],
"label", "index", like the real train pipeline) repeated, so input cost is not measured. After a
warm-up (compilation) the two loops alternate timed windows of `--steps` steps (so that changes in
the machine's load hit both alike); the figure is the median over `--windows` windows, per
wall-clock second and per CPU second of the process (`time.process_time`, all threads: robust to
other jobs on a shared machine). A window of `fit` is one epoch, timed from `on_epoch_begin` to
`on_epoch_end` (the per-call setup of `fit` is reported separately as "fit call overhead").
The load average is printed with the figures. The target is funmatch ≥ 0.95× hand-written.

Extra rows: `--sync-each-step`: `fit` with a callback that reads the loss as a Python float after
every step, as funmatch's training loop callback (progress bar, NaN check) does. `--keras-step-loop`
(JAX): Keras' own `Distiller.train_step` jitted and looped by hand, to tell the step program's cost
from fit's loop. `--uniform-mixup`: a prototype Distiller subclass drawing Beta(1, 1) as U(0, 1),
which `--tf-jit-compile true` needs (TF's Beta sampler has no XLA kernel).

Measured on the shared 2-core CPU (load average 4-9 from other jobs), defaults (3 windows x 2 steps):
    jax         fit 4.40 img/CPU-s, hand-written 4.41 -> 0.997 (wall 3.68 vs 4.04 img/s; a rerun 1.089)
    tensorflow  fit 16.91 img/CPU-s, hand-written 16.99 -> 0.996 (wall 16.34 vs 16.73 img/s, 0.977)
    tensorflow, --tf-jit-compile true --uniform-mixup: fit 4.81, hand-written 4.86 img/CPU-s (XLA on
    this CPU is ~3.5x slower than TF's default graph/oneDNN path, about as slow as JAX)
Wall-clock ratios swing by ±10 % with the load; the CPU-second ratio is the stable figure.

`--training-loop`: funmatch's training loop (`fit_resumable`, one chunk per window, its checkpoint included),
which reads the loss to the host every `CHECK_EVERY` (10) steps, against the same loop reading it after every
step as it did before (a per-step callback). `--data-parallel`: JAX over every device. Measured with
`XLA_FLAGS=--xla_force_host_platform_device_count=4 python benchmarks/distill_step.py --student bit_r14x0.25
--teacher bit_r26x0.25 --resolution 32 --batch 8 --steps 20 --windows 3 --backends jax --data-parallel
--training-loop --sync-each-step` (JAX CPU, 4 virtual devices on the shared 2 cores, load average 22-23):
    training loop, now             121.5 img/CPU-s, 17.5 img/s (windows 2.6-27.0)
    training loop, read each step  130.0 img/CPU-s, 22.9 img/s (21.9-26.8)
    fit alone 127.6 img/CPU-s; fit + loss read each step 127.2
On a CPU the "device" is the host's own cores, so a read per step costs nothing measurable (the rows differ
within the noise of this load); the change is for GPUs and TPUs, where a read after every step keeps the
device from running ahead of Python (`tests/runtime/test_host_sync.py` counts the reads: 11 in 100 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BACKENDS = ("jax", "tensorflow")
QUICK = {"student": "bit_r14x0.25", "teacher": "bit_r26x0.25", "resolution": 32, "batch": 8, "steps": 3, "windows": 2}


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="bit_r50x1", help="registry name of the student (default bit_r50x1)")
    parser.add_argument("--teacher", default="bit_r101x1", help="registry name of the teacher (default bit_r101x1)")
    parser.add_argument("--resolution", type=int, default=64, help="image size of both models (default 64)")
    parser.add_argument("--batch", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed window (default 2)")
    parser.add_argument("--windows", type=int, default=3, help="timed windows per loop; the median is reported (default 3)")
    parser.add_argument("--warmup-steps", type=int, default=1, help="untimed steps per loop (compilation; default 1)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated (default jax,tensorflow)")
    parser.add_argument(
        "--tf-jit-compile", choices=("auto", "true", "false"), default="auto",
        help="TensorFlow: jit_compile of both loops; auto = what Keras' compile(jit_compile='auto') resolves to "
             "(XLA off on CPU-only machines), the setting funmatch's distill entry uses",
    )
    parser.add_argument("--uniform-mixup", action="store_true",
                        help="prototype: draw the mixup coefficient Beta(1, 1) as U(0, 1) in both loops (needed for "
                             "--tf-jit-compile true: TF's Beta sampler has no XLA kernel)")
    parser.add_argument("--steps-per-execution", type=int, default=1,
                        help="Distiller.compile(steps_per_execution=...) (funmatch's entry uses 1)")
    parser.add_argument("--sync-each-step", action="store_true",
                        help="also time fit with a callback reading the loss after every step (like funmatch's "
                             "training loop callback)")
    parser.add_argument("--data-parallel", action="store_true",
                        help="JAX: train over every device (keras.distribution.DataParallel, as funmatch's runs do; e.g. "
                             "XLA_FLAGS=--xla_force_host_platform_device_count=4); no hand-written rows")
    parser.add_argument("--training-loop", action="store_true",
                        help="also time funmatch's training loop (fit_resumable: the loss read every CHECK_EVERY "
                             "steps) and the same loop reading the loss after every step, as it did before")
    parser.add_argument("--keras-step-loop", action="store_true",
                        help="JAX diagnostic: also time Keras' Distiller.train_step jitted in a hand loop (no fit)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke check: {QUICK['student']} <- {QUICK['teacher']}, {QUICK['resolution']} px, "
                             f"batch {QUICK['batch']}, {QUICK['windows']} windows of {QUICK['steps']} steps")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # backend of a child process
    parser.add_argument("--json-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.steps_per_execution < 1 or args.steps % args.steps_per_execution:
        parser.error("--steps must be a multiple of --steps-per-execution")
    if args.warmup_steps < args.steps_per_execution:
        args.warmup_steps = args.steps_per_execution
    return args


# ---------------------------------------------------------------------------------------------
# Child: one backend
# ---------------------------------------------------------------------------------------------


def _synthetic_dataset(batch_size: int, resolution: int, num_classes: int):
    """One fixed batch of dicts, repeated forever (as the real pipeline's keys and dtypes)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    batch = {
        "image": rng.uniform(-1, 1, size=(batch_size, resolution, resolution, 3)).astype("float32"),
        "label": rng.integers(0, num_classes, size=(batch_size,)).astype("int64"),
        "index": np.arange(batch_size, dtype="int64"),
    }
    return tf.data.Dataset.from_tensors(batch).repeat()


def _uniform_mixup(batch: dict, seed, image_keys=("image", "teacher")):
    """`funmatch.distill.mixup` for p = 1 with Beta(1, 1) drawn as U(0, 1) (the same distribution).

    Prototype for XLA on TensorFlow: `keras.random.beta` lowers to StatelessRandomGammaV3, which has
    no XLA kernel, so `jit_compile=True` (what Keras' "auto" picks on GPU/TPU) fails to compile.
    """
    import keras
    from keras import ops

    coefficient = keras.random.uniform((), seed=seed, dtype="float32")
    coefficient = ops.maximum(coefficient, 1.0 - coefficient)
    mixed = dict(batch)
    for key in image_keys:
        if key in batch:
            images = batch[key]
            mixed[key] = coefficient * images + (1.0 - coefficient) * ops.roll(images, shift=1, axis=0)
    return mixed, coefficient


def _xla_friendly_distiller_class():
    """A `Distiller` whose training mixup uses `_uniform_mixup` (mixup_p must be 1)."""
    from funmatch.distill import Distiller
    from funmatch.distill.distiller import STUDENT_KEY, TEACHER_KEY

    class XlaFriendlyDistiller(Distiller):
        def prepare_views(self, batch, training=False):
            if self.mode == "function_matching" and training and self.mixup_p > 0:
                assert self.mixup_p == 1.0, "the prototype only covers p = 1"
                self._check_batch(batch)
                batch, _ = _uniform_mixup(batch, self.seed_generator, (STUDENT_KEY, TEACHER_KEY))
                return batch[STUDENT_KEY], batch.get(TEACHER_KEY, batch[STUDENT_KEY])
            return super().prepare_views(batch, training=training)

    return XlaFriendlyDistiller


def _build(args):
    """(teacher, student, distiller, optimizer), as `funmatch.training.distill.distill` builds them."""
    import keras

    from funmatch import models
    from funmatch.distill import Distiller
    from funmatch.optim import make_optimizer

    if args.data_parallel:  # JAX: keras.distribution.DataParallel over every device, as funmatch's runs set it
        from funmatch import runtime

        runtime.distribution_scope()
    keras.utils.set_random_seed(0)
    teacher = models.create(args.teacher, num_classes=args.num_classes, resolution=args.resolution)
    teacher.trainable = False
    student = models.create(args.student, num_classes=args.num_classes, resolution=args.resolution)
    distiller_class = _xla_friendly_distiller_class() if args.uniform_mixup else Distiller
    distiller = distiller_class(teacher, student, mode="function_matching", temperature=1.0, mixup_p=1.0, seed=0)
    # Values do not change the cost; weight decay is on so that its code path runs.
    optimizer = make_optimizer("adam", learning_rate=1e-3, total_steps=100_000, warmup_steps=100,
                               weight_decay=1e-4, clip_norm=1.0)
    jit_compile = {"auto": "auto", "true": True, "false": False}[args.tf_jit_compile]
    if keras.backend.backend() == "jax":
        jit_compile = "auto"  # always XLA on JAX
    distiller.compile(optimizer=optimizer, jit_compile=jit_compile, steps_per_execution=args.steps_per_execution)
    optimizer.build(student.trainable_variables)
    return teacher, student, distiller, optimizer


class _Timer:
    """Wall and CPU seconds of a region."""

    def start(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self):
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def _epoch_timer():
    """A callback timing each epoch (wall, CPU seconds) until its last step has finished on the device."""
    import keras
    import numpy as np

    backend = keras.backend.backend()

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.timer = _Timer()
            self.timer.start()

        def on_epoch_end(self, epoch, logs=None):
            # Make sure the last step finished (logs are already concrete; the weights too then).
            float(np.asarray(logs["loss"]))
            if backend == "jax":
                import jax

                jax.block_until_ready([v.value for v in self.model.trainable_variables])
            self.seconds = self.timer.stop()

    return EpochTimer()


def _loss_each_step():
    """A callback reading the loss as a Python float after every step (a device sync), as funmatch's training
    loop did before it read the loss every `CHECK_EVERY` steps."""
    import keras
    import numpy as np

    class LossEachStep(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float(np.asarray(logs["loss"]))

    return LossEachStep()


def _fit_runner(distiller, dataset, sync_each_step: bool):
    """A function steps -> (window wall s, window CPU s, whole-call wall s) running `distiller.fit`."""

    def run(steps: int):
        timer = _epoch_timer()
        callbacks = [_loss_each_step(), timer] if sync_each_step else [timer]
        whole = _Timer()
        whole.start()
        distiller.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=callbacks, verbose=0, shuffle=False)
        whole_wall, _ = whole.stop()
        return (*timer.seconds, whole_wall)

    return run


def _training_loop_runner(distiller, student, optimizer, dataset, batch: int, before: bool):
    """A function steps -> (window wall s, window CPU s, None) running funmatch's training loop
    (`fit_resumable`, one chunk of `steps` steps, its checkpoint included) in a fresh workdir. `before`:
    the loss read after every step (`check_every=1` plus a per-step callback), the loop as it was."""
    import shutil

    from funmatch.training.loop import CHECK_EVERY, fit_resumable

    def groups():
        return {"student": list(student.variables), "optimizer": list(optimizer.variables),
                "rng": [distiller.seed_generator.state]}

    def run(steps: int):
        workdir = tempfile.mkdtemp(prefix="distill_step_loop_")
        timer = _epoch_timer()
        try:
            fit_resumable(distiller, lambda start: dataset, workdir=workdir, total_steps=steps, chunk_steps=steps,
                          groups=groups, images_per_step=batch, steps_per_data_epoch=float(steps), progress=False,
                          check_every=1 if before else CHECK_EVERY,
                          extra_callbacks=[_loss_each_step(), timer] if before else [timer])
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return (*timer.seconds, None)

    return run


def _hand_runner_jax(teacher, student, optimizer, dataset, mixup_p: float, temperature: float,
                     uniform_mixup: bool = False):
    """The hand-written JAX loop: one jitted step over stateless_call / stateless_apply."""
    import jax
    import jax.numpy as jnp
    from keras import ops

    from funmatch.distill import distance, mixup

    def train_step(student_trainable, student_non_trainable, optimizer_state, seed, teacher_state, images):
        seed, mixup_seed = jax.random.split(seed)
        if uniform_mixup:
            images = _uniform_mixup({"image": images}, mixup_seed, ("image",))[0]["image"]
        else:
            images = mixup({"image": images}, seed=mixup_seed, p=mixup_p, image_keys=("image",))[0]["image"]
        teacher_logits, _ = teacher.stateless_call([], teacher_state, images, training=False)
        teacher_logits = jax.lax.stop_gradient(teacher_logits.astype("float32"))

        def loss_function(trainable):
            logits, non_trainable = student.stateless_call(trainable, student_non_trainable, images, training=True)
            loss = ops.mean(distance(logits.astype("float32"), teacher_logits, "kl", temperature=temperature))
            return loss, non_trainable

        (loss, student_non_trainable), gradients = jax.value_and_grad(loss_function, has_aux=True)(student_trainable)
        student_trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, gradients, student_trainable)
        return student_trainable, student_non_trainable, optimizer_state, seed, loss

    step = jax.jit(train_step, donate_argnums=(0, 1, 2, 3))
    # Own copies of the state: donation must not delete the buffers the Keras variables (fit) hold.
    state = [
        [jnp.array(v.value, copy=True) for v in student.trainable_variables],
        [jnp.array(v.value, copy=True) for v in student.non_trainable_variables],
        [jnp.array(v.value, copy=True) for v in optimizer.variables],
        jnp.array([0, 1], dtype="uint32"),
    ]
    teacher_state = [jnp.array(v.value, copy=True) for v in teacher.non_trainable_variables]
    iterator = dataset.as_numpy_iterator()

    def run(steps: int):
        nonlocal state
        timer = _Timer()
        timer.start()
        for _ in range(steps):
            batch = next(iterator)
            *state, loss = step(*state, teacher_state, batch["image"])
        float(loss)
        jax.block_until_ready(state)
        return (*timer.stop(), None)

    return run


def _keras_step_runner_jax(distiller, dataset):
    """Diagnostic: Keras' own `Distiller.train_step` (metrics included), jitted and looped by hand.

    Same program as `fit` runs, without fit's loop (epoch iterator, prefetch thread, callbacks):
    it tells a cost of the step program apart from a cost of the loop around it.
    """
    import jax
    import jax.numpy as jnp

    def copies(variables):
        return [jnp.array(v.value, copy=True) for v in variables]

    state = (
        copies(distiller.trainable_variables),
        copies(distiller.non_trainable_variables),
        copies(distiller.optimizer.variables),
        copies(distiller.metrics_variables),
    )
    step = jax.jit(distiller.train_step, donate_argnums=0)
    iterator = dataset.as_numpy_iterator()

    def run(steps: int):
        nonlocal state
        timer = _Timer()
        timer.start()
        for _ in range(steps):
            logs, state = step(state, next(iterator))
        float(logs["loss"])
        jax.block_until_ready(state)
        return (*timer.stop(), None)

    return run


def _hand_runner_tensorflow(teacher, student, optimizer, dataset, mixup_p: float, temperature: float, jit_compile,
                            uniform_mixup: bool = False):
    """The hand-written TensorFlow loop: tf.function + GradientTape + optimizer.apply_gradients."""
    import keras
    import tensorflow as tf
    from keras import ops

    from funmatch.distill import distance, mixup

    seed_generator = keras.random.SeedGenerator(1, name="hand_mixup_seed")
    variables = student.trainable_variables

    @tf.function(jit_compile=jit_compile)
    def train_step(batch):
        if uniform_mixup:
            images = _uniform_mixup({"image": batch["image"]}, seed_generator, ("image",))[0]["image"]
        else:
            images = mixup({"image": batch["image"]}, seed=seed_generator, p=mixup_p, image_keys=("image",))[0]["image"]
        teacher_logits = tf.stop_gradient(tf.cast(teacher(images, training=False), tf.float32))
        with tf.GradientTape() as tape:
            logits = tf.cast(student(images, training=True), tf.float32)
            loss = ops.mean(distance(logits, teacher_logits, "kl", temperature=temperature))
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    iterator = iter(dataset)

    def run(steps: int):
        timer = _Timer()
        timer.start()
        for _ in range(steps):
            loss = train_step(next(iterator))
        float(loss)
        return (*timer.stop(), None)

    return run


def run_child(args) -> dict:
    import keras

    backend = keras.backend.backend()
    if backend != args.child:
        raise SystemExit(f"child for {args.child} got KERAS_BACKEND={backend}")
    teacher, student, distiller, optimizer = _build(args)
    dataset = _synthetic_dataset(args.batch, args.resolution, args.num_classes)

    # Resolve the TF jit setting the way fit does, so the hand loop uses the same one.
    if args.data_parallel:
        jit_compile, hand = True, None
    elif backend == "tensorflow":
        jit_compile = bool(distiller.jit_compile)
        hand = _hand_runner_tensorflow(teacher, student, optimizer, dataset, 1.0, 1.0, jit_compile, args.uniform_mixup)
    else:
        jit_compile = True
        hand = _hand_runner_jax(teacher, student, optimizer, dataset, 1.0, 1.0, args.uniform_mixup)
    loops = {"funmatch fit": _fit_runner(distiller, dataset, sync_each_step=False)}
    if not args.data_parallel:  # the hand-written loops place everything on one device
        loops["hand-written"] = hand
    if args.sync_each_step:
        loops["fit + loss read each step"] = _fit_runner(distiller, dataset, sync_each_step=True)
    if args.training_loop:
        loops["training loop (now)"] = _training_loop_runner(distiller, student, optimizer, dataset, args.batch, False)
        loops["training loop, read each step"] = _training_loop_runner(distiller, student, optimizer, dataset,
                                                                      args.batch, True)
    if args.keras_step_loop and backend == "jax" and not args.data_parallel:
        loops["Keras train_step, own loop"] = _keras_step_runner_jax(distiller, dataset)

    compile_seconds = {}
    for name, run in loops.items():
        start = time.perf_counter()
        run(args.warmup_steps)
        compile_seconds[name] = time.perf_counter() - start
        print(f"[{backend}] warm-up of {name}: {compile_seconds[name]:.1f} s", flush=True)

    load_before = os.getloadavg()
    samples = {name: [] for name in loops}
    names = list(loops)
    for window in range(args.windows):
        # Rotate the order so that a load change does not always hit the same loop first.
        shift = window % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(loops[name](args.steps))
            wall, cpu, _ = samples[name][-1]
            print(f"[{backend}] window {window + 1}/{args.windows} {name}: {args.batch * args.steps / wall:.2f} img/s, "
                  f"{args.batch * args.steps / cpu:.2f} img/CPU-s, load {os.getloadavg()[0]:.2f}", flush=True)
    load_after = os.getloadavg()

    results = {}
    for name, runs in samples.items():
        wall = [args.batch * args.steps / w for w, _, _ in runs]
        cpu = [args.batch * args.steps / c for _, c, _ in runs]
        overheads = [whole - w for w, _, whole in runs if whole is not None]
        results[name] = {
            "images_per_second": statistics.median(wall),
            "images_per_cpu_second": statistics.median(cpu),
            "wall_samples": wall,
            "cpu_samples": cpu,
            "fit_call_overhead_seconds": statistics.median(overheads) if overheads else None,
            "warmup_seconds": compile_seconds[name],
        }
    return {
        "backend": backend,
        "jit_compile": jit_compile,
        "steps_per_execution": args.steps_per_execution,
        "load_before": load_before,
        "load_after": load_after,
        "results": results,
    }


# ---------------------------------------------------------------------------------------------
# Parent: both backends, one table
# ---------------------------------------------------------------------------------------------


def print_table(args, reports: list[dict]) -> None:
    print(f"\ndistill step: {args.student} <- {args.teacher}, {args.resolution} px, batch {args.batch}, "
          f"{args.windows} windows x {args.steps} steps (median), cpu_count={os.cpu_count()}")
    header = f"{'backend':<11}{'jit':>6}{'loop':>28}{'img/s':>9}{'img/CPU-s':>11}{'ratio':>7}{'ratio CPU':>11}" \
             f"{'min-max img/s':>16}{'warmup s':>10}{'fit call s':>11}"
    print(header)
    print("-" * len(header))
    for report in reports:
        results = report["results"]
        reference = results.get("hand-written", results["funmatch fit"])
        for name, row in results.items():
            ratio = row["images_per_second"] / reference["images_per_second"]
            ratio_cpu = row["images_per_cpu_second"] / reference["images_per_cpu_second"]
            spread = f"{min(row['wall_samples']):.1f}-{max(row['wall_samples']):.1f}"
            overhead = row["fit_call_overhead_seconds"]
            overhead = "" if overhead is None else f"{overhead:.2f}"
            print(f"{report['backend']:<11}{str(report['jit_compile']):>6}{name:>28}{row['images_per_second']:>9.2f}"
                  f"{row['images_per_cpu_second']:>11.2f}{ratio:>7.3f}{ratio_cpu:>11.3f}{spread:>16}"
                  f"{row['warmup_seconds']:>10.1f}{overhead:>11}")
        before = ", ".join(f"{x:.2f}" for x in report["load_before"])
        after = ", ".join(f"{x:.2f}" for x in report["load_after"])
        print(f"{'':<11}load average before timing: {before}; after: {after}")
    print("ratio = loop / hand-written (target for funmatch fit: >= 0.95); with --data-parallel: loop / funmatch fit")


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if args.child:
        report = run_child(args)
        with open(args.json_out, "w") as f:
            json.dump(report, f)
        # Leave without interpreter shutdown: background threads of the infinite input iterators
        # (tf.data, Keras' JAX prefetch) can keep a finished child alive.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    reports = []
    argv = list(sys.argv[1:] if argv is None else argv)
    for backend in args.backends.split(","):
        if backend not in BACKENDS:
            raise SystemExit(f"--backends: unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, os.path.abspath(__file__), *argv, "--child", backend, "--json-out", out.name]
            print(f"[{backend}] running ...", flush=True)
            completed = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": backend})
            if completed.returncode:
                print(f"[{backend}] child failed with exit code {completed.returncode}", file=sys.stderr)
                return completed.returncode
            with open(out.name) as f:
                reports.append(json.load(f))
    print_table(args, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
