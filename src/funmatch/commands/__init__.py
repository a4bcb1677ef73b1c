"""One module per `funmatch` command, named as the command: flags -> a library call -> a printed summary.

A command module imports only `configs`, `errors` and light constants at import time; the library (and with
it TensorFlow or JAX) is imported inside `main`, after the cheap checks of the flags below, so `--help` and
an error about a flag's form answer at once. Commands may import every library package; none imports them.
"""

from __future__ import annotations

import pathlib

from funmatch.errors import FunmatchError


def check_config(config: str) -> None:
    """Raises FunmatchError for an unknown recipe or key in `--config` (configs are pure Python: cheap)."""
    from funmatch.configs import get_config

    get_config(config)


def check_data_dir(data_dir) -> None:
    """Raises FunmatchError when `--data` is not a folder written by `funmatch prepare` (no dataset.json)."""
    path = pathlib.Path(data_dir) / "dataset.json"
    if not path.is_file():
        raise FunmatchError(f"--data {data_dir}: dataset card not found (is {data_dir} a folder made by `funmatch prepare`?)")


def check_file(flag: str, path) -> None:
    """Raises FunmatchError when `path` (given as `flag`) is not a file."""
    if not pathlib.Path(path).is_file():
        raise FunmatchError(f"{flag} {path}: no such file")
