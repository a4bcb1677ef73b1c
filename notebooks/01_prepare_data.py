# %% [markdown]
# # funmatch 01 — Prepare data: any image source → TFRecord shards + dataset card
#
# funmatch trains from TFRecord shards written once by `funmatch.data.prepare` (the `funmatch prepare`
# command): from a tfds name, an ImageFolder (`split/class/image.jpg`) or existing TFRecords. This notebook
# prepares the data of a recipe, shows its card and the images the models will see.

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
# The defaults prepare Flowers102 for the paper's recipes (tfds `oxford_flowers102`, official splits; tfds
# downloads it on first use). `SMOKE = True` prepares the EuroSAT images shipped with funmatch instead (CI).

# %% tags=["parameters"]
SMOKE = False  # True: the embedded EuroSAT images, a smoke-sized recipe (CI)
KAGGLE = os.path.isdir("/kaggle/working")  # on Kaggle: inputs from /kaggle/input (read-only), outputs under /kaggle/working
RECIPE = "flowers102:variant=fast"  # its `source` names the data and the paper's splits
SOURCE = ""  # another source: "folder:PATH" (on Kaggle, an image dataset added as input), "tfds:NAME[:train=SPLIT,...]" (Kaggle: internet on) or "tfrecord:GLOB"
DATA_DIR = "/kaggle/working/data/flowers102" if KAGGLE else "data/flowers102"  # TFRecord shards + dataset.json; on Kaggle, save this output as a Kaggle dataset: the next notebooks read it from /kaggle/input
SHORTER_SIDE = None  # e.g. 256: store smaller JPEGs (keep it at least the recipe's resize_small)

# %%
import importlib.resources

if SMOKE:
    RECIPE = "eurosat:smoke=true"
    SOURCE = f"folder:{importlib.resources.files('funmatch') / 'assets' / 'eurosat_mini'}"
    DATA_DIR = "funmatch_smoke/data"
DATA_DIR = pathlib.Path(DATA_DIR)

from funmatch.configs import get_config

config = get_config(RECIPE)
SOURCE = SOURCE or config.source
print(f"source {SOURCE} -> {DATA_DIR}")

# %% [markdown]
# ## Prepare
#
# Every image is decoded, converted to RGB (and downscaled with `SHORTER_SIDE`), and written as JPEG into
# TFRecord shards with its label and a running index; `dataset.json` (the card) records classes, splits,
# counts and image sizes. The output appears only when complete; a finished folder is reused.

# %%
from IPython.display import Image, Markdown, display

from funmatch.data import load_card
from funmatch.data.prepare import prepare

if not (DATA_DIR / "dataset.json").exists():
    prepare(SOURCE, DATA_DIR, shorter_side=SHORTER_SIDE, progress=not SMOKE)
card = load_card(DATA_DIR)
print(f"{card['name']}: {card['num_classes']} classes, from {card['source']}")
header = "| split | images | height (min / mean / max) | width (min / mean / max) |\n|---|---:|---|---|\n"
rows = []
for split, info in card["splits"].items():
    sizes = [info["image_size"][key] for key in ("height", "width")]
    rows.append(f"| {split} | {info['num_examples']:,} | "
                + " | ".join(f"{s['min']} / {s['mean']:g} / {s['max']}" for s in sizes) + " |")
display(Markdown(header + "\n".join(rows)))

# %% [markdown]
# Images per class and split (a recipe's step count is computed from the training split's size).

# %%
import matplotlib.pyplot as plt
import numpy as np

figure, axis = plt.subplots(figsize=(10, 3.2))
positions = np.arange(card["num_classes"])
bottom = np.zeros(card["num_classes"])
for split, info in card["splits"].items():
    counts = np.asarray(info["per_class_counts"])
    axis.bar(positions, counts, bottom=bottom, label=split)
    bottom += counts
axis.set_xlabel("class index")
axis.set_ylabel("images")
axis.set_title(f"{card['name']}: images per class")
axis.legend()
plt.show()

# %% [markdown]
# ## The recipe's training inputs
#
# The train pp spec of the recipe (`funmatch.training.distill.train_pp`): one inception crop and flip shared by teacher
# and student, values in [-1, 1]; then mixup on the batch (one coefficient, each image mixed with its
# neighbour). The eval pp resizes the shorter side and takes the central crop.

# %%
import keras

from funmatch.data import eval_dataset, train_dataset
from funmatch.distill import mixup
from funmatch.reporting import save_augmentation_grid
from funmatch.training.distill import eval_pp, train_pp

print("train pp:", train_pp(config, config.mode))
print("eval pp: ", eval_pp(config, config.student_resolution))
batch = next(iter(train_dataset(DATA_DIR, config.train_split, train_pp(config, config.mode), 8, seed=config.seed)))
batch = {key: value.numpy() for key, value in batch.items()}
mixed, coefficient = mixup(batch, seed=keras.random.SeedGenerator(config.seed), p=config.mixup_p)
grid = save_augmentation_grid(batch, mixed, DATA_DIR.parent / "augmented_batch.png", mixup_coefficient=float(coefficient))
display(Image(filename=str(grid)))

# %%
evaluation_batch = next(iter(eval_dataset(DATA_DIR, config.test_split, eval_pp(config, config.student_resolution), 8)))
figure, axes = plt.subplots(1, 8, figsize=(12, 2))
for axis, image, label in zip(axes, evaluation_batch["image"].numpy(), evaluation_batch["label"].numpy()):
    axis.imshow((image + 1) / 2)
    axis.set_title(card["class_names"][label], fontsize=8)
    axis.axis("off")
figure.suptitle(f"{config.test_split} images as the models see them at evaluation")
plt.show()
