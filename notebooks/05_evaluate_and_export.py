# %% [markdown]
# # funmatch 05 — Evaluate the student against its teacher, and export it
#
# What did distillation buy? This notebook measures the student next to its teacher — accuracy, agreement,
# per-class gaps, and the cost that was saved (parameters, FLOPs, size, latency) — then exports the student
# as `.keras`, SavedModel and TFLite, each loaded back and checked against the Keras model.

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
# The defaults evaluate the student of 03_function_matching against its teacher on the Flowers102 test split
# (with latency on this machine's accelerator) and export it for deployment. `SMOKE = True` first makes a
# 3-step student and a tiny teacher on the embedded EuroSAT images (CI).

# %% tags=["parameters"]
SMOKE = False  # True: a tiny student and teacher made here on the embedded EuroSAT images (CI)
KAGGLE = os.path.isdir("/kaggle/working")  # on Kaggle: inputs from /kaggle/input (read-only), outputs under /kaggle/working
RECIPE = "flowers102:variant=fast"  # the recipe the student was trained with (its eval crop ratio)
DATA_DIR = "/kaggle/input/funmatch-flowers102/flowers102" if KAGGLE else "data/flowers102"  # written by 01_prepare_data (on Kaggle: its output, added as a dataset)
STUDENT = "/kaggle/input/funmatch-flowers102-fast/function_matching/student.keras" if KAGGLE else "runs/flowers102_fast/function_matching/student.keras"  # written by 03_function_matching
TEACHER = "/kaggle/input/funmatch-flowers102-teacher/teacher.keras" if KAGGLE else "runs/flowers102_teacher/teacher.keras"  # written by 02_train_teacher
SPLIT = "test"
LATENCY = True  # time the compiled forward pass at batch 1 and 64
LATENCY_REPEATS = 20
EXPORT_DIR = "/kaggle/working/export" if KAGGLE else "runs/flowers102_fast/export"
FORMATS = ["keras", "savedmodel", "tflite"]  # also "onnx" with `pip install tf2onnx onnxruntime` (TensorFlow backend)

# %%
import importlib.resources

from funmatch.data.prepare import prepare
from funmatch.training.labels import train_teacher
from funmatch.training.distill import distill

if SMOKE:
    RECIPE = "eurosat:smoke=true,teacher=tiny_cnn_w8"
    DATA_DIR, EXPORT_DIR = "funmatch_smoke/data", "funmatch_smoke/export"
    TEACHER, STUDENT = "funmatch_smoke/teacher/teacher.keras", "funmatch_smoke/student/student.keras"
    LATENCY_REPEATS, FORMATS = 3, ["keras", "tflite"]
    if not pathlib.Path(DATA_DIR, "dataset.json").exists():
        prepare(f"folder:{importlib.resources.files('funmatch') / 'assets' / 'eurosat_mini'}", DATA_DIR, progress=False)
    if not pathlib.Path(TEACHER).exists():
        train_teacher(RECIPE, DATA_DIR, pathlib.Path(TEACHER).parent, progress=False)
    if not pathlib.Path(STUDENT).exists():
        distill(RECIPE, DATA_DIR, TEACHER, pathlib.Path(STUDENT).parent, progress=False)
DATA_DIR, STUDENT, EXPORT_DIR = pathlib.Path(DATA_DIR), pathlib.Path(STUDENT), pathlib.Path(EXPORT_DIR)

# %% [markdown]
# ## Evaluate
#
# `funmatch.evaluation.evaluate_models` (the `funmatch evaluate` command): every example of the split counted
# once; accuracy and calibration of both models, how often the student agrees with the teacher, the mean KL,
# per-class gaps and the cost of each model (parameters, FLOPs, file size, latency).

# %%
import json

from funmatch.evaluation import evaluate_models, format_summary

evaluation = evaluate_models(STUDENT, TEACHER, data_dir=DATA_DIR, split=SPLIT, config=RECIPE, latency=LATENCY,
                             latency_repeats=LATENCY_REPEATS)
# Next to the student's run, `funmatch report` adds it to the run's report.
(STUDENT.parent / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
print(format_summary(evaluation, worst_classes=10))

# %% [markdown]
# Per-class gaps: where the student falls short of its teacher (worst at the top).

# %%
from IPython.display import Image, Markdown, display

from funmatch.reporting import class_gaps, plot_class_gaps

gaps = class_gaps(evaluation)
picture = plot_class_gaps(gaps, STUDENT.parent / "class_gaps.png", title="Student − teacher accuracy per class")
display(Image(filename=str(picture)))

# %% [markdown]
# ## Export
#
# `funmatch.export.export_model` (the `funmatch export` command) writes each format, loads it back and checks
# it against the Keras model on random images (batch 1 and 4); a format this backend cannot produce says why.

# %%
from funmatch import FunmatchError
from funmatch.export import export_model

rows = []
for format_name in FORMATS:
    out = EXPORT_DIR / {"keras": "student.keras", "savedmodel": "student_savedmodel", "tflite": "student.tflite",
                        "onnx": "student.onnx"}[format_name]
    try:
        exported = export_model(STUDENT, out, format_name, overwrite=True)
        rows.append(f"| {format_name} | `{out}` | {exported['size_bytes'] / 1e6:.2f} MB | {exported['max_abs_diff']:.2e} |")
    except FunmatchError as error:
        rows.append(f"| {format_name} | not written: {error} | | |")
display(Markdown("| format | file | size | max abs. difference to Keras |\n|---|---|---:|---:|\n" + "\n".join(rows)))
