"""Models shipped inside the package, loadable by name, each with a card (JSON) beside it.

    model = funmatch.models.load("eurosat_student")          # = load_shipped("eurosat_student")
    funmatch.models.shipped.shipped_file("eurosat_student", "tflite-int8")  # the int8 TFLite file
    funmatch models --names 'eurosat*'                          # lists them with their card's numbers

Files live under `funmatch/assets/<folder>/`: the `.keras` model, its card (`<name>.json`: data, teacher,
commands, accuracy, agreement, size, latency) and other files of the same model (e.g. an int8 TFLite
file, which `tf.lite.Interpreter` runs, not Keras).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import pathlib
from typing import Any

from funmatch.errors import FunmatchError
from funmatch.models import classifier

# name -> folder under assets/, the .keras file, the card, other files of the model (format -> file).
SHIPPED: dict[str, dict[str, Any]] = {
    "eurosat_student": {
        "folder": "students",
        "keras": "eurosat_student.keras",
        "card": "eurosat_student.json",
        "files": {"tflite-int8": "eurosat_student_int8.tflite"},
    },
    "eurosat_teacher": {
        "folder": "teachers",
        "keras": "eurosat_teacher.keras",
        "card": "eurosat_teacher.json",
        "files": {},
    },
}


def asset_path(*parts: str) -> pathlib.Path:
    return pathlib.Path(str(importlib.resources.files("funmatch").joinpath("assets", *parts)))


def is_shipped(name) -> bool:
    return isinstance(name, str) and name in SHIPPED


def _entry(name: str) -> dict[str, Any]:
    if name not in SHIPPED:
        raise FunmatchError(f"{name!r}: no shipped model of that name (shipped: {', '.join(SHIPPED)})")
    return SHIPPED[name]


def shipped_file(name: str, format: str = "keras") -> pathlib.Path:
    """The path of a shipped model's file ("keras", or a format of its `files`); FunmatchError when the
    name or format is unknown, or the file is not installed."""
    entry = _entry(name)
    if format == "keras":
        file = entry["keras"]
    elif format in entry["files"]:
        file = entry["files"][format]
    else:
        known = ", ".join(["keras", *entry["files"]])
        raise FunmatchError(f"shipped model {name!r}: no {format} file (it has: {known})")
    path = asset_path(entry["folder"], file)
    if not path.is_file():
        raise FunmatchError(
            f"shipped model {name!r}: {path} is not installed (an install from a source tree without the "
            "shipped files; reinstall funmatch from a release, or give a .keras path)"
        )
    return path


def card(name: str) -> dict[str, Any] | None:
    """The model's card (dict), or None when it is not installed."""
    entry = _entry(name)
    path = asset_path(entry["folder"], entry["card"])
    return json.loads(path.read_text()) if path.is_file() else None


def load_shipped(name: str):
    """The shipped Keras model `name` (see `SHIPPED`)."""
    return classifier.load(shipped_file(name))


def load(path):
    """`funmatch.models.load`: a `.keras` file (`classifier.load`), or a shipped model's name (e.g.
    "eurosat_student") when no file of that name exists. A missing file stays a FunmatchError."""
    if is_shipped(path) and not os.path.exists(path):
        return load_shipped(path)
    return classifier.load(path)


def list_shipped() -> list[dict[str, Any]]:
    """One row per shipped model: name, installed, arch, resolution, test_accuracy, agreement, size_bytes,
    files (format -> path of the installed files, "keras" first)."""
    rows = []
    for name, entry in SHIPPED.items():
        info = card(name) or {}
        files = {}
        for format, file in {"keras": entry["keras"], **entry["files"]}.items():
            path = asset_path(entry["folder"], file)
            if path.is_file():
                files[format] = str(path)
        keras_path = asset_path(entry["folder"], entry["keras"])
        rows.append({
            "name": name,
            "installed": keras_path.is_file(),
            "arch": info.get("arch"),
            "resolution": info.get("resolution"),
            "test_accuracy": info.get("test_accuracy"),
            "agreement": info.get("test_agreement"),
            "size_bytes": keras_path.stat().st_size if keras_path.is_file() else None,
            "files": files,
        })
    return rows
