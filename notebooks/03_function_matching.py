# %% [markdown]
# # funmatch 03 — Function matching: distill the teacher into the student
#
# The paper's recipe: the student (BiT-R50x1, from scratch) learns only from the frozen teacher's outputs on the
# same aggressively augmented and mixed-up images, for a long time. This notebook shows the inputs, runs the
# distillation (optionally the paper's four-mode ablation) and shows the training curves.

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
# The defaults are the paper's Flowers102 `fast` recipe (10,000 epochs = 19,922 steps of 512 images,
# lr 0.003, weight decay 3e-4, T = 10) with the teacher from 02_train_teacher, as run on a TPU v3-8.
# `SMOKE = True` runs 3 steps of 8 images with a tiny teacher trained here, on the embedded EuroSAT images (CI).

# %% tags=["parameters"]
SMOKE = False  # True: a tiny run on the embedded EuroSAT images (CI)
KAGGLE = os.path.isdir("/kaggle/working")  # on Kaggle: inputs from /kaggle/input (read-only), outputs under /kaggle/working
RECIPE = "flowers102:variant=fast,total_steps=6000" if ACCELERATOR == "GPU" else "flowers102:variant=fast"  # TPU v5e-8 (bf16): the 19,922 steps; GPU T4×2 (float32): 6,000 steps to fit a 9-hour session (estimated from FLOPs, not measured)
DATA_DIR = "/kaggle/input/funmatch-flowers102/flowers102" if KAGGLE else "data/flowers102"  # written by 01_prepare_data (on Kaggle: its output, added as a dataset)
TEACHER = "/kaggle/input/funmatch-flowers102-teacher/teacher.keras" if KAGGLE else "runs/flowers102_teacher/teacher.keras"  # written by 02_train_teacher
WORKDIR = "/kaggle/working/runs/flowers102_fast" if KAGGLE else "runs/flowers102_fast"  # one sub-folder per mode, and report/; re-running resumes from its checkpoints (a next Kaggle session: RESUME_FROM)
RESUME_FROM = ""  # a next Kaggle session: the previous session's saved WORKDIR, added as an input (its folder under Kaggle's input folder); "" = start or resume from WORKDIR alone
MODES = ["function_matching"]  # add "consistent", "independent", "fixed_teacher" for the paper's ablation

# %%
import importlib.resources

from funmatch.data.prepare import prepare
from funmatch.training.labels import train_teacher

if SMOKE:
    RECIPE = "eurosat:smoke=true,teacher=tiny_cnn_w8"
    DATA_DIR, WORKDIR = "funmatch_smoke/data", "funmatch_smoke/distill"
    TEACHER = "funmatch_smoke/teacher/teacher.keras"
    if not pathlib.Path(DATA_DIR, "dataset.json").exists():
        prepare(f"folder:{importlib.resources.files('funmatch') / 'assets' / 'eurosat_mini'}", DATA_DIR, progress=False)
    if not pathlib.Path(TEACHER).exists():
        train_teacher(RECIPE, DATA_DIR, pathlib.Path(TEACHER).parent, progress=False)
DATA_DIR, WORKDIR = pathlib.Path(DATA_DIR), pathlib.Path(WORKDIR)
if RESUME_FROM:  # a next session: runs the previous session got further in are copied into place first
    from funmatch.training.checkpoints import restore_runs

    for run, step in restore_runs(RESUME_FROM, WORKDIR):
        print(f"restored {run} (step {step}) from {RESUME_FROM}")

from funmatch.configs import get_config

config = get_config(RECIPE)
print(f"{config.recipe} {config.variant}: student {config.student}, {config.steps or '(from the data)'} steps of "
      f"{config.batch_size}, lr {config.learning_rate:g}, weight decay {config.weight_decay:g}, T = {config.temperature:g}")

# %% [markdown]
# ## Consistent teaching: teacher and student see the same image
#
# The paper's central point: the teacher must be evaluated on *exactly* the student's (heavily augmented,
# mixed-up) input. First the batch as function matching builds it — one crop shared by both models, then mixup;
# below, the `independent` ablation, where each model gets its own crop (and the student learns less).

# %%
import keras
from IPython.display import Image, Markdown, display

from funmatch.data import train_dataset
from funmatch.distill import mixup
from funmatch.reporting import save_augmentation_grid
from funmatch.training.distill import train_pp

WORKDIR.mkdir(parents=True, exist_ok=True)
for mode in ("function_matching", "independent"):
    print(f"{mode}: {train_pp(config, mode)}")
    batch = next(iter(train_dataset(DATA_DIR, config.train_split, train_pp(config, mode), 8, seed=config.seed)))
    batch = {key: value.numpy() for key, value in batch.items()}
    p = config.mixup_p if mode == "function_matching" else 0.0
    mixed, coefficient = mixup(batch, seed=keras.random.SeedGenerator(config.seed), p=p)
    grid = save_augmentation_grid(batch, mixed if p else {}, WORKDIR / f"inputs_{mode}.png",
                                  mixup_coefficient=float(coefficient) if p else None)
    display(Image(filename=str(grid)))

# %% [markdown]
# ## Distill
#
# `funmatch.training.distill.distill` (the `funmatch distill` command) per mode: loss T²·KL(teacher ‖ student) with no
# labels, Adam with decoupled weight decay, warmup then cosine, checkpoints in the workdir (a re-run resumes
# after an interruption), periodic evaluation, `student.keras` and `metrics.json` at the end.

# %%
from funmatch.training.distill import distill

results = {}
for mode in MODES:
    results[mode] = distill(config, DATA_DIR, TEACHER, WORKDIR / mode, mode=mode, progress=not SMOKE)
split = config.test_split
display(Markdown(
    f"| mode | student {split} accuracy | agreement | KL | teacher accuracy |\n|---|---:|---:|---:|---:|\n"
    + "\n".join(f"| {mode} | {r[f'{split}_accuracy']:.2%} | {r[f'{split}_agreement']:.2%} | {r[f'{split}_kl']:.4f} "
                f"| {r[f'teacher_{split}_accuracy']:.2%} |" for mode, r in results.items())))

# %% [markdown]
# ## Report
#
# `funmatch.reporting.write_report` (the `funmatch report` command): per run the training curves (loss; student
# accuracy and agreement with the teacher against steps and epochs) and the augmented inputs the run trained
# on; with several modes, a comparison against epochs (patience and consistency, as in the paper's figures).

# %%
from funmatch.reporting import write_report

page = write_report([WORKDIR / mode for mode in MODES], WORKDIR / "report")
print("report:", page)
for picture in sorted(page.parent.glob("*.png")):
    display(Markdown(f"`{picture.name}`"), Image(filename=str(picture)))
