"""Patience, measured: function matching against labels on every image (and on the labelled subset) at
1×, 2×, 4×, 8× and 16× the demo's CPU budget, on the EuroSAT images embedded in the package.

    taskset -c 0 python benchmarks/patience.py --out runs/patience --budgets 1,4 --seeds 2
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
           "labels_subset": "labels, labelled subset"}
REFERENCES = ("labels_subset", "labels_all")


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


def point_dir(out: pathlib.Path, budget: float, seed: int) -> pathlib.Path:
    return out / f"b{budget:g}_s{seed}"


def _machine() -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}"


def run_point(out: pathlib.Path, budget: float, seed: int, references: tuple[str, ...] = REFERENCES) -> None:
    """One point, in a child process (its memory is returned when it ends)."""
    from funmatch.commands import demo

    workdir = point_dir(out, budget, seed)
    steps = max(1, round(budget * demo.DEMO["total_steps"]))
    meta = {"budget": budget, "seed": seed, "steps": steps, "machine": _machine(), "load_before": os.getloadavg(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    wall = time.time()
    demo.run_demo(workdir, steps=steps, seed=seed, store=str(out / "store"), progress=False,
                  references=references)
    meta.update(load_after=os.getloadavg(), wall_seconds=time.time() - wall,
                finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    (workdir / "point.json").write_text(json.dumps(meta, indent=2))


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
        for method in (m for m in METHODS if m in summary):
            side = summary[method]
            row[method] = {"cpu_seconds": side["cpu_seconds"], "accuracy": side["accuracy"],
                           "agreement": side["agreement"], "steps": side["steps"]}
        rows.append(row)
    return sorted(rows, key=lambda r: (r["budget"], r["seed"]))


def crossover(rows: list[dict]) -> float | None:
    """The smallest budget whose seed-mean accuracy puts function matching ahead of labels on every image."""
    for budget in sorted({r["budget"] for r in rows}):
        at = [r for r in rows if r["budget"] == budget]
        gap = sum(r["function_matching"]["accuracy"] - r["labels_all"]["accuracy"] for r in at) / len(at)
        if gap > 0:
            return budget
    return None


def table(rows: list[dict]) -> str:
    lines = ["| budget | seed | CPU min (each side) | function matching acc / agr | labels, every image acc / agr | "
             "labels, subset acc / agr | FM − every image | load (1 min) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{100 * r[m]['accuracy']:.1f} / {100 * r[m]['agreement']:.1f} %" if m in r else "not run"
                 for m in METHODS]
        gap = 100 * (r["function_matching"]["accuracy"] - r["labels_all"]["accuracy"])
        load = f"{r['load'][0]:.1f}" if r.get("load") else "?"
        lines.append(f"| {r['budget']:g}× | {r['seed']} | {r['function_matching']['cpu_seconds'] / 60:.1f} | "
                     + " | ".join(cells) + f" | {gap:+.1f} | {load} |")
    found = crossover(rows)
    budgets = ", ".join(f"{b:g}×" for b in sorted({r["budget"] for r in rows}))
    lines.append("")
    lines.append(f"Crossover (seed-mean test accuracy, function matching ahead of labels on every image): "
                 + (f"at {found:g}×." if found is not None else f"none within the measured budgets ({budgets})."))
    return "\n".join(lines)


def plot(rows: list[dict], path: pathlib.Path) -> pathlib.Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 5.2), dpi=100)
    figure.subplots_adjust(left=0.06, right=0.99, top=0.86, bottom=0.2, wspace=0.18)
    axes = figure.subplots(1, 2)
    for number, (method, name) in enumerate(METHODS.items()):
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
        fm = [[r["function_matching"]["cpu_seconds"] / 60 for r in rows if r["budget"] == b]
              for b in sorted({r["budget"] for r in rows})]
        axis.set_xticks([sum(x) / len(x) for x in fm], [f"{sum(x) / len(x):.0f}\n({b:g}×)" for x, b in
                                                       zip(fm, sorted({r["budget"] for r in rows}))])
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
    rows = collect(out)
    if rows:
        (out / "patience.json").write_text(json.dumps({"rows": rows, "crossover": crossover(rows)}, indent=2))
        (out / "patience.md").write_text(table(rows) + "\n")
        plot(rows, out / "patience.png")
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
    parser.add_argument("--point", nargs=2, metavar=("BUDGET", "SEED"), help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    if args.point:
        run_point(out, float(args.point[0]), int(args.point[1]), _references(args.references))
        return 0
    if not args.plot_only:
        if args.seeds < 1:
            raise SystemExit(f"--seeds: need at least 1, got {args.seeds}")
        for budget in _budgets(args.budgets):
            for seed in range(args.seeds):
                if (point_dir(out, budget, seed) / "summary.json").exists():
                    print(f"patience: {budget:g}× seed {seed}: done, skipped", flush=True)
                    continue
                print(f"patience: {budget:g}× seed {seed}: running (load {os.getloadavg()[0]:.1f})", flush=True)
                started = time.time()
                subprocess.run([sys.executable, __file__, "--out", str(out), "--point", f"{budget:g}", str(seed),
                                "--references", args.references], check=True)
                print(f"patience: {budget:g}× seed {seed}: done in {(time.time() - started) / 60:.1f} min", flush=True)
                write_results(out)
    rows = write_results(out)
    print(table(rows) if rows else "patience: no point done yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
