"""`funmatch demo`: the whole pipeline, in one command, on the EuroSAT images embedded in the package.

The case distillation is for: few labels, many images, a strong teacher.

    prepare  eurosat_mini: 1,000 labelled training images (100 per class), 500 validation, 1,000 test (64 px,
             10 classes), plus eurosat_unlabeled: 4,000 training images without labels
    teacher  the shipped `bit_r26x0.25` at 112 px (trained on the EuroSAT train split; every validation and test
             image here comes from the disjoint test split), or --teacher / --train-teacher
    targets  the teacher's outputs on K function-matching views of all 5,000 images, computed once
    distill  a ≥ 10× cheaper student (tiny_cnn at 48 px: the teacher's crop, resized) with function matching
             from the stored targets: no teacher in the training step, no label anywhere
    labels   the same student trained on the 1,000 labels for the same CPU time (the targets' generation is
             counted on the function-matching side), with the same crops, flips and schedule shape
             (`LABELS_LEARNING_RATE`; the sweep: `scripts/label_sweep.sh`)
    evaluate both against the teacher on the clean test split (accuracy, agreement, KL, per-class gaps, cost)
    report   HTML + markdown, opening with accuracy against training time for both students

Equal time holds on a busy machine: both sides are measured on the same clock, the process's CPU time. The
function-matching side (generation + training) runs first; the label run is sized to the CPU seconds it used
(from the CPU cost of its own first steps) and stopped by that budget at the latest.

Measured with the defaults (`funmatch demo`, TensorFlow backend, 2 idle CPU cores): 7 min 42 s in all; the
teacher 96.1 % on this test split; function matching 86.2 % test, agreement with the teacher 86.6 %, in 6.0
CPU minutes (2.6 for the targets of 16 views, 3.5 for 3,000 training steps); the label-trained student
83.4 %, agreement 83.0 %, in 6.0 CPU minutes (5,300 steps).
With `--steps 12000`: 89.1 % (agreement 89.2 %) against 83.2 % for labels, 20.8 CPU minutes each.
`--quick` runs the same pipeline in about a minute.
Re-running the same command reuses what is done (each step is resumable).

`run_demo` lives with its command: it only strings together the libraries of the other commands
(data.prepare, data.unlabeled, training.targets, training.distill, training.labels, evaluation, reporting).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import json
import pathlib
import time
from typing import Any

from funmatch import runtime
from funmatch.errors import FunmatchError

# The demo's distillation: the `eurosat` recipe, a student at half the teacher's resolution, the labelled and
# unlabelled images as the distillation stream.
DEMO = dict(student="tiny_cnn", student_resolution=48, teacher_resolution=112, resize_small=48, batch_size=128,
            total_steps=3000, warmup_steps=100, learning_rate=0.01, weight_decay=1e-4, temperature=1.0,
            mixup_p=1.0, checkpoint_every=100, eval_every=500, eval_batch_size=250,
            train_split="train_and_unlabeled")
VIEWS = 16  # stored teacher views per image
# The label-trained student's learning rate: the best on validation of the recorded sweep
# `scripts/label_sweep.sh` (2,000 steps each: lr 0.003 / 0.01 / 0.03, and 0.01 with mixup).
LABELS_LEARNING_RATE = 0.03
QUICK = dict(batch_size=32, total_steps=20, warmup_steps=2, checkpoint_every=10, eval_every=10, eval_max_examples=100)
QUICK_VIEWS = 2
CALIBRATION_STEPS = 30  # label steps whose CPU cost sizes the label run


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


def _prepare(out: pathlib.Path, seed: int, progress: bool) -> tuple[pathlib.Path, pathlib.Path]:
    """(the labelled dataset, the same + the unlabelled images as the split `train_and_unlabeled`)."""
    from funmatch.data.prepare import prepare
    from funmatch.data.unlabeled import add_unlabeled

    data_dir, fm_dir = out / "data", out / "data_unlabeled"
    if not (data_dir / "dataset.json").exists():
        prepare(f"folder:{asset('eurosat_mini')}", data_dir, progress=progress, name="eurosat_mini")
    add_unlabeled(data_dir, f"folder:{asset('eurosat_unlabeled', 'images')}", fm_dir, seed=seed)
    return data_dir, fm_dir


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
    """The label run: the distillation recipe on the labelled split, with the swept learning rate."""
    return dataclasses.replace(config, train_split="train", learning_rate=LABELS_LEARNING_RATE, max_cpu_seconds=0.0)


def _label_student(out: pathlib.Path, config, data_dir: pathlib.Path, teacher_path, cpu_seconds: float,
                   progress: bool, quick: bool = False) -> pathlib.Path:
    """The same student on labels for `cpu_seconds` of process CPU time: sized from the CPU cost of its own
    first steps, and stopped by that budget at the latest. With `quick` it trains the distillation's steps."""
    from funmatch.training.labels import train_labels

    workdir = out / "labels"
    label_config = _label_config(config)
    if quick:
        train_labels(label_config, data_dir, workdir, teacher_path=teacher_path, progress=progress)
        return workdir
    plan_path = out / "labels_plan.json"  # the sizing, kept so that a re-run resumes the same run
    if not plan_path.exists():
        calibration = out / "labels_speed"
        chunk = CALIBRATION_STEPS // 3
        train_labels(dataclasses.replace(label_config, total_steps=CALIBRATION_STEPS, warmup_steps=1, checkpoint_every=chunk,
                                         eval_every=10**9, eval_max_examples=1), data_dir, calibration, progress=False)
        first, *_, last = _records(calibration)
        per_step = (last["train_cpu_seconds"] - first["train_cpu_seconds"]) / (last["step"] - first["step"])
        startup = max(0.0, first["train_cpu_seconds"] - per_step * first["step"])
        every = config.checkpoint_every
        steps = max(every, int((cpu_seconds - startup) / per_step) // every * every)
        plan = {"total_steps": steps, "warmup_steps": min(config.warmup_steps, max(1, steps // 10)),
                "eval_every": max(every, steps // 6 // every * every), "max_cpu_seconds": cpu_seconds,
                "cpu_seconds_per_step": per_step, "startup_cpu_seconds": startup}
        from funmatch.training.checkpoints import atomic_write_text

        atomic_write_text(plan_path, json.dumps(plan, indent=2))
        if progress:
            print(f"funmatch demo: a label step costs {per_step:.3f} CPU s: {steps} steps fill the "
                  f"{cpu_seconds / 60:.1f} CPU minutes of the function-matching side")
    plan = json.loads(plan_path.read_text())
    label_config = dataclasses.replace(label_config, **{k: plan[k] for k in ("total_steps", "warmup_steps", "eval_every",
                                                                              "max_cpu_seconds")})
    train_labels(label_config, data_dir, workdir, teacher_path=teacher_path, progress=progress)
    return workdir


def run_demo(out_dir="demo_out", *, quick: bool = False, teacher: str | None = None, train_teacher: bool = False,
             progress: bool = True, steps: int | None = None, views: int | None = None) -> dict[str, Any]:
    """Run the demo into `out_dir`; returns the summary (also written to `out_dir/summary.json`).

    The summary is printed at the end (with `progress=False` too: it is the command's result)."""
    from funmatch.evaluation import evaluate_models
    from funmatch.reporting import write_report
    from funmatch.training.checkpoints import atomic_write_text
    from funmatch.training.distill import distill

    started = time.time()
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = demo_config(quick, steps)
    views = views or (QUICK_VIEWS if quick else VIEWS)
    if views < 1:
        raise FunmatchError(f"--views: need at least one stored view per image, got {views}")
    say = print if progress else (lambda *a, **k: None)
    say(f"funmatch demo: 1/6 prepare the embedded EuroSAT images -> {out / 'data'} (+ unlabelled: {out / 'data_unlabeled'})")
    data_dir, fm_dir = _prepare(out, config.seed, progress)
    teacher_path = _teacher(out, data_dir, teacher, train_teacher, quick, progress)
    config = dataclasses.replace(config, teacher_resolution=_resolution(teacher_path))
    say(f"funmatch demo: 2/6 the teacher's targets on {views} views of every image, once ({teacher_path.name} "
        f"@ {config.teacher_resolution} px)")
    targets_dir, targets_cpu, targets_wall = _targets(out, config, teacher_path, fm_dir, views, progress)
    say(f"funmatch demo: 3/6 distill {config.student} @ {config.student_resolution} px with function matching from the "
        f"stored targets ({config.steps} steps)")
    distill_dir = out / "function_matching"
    distill(config, fm_dir, teacher_path, distill_dir, targets=targets_dir, progress=progress)
    fm_cpu = targets_cpu + float(_records(distill_dir)[-1]["train_cpu_seconds"])
    _record_targets_cost(distill_dir, targets_cpu, targets_wall)
    say(f"funmatch demo: 4/6 the same student on the 1,000 labels, for the same CPU time ({fm_cpu / 60:.1f} min)")
    label_dir = _label_student(out, config, data_dir, teacher_path, fm_cpu, progress, quick=quick)
    say("funmatch demo: 5/6 evaluate both students against the teacher")
    evaluations = {}
    for name, workdir in (("function_matching", distill_dir), ("labels", label_dir)):
        path = workdir / "evaluation.json"
        if not path.exists():
            result = evaluate_models(workdir / "student.keras", teacher_path, data_dir=data_dir, split="test",
                                     latency=not quick, config=config)
            atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True, default=str))
        evaluations[name] = json.loads(path.read_text())
    say("funmatch demo: 6/6 write the report")
    index = write_report([distill_dir, label_dir], out / "report",
                         title="funmatch demo: EuroSAT, 1,000 labels + 4,000 unlabelled images — function matching vs labels")

    fm, lab = evaluations["function_matching"], evaluations["labels"]
    fm_last, lab_last = _records(distill_dir)[-1], _records(label_dir)[-1]

    def side(evaluation, last, extra_cpu=0.0, extra_wall=0.0):
        return {"accuracy": evaluation["student"]["accuracy_top1"], "agreement": evaluation["fidelity"]["agreement_top1"],
                "kl": evaluation["fidelity"]["kl_mean"], "steps": last["step"],
                "train_cpu_seconds": float(last["train_cpu_seconds"]), "train_seconds": float(last["train_seconds"]),
                "cpu_seconds": extra_cpu + float(last["train_cpu_seconds"]),
                "seconds": extra_wall + float(last["train_seconds"]), "images_per_sec": last.get("images_per_sec")}

    summary = {
        "teacher": {"path": str(teacher_path), "accuracy": fm["teacher"]["accuracy_top1"],
                    "params": fm["teacher"]["params"], "flops_per_image": fm["teacher"]["flops_per_image"]},
        "function_matching": {**side(fm, fm_last, targets_cpu, targets_wall), "params": fm["student"]["params"],
                              "targets_cpu_seconds": targets_cpu, "targets_seconds": targets_wall, "views": views,
                              "images": "1,000 labelled + 4,000 unlabelled (labels unused)"},
        "labels": {**side(lab, lab_last), "learning_rate": LABELS_LEARNING_RATE, "images": "1,000 labelled"},
        "flops_ratio": fm["ratios"]["flops_per_image"],
        "report": str(index),
        "wall_seconds": time.time() - started,
        "quick": quick,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
    print(format_summary(summary))
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    teacher, fm, lab = summary["teacher"], summary["function_matching"], summary["labels"]
    gap = 100 * (fm["accuracy"] - lab["accuracy"])
    verdict = (f"function matching wins by {gap:.1f} points at equal CPU time" if gap > 0 else
               f"labels win by {-gap:.1f} points at equal CPU time")
    return "\n".join([
        f"report: {summary['report']}",
        f"teacher: test accuracy {100 * teacher['accuracy']:.1f} %; the students use {summary['flops_ratio']:.1f}× fewer FLOPs per image",
        f"function matching: test accuracy {100 * fm['accuracy']:.1f} %, agreement with the teacher {100 * fm['agreement']:.1f} % "
        f"({fm['cpu_seconds'] / 60:.1f} CPU min: {fm['targets_cpu_seconds'] / 60:.1f} targets + {fm['train_cpu_seconds'] / 60:.1f} training)",
        f"labels only:       test accuracy {100 * lab['accuracy']:.1f} %, agreement with the teacher {100 * lab['agreement']:.1f} % "
        f"({lab['cpu_seconds'] / 60:.1f} CPU min of training)",
        verdict,
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out); re-running resumes")
    parser.add_argument("--quick", action="store_true", help="the same pipeline in about a minute (smoke test)")
    parser.add_argument("--teacher", default=None, help="a teacher .keras file instead of the shipped one")
    parser.add_argument("--train-teacher", action="store_true", help="train the teacher from scratch first (longer)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"function-matching steps (default {DEMO['total_steps']}); the label run gets the same "
                             "CPU time. More steps: the paper's patience, a longer demo")
    parser.add_argument("--views", type=int, default=None,
                        help=f"stored teacher views per image (default {VIEWS}); their generation counts as "
                             "function-matching time")
    parser.add_argument("--no-progress", action="store_true", help="no progress output; the summary is still printed")
    runtime.add_precision_argument(parser)


def main(args: argparse.Namespace) -> int:
    runtime.launch(args, verbose=not args.no_progress)  # backend and precision, as distill's
    run_demo(args.out, quick=args.quick, teacher=args.teacher, train_teacher=args.train_teacher, progress=not args.no_progress,
             steps=args.steps, views=args.views)
    return 0
