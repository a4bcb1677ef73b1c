# %% [markdown]
# # funmatch 04 — Hyperparameter search
#
# The paper swept learning rate, weight decay, temperature, mixup strength and schedule length per dataset.
# This notebook runs such a search with keras-tuner through `funmatch.tuning.search.tune`: every trial is a real
# distillation run in its own folder, and only the best trials keep their models.

# %% [markdown]
# ## Setup
#
# **Install.** The next cell installs funmatch when it is not importable yet (it is skipped in CI, in a local
# checkout's environment and on a second run). `FUNMATCH_SOURCE` is what pip installs: a checkout folder, a
# wheel, or a URL such as `git+https://github.com/YOU/funmatch`; by default the checkout this notebook sits in.
# The image's own JAX and TensorFlow builds (Kaggle's TPU: `jax[tpu]` + `tensorflow-cpu`; its GPUs: CUDA
# `jax` + `tensorflow`) are kept as they are: pip gets them pinned to their installed versions. The `cpu` extra
# (`jax[cpu]`, `tensorflow-cpu`) comes in only where no TensorFlow is installed, such as a plain machine.

# %%
import importlib.metadata
import importlib.util
import os
import pathlib
import subprocess
import sys

FUNMATCH_SOURCE = os.environ.get("FUNMATCH_SOURCE", "")

if importlib.util.find_spec("funmatch") is None:
    checkouts = [p for p in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents) if (p / "src" / "funmatch").is_dir()]
    source = FUNMATCH_SOURCE or (str(checkouts[0]) if checkouts else "")
    if not source:
        raise RuntimeError("funmatch is not installed: set FUNMATCH_SOURCE to a checkout, a wheel or a git URL")
    url = source if "://" in source else pathlib.Path(source).resolve().as_uri()
    extra = "" if importlib.util.find_spec("tensorflow") else "[cpu]"
    installed = {(d.metadata["Name"] or "").lower().replace("_", "-"): d.version for d in importlib.metadata.distributions()}
    keep = [f"{name}=={installed[name]}" for name in ("jax", "jaxlib", "tensorflow", "tensorflow-cpu") if name in installed]
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", f"funmatch{extra} @ {url}", *keep])
    importlib.invalidate_caches()
print("funmatch", importlib.metadata.version("funmatch"))

# %% [markdown]
# **Accelerator.** Finds the TPU, the GPUs or the CPU and sets up data parallelism over all local devices
# (`keras.distribution.DataParallel` on JAX, which drives TPUs and GPUs; `MirroredStrategy` for several GPUs on
# TensorFlow; funmatch's training entries enter them themselves). The Keras backend is JAX unless `KERAS_BACKEND` says otherwise; it is
# fixed once Keras is imported, so set it before this cell.

# %%
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from funmatch import runtime

# Prints the accelerator, the device and process counts and the backend.
ACCELERATOR = runtime.setup()["accelerator"]

# %% [markdown]
# ## Parameters
#
# The defaults search learning rate, weight decay and temperature of the Flowers102 `fast` recipe with
# 8 random trials (each a full distillation run) with the teacher from 02_train_teacher. `SMOKE = True` runs
# 2 trials of 3 steps with a tiny teacher on the embedded EuroSAT images (CI).

# %% tags=["parameters"]
SMOKE = False  # True: 2 tiny trials on the embedded EuroSAT images (CI)
KAGGLE = os.path.isdir("/kaggle/working")  # on Kaggle: inputs from /kaggle/input (read-only), outputs under /kaggle/working
RECIPE = "flowers102:variant=fast,total_steps=750,warmup_steps=150" if ACCELERATOR == "GPU" else "flowers102:variant=fast"  # the base recipe (tuned fields are replaced per trial); GPU T4×2: 750 steps a trial, so that 8 trials fit a 9-hour Kaggle session (estimated from FLOPs, not measured)
DATA_DIR = "/kaggle/input/funmatch-flowers102/flowers102" if KAGGLE else "data/flowers102"  # written by 01_prepare_data (on Kaggle: its output, added as a dataset)
TEACHER = "/kaggle/input/funmatch-flowers102-teacher/teacher.keras" if KAGGLE else "runs/flowers102_teacher/teacher.keras"  # written by 02_train_teacher
SEARCH_DIR = "/kaggle/working/runs/flowers102_search" if KAGGLE else "runs/flowers102_search"  # trials/<id>/ are run folders; re-running resumes the search
RESUME_FROM = ""  # a next Kaggle session: the previous session's saved SEARCH_DIR, added as an input (its folder under Kaggle's input folder); "" = start or resume from SEARCH_DIR alone
SEARCH = "random"  # random | bayesian | hyperband
MAX_TRIALS = 8
OBJECTIVE = "val_accuracy"  # or val_agreement, val_kl
SPACE = ["lr=0.001,0.003,0.01;wd=1e-5..1e-3:log;T=1,2,5,10"]  # see funmatch.tuning.space; [] = the paper's sweep
AXES = ["lr", "wd", "T"]  # the axes searched; [] = all axes of the space
KEEP_BEST = 3  # trials whose models are kept (the others keep metrics only)

# %%
import importlib.resources

from funmatch.data.prepare import prepare
from funmatch.training.labels import train_teacher

if SMOKE:
    RECIPE = "eurosat:smoke=true,teacher=tiny_cnn_w8"
    DATA_DIR, SEARCH_DIR = "funmatch_smoke/data", "funmatch_smoke/search"
    TEACHER = "funmatch_smoke/teacher/teacher.keras"
    MAX_TRIALS, SPACE, AXES, KEEP_BEST = 2, ["lr=0.001,0.01;T=1,2"], ["lr", "T"], 1
    if not pathlib.Path(DATA_DIR, "dataset.json").exists():
        prepare(f"folder:{importlib.resources.files('funmatch') / 'assets' / 'eurosat_mini'}", DATA_DIR, progress=False)
    if not pathlib.Path(TEACHER).exists():
        train_teacher(RECIPE, DATA_DIR, pathlib.Path(TEACHER).parent, progress=False)
if RESUME_FROM:  # a next session: runs the previous session got further in are copied into place first
    from funmatch.training.checkpoints import restore_runs

    for run, step in restore_runs(RESUME_FROM, SEARCH_DIR):
        print(f"restored {run} (step {step}) from {RESUME_FROM}")

# %% [markdown]
# ## Search
#
# `funmatch.tuning.search.tune` (the `funmatch tune` command) runs keras-tuner over real, resumable distillation runs.
# To spread trials over machines, run one chief (`role="chief"`) and any number of workers (`role="worker"`,
# `chief="HOST:PORT"`) on the same search folder; see `funmatch tune --help`.

# %%
from funmatch.tuning.search import tune

result = tune(RECIPE, DATA_DIR, SEARCH_DIR, teacher_path=TEACHER, search=SEARCH, max_trials=MAX_TRIALS,
              objective=OBJECTIVE, space=SPACE or None, axes=AXES or None, keep_best=KEEP_BEST, verbose=not SMOKE)
print(f"{result['trials']} trials; best: {result['best']}")

# %% [markdown]
# ## Results
#
# One row per trial (also written as `summary.csv` / `summary.md`), and the objective against each
# hyperparameter (best trial in red).

# %%
from IPython.display import Image, Markdown, display

from funmatch.tuning import summarize

paths = summarize(SEARCH_DIR, echo=False)
display(Markdown(paths["markdown"].read_text()))
display(Image(filename=str(paths["plot"])))
