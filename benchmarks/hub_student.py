"""A keras-hub student against `tiny_cnn`: function matching from the same stored targets, for the same
process CPU time, on the EuroSAT images embedded in the package.

    taskset -c 1 python benchmarks/hub_student.py --store runs/demo --out runs/hub_student [--equal-steps]

`--store` is a demo's store (`funmatch demo --store DIR`, or `benchmarks/patience.py`'s `OUT/store`): the
prepared data and K stored targets of the shipped teacher at 112 px. It is only read. Two runs of
`funmatch distill --targets STORE/targets` (three with `--equal-steps`), one after the other, each in a child
process:

    tiny_cnn   the demo's recipe (`funmatch demo`'s DEMO: 48 px, batch 128, 3,000 steps)
    hub        the same recipe into `hub_random:PRESET`: a keras-hub MobileNetV3-Small-style backbone
               (`hub_models.zoo_preset`, keras-hub's MobileNetBackbone configuration, ImageNet mean/std
               converter) built from its config with random weights and a new 10-class head, at 48 px.
               Its steps are sized to the CPU seconds tiny_cnn's training took (the CPU cost of its first
               steps, measured on a short run, as the demo sizes its label runs: `equal_cpu_plan`), and
               that budget stops it at the latest.
    hub_steps  (`--equal-steps`) the hub student for tiny_cnn's steps, its CPU seconds not capped: what a
               step, rather than a CPU second, buys.

No network: the preset is saved locally from a random initialisation. Prints, side by side: parameters,
MFLOPs per image (funmatch's own count), steps, training CPU seconds, wall seconds, test accuracy, top-1
agreement with the teacher on the test split, and the load average over each run. Pin the job to one core
that runs nothing else heavy (CPU seconds buy less work when threads contend) and quote the load.
Resumable: a finished run is reused, an interrupted one resumes from its checkpoints.

Measured (2026-12-07, TensorFlow backend, pinned to one core of a 2-core machine, the other idle, load
0.4-1.6; `--equal-steps`; the store of `benchmarks/patience.py`, K = 16 views):

    student @ 48 px               params  MFLOPs  steps  train CPU s  wall s  test acc  agreement
    tiny_cnn                      26,938    5.81   3000          134     158    85.6 %     87.0 %
    hub MobileNetV3-S (random)   584,970    3.28    793          134     159    75.7 %     76.6 %
      the same, equal steps      584,970    3.28   3000          461     525    86.3 %     87.4 %

(teacher: 96.1 % test). A step of the keras-hub student costs 0.157 CPU s against tiny_cnn's 0.045: on a CPU
it gets 26 % of the steps; step for step it is as good. Before funmatch ran keras-hub's depthwise
`Conv2D(groups=C)` as depthwise convolutions (`models.classifier.native_grouped_convs`), its step cost 2.4
CPU s (load 3-7): 180 steps, 57.8 % / 57.2 %.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MAX_MFLOPS = 10.0  # the student's bound: at most 10 MFLOPs per image
CALIBRATION_STEPS = 30
HUB_CHECKPOINT_EVERY = 10  # the hub run's checkpoint interval, the unit its steps are sized in


def config_string(values: dict) -> str:
    return "eurosat:" + ",".join(f"{key}={value}" for key, value in values.items())


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def distill(values: dict, store: pathlib.Path, teacher: pathlib.Path, workdir: pathlib.Path) -> dict:
    """One `funmatch distill --targets` in a child process; its metrics.json, with the child's CPU seconds,
    wall seconds and the load averages before and after (kept beside the run: a re-run reports the first)."""
    timing = workdir.with_name(workdir.name + "_timing.json")  # the first, complete run's clocks and load
    if (workdir / "metrics.json").exists() and timing.exists():
        return {**json.loads((workdir / "metrics.json").read_text()), **json.loads(timing.read_text())}
    command = [sys.executable, "-m", "funmatch.cli", "distill", "--config", config_string(values),
               "--data", str(store / "data_unlabeled"), "--teacher", str(teacher), "--targets", str(store / "targets"),
               "--workdir", str(workdir), "--no-progress"]
    load_before, cpu, wall = os.getloadavg(), children_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"hub_student: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((workdir / "metrics.json").read_text())
    clocks = dict(process_cpu_seconds=children_cpu() - cpu, process_seconds=time.perf_counter() - wall,
                  load_before=load_before, load_after=os.getloadavg())
    timing.write_text(json.dumps(clocks))
    return {**metrics, **clocks}


def records(workdir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a demo's store: data_unlabeled/ and targets/ (read only)")
    parser.add_argument("--out", required=True, help="where the preset and the two runs go")
    parser.add_argument("--equal-steps", action="store_true",
                        help="a third run: the hub student for tiny_cnn's steps (its CPU seconds not capped)")
    args = parser.parse_args()
    store, out = pathlib.Path(args.store), pathlib.Path(args.out)
    card = store / "targets" / "targets.json"
    if not card.is_file() or not json.loads(card.read_text()).get("complete"):
        sys.exit(f"hub_student: {card}: no complete store of targets there (yet)")
    out.mkdir(parents=True, exist_ok=True)

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from hub_models import zoo_preset

    from funmatch import models
    from funmatch.commands.demo import DEMO, equal_cpu_plan, shipped_teacher

    teacher = shipped_teacher()
    resolution = DEMO["student_resolution"]
    preset = out / "preset"
    if not (preset / "config.json").exists():
        zoo_preset(preset, resolution)
    hub_name = f"hub_random:{preset.resolve()}"
    cost = {}
    for name, arch in (("tiny_cnn", DEMO["student"]), ("hub", hub_name)):
        model = models.create(arch, num_classes=10, resolution=resolution)
        cost[name] = (models.count_params(model), models.count_flops(model, resolution) / 1e6)
    if cost["hub"][1] > MAX_MFLOPS:
        sys.exit(f"hub_student: the hub student costs {cost['hub'][1]:.1f} MFLOPs per image, over {MAX_MFLOPS}")

    print(f"load average (1, 5, 15 min) at the start: {os.getloadavg()}", flush=True)
    results = {"tiny_cnn": distill(dict(DEMO), store, teacher, out / "tiny_cnn")}
    budget = float(records(out / "tiny_cnn")[-1]["train_cpu_seconds"])

    hub_values = dict(DEMO, student=hub_name)
    plan_path = out / "hub_plan.json"  # the sizing, kept so that a re-run resumes the same run
    if not plan_path.exists():
        chunk = CALIBRATION_STEPS // 3
        distill(dict(hub_values, total_steps=CALIBRATION_STEPS, warmup_steps=1, checkpoint_every=chunk,
                     eval_every=10**9, eval_max_examples=1), store, teacher, out / "hub_calibration")
        first, *_, last = records(out / "hub_calibration")
        per_step = (last["train_cpu_seconds"] - first["train_cpu_seconds"]) / (last["step"] - first["step"])
        startup = max(0.0, first["train_cpu_seconds"] - per_step * first["step"])
        # Whole intervals of HUB_CHECKPOINT_EVERY steps: the demo's 100 would round a slow student's budget
        # down by up to 100 steps (measured: 190 fitting steps became 100, 55 % of the CPU seconds).
        plan = equal_cpu_plan(budget, per_step, startup, checkpoint_every=HUB_CHECKPOINT_EVERY,
                              warmup_steps=DEMO["warmup_steps"])
        plan_path.write_text(json.dumps(plan, indent=2))
    plan = json.loads(plan_path.read_text())
    print(f"hub student: {plan['cpu_seconds_per_step']:.3f} CPU s per step (tiny_cnn's training: {budget:.0f} CPU s)"
          f" -> {plan['total_steps']} steps", flush=True)
    hub_values.update({key: plan[key] for key in ("total_steps", "warmup_steps", "eval_every", "max_cpu_seconds")},
                      checkpoint_every=HUB_CHECKPOINT_EVERY)
    results["hub"] = distill(hub_values, store, teacher, out / "hub")
    if args.equal_steps:  # what the step, not the CPU second, buys: the hub student for the demo's steps
        results["hub_steps"] = distill(dict(DEMO, student=hub_name), store, teacher, out / "hub_steps")
        cost["hub_steps"] = cost["hub"]

    labels = {"tiny_cnn": "tiny_cnn", "hub": "hub MobileNetV3-S (random)", "hub_steps": "  the same, equal steps"}
    print(f"\n{'student @ ' + str(resolution) + ' px':<28}{'params':>9}{'MFLOPs':>8}{'steps':>7}{'train CPU s':>12}"
          f"{'wall s':>8}{'test acc':>10}{'agreement':>11}   load before -> after (1 min)")
    for name, metrics in results.items():
        train_cpu = records(out / name)[-1]["train_cpu_seconds"]
        print(f"{labels[name]:<28}{cost[name][0]:>9,}{cost[name][1]:>8.2f}{metrics['step']:>7}{train_cpu:>12.0f}"
              f"{metrics['process_seconds']:>8.0f}{metrics['test_accuracy']:>10.2%}{metrics['test_agreement']:>11.2%}"
              f"   {metrics['load_before'][0]:.2f} -> {metrics['load_after'][0]:.2f}")
    print(f"teacher ({teacher.name}): test accuracy {results['tiny_cnn']['teacher_test_accuracy']:.2%}; "
          f"targets: {store / 'targets'} (generation not counted: the same for both)")
    (out / "comparison.json").write_text(json.dumps({"cost": cost, "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
