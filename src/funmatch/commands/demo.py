"""`funmatch demo`: the whole pipeline, in one command, on the EuroSAT cut embedded in the package.

    prepare  eurosat_mini (4,000 / 500 / 1,000 real 64 px images, 10 classes) -> TFRecords
    teacher  the shipped `bit_r26x0.25` teacher (trained with the `eurosat` recipe on the full EuroSAT
             train split, which is disjoint from this test split), or --teacher / --train-teacher
    distill  a ≥ 10× cheaper student (tiny_cnn at 32 px: the teacher's 64 px crop, resized) with
             function matching
    labels   the same student trained on labels for the same wall time, as the reference
    evaluate both against the teacher (accuracy, agreement, KL, per-class gaps, cost)
    report   HTML + markdown with plots, comparing the two students

Measured with the defaults (2 CPU cores, TensorFlow backend, nothing else running): 9 min 45 s in all;
the function-matching student (3,000 steps) reached 83.6 % test, agreement with the teacher 84.3 %, in
4.0 min of training; the same student on labels 88.9 % (agreement 88.0 %) in 4.1 min; the teacher 94.3 %
on this test split. Labels win at this budget: they run 3× more images per second (no teacher forward
pass) and mixup slows function matching early on. With the paper's patience, `--steps 14400` (41 min):
function matching 88.2 % test, agreement 89.7 % (validation 92.0 %); labels 90.2 %, agreement 88.5 %
(validation 87.6 %). `--quick` runs the same pipeline in about a minute.
Re-running the same command reuses what is done (each step is resumable).

`run_demo` lives with its command: it only strings together the libraries of the other commands
(data.prepare, training.labels, training.distill, evaluation, reporting) and has no library of its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import json
import pathlib
import time
from typing import Any

from funmatch.errors import FunmatchError

# The demo's distillation: the `eurosat` recipe with a student at half the teacher's resolution.
DEMO = dict(student="tiny_cnn", student_resolution=32, teacher_resolution=64, resize_small=32, batch_size=128,
            total_steps=3000, warmup_steps=100, learning_rate=0.01, weight_decay=1e-4, temperature=1.0,
            checkpoint_every=200, eval_every=600, eval_batch_size=250)
QUICK = dict(batch_size=32, total_steps=20, warmup_steps=2, checkpoint_every=10, eval_every=10, eval_max_examples=100)


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
        values.update(total_steps=steps, warmup_steps=min(values["warmup_steps"], max(1, steps // 10)))
    return get_config("eurosat:" + ",".join(f"{k}={v}" for k, v in values.items()))


def _prepare(out: pathlib.Path, progress: bool) -> pathlib.Path:
    from funmatch.data.prepare import prepare

    data_dir = out / "data"
    if (data_dir / "dataset.json").exists():
        return data_dir
    prepare(f"folder:{asset('eurosat_mini')}", data_dir, progress=progress, name="eurosat_mini")
    return data_dir


def _teacher(out: pathlib.Path, data_dir: pathlib.Path, args_teacher, train: bool, quick: bool, progress: bool) -> pathlib.Path:
    if args_teacher:
        path = pathlib.Path(args_teacher)
        if not path.exists():
            raise FunmatchError(f"--teacher {path}: no such file")
        return path
    if train:
        from funmatch.configs import get_config
        from funmatch.training.labels import train_teacher

        config = get_config("eurosat" + (":smoke=true,teacher_steps=20" if quick else ""))
        train_teacher(config, data_dir, out / "teacher", progress=progress)
        return out / "teacher" / "teacher.keras"
    path = shipped_teacher()
    if not path.exists():
        raise FunmatchError(f"the shipped teacher {path} is missing; use --train-teacher or --teacher PATH")
    return path


def _train_seconds(workdir: pathlib.Path) -> float:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return float(json.loads(lines[-1])["train_seconds"]) if lines else 0.0


def _label_student(out: pathlib.Path, config, data_dir: pathlib.Path, seconds: float, progress: bool,
                   quick: bool = False) -> pathlib.Path:
    """Train the same student on labels for `seconds` of training: its speed is measured first.

    With `quick` (a smoke test) it trains as many steps as the distillation did instead."""
    from funmatch.training.labels import train_teacher

    workdir = out / "labels"
    if (workdir / "student.keras").exists():
        return workdir
    label_config = dataclasses.replace(
        config, teacher=config.student, teacher_resolution=config.student_resolution, teacher_from_scratch=True,
        teacher_optimizer="adam", teacher_learning_rate=config.learning_rate, teacher_weight_decay=config.weight_decay,
        teacher_batch_size=config.batch_size, teacher_mixup_p=0.0, teacher_warmup_steps=config.warmup_steps,
        teacher_augment="",  # the distillation's augmentations (crop + flip), not the teacher recipe's rotations
    )
    if quick:
        train_teacher(dataclasses.replace(label_config, teacher_steps=config.steps, teacher_warmup_steps=config.warmup_steps),
                      data_dir, workdir, progress=progress, output_name="student")
        return workdir
    calibration = out / "labels_speed"
    if not (calibration / "metrics.jsonl").exists():
        steps = max(2 * config.checkpoint_every, 20)
        train_teacher(dataclasses.replace(label_config, teacher_steps=steps, teacher_warmup_steps=1, eval_every=10**9),
                      data_dir, calibration, progress=False, output_name="student")
    first, last = [json.loads(line) for line in (calibration / "metrics.jsonl").read_text().splitlines()][:2]
    images_per_sec = last["images_per_sec"]  # the second chunk: after compilation
    # The first chunk is compilation + one chunk of steps; the label run pays that start-up too.
    chunk_seconds = last["train_seconds"] - first["train_seconds"]
    startup = max(0.0, first["train_seconds"] - chunk_seconds)
    chunk = config.checkpoint_every
    steps = max(chunk, round((seconds - startup) * images_per_sec / config.batch_size / chunk) * chunk)
    if progress:
        print(f"funmatch demo: the label-trained student runs at {images_per_sec:,.0f} img/s: {steps} steps "
              f"≈ {seconds / 60:.1f} min, the distillation's training time")
    train_teacher(dataclasses.replace(label_config, teacher_steps=steps, teacher_warmup_steps=min(config.warmup_steps, steps // 10)),
                  data_dir, workdir, progress=progress, output_name="student")
    return workdir


def run_demo(out_dir="demo_out", *, quick: bool = False, teacher: str | None = None, train_teacher: bool = False,
             progress: bool = True, steps: int | None = None) -> dict[str, Any]:
    """Run the demo into `out_dir`; returns the summary (also written to `out_dir/summary.json`)."""
    from funmatch.evaluation import evaluate_models
    from funmatch.reporting import write_report
    from funmatch.training.distill import distill
    from funmatch.training.checkpoints import atomic_write_text

    started = time.time()
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = demo_config(quick, steps)
    if progress:
        print(f"funmatch demo: 1/5 prepare the embedded EuroSAT cut -> {out / 'data'}")
    data_dir = _prepare(out, progress)
    teacher_path = _teacher(out, data_dir, teacher, train_teacher, quick, progress)
    if progress:
        print(f"funmatch demo: 2/5 distill {config.student} @ {config.student_resolution} px from {teacher_path.name} "
              f"@ {config.teacher_resolution} px with function matching ({config.steps} steps)")
    distill_dir = out / "function_matching"
    distill(config, data_dir, teacher_path, distill_dir, progress=progress)
    seconds = _train_seconds(distill_dir)
    if progress:
        print("funmatch demo: 3/5 the same student on labels, same training time")
    label_dir = _label_student(out, config, data_dir, seconds, progress, quick=quick)
    if progress:
        print("funmatch demo: 4/5 evaluate both students against the teacher")
    evaluations = {}
    for name, workdir in (("function_matching", distill_dir), ("labels", label_dir)):
        path = workdir / "evaluation.json"
        if not path.exists():
            result = evaluate_models(workdir / "student.keras", teacher_path, data_dir=data_dir, split="test",
                                     latency=not quick, config=config)
            atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True, default=str))
        evaluations[name] = json.loads(path.read_text())
    # The label run's final metrics in the distillation runs' scheme, so that the report compares them.
    lab = evaluations["labels"]
    label_metrics = json.loads((label_dir / "student_metrics.json").read_text())
    label_metrics.update({"step": label_metrics["steps"], "mode": "labels", "test_agreement": lab["fidelity"]["agreement_top1"],
                          "test_agreement_top5": lab["fidelity"]["agreement_top5"], "test_kl": lab["fidelity"]["kl_mean"],
                          "teacher_test_accuracy": lab["teacher"]["accuracy_top1"]})
    atomic_write_text(label_dir / "metrics.json", json.dumps(label_metrics, indent=2, sort_keys=True))
    if progress:
        print("funmatch demo: 5/5 write the report")
    index = write_report([distill_dir, label_dir], out / "report", title="funmatch demo: EuroSAT, function matching vs labels")

    fm, lab = evaluations["function_matching"], evaluations["labels"]
    summary = {
        "teacher": {"path": str(teacher_path), "accuracy": fm["teacher"]["accuracy_top1"],
                    "params": fm["teacher"]["params"], "flops_per_image": fm["teacher"]["flops_per_image"]},
        "function_matching": {"accuracy": fm["student"]["accuracy_top1"], "agreement": fm["fidelity"]["agreement_top1"],
                              "params": fm["student"]["params"], "train_seconds": seconds},
        "labels": {"accuracy": lab["student"]["accuracy_top1"], "agreement": lab["fidelity"]["agreement_top1"],
                   "train_seconds": _train_seconds(label_dir)},
        "flops_ratio": fm["ratios"]["flops_per_image"],
        "report": str(index),
        "wall_seconds": time.time() - started,
        "quick": quick,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
    if progress:
        print(format_summary(summary))
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    teacher, fm, lab = summary["teacher"], summary["function_matching"], summary["labels"]
    return "\n".join([
        f"report: {summary['report']}",
        f"teacher: test accuracy {100 * teacher['accuracy']:.1f} %; students use {summary['flops_ratio']:.1f}× fewer FLOPs per image",
        f"function matching: test accuracy {100 * fm['accuracy']:.1f} %, agreement with the teacher {100 * fm['agreement']:.1f} % "
        f"({fm['train_seconds'] / 60:.1f} min of training)",
        f"labels only:       test accuracy {100 * lab['accuracy']:.1f} %, agreement with the teacher {100 * lab['agreement']:.1f} % "
        f"({lab['train_seconds'] / 60:.1f} min of training)",
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out); re-running resumes")
    parser.add_argument("--quick", action="store_true", help="the same pipeline in about a minute (smoke test)")
    parser.add_argument("--teacher", default=None, help="a teacher .keras file instead of the shipped one")
    parser.add_argument("--train-teacher", action="store_true", help="train the teacher from scratch first (longer)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"function-matching steps (default {DEMO['total_steps']}); the label run gets the same "
                             "training time. More steps: the paper's patience, a longer demo")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")


def main(args: argparse.Namespace) -> int:
    run_demo(args.out, quick=args.quick, teacher=args.teacher, train_teacher=args.train_teacher, progress=not args.no_progress,
             steps=args.steps)
    return 0
