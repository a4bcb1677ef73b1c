"""Patience, measured: function matching against labels on every image (and on the labelled subset) at
1×, 2×, 4×, 8× and 16× the demo's CPU budget, on the EuroSAT images embedded in the package.

    taskset -c 0 python benchmarks/patience.py --out runs/patience --budgets 1,4 --seeds 2
    taskset -c 0 python benchmarks/patience.py --out runs/patience --budgets 1,4 --seeds 2 --refill
    taskset -c 1 python benchmarks/patience.py --out runs/patience --budgets 1,4 --seeds 2 --warm-start
    python benchmarks/patience.py --out runs/patience --plot-only     # table + figure from what is done

Each point (budget b, seed s) is one `funmatch demo --steps b·3000 --seed s` in its own workdir
`OUT/b<b>_s<s>/`, run in a child process: function matching from the stored targets (K = 16 views of the
1,000 labelled + 3,900 unlabelled images, the shipped teacher at 112 px), then the same student on labels,
for the CPU time the function-matching side used (targets' generation + training, process CPU seconds), on
all 4,900 images with their labels (and, with `--references both`, on the 1,000 labelled ones). CPU seconds
buy less work on a busy machine (threads contend and spin): pin the job to a core that nothing else uses
(`taskset -c 0`, other work on the remaining cores), and quote the load. All points
share `OUT/store/` (the prepared data and the stored targets): the targets are generated once, and their
generation's CPU time is counted on every point's function-matching side. Each point measures its own
label-step cost, under the load of its own time.

`--refill` runs labels on every image again where a point's label run stopped at its planned steps with
under 95 % of function matching's CPU time used (its 30-step calibration was taken under another load): sized
by the step cost that first run measured over all its steps. The table's "share" column is the label run's
CPU time as a fraction of function matching's. `--warm-start` adds a side beside each done point:
labels on every image for half of function matching's training CPU time, then function matching from the
stored targets with `--init` that student for the rest (targets + both phases: the same CPU time).

Resumable: a point with a `summary.json` is skipped; an interrupted one resumes from its checkpoints (the
demo's steps are resumable). Each point records the machine, its load average before and after, and its
wall time (`point.json`). After every point the table (`OUT/patience.md`, `OUT/patience.json`) and the
figure (`OUT/patience.png`: test accuracy and agreement with the teacher against CPU minutes, one line per
method, every seed drawn) are rewritten from all the points done, so figures exist while the job runs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
METHODS = {"function_matching": "function matching", "labels_all": "labels, every image",
           "labels_subset": "labels, labelled subset", "warm_start": "labels, then function matching (--init)"}
REFERENCES = ("labels_subset", "labels_all")
WARM_FRACTION = 0.5  # the warm start's share of the function-matching side's training CPU spent on labels


def _budgets(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--budgets: expected numbers separated by commas (e.g. 1,2,4), got {text!r}")
    if not values or any(v <= 0 for v in values):
        raise SystemExit(f"--budgets: need positive multiples of the demo's budget, got {text!r}")
    return values


def _references(choice: str) -> tuple[str, ...]:
    return ("labels_all",) if choice == "all" else REFERENCES


VIEWS = 16  # the demo's stored views per image (`demo.VIEWS`); other counts are points of their own


def point_dir(out: pathlib.Path, budget: float, seed: int, views: int = VIEWS) -> pathlib.Path:
    return out / (f"b{budget:g}_s{seed}" + (f"_k{views}" if views != VIEWS else ""))


def fm_key(views: int) -> str:
    """The row key of function matching from `views` stored views per image."""
    return "function_matching" if views == VIEWS else f"function_matching_k{views}"


def _store(out: pathlib.Path, views: int) -> pathlib.Path:
    """The points' shared store for `views`: K = 16 in `OUT/store`; another K has its own targets in
    `OUT/store_k<K>`, beside relative links to `OUT/store`'s prepared datasets where those exist (otherwise its
    first point prepares its own)."""
    if views == VIEWS:
        return out / "store"
    store = out / f"store_k{views}"
    store.mkdir(exist_ok=True)
    for name in ("data", "data_unlabeled", "data_all_labels"):
        if (out / "store" / name).exists() and not (store / name).exists():
            (store / name).symlink_to(pathlib.Path("..", "store", name))  # OUT can move
    return store


def _machine() -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}"


def run_point(out: pathlib.Path, budget: float, seed: int, references: tuple[str, ...] = REFERENCES,
              views: int = VIEWS) -> None:
    """One point, in a child process (its memory is returned when it ends)."""
    from funmatch.commands import demo
    from funmatch.training.checkpoints import atomic_write_text

    workdir = point_dir(out, budget, seed, views)
    steps = max(1, round(budget * demo.DEMO["total_steps"]))
    meta = {"budget": budget, "seed": seed, "steps": steps, "machine": _machine(), "load_before": os.getloadavg(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    wall = time.time()
    # In this process, one side after the other, as every published point ran (pinned to one core by the caller).
    demo.run_demo(workdir, steps=steps, seed=seed, store=str(_store(out, views)), progress=False,
                  references=references, views=views, side_by_side=False)
    meta.update(load_after=os.getloadavg(), wall_seconds=time.time() - wall,
                finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    atomic_write_text(workdir / "point.json", json.dumps(meta, indent=2))


def _done_point(out: pathlib.Path, budget: float, seed: int, views: int = VIEWS):
    """(its folder, its summary, its teacher, the demo's config of its budget, seed and teacher resolution) for a
    done point: what the sides run beside it start from."""
    import dataclasses

    from funmatch.commands import demo

    point = point_dir(out, budget, seed, views)
    summary = json.loads((point / "summary.json").read_text())
    teacher_path = pathlib.Path(summary["teacher"]["path"])
    steps = max(1, round(budget * demo.DEMO["total_steps"]))
    config = dataclasses.replace(demo.demo_config(False, steps), seed=seed, teacher_resolution=demo._resolution(teacher_path))
    return point, summary, teacher_path, config


def _side(workdir: pathlib.Path, teacher_path: pathlib.Path, data_dir: pathlib.Path, config) -> dict:
    """A side's test accuracy and agreement with the teacher: evaluated once (`workdir/evaluation.json`)."""
    from funmatch.commands import demo

    evaluation = demo.evaluate_once(workdir, teacher_path, data_dir, config)
    return {"accuracy": evaluation["student"]["accuracy_top1"], "agreement": evaluation["fidelity"]["agreement_top1"]}


def warm_steps(train_cpu: float, steps: int, label_cpu: float, every: int) -> int:
    """The warm start's distillation steps: the training CPU time the label phase left, at the point's own
    CPU cost per distillation step, in whole checkpoint intervals (at least one), so that its schedule runs to
    its end (the CPU budget stays the hard stop)."""
    return max(every, int((train_cpu - label_cpu) / (train_cpu / steps) / every + 1e-9) * every)


def run_warm_start(out: pathlib.Path, budget: float, seed: int, fraction: float = WARM_FRACTION) -> dict:
    """The warm start, beside a done point: the same student on every image's labels for `fraction` of the
    function-matching side's training CPU, then function matching from the stored targets with `--init` that
    student, for the CPU time left (a hard stop). Its side counts the targets' generation, the label phase and
    the distillation: the same CPU time as the point's function matching. Written to `POINT/warm_start/` and
    `POINT/warm_start.json`; resumable like the point (each phase resumes from its checkpoints)."""
    import dataclasses

    from funmatch.commands import demo
    from funmatch.training.checkpoints import atomic_write_text
    from funmatch.training.distill import distill

    point, summary, teacher_path, config = _done_point(out, budget, seed)
    fm, steps = summary["function_matching"], config.steps
    store = out / "store"  # prepared by the point (`demo._prepare`): its datasets, as they are
    data_dir, fm_dir, all_dir = store / "data", store / "data_unlabeled", store / "data_all_labels"
    targets_cpu = float(fm["targets_cpu_seconds"])
    train_cpu = float(fm["cpu_seconds"]) - targets_cpu
    workdir = point / "warm_start"
    workdir.mkdir(exist_ok=True)
    meta = {"fraction": fraction, "load_before": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    wall = time.time()
    labels = demo._label_student(workdir, "labels_all", config, all_dir, teacher_path, fraction * train_cpu, progress=False)
    label_cpu = float(demo._records(labels)[-1]["train_cpu_seconds"])
    init = labels / "student.keras"  # a re-run of the finished label run leaves it (and its SHA-256) as it was
    fm_steps = warm_steps(train_cpu, steps, label_cpu, config.checkpoint_every)
    fm_config = dataclasses.replace(demo.demo_config(False, fm_steps), seed=seed, teacher_resolution=config.teacher_resolution,
                                    max_cpu_seconds=max(1.0, train_cpu - label_cpu))
    distill_dir = workdir / "function_matching"
    distill(fm_config, fm_dir, teacher_path, distill_dir, targets=store / "targets", init=init,
            progress=False)
    last = demo._records(distill_dir)[-1]
    side = {**_side(distill_dir, teacher_path, data_dir, fm_config), "cpu_seconds": targets_cpu + label_cpu + float(last["train_cpu_seconds"]), "steps": last["step"],
            "label_steps": demo._records(labels)[-1]["step"], "label_cpu_seconds": label_cpu,
            "targets_cpu_seconds": targets_cpu, **meta, "load_after": os.getloadavg(), "wall_seconds": time.time() - wall}
    atomic_write_text(point / "warm_start.json", json.dumps(side, indent=2))
    return side


REFILL_BELOW = 0.95  # a label run that used less of the function-matching side's CPU time is run again


def refill_labels(out: pathlib.Path, budget: float, seed: int, views: int = VIEWS) -> dict:
    """Labels on every image again, for a point whose label run stopped at its planned steps with under
    REFILL_BELOW of the function-matching side's CPU time used: the 30-step calibration that sized it was
    taken under another load. The new run is sized by the CPU cost per step its first run measured over all of
    its steps, with the same budget as the hard stop. The first run stays (`labels_all/`); the new one is
    `labels_all_refill/`, and its side, `labels_all_refill.json`, replaces it in the table and figure."""
    import dataclasses

    from funmatch.commands import demo
    from funmatch.training.checkpoints import atomic_write_text
    from funmatch.training.labels import train_labels

    point, summary, teacher_path, config = _done_point(out, budget, seed, views)
    fm, first = summary["function_matching"], summary["labels_all"]  # a summary names it so whatever K
    startup = float(json.loads((point / "labels_speed.json").read_text())["startup_cpu_seconds"])
    per_step = (float(first["train_cpu_seconds"]) - startup) / int(first["steps"])  # its start-up counted once
    plan_path = point / "labels_all_refill_plan.json"
    if not plan_path.exists():
        plan = demo.equal_cpu_plan(float(fm["cpu_seconds"]), per_step, startup, checkpoint_every=config.checkpoint_every,
                                   warmup_steps=config.warmup_steps)
        atomic_write_text(plan_path, json.dumps(plan, indent=2))
    plan = json.loads(plan_path.read_text())
    label_config = dataclasses.replace(demo._label_config(config), **{k: plan[k] for k in (
        "total_steps", "warmup_steps", "eval_every", "max_cpu_seconds")})
    workdir = point / "labels_all_refill"
    load_before, wall = os.getloadavg(), time.time()
    store = _store(out, views)
    train_labels(label_config, store / "data_all_labels", workdir, teacher_path=teacher_path, progress=False)
    last = demo._records(workdir)[-1]
    side = {**_side(workdir, teacher_path, store / "data", config), "cpu_seconds": float(last["train_cpu_seconds"]), "steps": last["step"], "planned_from": per_step,
            "first_run": {k: first[k] for k in ("accuracy", "agreement", "cpu_seconds", "steps")},
            "load_before": load_before, "load_after": os.getloadavg(), "wall_seconds": time.time() - wall}
    atomic_write_text(point / "labels_all_refill.json", json.dumps(side, indent=2))
    return side


def needs_refill(point: pathlib.Path) -> bool:
    """Whether the point's label run on every image used under REFILL_BELOW of function matching's CPU time
    (and has not been run again)."""
    if not (point / "summary.json").exists() or (point / "labels_all_refill.json").exists():
        return False
    summary = json.loads((point / "summary.json").read_text())
    return summary["labels_all"]["cpu_seconds"] < REFILL_BELOW * summary["function_matching"]["cpu_seconds"]


def _validation(workdir: pathlib.Path) -> float | None:
    path = workdir / "metrics.json"
    return json.loads(path.read_text()).get("validation_accuracy") if path.exists() else None


SETTINGS = ("optimizer", "learning_rate", "weight_decay", "temperature", "mixup_p")  # recorded per side


def _settings(workdir: pathlib.Path) -> dict | None:
    """The side's optimisation settings as run (its config.json), or None where it has none."""
    path = workdir / "config.json"
    if not path.exists():
        return None
    config = json.loads(path.read_text())
    return {key: config[key] for key in SETTINGS if key in config}


def collect(out: pathlib.Path) -> list[dict]:
    """One row per finished point: budget, seed, and per method CPU seconds, accuracy, agreement."""
    rows = []
    for summary_path in sorted(out.glob("b*_s*/summary.json")):
        summary = json.loads(summary_path.read_text())
        meta_path = summary_path.parent / "point.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        row = {"budget": summary.get("budget", meta.get("budget")), "seed": summary.get("seed", meta.get("seed")),
               "teacher": summary["teacher"]["accuracy"], "load": meta.get("load_before"),
               "wall_seconds": meta.get("wall_seconds"), "machine": meta.get("machine")}
        views = int(summary.get("function_matching", {}).get("views", VIEWS))
        row["views"] = views
        for method in (m for m in METHODS if m in summary):
            side = summary[method]
            row[fm_key(views) if method == "function_matching" else method] = {"cpu_seconds": side["cpu_seconds"], "accuracy": side["accuracy"],
                           "agreement": side["agreement"], "steps": side["steps"],
                           "validation_accuracy": _validation(summary_path.parent / method),
                           "settings": _settings(summary_path.parent / method)}
        refill_path = summary_path.parent / "labels_all_refill.json"
        if refill_path.exists():
            refill = json.loads(refill_path.read_text())
            row["labels_all"] = {**{k: refill[k] for k in ("cpu_seconds", "accuracy", "agreement", "steps", "first_run")},
                                 "validation_accuracy": _validation(summary_path.parent / "labels_all_refill"),
                                 "settings": _settings(summary_path.parent / "labels_all_refill")}
        warm_path = summary_path.parent / "warm_start.json"
        if warm_path.exists():
            warm = json.loads(warm_path.read_text())
            row["warm_start"] = {**{k: warm[k] for k in ("cpu_seconds", "accuracy", "agreement", "steps", "label_steps",
                                                         "label_cpu_seconds", "fraction")},
                                 "validation_accuracy": _validation(summary_path.parent / "warm_start" / "function_matching")}
        rows.append(row)
    return sorted(rows, key=lambda r: (r["budget"], r["seed"]))


def _fm(row: dict) -> dict:
    """The row's function-matching side, whatever its number of views."""
    return row[fm_key(row.get("views", VIEWS))]


def _methods(rows: list[dict]) -> dict[str, str]:
    """METHODS, with function matching from another number of views after the demo's."""
    other = sorted({r["views"] for r in rows if r.get("views", VIEWS) != VIEWS})
    out = {"function_matching": f"function matching (K = {VIEWS})" if other else METHODS["function_matching"]}
    out.update({fm_key(k): f"function matching (K = {k})" for k in other})
    out.update({m: name for m, name in METHODS.items() if m != "function_matching"})
    return out


def crossover(rows: list[dict], method: str = "function_matching") -> float | None:
    """The smallest budget whose seed-mean accuracy puts `method` ahead of labels on every image (over the
    seeds where `method` ran)."""
    for budget in sorted({r["budget"] for r in rows if method in r}):
        at = [r for r in rows if r["budget"] == budget and method in r]
        gap = sum(r[method]["accuracy"] - r["labels_all"]["accuracy"] for r in at) / len(at)
        if gap > 0:
            return budget
    return None


def table(rows: list[dict]) -> str:
    lines = ["| budget | seed | views | CPU min (function matching) | labels, every image: share of it | function matching "
             "acc / agr | labels, every image acc / agr | labels, subset acc / agr | labels, then FM acc / agr | "
             "FM − every image | then FM − every image | load (1 min) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{100 * side['accuracy']:.1f} / {100 * side['agreement']:.1f} %" if side else "not run"
                 for side in [_fm(r)] + [r.get(m) for m in METHODS if m != "function_matching"]]
        gaps = [f"{100 * (side['accuracy'] - r['labels_all']['accuracy']):+.1f}" if side else "–"
                for side in (_fm(r), r.get("warm_start"))]
        load = f"{r['load'][0]:.1f}" if r.get("load") else "?"
        fm_cpu = _fm(r)["cpu_seconds"]
        share = f"{100 * r['labels_all']['cpu_seconds'] / fm_cpu:.0f} %"
        lines.append(f"| {r['budget']:g}× | {r['seed']} | {r.get('views', VIEWS)} | {fm_cpu / 60:.1f} | {share} | "
                     + " | ".join(cells + gaps)
                     + f" | {load} |")
    budgets = ", ".join(f"{b:g}×" for b in sorted({r["budget"] for r in rows if "function_matching" in r}))
    lines.append("")
    found = crossover(rows)
    lines.append(f"Crossover (seed-mean test accuracy, function matching ahead of labels on every image): "
                 + (f"at {found:g}×." if found is not None else f"none within the measured budgets ({budgets})."))
    for key, name in _methods(rows).items():  # the settings each side ran with, where every point agrees
        seen = {json.dumps(r[key].get("settings"), sort_keys=True) for r in rows if key in r}
        if len(seen) == 1 and (settings := json.loads(seen.pop())):
            lines.append(f"Settings, {name}: " + ", ".join(
                f"{k} {settings[k]:g}" if isinstance(settings[k], float) else f"{k} {settings[k]}"
                for k in SETTINGS if k in settings) + ".")
        elif len(seen) > 1:
            lines.append(f"Settings, {name}: differ between points (patience.json has each point's).")
    for key in (k for k in _methods(rows) if k.startswith("function_matching_k")):
        ran = [r for r in rows if key in r]
        found = crossover(rows, key)
        minutes = sum(r[key]["cpu_seconds"] for r in ran) / len(ran) / 60
        lines.append(f"Function matching from K = {ran[0]['views']} stored views (the budget counts its steps; "
                     f"{minutes:.1f} CPU min on average), ahead of labels on every image: "
                     + (f"at {found:g}×." if found is not None else "not within the budgets it ran at."))
    warm = [r for r in rows if "warm_start" in r]
    if warm:
        found = crossover(rows, "warm_start")
        at = ", ".join(f"{b:g}×" for b in sorted({r["budget"] for r in warm}))
        share = warm[0]["warm_start"]["fraction"]
        lines.append(f"Warm start ({100 * share:.0f} % of the training CPU on labels, then function matching with "
                     f"`--init`), ahead of labels on every image: "
                     + (f"at {found:g}×." if found is not None else f"none within the budgets it ran at ({at})."))
    return "\n".join(lines)


def plot(rows: list[dict], path: pathlib.Path) -> pathlib.Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 5.2), dpi=100)
    figure.subplots_adjust(left=0.06, right=0.99, top=0.86, bottom=0.2, wspace=0.18)
    axes = figure.subplots(1, 2)
    for number, (method, name) in enumerate(_methods(rows).items()):
        color = f"C{number}"
        ran = [r for r in rows if method in r]  # patience's points run labels on every image only
        if not ran:
            continue
        for axis, key in zip(axes, ("accuracy", "agreement")):
            xs = [r[method]["cpu_seconds"] / 60 for r in ran]
            ys = [100 * r[method][key] for r in ran]
            axis.plot(xs, ys, "o", color=color, alpha=0.5, markersize=5)
            budgets = sorted({r["budget"] for r in ran})
            means = [[(r[method]["cpu_seconds"] / 60, 100 * r[method][key]) for r in ran if r["budget"] == b]
                     for b in budgets]
            mx = [sum(x for x, _ in m) / len(m) for m in means]
            my = [sum(y for _, y in m) / len(m) for m in means]
            axis.plot(mx, my, "-", color=color, linewidth=2, label=f"{name} (seed mean; dots: each seed)")
    if rows:
        teacher = 100 * rows[0]["teacher"]
        axes[0].axhline(teacher, color="black", linestyle=":", label=f"teacher: {teacher:.1f} %")
    for axis, what in zip(axes, ("test accuracy", "top-1 agreement with the teacher (test)")):
        axis.set_xscale("log", base=2)
        demo_budgets = sorted({r["budget"] for r in rows if "function_matching" in r})
        fm = [[r["function_matching"]["cpu_seconds"] / 60 for r in rows if r["budget"] == b and "function_matching" in r]
              for b in demo_budgets]
        axis.set_xticks([sum(x) / len(x) for x in fm], [f"{sum(x) / len(x):.0f}\n({b:g}×)" for x, b in
                                                       zip(fm, demo_budgets)])
        axis.minorticks_off()
        axis.set_xlabel("CPU minutes of the process (function matching: targets' generation + training)")
        axis.set_ylabel(f"{what} (%)")
        axis.set_title(what.capitalize() + " against CPU time")
        axis.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False)
    loads = [r["load"][0] for r in rows if r.get("load")]
    machine = rows[0].get("machine") if rows else "?"
    figure.suptitle(f"Patience: the demo's recipe at {', '.join(f'{b:g}×' for b in sorted({r['budget'] for r in rows}))} "
                    f"its CPU budget, {len(rows)} runs\n{machine}; load average at the points' start "
                    f"{min(loads, default=0):.1f}–{max(loads, default=0):.1f}", fontsize=10)
    figure.savefig(path, format="png", dpi=100)
    return path


def write_results(out: pathlib.Path) -> list[dict]:
    """The table, its JSON and the figure from the points done, each replaced whole (jobs beside each other
    on one OUT rewrite them)."""
    from funmatch.training.checkpoints import atomic_write_text

    rows = collect(out)
    if rows:
        atomic_write_text(out / "patience.json", json.dumps({"rows": rows, "crossover": crossover(rows),
                                                            "warm_start_crossover": crossover(rows, "warm_start")}, indent=2))
        atomic_write_text(out / "patience.md", table(rows) + "\n")
        partial = out / f"patience.{os.getpid()}.png.tmp"
        plot(rows, partial)
        os.replace(partial, out / "patience.png")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/patience"))
    parser.add_argument("--budgets", default="1,2,4,8,16", help="multiples of the demo's CPU budget (default 1,2,4,8,16)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 at every budget (default 1)")
    parser.add_argument("--plot-only", action="store_true", help="rewrite the table and figure from the points done")
    parser.add_argument("--references", default="all", choices=("all", "both"),
                        help="label references per point: labels on every image only (all; default), or also on the "
                             "labelled subset (both; the demo's three students)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--warm-start", action="store_true",
                        help="run the warm start beside every done point (and not the points themselves): labels on "
                             "every image for half the training CPU, then function matching with --init (resumable)")
    mode.add_argument("--refill", action="store_true",
                        help=f"run labels on every image again (and not the points) where the first label run used "
                             f"under {100 * REFILL_BELOW:.0f} %% of function matching's CPU time, sized by its own "
                             "measured step cost (resumable)")
    parser.add_argument("--views", type=int, default=VIEWS,
                        help=f"stored teacher views per image (default {VIEWS}, the demo's); another K runs points of "
                             "its own (OUT/b<B>_s<S>_k<K>, targets in OUT/store_k<K>); the budget still counts steps")
    parser.add_argument("--point", nargs=2, metavar=("BUDGET", "SEED"), help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--refill-point", nargs=2, metavar=("BUDGET", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--warm-point", nargs=2, metavar=("BUDGET", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    child = args.point or args.warm_point or args.refill_point
    if child:
        from funmatch.errors import FunmatchError

        try:
            budget, seed = float(child[0]), int(child[1])
            if args.point:
                run_point(out, budget, seed, _references(args.references), args.views)
            elif args.warm_point:
                run_warm_start(out, budget, seed)
            else:
                refill_labels(out, budget, seed, args.views)
        except (FunmatchError, FileNotFoundError) as error:
            raise SystemExit(f"patience: {budget:g}× seed {seed}: {error}")
        return 0
    if not args.plot_only:
        if args.seeds < 1:
            raise SystemExit(f"--seeds: need at least 1, got {args.seeds}")
        if args.warm_start and args.views != VIEWS:
            raise SystemExit(f"--warm-start: runs beside the points of the demo's {VIEWS} views only, got --views {args.views}")
        mode, flag = (("warm start", "--warm-point") if args.warm_start else ("refill", "--refill-point") if args.refill
                      else ("point", "--point"))
        for budget in _budgets(args.budgets):
            for seed in range(args.seeds):
                point = point_dir(out, budget, seed, args.views)
                done = (point / "summary.json").exists()
                todo = {"point": not done, "warm start": done and not (point / "warm_start.json").exists(),
                        "refill": needs_refill(point)}[mode]
                name = f"{budget:g}× seed {seed}" + (f" K = {args.views}" if args.views != VIEWS else "")
                if not todo:
                    if mode == "point":
                        print(f"patience: {name}: done, skipped", flush=True)
                    continue
                print(f"patience: {name}: {mode} running (load {os.getloadavg()[0]:.1f})", flush=True)
                started = time.time()
                child = subprocess.run([sys.executable, __file__, "--out", str(out), "--references", args.references,
                                        "--views", str(args.views), flag, f"{budget:g}", str(seed)])
                if child.returncode:  # the child said why, in one line
                    raise SystemExit(f"patience: {name}: {mode} stopped (exit {child.returncode}); the points done are "
                                     f"in {out}, and a re-run resumes")
                print(f"patience: {name}: {mode} done in {(time.time() - started) / 60:.1f} min", flush=True)
                write_results(out)
    rows = write_results(out)
    print(table(rows) if rows else "patience: no point done yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
