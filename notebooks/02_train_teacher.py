# %% [markdown]
# # funmatch 02 — Train the teacher
#
# Function matching distills a *good* teacher: in the paper, BiT-M-R152x2 pretrained on ImageNet-21k and
# fine-tuned on the target dataset. This notebook fine-tunes (or trains from scratch) the recipe's teacher
# with `funmatch.training.labels.train_teacher` (the `funmatch teacher` command) and shows how good it is.

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
# The defaults fine-tune the paper's teacher for Flowers102: BiT-M-R152x2 (ImageNet-21k) at 128 px with
# BiT-HyperRule (SGD, 500 steps of 512 for a dataset this small). `SMOKE = True` trains a tiny CNN teacher
# for 3 steps on the embedded EuroSAT images instead (CI).

# %% tags=["parameters"]
SMOKE = False  # True: a tiny teacher on the embedded EuroSAT images (CI)
KAGGLE = os.path.isdir("/kaggle/working")  # on Kaggle: inputs from /kaggle/input (read-only), outputs under /kaggle/working
RECIPE = "flowers102:variant=fast"  # the teacher's architecture, resolution and schedule come from the recipe
DATA_DIR = "/kaggle/input/funmatch-flowers102/flowers102" if KAGGLE else "data/flowers102"  # written by 01_prepare_data (on Kaggle: its output, added as a dataset)
TEACHER_INIT = "BiT-M-R152x2"  # a known checkpoint tag, an .npz / .keras path, or "" (from scratch)
WORKDIR = "/kaggle/working/runs/flowers102_teacher" if KAGGLE else "runs/flowers102_teacher"  # checkpoints, metrics, teacher.keras; re-running resumes (BiT-HyperRule: 500 steps, well inside a 9-hour Kaggle session on TPU v5e-8 or GPU T4×2)
RESUME_FROM = ""  # a next Kaggle session: the previous session's saved WORKDIR, added as an input (its folder under Kaggle's input folder); "" = start or resume from WORKDIR alone

# %%
import importlib.resources

from funmatch.data.prepare import prepare

if SMOKE:
    RECIPE, TEACHER_INIT = "eurosat:smoke=true,teacher=tiny_cnn_w8", ""
    DATA_DIR, WORKDIR = "funmatch_smoke/data", "funmatch_smoke/teacher"
    if not pathlib.Path(DATA_DIR, "dataset.json").exists():
        prepare(f"folder:{importlib.resources.files('funmatch') / 'assets' / 'eurosat_mini'}", DATA_DIR, progress=False)
DATA_DIR, WORKDIR = pathlib.Path(DATA_DIR), pathlib.Path(WORKDIR)
if RESUME_FROM:  # a next session: runs the previous session got further in are copied into place first
    from funmatch.training.checkpoints import restore_runs

    for run, step in restore_runs(RESUME_FROM, WORKDIR):
        print(f"restored {run} (step {step}) from {RESUME_FROM}")

from funmatch.configs import get_config

config = get_config(RECIPE)
print(f"teacher {config.teacher} at {config.teacher_resolution} px, "
      + ("from scratch" if not TEACHER_INIT else f"fine-tuned from {TEACHER_INIT}"))

# %% [markdown]
# ## Train
#
# Known checkpoint tags (`BiT-M-R152x2`, ...) are downloaded once into funmatch's cache. `train_teacher`
# trains on the labels, evaluates on the validation and test splits and writes `teacher.keras`, which carries
# its preprocessing contract (resolution, value range) for the next notebooks.

# %%
from funmatch import models
from funmatch.training.labels import train_teacher

init = models.resolve_checkpoint(TEACHER_INIT) if TEACHER_INIT else None
metrics = train_teacher(config, DATA_DIR, WORKDIR, init=init, progress=not SMOKE)
TEACHER = WORKDIR / "teacher.keras"
teacher = models.load(TEACHER)
print(f"{TEACHER}: {models.contract(teacher)}")
print(f"{models.count_params(teacher):,} parameters, "
      f"{models.count_flops(teacher, config.teacher_resolution) / 1e9:.3f} GFLOPs per image")

# %%
from IPython.display import Markdown, display

splits = [config.val_split, config.test_split]
display(Markdown("| split | top-1 accuracy | top-5 accuracy |\n|---|---:|---:|\n" + "\n".join(
    f"| {split} | {metrics[f'{split}_accuracy']:.2%} | {metrics[f'{split}_accuracy_top5']:.2%} |" for split in splits)))

# %% [markdown]
# ## Training curves
#
# From `metrics.jsonl` in the workdir: the training loss per logged chunk and the periodic evaluations.

# %%
import json

import matplotlib.pyplot as plt

history = [json.loads(line) for line in (WORKDIR / "metrics.jsonl").read_text().splitlines() if line.strip()]
figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(12, 3.8))
steps = [record["step"] for record in history if "train_loss" in record]
loss_axis.plot(steps, [record["train_loss"] for record in history if "train_loss" in record], marker=".")
loss_axis.set(xlabel="step", ylabel="training loss (cross-entropy)", title="Loss")
for split in splits:
    evaluated = [record for record in history if f"{split}_accuracy" in record]
    accuracy_axis.plot([r["step"] for r in evaluated], [100 * r[f"{split}_accuracy"] for r in evaluated], marker="o", label=split)
accuracy_axis.set(xlabel="step", ylabel="top-1 accuracy (%)", title="Accuracy")
accuracy_axis.legend()
plt.show()

# %% [markdown]
# ## Where the teacher is weak
#
# Per-class accuracy on the test split (worst first): classes the teacher gets wrong are classes the student
# cannot learn from it either.

# %%
from funmatch.evaluation import evaluate_models

evaluation = evaluate_models(TEACHER, data_dir=DATA_DIR, split=config.test_split, config=config, latency=False)
rows = evaluation["per_class"]
figure, axis = plt.subplots(figsize=(10, 0.3 * min(len(rows), 40) + 1))
shown = rows[:40]
axis.barh([row["class_name"] for row in shown], [100 * (row["student_accuracy"] or 0) for row in shown])
axis.invert_yaxis()
axis.set(xlabel="top-1 accuracy (%)", title=f"Teacher accuracy per class, worst {len(shown)} of {len(rows)}")
plt.show()
