"""funmatch models: the BiT ResNet-V2 family, keras.applications students, tiny CNNs, official checkpoints.

Every model takes images `[B, H, W, 3]` in [-1, 1] and returns logits `[B, num_classes]`, and
carries its preprocessing contract (`contract(model)`) through `.keras` save / load.

    model = funmatch.models.create("bit_r50x1", num_classes=102, resolution=128)
    funmatch.models.load_bit_npz(model, "gs://bit_models/BiT-M-R50x1.npz")  # head re-initialised
    model.save("teacher.keras"); model = funmatch.models.load("teacher.keras")
    student = funmatch.models.load("eurosat_student")  # a shipped model, by name (`shipped`)
    student = funmatch.models.create("hub:path/to/preset", num_classes=10)  # a keras-hub backbone, new head
    teacher = funmatch.models.import_model("path/to/preset")  # any Keras image classifier (`importer`)

A model from elsewhere records what its own backbone takes (`preprocessing`); the Classifier maps the
pipelines' [-1, 1] input to it.

May import errors only; `funmatch models` (the command) is `funmatch.commands.models`.
"""

from funmatch.models.bit import BLOCK_UNITS, BitSpec, build_bit, parse_bit_name
from funmatch.models.checkpoints import (
    KNOWN_CHECKPOINTS,
    cache_dir,
    convert_checkpoint,
    load_bit_npz,
    read_checkpoint,
    resolve_checkpoint,
)
from funmatch.models.classifier import Classifier, contract, save
from funmatch.models.flops import count_flops, count_params
from funmatch.models.importer import import_model
from funmatch.models.layers import GroupNorm, PaddedMaxPool2D, StandardizedConv2D, group_count
from funmatch.models.registry import create, family, list_models, with_resolution
from funmatch.models.shipped import list_shipped, load, load_shipped
from funmatch.models.tiny import build_tiny_cnn

__all__ = [
    "BLOCK_UNITS",
    "BitSpec",
    "Classifier",
    "GroupNorm",
    "KNOWN_CHECKPOINTS",
    "PaddedMaxPool2D",
    "StandardizedConv2D",
    "build_bit",
    "build_tiny_cnn",
    "cache_dir",
    "contract",
    "convert_checkpoint",
    "count_flops",
    "count_params",
    "create",
    "family",
    "group_count",
    "import_model",
    "list_models",
    "list_shipped",
    "load",
    "load_shipped",
    "load_bit_npz",
    "parse_bit_name",
    "read_checkpoint",
    "resolve_checkpoint",
    "save",
    "with_resolution",
]
