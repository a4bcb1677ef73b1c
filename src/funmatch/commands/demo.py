"""`funmatch demo`: the whole pipeline, in one command, on the EuroSAT images embedded in the package.

The case distillation is for: few labels, many images, a strong teacher.

    prepare  eurosat_mini: 1,000 labelled training images (100 per class), 500 validation, 1,000 test (64 px,
             10 classes), plus eurosat_unlabeled: 3,900 images without labels, from the part of EuroSAT the
             shipped teacher never trained on (like the validation and test images)
    teacher  the shipped `bit_r26x0.25` at 112 px (trained on the EuroSAT train split), or --teacher /
             --train-teacher
    targets  the teacher's outputs on K function-matching views of all 4,900 images, computed once
    distill  a ≥ 10× cheaper student (tiny_cnn at 48 px: the teacher's crop, resized) with function matching
             from the stored targets: no teacher in the training step, no label anywhere
    labels   the same student trained on labels for the same CPU time (the targets' generation is counted
             on the function-matching side), twice: on the 1,000 labelled images, and on all 4,900 images
             with their labels (the paper's reference: what labelling every image would buy; the 3,900 get
             theirs from eurosat_unlabeled/LABELS.txt), with the same crops, flips and schedule shape
             (`LABELS_LEARNING_RATE`; the sweep: `scripts/label_sweep.sh`)
    evaluate the three against the teacher on the clean test split (accuracy, agreement, KL, per-class gaps, cost)
    report   HTML + markdown, opening with test accuracy against CPU time for the three students

Equal time holds on a busy machine: all sides are measured on the same clock, the process's CPU time. The
function-matching side (generation + training) runs first; each label run is sized to the CPU seconds it used
(from the CPU cost of a label run's first steps, `equal_cpu_plan`) and stopped by that budget at the latest.
Where the process may use two or more CPU cores (and the models run on the CPU), every side trains in its own
process pinned to one core, so each computes with one thread (`side_by_side_cpus`, `run_on_cores`): function
matching first, then the two label runs at the same time, one per core, each sized by its own first steps
taken beside the other. The targets' generation runs before, in the command's process on every core (on 2
threads it costs a little more CPU than on one, 186 against 170 s for the demo's store in two default demos on
the idle 2-vCPU Intel Xeon VM, 2026-12-07, load 0.6 and 0.1 at their starts: that only raises the label runs'
budget). One thread per side keeps the CPU-second comparison like for like (on this small student TensorFlow's
two threads spend more CPU per step than one: 209 CPU s for 3,000 steps on the idle VM's 2 cores against 155
pinned to one core, load 2-3), and running the two references together takes one side's time off the demo's
wall clock. A `--quick` run, a one-core process and a GPU run the sides one after the other in the command's
process. The summary's last line says who won at equal CPU time against labels on every image and, where those
win, the budget at which `benchmarks/patience.py` measured function matching overtaking them (`CROSSOVER`), or
that it did not within the budgets it measured.

Measured before the unlabelled pool became images the teacher never saw (it held 4,000 teacher-training
images) and before the all-labels reference: 7 min 42 s in all on 2 idle CPU cores; function matching
86.2 % test in 6.0 CPU minutes (2.6 for the targets of 16 views, 3.5 for 3,000 training steps), the
1,000-label student 83.4 % in the same CPU time. The current demo's figures: the README and
`benchmarks/patience.py`.
`--quick` runs the same pipeline as a 20-step smoke run (66 s wall on 2 idle vCPUs, TensorFlow backend: README).
Re-running the same command reuses what is done (each step is resumable).

`run_demo` lives with its command: it only strings together the libraries of the other commands
(data.prepare, data.unlabeled, training.targets, training.distill, training.labels, evaluation, reporting).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import json
import os
import pathlib
import shutil
import sys
import time
import traceback
from typing import Any, Callable

from funmatch import runtime
from funmatch.errors import FunmatchError

# The demo's distillation: the `eurosat` recipe, a student at half the teacher's resolution, the labelled and
# unlabelled images as the distillation stream.
DEMO = dict(student="tiny_cnn", student_resolution=48, teacher_resolution=112, resize_small=48, batch_size=128,
            total_steps=3000, warmup_steps=100, learning_rate=0.01, weight_decay=1e-3, temperature=1.0,
            mixup_p=1.0, checkpoint_every=100, eval_every=500, eval_batch_size=250,
            train_split="train_and_unlabeled")
VIEWS = 16  # stored teacher views per image
REFERENCES = ("labels_subset", "labels_all")  # the label-trained references, in the report's order
# Function matching's weight decay (1e-3) and the label runs' own (1e-4) are each side's winner on validation,
# ahead at both seeds: `scripts/fm_sweep.sh` (1e-3 ahead of 1e-4 at both; 1e-5 not) and `scripts/label_sweep.sh`'s
# weight-decay rows on every image (neither 1e-3 nor 1e-5 ahead at both seeds: 1e-4 stays).
# The label-trained student's learning rate: the best on validation of the recorded sweep
# `scripts/label_sweep.sh` (2,000 steps each: lr 0.003 / 0.01 / 0.03, and 0.01 with mixup).
LABELS_LEARNING_RATE = 0.03
LABELS_WEIGHT_DECAY = 1e-4
QUICK = dict(batch_size=32, total_steps=20, warmup_steps=2, checkpoint_every=10, eval_every=10, eval_max_examples=100)
QUICK_VIEWS = 2
CALIBRATION_STEPS = 30  # label steps whose CPU cost sizes the label runs
# Where function matching overtakes labels on every image, as a multiple of the demo's CPU budget, from
# `benchmarks/patience.py` (None: not within MEASURED_BUDGETS, the budgets it has measured).
CROSSOVER: float | None = None
MEASURED_BUDGETS: tuple[float, ...] = (1.0, 4.0, 8.0, 16.0)


def asset(*parts: str) -> pathlib.Path:
    return pathlib.Path(str(importlib.resources.files("funmatch").joinpath("assets", *parts)))


def shipped_teacher() -> pathlib.Path:
    return asset("teachers", "eurosat_teacher.keras")


def demo_config(quick: bool, steps: int | None = None):
    from funmatch.configs import get_config

    values = {**DEMO, **(QUICK if quick else {})}
    if steps is not None:
        if steps < 1:
            raise FunmatchError(f"--steps: need a positive number of distillation steps, got {steps}")
        values.update(total_steps=steps, warmup_steps=min(values["warmup_steps"], max(1, steps // 10)),
                      eval_every=max(values["checkpoint_every"], steps // 6 // values["checkpoint_every"] * values["checkpoint_every"]))
    return get_config("eurosat:" + ",".join(f"{k}={v}" for k, v in values.items()))


def _prepare(out: pathlib.Path, seed: int, progress: bool) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    """(the labelled dataset, the same + the unlabelled images as the split `train_and_unlabeled`, the same
    with every image of the distillation labelled in `train`: the all-labels reference's data)."""
    from funmatch.data.prepare import prepare
    from funmatch.data.unlabeled import add_unlabeled

    data_dir, fm_dir, all_dir = out / "data", out / "data_unlabeled", out / "data_all_labels"
    if not (data_dir / "dataset.json").exists():
        prepare(f"folder:{asset('eurosat_mini')}", data_dir, progress=progress, name="eurosat_mini")
    add_unlabeled(data_dir, f"folder:{asset('eurosat_unlabeled', 'images')}", fm_dir, seed=seed)
    if not (all_dir / "dataset.json").exists():
        folder = out / "all_labels_images"
        all_labels_folder(asset("eurosat_mini"), asset("eurosat_unlabeled"), folder)
        prepare(f"folder:{folder}", all_dir, progress=progress, name="eurosat_mini_all_labels", overwrite=True)
        shutil.rmtree(folder)
    return data_dir, fm_dir, all_dir


def all_labels_folder(mini: pathlib.Path, unlabeled: pathlib.Path, folder: pathlib.Path) -> int:
    """Writes `folder`: `mini`'s splits, with `unlabeled`'s images added to `train` in the class folder that
    its LABELS.txt names (what the distillation sees, every image labelled); returns the train images."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(mini, folder)
    class_dirs = sorted(p.name for p in (mini / "train").iterdir() if p.is_dir())
    labels_path = unlabeled / "LABELS.txt"
    for number, line in enumerate(labels_path.read_text().splitlines(), start=1):
        name, _, index = line.partition(" ")
        if not index.isdigit() or int(index) >= len(class_dirs):
            raise FunmatchError(f"{labels_path}:{number}: expected 'NAME CLASS_INDEX' with an index below "
                                f"{len(class_dirs)}, got {line!r}")
        shutil.copyfile(unlabeled / "images" / name, folder / "train" / class_dirs[int(index)] / name)
    return sum(1 for _ in (folder / "train").glob("*/*"))


def _teacher(out: pathlib.Path, data_dir: pathlib.Path, args_teacher, train: bool, quick: bool, progress: bool) -> pathlib.Path:
    if args_teacher:
        path = pathlib.Path(args_teacher)
        if not path.exists():
            raise FunmatchError(f"--teacher {path}: no such file")
        return path
    if train:
        from funmatch.configs import get_config
        from funmatch.training.labels import train_teacher

        config = get_config("eurosat:teacher_resolution=96,resize_small=96" + (",smoke=true,teacher_steps=20" if quick else ""))
        train_teacher(config, data_dir, out / "teacher", progress=progress)
        return out / "teacher" / "teacher.keras"
    path = shipped_teacher()
    if not path.exists():
        raise FunmatchError(f"the shipped teacher {path} is missing; use --train-teacher or --teacher PATH")
    return path


def _resolution(teacher_path) -> int:
    """The teacher's own input resolution (its contract): its targets are computed at it."""
    from funmatch import models

    return int(models.contract(models.load(teacher_path))["resolution"])


def _records(workdir: pathlib.Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _targets(out: pathlib.Path, config, teacher_path, fm_dir, views: int, progress: bool) -> tuple[pathlib.Path, float, float]:
    """(the store, CPU seconds, wall seconds of its generation): generated once, its cost kept beside it."""
    from funmatch.training.checkpoints import atomic_write_text
    from funmatch.training.targets import generate_for_config

    targets_dir, cost_path = out / "targets", out / "targets_cost.json"
    if not cost_path.exists():
        cpu, wall = time.process_time(), time.time()
        generate_for_config(config, teacher_path, fm_dir, targets_dir, views=views, progress=progress)
        cost = {"cpu_seconds": time.process_time() - cpu, "wall_seconds": time.time() - wall, "views": views}
        atomic_write_text(cost_path, json.dumps(cost, indent=2))
    cost = json.loads(cost_path.read_text())
    return targets_dir, float(cost["cpu_seconds"]), float(cost["wall_seconds"])


def _record_targets_cost(workdir: pathlib.Path, cpu_seconds: float, wall_seconds: float) -> None:
    """The targets' generation goes on the distillation's clock: its metrics.json carries it (the report
    starts the run's curve after it)."""
    from funmatch.training.checkpoints import atomic_write_text

    path = workdir / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics.update(targets_cpu_seconds=cpu_seconds, targets_seconds=wall_seconds)
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True))


def _label_config(config):
    """The label run: the distillation recipe on the labelled split, with the label side's own swept learning
    rate and weight decay."""
    return dataclasses.replace(config, train_split="train", learning_rate=LABELS_LEARNING_RATE,
                               weight_decay=LABELS_WEIGHT_DECAY, max_cpu_seconds=0.0)


def equal_cpu_plan(cpu_seconds: float, per_step: float, startup: float, *, checkpoint_every: int,
                   warmup_steps: int) -> dict[str, Any]:
    """The label run that fills `cpu_seconds` of process CPU time, given its measured CPU cost per step and
    at start-up: whole checkpoint intervals (at least one), the recipe's warmup (a tenth of a short run), six
    evaluations, and the budget itself as the run's hard stop."""
    if per_step <= 0 or cpu_seconds <= 0:
        raise FunmatchError(f"demo: cannot size a label run from {per_step} CPU s per step for {cpu_seconds} CPU s")
    every = checkpoint_every
    fitting = int((cpu_seconds - startup) / per_step + 1e-9)  # 350 / 0.07 is 4999.99… in floating point
    steps = max(every, fitting // every * every)
    return {"total_steps": steps, "warmup_steps": min(warmup_steps, max(1, steps // 10)),
            "eval_every": max(every, steps // 6 // every * every), "max_cpu_seconds": cpu_seconds,
            "cpu_seconds_per_step": per_step, "startup_cpu_seconds": startup}


def _label_speed(out: pathlib.Path, label_config, data_dir: pathlib.Path, name: str | None = None) -> tuple[float, float]:
    """(CPU seconds per label step, CPU seconds at start-up): measured on a short run, kept in `out`; once for
    both references (`name` None), or for the reference `name` on its own (runs side by side each measure
    theirs, beside the other)."""
    from funmatch.training.checkpoints import atomic_write_text
    from funmatch.training.labels import train_labels

    stem = "labels_speed" if name is None else f"{name}_speed"
    path = out / f"{stem}.json"
    if not path.exists():
        calibration = out / stem
        chunk = CALIBRATION_STEPS // 3
        train_labels(dataclasses.replace(label_config, total_steps=CALIBRATION_STEPS, warmup_steps=1, checkpoint_every=chunk,
                                         eval_every=10**9, eval_max_examples=1), data_dir, calibration, progress=False)
        first, *_, last = _records(calibration)
        per_step = (last["train_cpu_seconds"] - first["train_cpu_seconds"]) / (last["step"] - first["step"])
        startup = max(0.0, first["train_cpu_seconds"] - per_step * first["step"])
        atomic_write_text(path, json.dumps({"cpu_seconds_per_step": per_step, "startup_cpu_seconds": startup}))
    speed = json.loads(path.read_text())
    return float(speed["cpu_seconds_per_step"]), float(speed["startup_cpu_seconds"])


def _label_student(out: pathlib.Path, name: str, config, data_dir: pathlib.Path, teacher_path, cpu_seconds: float,
                   progress: bool, quick: bool = False, own_speed: bool = False) -> pathlib.Path:
    """The same student on the labels of `data_dir` for `cpu_seconds` of process CPU time, in `out/name`:
    sized from the CPU cost of the first steps of a label run (the same student, batch and input for either
    reference: measured once; with `own_speed`, by this reference itself), and stopped by that budget at the
    latest. With `quick` it trains the distillation's steps."""
    from funmatch.training.checkpoints import atomic_write_text
    from funmatch.training.labels import train_labels

    workdir = out / name
    label_config = _label_config(config)
    if quick:
        train_labels(label_config, data_dir, workdir, teacher_path=teacher_path, progress=progress)
        return workdir
    plan_path = out / f"{name}_plan.json"  # the sizing, kept so that a re-run resumes the same run
    if not plan_path.exists():
        per_step, startup = _label_speed(out, label_config, data_dir, name if own_speed else None)
        plan = equal_cpu_plan(cpu_seconds, per_step, startup, checkpoint_every=config.checkpoint_every,
                              warmup_steps=config.warmup_steps)
        atomic_write_text(plan_path, json.dumps(plan, indent=2))
        if progress:
            print(f"funmatch demo: a label step costs {per_step:.3f} CPU s: {plan['total_steps']} steps fill the "
                  f"{cpu_seconds / 60:.1f} CPU minutes of the function-matching side")
    plan = json.loads(plan_path.read_text())
    label_config = dataclasses.replace(label_config, **{k: plan[k] for k in ("total_steps", "warmup_steps", "eval_every",
                                                                              "max_cpu_seconds")})
    train_labels(label_config, data_dir, workdir, teacher_path=teacher_path, progress=progress)
    return workdir


def evaluate_once(workdir: pathlib.Path, teacher_path, data_dir: pathlib.Path, config, *, latency: bool = False,
                  reuse: dict | None = None) -> dict:
    """`workdir/student.keras` against the teacher on `data_dir`'s test split (`evaluate_models`), evaluated
    once: kept in `workdir/evaluation.json`, which a re-run reads. `reuse`: `evaluate_models`' (the teacher
    is run, and its latency measured, once for all the students that share the dict)."""
    from funmatch.evaluation import evaluate_models
    from funmatch.training.checkpoints import atomic_write_text

    path = workdir / "evaluation.json"
    if not path.exists():
        result = evaluate_models(workdir / "student.keras", teacher_path, data_dir=data_dir, split="test",
                                 latency=latency, config=config, reuse=reuse)
        atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True, default=str))
    return json.loads(path.read_text())


def side_by_side_cpus(quick: bool, force: bool = False) -> tuple[int, int] | None:
    """The two CPUs of the default demo's sides: each side trains in its own process on one core (one thread),
    function matching first, then the two label references side by side, one per core. None where the sides run
    one after the other in this process: a `--quick` run, a process allowed fewer than two CPUs, a system
    without CPU affinity, a model on an accelerator. `force`: the pinned processes wherever affinity exists,
    on one CPU twice where only one is allowed (tests)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if force:
        return cpus[0], cpus[-1] if len(cpus) == 1 else cpus[1]
    if quick or len(cpus) < 2 or runtime.accelerator() != "CPU":
        return None
    return cpus[0], cpus[1]


def _child(conn, cpu: int, precision: str, work: Callable, args: tuple, kwargs: dict) -> None:
    """A spawned process's whole life: pin itself to `cpu` before TensorFlow or JAX is imported (their thread
    pools are sized from the CPUs a process may use: one thread each), set the backend and precision as the
    command did, run `work`, send back ("ok", result) or ("error", exception, traceback), and end at once:
    the interpreter's usual shutdown after a training run (TensorFlow's threads and datasets) took 40 s on
    the 2-vCPU VM, and everything the job writes is already on disk, written atomically."""
    status = 0
    try:
        os.sched_setaffinity(0, {cpu})
        runtime.quiet_tensorflow_import()  # as the command's own process does
        runtime.launch(argparse.Namespace(precision=precision), verbose=False)
        message = ("ok", work(*args, **kwargs))
    except BaseException as error:  # noqa: BLE001 - everything goes back to the parent, which decides
        status, message = 1, ("error", error, traceback.format_exc())
    try:
        conn.send(message)
    except Exception:  # an exception (or a result) that cannot be pickled: its text
        conn.send(("error", RuntimeError(repr(message[1])), message[-1] if status else ""))
    conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_on_cores(jobs: dict[str, tuple[int, Callable, tuple, dict]]) -> dict[str, Any]:
    """Run each job `name: (cpu, work, args, kwargs)` in a fresh process pinned to its CPU, all at once; their
    results by name. An exception in a job is raised here as it was (anything but a FunmatchError carries the
    job's traceback as a note); a process that dies without a word (killed, out of memory) is one
    FunmatchError naming the job. When one fails the others are stopped (everything resumes from its
    checkpoints). The processes are spawned: a script that calls this (or `run_demo`) needs the usual
    `if __name__ == "__main__":` guard; the command line, `python -m` and notebooks need nothing."""
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    running, results = {}, {}
    try:
        for name, (cpu, work, args, kwargs) in jobs.items():
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(send, cpu, runtime.precision(), work, args, kwargs),
                                      name=f"funmatch-demo-{name}")
            process.start()
            send.close()
            running[receive] = (name, process)
        while running:
            for conn in wait(list(running)):
                name, process = running.pop(conn)
                try:
                    message = conn.recv()
                except EOFError:
                    message = None
                process.join()
                if message is None:
                    raise FunmatchError(f"demo: the process of '{name}' ended without a result (exit code "
                                        f"{process.exitcode}: killed, or out of memory?); run the same command "
                                        "again to resume")
                if message[0] == "error":  # raised as it was: the command line words it as it would in-process
                    error, where = message[1], message[2]
                    if where and not isinstance(error, (FunmatchError, KeyboardInterrupt)):
                        error.add_note(f"raised in the demo's process for '{name}':\n{where}")
                    raise error
                results[name] = message[1]
        return results
    finally:
        for _, process in running.values():
            process.terminate()
            process.join()


def _distill_only(*args, **kwargs) -> None:
    """`distill` in a process of `run_on_cores`: what it writes is the result. Imported here, not passed as
    `distill` itself: unpickling that would import Keras before `_child` pins the process to its core."""
    from funmatch.training.distill import distill

    distill(*args, **kwargs)


def _demo_entry(name: str) -> bool:
    """Whether `name` is one the demo writes into its folder (a run, a dataset, the targets, a plan, the report)."""
    stem = name.split(".")[0]
    return stem in ("data", "data_unlabeled", "data_all_labels", "all_labels_images", "teacher", "targets",
                    "targets_cost", "function_matching", "report", "summary") or stem.startswith("labels")


def _claim_out(out: pathlib.Path, teacher: str | None) -> None:
    """The demo's folder: new, empty, or one an earlier demo wrote (it resumes); never the current folder."""
    from funmatch import outputs

    outputs.check_output(out, overwrite=None, inputs={"--teacher": teacher})
    if out.is_dir() and not outputs.is_funmatch_folder(out):
        # A demo folder from before the marker holds only the names a demo writes; anything else is someone's.
        foreign = sorted(path.name for path in out.iterdir() if not _demo_entry(path.name))
        if foreign:
            raise FunmatchError(f"--out {out}: holds files `funmatch demo` did not write ({', '.join(foreign[:3])}"
                                f"{' …' if len(foreign) > 3 else ''}); name a new folder")
    out.mkdir(parents=True, exist_ok=True)
    if not outputs.is_funmatch_folder(out):
        outputs.write_marker(out, "demo")


def run_demo(out_dir="demo_out", *, quick: bool = False, teacher: str | None = None, train_teacher: bool = False,
             progress: bool = True, steps: int | None = None, views: int | None = None, seed: int = 0,
             store: str | None = None, references: tuple[str, ...] = REFERENCES,
             side_by_side: bool | None = None) -> dict[str, Any]:
    """Run the demo into `out_dir`; returns the summary (also written to `out_dir/summary.json`).

    `seed` seeds the three students' training (initialisation, order, augmentation); the prepared data and
    the stored targets do not depend on it. `store` (default: `out_dir`) is where the prepared data and the
    stored targets live: runs that share it share them (the targets' generation still counts on each
    function-matching side; each run measures its own label-step cost). `references` names the label-trained
    references to run (`benchmarks/patience.py` runs only "labels_all"). `side_by_side`: each side in its own
    process on one core, the label references at the same time (`side_by_side_cpus`; None: where the machine
    allows, True: wherever CPU affinity exists, False: one after the other in this process). The summary is
    printed at the end (with `progress=False` too: it is the command's result)."""
    from funmatch.reporting import write_report
    from funmatch.training.checkpoints import atomic_write_text
    from funmatch.training.distill import distill

    started = time.time()
    out = pathlib.Path(out_dir)
    _claim_out(out, teacher)
    shared = pathlib.Path(store) if store else out
    shared.mkdir(parents=True, exist_ok=True)
    config = demo_config(quick, steps)
    data_seed = config.seed
    config = dataclasses.replace(config, seed=seed)
    views = views or (QUICK_VIEWS if quick else VIEWS)
    if views < 1:
        raise FunmatchError(f"--views: need at least one stored view per image, got {views}")
    say = print if progress else (lambda *a, **k: None)
    say(f"funmatch demo: 1/6 prepare the embedded EuroSAT images -> {shared / 'data'} (+ unlabelled: "
        f"{shared / 'data_unlabeled'}; all labelled: {shared / 'data_all_labels'})")
    data_dir, fm_dir, all_dir = _prepare(shared, data_seed, progress)
    teacher_path = _teacher(shared, data_dir, teacher, train_teacher, quick, progress)
    config = dataclasses.replace(config, teacher_resolution=_resolution(teacher_path))
    unknown = sorted(set(references) - set(REFERENCES))
    if unknown or not references:
        raise FunmatchError(f"references: choose among {', '.join(REFERENCES)}, got {', '.join(references) or 'none'}")
    cpus = None if side_by_side is False else side_by_side_cpus(quick, force=bool(side_by_side))
    say(f"funmatch demo: 2/6 the teacher's targets on {views} views of every image, once ({teacher_path.name} "
        f"@ {config.teacher_resolution} px)")
    # The store's views are drawn from the data seed: one store serves every training seed.
    targets_dir, targets_cpu, targets_wall = _targets(shared, dataclasses.replace(config, seed=data_seed), teacher_path,
                                                      fm_dir, views, progress)
    say(f"funmatch demo: 3/6 distill {config.student} @ {config.student_resolution} px with function matching from the "
        f"stored targets ({config.steps} steps)" + (f" on one core (CPU {cpus[0]})" if cpus else ""))
    distill_dir = out / "function_matching"
    distill_args = (config, fm_dir, teacher_path, distill_dir)
    distill_kwargs = {"targets": targets_dir, "progress": progress}
    if cpus:
        run_on_cores({"function_matching": (cpus[0], _distill_only, distill_args, distill_kwargs)})
    else:
        distill(*distill_args, **distill_kwargs)
    fm_cpu = targets_cpu + float(_records(distill_dir)[-1]["train_cpu_seconds"])
    _record_targets_cost(distill_dir, targets_cpu, targets_wall)
    label_data = {"labels_subset": data_dir, "labels_all": all_dir}
    counts = {name: _train_size(data) for name, data in label_data.items()}
    label_runs = {name: data for name, data in label_data.items() if name in references}
    say(f"funmatch demo: 4/6 the same student on labels, for the same CPU time ({fm_cpu / 60:.1f} min) each: on the "
        f"{counts['labels_subset']:,} labelled images, and on all {counts['labels_all']:,} images with their labels")
    workdirs = {"function_matching": distill_dir}
    placement = {}
    if cpus:
        # Side by side, one core each; each measures its own step cost beside the other. One progress bar.
        shown = list(label_runs)[-1]
        say(f"funmatch demo: the label runs train at the same time, one per core (CPUs {cpus[0]} and {cpus[1]}); "
            f"the bar is {shown}'s")
        jobs = {name: (cpus[i % 2], _label_student, (out, name, config, data, teacher_path, fm_cpu, progress and name == shown),
                       {"own_speed": True, "quick": quick}) for i, (name, data) in enumerate(label_runs.items())}
        workdirs.update(run_on_cores(jobs))
        placement = {"function_matching": cpus[0], **{name: job[0] for name, job in jobs.items()}}
    else:
        for name, data in label_runs.items():
            workdirs[name] = _label_student(out, name, config, data, teacher_path, fm_cpu, progress, quick=quick)
    say("funmatch demo: 5/6 evaluate the three students against the teacher")
    teacher_evaluated: dict = {}  # the teacher's logits and latency, measured once for the three students
    evaluations = {name: evaluate_once(workdir, teacher_path, data_dir, config, latency=not quick, reuse=teacher_evaluated)
                   for name, workdir in workdirs.items()}
    say("funmatch demo: 6/6 write the report")
    unlabeled = counts["labels_all"] - counts["labels_subset"]
    titles = {"function_matching": f"function matching ({counts['labels_subset']:,} + {unlabeled:,} images, no label read)",
              "labels_subset": f"labels on the {counts['labels_subset']:,} labelled images",
              "labels_all": f"labels on all {counts['labels_all']:,} images"}
    names = [titles[name] for name in workdirs]
    index = write_report(list(workdirs.values()), out / "report", names=names,
                         title=f"funmatch demo: EuroSAT, {counts['labels_subset']:,} labels + {unlabeled:,} unlabelled "
                               "images — function matching vs labels on the subset vs labels on every image")

    def side(name, extra_cpu=0.0, extra_wall=0.0):
        evaluation, last = evaluations[name], _records(workdirs[name])[-1]
        return {"accuracy": evaluation["student"]["accuracy_top1"], "agreement": evaluation["fidelity"]["agreement_top1"],
                "kl": evaluation["fidelity"]["kl_mean"], "steps": last["step"],
                "train_cpu_seconds": float(last["train_cpu_seconds"]), "train_seconds": float(last["train_seconds"]),
                "cpu_seconds": extra_cpu + float(last["train_cpu_seconds"]),
                "seconds": extra_wall + float(last["train_seconds"]), "images_per_sec": last.get("images_per_sec")}

    fm = evaluations["function_matching"]
    summary = {
        "teacher": {"path": str(teacher_path), "accuracy": fm["teacher"]["accuracy_top1"],
                    "params": fm["teacher"]["params"], "flops_per_image": fm["teacher"]["flops_per_image"]},
        "function_matching": {**side("function_matching", targets_cpu, targets_wall), "params": fm["student"]["params"],
                              "targets_cpu_seconds": targets_cpu, "targets_seconds": targets_wall, "views": views,
                              "images": f"{counts['labels_subset']:,} labelled + {unlabeled:,} unlabelled (labels unused)"},
        **{name: {**side(name), "learning_rate": LABELS_LEARNING_RATE, "weight_decay": LABELS_WEIGHT_DECAY,
                  "images": (f"{counts['labels_subset']:,} labelled" if name == "labels_subset" else
                             f"{counts['labels_all']:,}, every image of the distillation, labelled")}
           for name in label_runs},
        "flops_ratio": fm["ratios"]["flops_per_image"],
        "budget": config.steps / DEMO["total_steps"],
        "seed": seed,
        "report": str(index),
        "wall_seconds": time.time() - started,
        "quick": quick,
        # {side: the CPU its process was pinned to}, or {} where the sides ran one after the other in this process
        "cores": placement,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
    print(format_summary(summary))
    return summary


def _train_size(data_dir: pathlib.Path) -> int:
    card = json.loads((data_dir / "dataset.json").read_text())
    return int(card["splits"]["train"]["num_examples"])


def verdict(summary: dict[str, Any], crossover: float | None = None, measured: tuple[float, ...] = ()) -> str:
    """The summary's last line: who won at equal CPU time, against the all-labels reference first; when it
    won, the budget (× the demo's) at which `benchmarks/patience.py` measured function matching overtaking
    it, or the budgets over which it did not (a `--quick` run quotes none: they are the default run's)."""
    fm, everything = (summary[k]["accuracy"] for k in ("function_matching", "labels_all"))
    over_all = 100 * (fm - everything)
    versus_subset = ""
    if "labels_subset" in summary:
        over_subset = 100 * (fm - summary["labels_subset"]["accuracy"])
        versus_subset = (f"{over_subset:.1f} points ahead of" if over_subset > 0 else f"{-over_subset:.1f} points behind")
    if over_all > 0:
        return (f"function matching wins at equal CPU time: {over_all:.1f} points ahead of labels on every image"
                + (f", {versus_subset} labels on the labelled subset" if versus_subset else ""))
    if summary.get("quick"):  # the measured budgets are multiples of the default run, not of a smoke run
        later = (f"a {summary['function_matching']['steps']}-step smoke run: the budgets at which function matching "
                 "catches up are measured for the default demo (benchmarks/patience.py)")
    elif crossover is not None:
        later = f"function matching overtook it at {crossover:g}× this budget (benchmarks/patience.py)"
    elif measured:
        later = (f"function matching did not overtake it within the measured budgets "
                 f"({', '.join(f'{m:g}×' for m in measured)} the demo's; benchmarks/patience.py)")
    else:
        later = "no budget where function matching overtakes it has been measured (benchmarks/patience.py)"
    result = ("function matching ties labels on every image at equal CPU time" if round(over_all, 6) == 0 else
              f"labels on every image win at equal CPU time, by {-over_all:.1f} points")
    return f"{result} ({later})" + (f"; function matching is {versus_subset} labels on the labelled subset"
                                    if versus_subset else "")


def format_summary(summary: dict[str, Any]) -> str:
    teacher, fm = summary["teacher"], summary["function_matching"]
    everything = summary["labels_all"]

    def line(title, side, what):
        return (f"{title} test accuracy {100 * side['accuracy']:.1f} %, agreement with the teacher "
                f"{100 * side['agreement']:.1f} % ({side['cpu_seconds'] / 60:.1f} CPU min{what})")

    return "\n".join([
        f"report: {summary['report']}",
        f"teacher: test accuracy {100 * teacher['accuracy']:.1f} %; the students use {summary['flops_ratio']:.1f}× fewer FLOPs per image",
        line("function matching:      ", fm, f": {fm['targets_cpu_seconds'] / 60:.1f} targets + "
                                              f"{fm['train_cpu_seconds'] / 60:.1f} training; {fm['images']}"),
        *([line("labels, labelled subset:", summary["labels_subset"], f" of training; {summary['labels_subset']['images']}")]
          if "labels_subset" in summary else []),
        line("labels, every image:    ", everything, f" of training; {everything['images']}"),
        verdict(summary, CROSSOVER, MEASURED_BUDGETS),
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out); re-running resumes")
    parser.add_argument("--quick", action="store_true", help="the same pipeline in about two minutes on 2 CPU cores (smoke test)")
    parser.add_argument("--teacher", default=None, help="a teacher .keras file instead of the shipped one")
    parser.add_argument("--train-teacher", action="store_true", help="train the teacher from scratch first (longer)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"function-matching steps (default {DEMO['total_steps']}); the label run gets the same "
                             "CPU time. More steps: the paper's patience, a longer demo")
    parser.add_argument("--views", type=int, default=None,
                        help=f"stored teacher views per image (default {VIEWS}); their generation counts as "
                             "function-matching time")
    parser.add_argument("--seed", type=int, default=0, help="seed of the students' training (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress output; the summary is still printed")
    runtime.add_precision_argument(parser)


def main(args: argparse.Namespace) -> int:
    runtime.launch(args, verbose=not args.no_progress)  # backend and precision, as distill's
    run_demo(args.out, quick=args.quick, teacher=args.teacher, train_teacher=args.train_teacher, progress=not args.no_progress,
             steps=args.steps, views=args.views, seed=args.seed)
    return 0
