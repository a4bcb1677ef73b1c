"""A TPU v5e-8-shaped rehearsal on the CPU: the notebooks 01 → 05 end to end on JAX with 8 devices.

    python benchmarks/rehearsal.py                 # the parameters cells' defaults, fewer steps (see below)
    python benchmarks/rehearsal.py --shape cpu     # also smaller models, resolution and batch: fits this machine
    python benchmarks/rehearsal.py --steps 4 --trials 8 --out /tmp/rehearsal

Each notebook runs in its own Jupyter kernel (nbclient, this interpreter) with
`XLA_FLAGS=--xla_force_host_platform_device_count=8`, `KERAS_BACKEND=jax` and `JAX_PLATFORMS=cpu`: eight
devices, as on a v5e-8, so `runtime.setup()` takes the data-parallel path a TPU takes. The notebooks keep
`SMOKE = False` and their parameters cells' defaults (the TPU branch: `flowers102:variant=fast`, bfloat16 is
the TPU's alone) with these overrides, injected as papermill does:

* the data: notebook 01 prepares the EuroSAT images shipped with funmatch (no download) into the default
  DATA_DIR; the recipe's fixed Flowers102 size gives way to the card's (`num_train_examples=0`);
* steps only: `total_steps`, `teacher_steps`, the warmup, checkpoint, evaluation and logging intervals, and
  `eval_max_examples` (the evaluations' images);
* `TEACHER_INIT`: the BiT-M checkpoint is a download; the teacher is fine-tuned (BiT-HyperRule, as on
  Kaggle) from a randomly initialised `.keras` file of the recipe's teacher written here;
* `--shape cpu` only: student bit_r14x0.25, teacher bit_r26x0.25, 32 px, batches of 16 (2 per device),
  for a run of minutes on 2 CPU cores. The default (`--shape kaggle`) keeps BiT-R50x1 ← BiT-R152x2 at
  128 px and batches of 512: hours of CPU and far more memory than a 24 GiB machine has.

A cell injected before the first one counts XLA's compilations in the kernel (`jax.monitoring`'s
backend-compile event, with the compiled function's name); one injected after the last writes them out.
The script prints per notebook the wall time, the kernel's CPU seconds, the compilations and how many of
them were a training step (a function whose name has "train"); a training run should compile its step
once (notebook 04 runs one training run per trial). The persistent compilation cache stays off, so each
compilation is counted. Executed notebooks are kept under --out for inspection.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
EUROSAT = REPO / "src" / "funmatch" / "assets" / "eurosat_mini"
NAMES = ["01_prepare_data", "02_train_teacher", "03_function_matching", "04_hyperparameter_search",
         "05_evaluate_and_export"]
CPU_SHAPE = "student=bit_r14x0.25,teacher=bit_r26x0.25,student_resolution=32,teacher_resolution=32,resize_small=40," \
            "batch_size=16,teacher_batch_size=16,eval_batch_size=64"

COUNT_COMPILES = """\
# Injected by benchmarks/rehearsal.py: count XLA's compilations in this kernel.
import jax.monitoring as _monitoring
_REHEARSAL_COMPILES = []
def _rehearsal_listener(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        _REHEARSAL_COMPILES.append([str(kwargs.get("fun_name")), float(duration)])
_monitoring.register_event_duration_secs_listener(_rehearsal_listener)"""

WRITE_COMPILES = """\
# Injected by benchmarks/rehearsal.py: what this kernel compiled, and its CPU seconds.
import json as _json, resource as _resource
_usage = _resource.getrusage(_resource.RUSAGE_SELF)
_json.dump({"compiles": _REHEARSAL_COMPILES, "cpu_seconds": _usage.ru_utime + _usage.ru_stime},
           open("rehearsal_%s.json", "w"))"""


def _notebook_tests():
    """tests/test_notebooks.py: its parameter injection (papermill's) and kernel spec for this interpreter."""
    spec = importlib.util.spec_from_file_location("test_notebooks", REPO / "tests" / "test_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parameters(shape: str, steps: int, trials: int) -> dict[str, dict]:
    """The overrides per notebook (the rest stays at the parameters cells' defaults)."""
    shrink = (f"num_train_examples=0,total_steps={steps},teacher_steps={steps},warmup_steps=1,teacher_warmup_steps=1,"
              f"checkpoint_every={max(1, steps // 2)},eval_every={steps},log_every=1,eval_max_examples=64")
    recipe = "flowers102:variant=fast," + shrink + ("," + CPU_SHAPE if shape == "cpu" else "")
    return {
        "01_prepare_data": {"SOURCE": f"folder:{EUROSAT}", "RECIPE": recipe},
        "02_train_teacher": {"RECIPE": recipe, "TEACHER_INIT": "teacher_init.keras"},
        "03_function_matching": {"RECIPE": recipe},
        "04_hyperparameter_search": {"RECIPE": recipe, "MAX_TRIALS": trials},
        "05_evaluate_and_export": {"RECIPE": recipe},
    }


def write_teacher_init(workdir: pathlib.Path, recipe: str) -> None:
    """A randomly initialised teacher of the recipe (architecture, resolution, the prepared data's classes)
    at workdir/teacher_init.keras: what notebook 02 fine-tunes instead of the BiT-M download."""
    code = ("import json, sys; from funmatch import models; from funmatch.configs import get_config; "
            "config = get_config(sys.argv[1]); card = json.load(open('data/flowers102/dataset.json')); "
            "models.save(models.create(config.teacher, num_classes=card['num_classes'], "
            "resolution=config.teacher_resolution), 'teacher_init.keras')")
    subprocess.run([sys.executable, "-c", code, recipe], cwd=workdir, check=True)


def run(name: str, workdir: pathlib.Path, overrides: dict, helpers) -> dict:
    import nbformat
    from nbclient import NotebookClient

    notebook = helpers.inject_parameters(nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4), overrides)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(COUNT_COMPILES))
    notebook.cells.append(nbformat.v4.new_code_cell(WRITE_COMPILES % name))
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"rehearsal-{index:02d}"
    client = NotebookClient(notebook, timeout=None, kernel_name="funmatch-test", allow_errors=False,
                            resources={"metadata": {"path": str(workdir)}})
    start = time.monotonic()
    try:
        client.execute()
    finally:
        nbformat.write(notebook, workdir / f"{name}.executed.ipynb")
    wall = time.monotonic() - start
    record = json.loads((workdir / f"rehearsal_{name}.json").read_text())
    names = [fun for fun, _ in record["compiles"]]
    return {"notebook": name, "wall_s": round(wall, 1), "cpu_s": round(record["cpu_seconds"], 1),
            "compiles": len(names), "compile_s": round(sum(d for _, d in record["compiles"]), 1),
            "train_compiles": sum("train" in fun for fun in names),
            "train_functions": sorted({fun for fun in names if "train" in fun}),
            "most_compiled": [f"{fun} x{count}" for fun, count in collections.Counter(names).most_common(4)]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=("kaggle", "cpu"), default="kaggle",
                        help="kaggle: the notebooks' models, resolution and batch; cpu: smaller ones (this machine)")
    parser.add_argument("--steps", type=int, default=4, help="training steps of every run (default 4)")
    parser.add_argument("--trials", type=int, default=8, help="notebook 04's trials (default 8, its default)")
    parser.add_argument("--out", default="", help="keep the run here (default: a temporary folder, removed)")
    args = parser.parse_args(argv)

    workdir = pathlib.Path(args.out or tempfile.mkdtemp(prefix="funmatch-rehearsal-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    helpers = _notebook_tests()
    os.environ.update({
        "JUPYTER_PATH": helpers._kernel_spec_dir(workdir / "jupyter"),
        "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2",
        "XLA_FLAGS": " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                            "--xla_force_host_platform_device_count=8"])),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH", "")])),
    })
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    rows = []
    start = time.monotonic()
    failed = None
    for name, overrides in parameters(args.shape, args.steps, args.trials).items():
        print(f"rehearsal: {name} ...", flush=True)
        try:
            if name == "02_train_teacher":
                write_teacher_init(workdir, overrides["RECIPE"])
            rows.append(run(name, workdir, overrides, helpers))
        except Exception as error:  # a failing cell: name it, keep the executed notebook, stop
            failed = f"{name}: {type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
            break
        print(f"  {json.dumps(rows[-1])}", flush=True)
    total = time.monotonic() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nrehearsal, shape {args.shape}, {args.steps} steps a run, {args.trials} trials; JAX on 8 virtual CPU "
          f"devices; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"{'notebook':26} {'wall s':>8} {'CPU s':>8} {'compiles':>9} {'compile s':>10} {'train-step compiles':>20}")
    for row in rows:
        print(f"{row['notebook']:26} {row['wall_s']:8.0f} {row['cpu_s']:8.0f} {row['compiles']:9d} "
              f"{row['compile_s']:10.0f} {row['train_compiles']:20d}  {', '.join(row['train_functions'])}")
        print(f"{'':26} most compiled: {', '.join(row['most_compiled'])}")
    print(f"{'total':26} {total:8.0f} {children.ru_utime + children.ru_stime:8.0f}")
    if failed:
        print(f"rehearsal: FAILED in {failed} (executed notebook: {workdir})")
    print(f"executed notebooks: {workdir}" if args.out else "")
    if not args.out and not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
