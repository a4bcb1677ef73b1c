# %% [markdown]
# # funmatch 00 — Quickstart: the whole pipeline on the embedded data
#
# Knowledge distillation by *function matching* (Beyer et al., "Knowledge distillation: A good teacher is
# patient and consistent", CVPR 2022): a small student learns to match a big teacher's outputs on the same
# aggressively augmented images. This notebook runs every step on the EuroSAT images shipped inside funmatch:
# prepare the data, look at the training inputs, get a teacher, distill, evaluate, report.
# It runs on a CPU; the other notebooks (01–05) do the same steps one by one at the paper's scale.

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
# The defaults are a real run: the EuroSAT CPU recipe, shortened, on the embedded data. `SMOKE = True` shrinks
# it to 3 training steps of 8 images and a tiny teacher (what CI runs; about a minute on a CPU). Paths are
# relative to the notebook's working folder; re-running the notebook resumes from them.

# %% tags=["parameters"]
SMOKE = False  # True: a tiny end-to-end run (CI)
KAGGLE = os.path.isdir("/kaggle/working")  # on Kaggle: inputs from /kaggle/input (read-only), outputs under /kaggle/working
RECIPE = "eurosat:total_steps=500,teacher_steps=500,checkpoint_every=100,eval_every=100"
DATA_DIR = "/kaggle/working/data/eurosat_mini" if KAGGLE else "data/eurosat_mini"  # written here from the embedded images
WORKDIR = "/kaggle/working/runs/quickstart" if KAGGLE else "runs/quickstart"  # teacher/, student/ and report/ go here
TEACHER = ""  # a teacher .keras; empty: the teacher shipped with funmatch if there is one, else train one here

# %%
import importlib.resources

EMBEDDED = importlib.resources.files("funmatch") / "assets" / "eurosat_mini"
SHIPPED_TEACHER = importlib.resources.files("funmatch") / "assets" / "teachers" / "eurosat_teacher.keras"
if SMOKE:
    # A teacher trained here for 3 steps (a tiny CNN: seconds), instead of the shipped BiT teacher.
    RECIPE = "eurosat:smoke=true,teacher=tiny_cnn_w8"
    DATA_DIR, WORKDIR, TEACHER = "funmatch_smoke/data", "funmatch_smoke/quickstart", ""
elif not TEACHER and SHIPPED_TEACHER.is_file():
    TEACHER = str(SHIPPED_TEACHER)
DATA_DIR, WORKDIR = pathlib.Path(DATA_DIR), pathlib.Path(WORKDIR)

from funmatch.configs import get_config

config = get_config(RECIPE)
print(f"recipe {config.recipe}: teacher {config.teacher}, student {config.student} at {config.student_resolution} px, "
      f"batch {config.batch_size}, mode {config.mode}, T = {config.temperature:g}")

# %% [markdown]
# ## 1. Data: images → TFRecord shards + dataset card
#
# `prepare` reads an ImageFolder (here the EuroSAT cut shipped inside funmatch: 4,000 train / 500 validation /
# 1,000 test images, 10 classes, 64 px), a tfds name or TFRecords, and writes shards and a `dataset.json` card.

# %%
from IPython.display import Image, Markdown, display

from funmatch.data import load_card
from funmatch.data.prepare import prepare

if not (DATA_DIR / "dataset.json").exists():
    prepare(f"folder:{EMBEDDED}", DATA_DIR, progress=False)
card = load_card(DATA_DIR)
rows = [f"| {split} | {info['num_examples']:,} |" for split, info in card["splits"].items()]
display(Markdown(f"**{card['name']}**, {card['num_classes']} classes: {', '.join(card['class_names'])}\n\n"
                 "| split | images |\n|---|---:|\n" + "\n".join(rows)))

# %% [markdown]
# ## 2. What teacher and student see
#
# Function matching gives teacher and student the *same* aggressive crop (inception crop + flip), then mixes
# every image with its neighbour in the batch (mixup, one coefficient per batch). The rows: the shared view,
# then the same batch after mixup.

# %%
import keras

from funmatch.data import train_dataset
from funmatch.distill import mixup
from funmatch.reporting import save_augmentation_grid
from funmatch.training.distill import train_pp

batch = next(iter(train_dataset(DATA_DIR, config.train_split, train_pp(config, config.mode), 8, seed=config.seed)))
batch = {key: value.numpy() for key, value in batch.items()}
mixed, coefficient = mixup(batch, seed=keras.random.SeedGenerator(config.seed), p=config.mixup_p)
WORKDIR.mkdir(parents=True, exist_ok=True)
grid = save_augmentation_grid(batch, mixed, WORKDIR / "augmented_batch.png", mixup_coefficient=float(coefficient))
display(Image(filename=str(grid)))

# %% [markdown]
# ## 3. The teacher
#
# The shipped teacher when there is one; otherwise the recipe's teacher is trained here from scratch on the
# labels (`funmatch teacher`). Training resumes from the workdir when the notebook is re-run.

# %%
from funmatch.training.labels import train_teacher

if not TEACHER:
    teacher_metrics = train_teacher(config, DATA_DIR, WORKDIR / "teacher", progress=not SMOKE)
    TEACHER = str(WORKDIR / "teacher" / "teacher.keras")
    print(f"teacher test accuracy: {teacher_metrics['test_accuracy']:.2%}")
print("teacher:", TEACHER)

# %% [markdown]
# ## 4. Distillation by function matching
#
# `funmatch.training.distill.distill` is the whole training entry: it resumes from the workdir, trains the student on the
# teacher's outputs only (T²·KL, no labels), evaluates periodically and writes `student.keras` and metrics.

# %%
from funmatch.training.distill import distill

final = distill(config, DATA_DIR, TEACHER, WORKDIR / "student", progress=not SMOKE)
split = config.test_split
display(Markdown(
    "| | accuracy | agreement with teacher |\n|---|---:|---:|\n"
    f"| student | {final[f'{split}_accuracy']:.2%} | {final[f'{split}_agreement']:.2%} |\n"
    f"| teacher | {final[f'teacher_{split}_accuracy']:.2%} | |"
))

# %% [markdown]
# ## 5. Evaluate, report
#
# `evaluate_models` measures accuracy, fidelity (agreement, KL), per-class gaps and cost (parameters, FLOPs,
# size, latency). Saved as `evaluation.json` in the workdir, it becomes part of the report.

# %%
import json

from funmatch.evaluation import evaluate_models, format_summary
from funmatch.reporting import write_report

evaluation = evaluate_models(WORKDIR / "student" / "student.keras", TEACHER, data_dir=DATA_DIR, split=split,
                             config=config, latency=not SMOKE)
(WORKDIR / "student" / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
print(format_summary(evaluation))
page = write_report([WORKDIR / "student"], WORKDIR / "report")
print("report:", page)

# %% [markdown]
# The report's pictures: training curves and the per-class accuracy gap between student and teacher
# (`index.html` in the report folder has all the tables).

# %%
for picture in sorted(page.parent.glob("*.png")):
    if picture.name.endswith(("-curves.png", "-class-gaps.png")):
        display(Image(filename=str(picture)))
