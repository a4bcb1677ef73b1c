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


def add_budget_arguments(parser) -> None:
    """`--max-minutes` / `--max-cpu-minutes`: a time budget that ends the training run (resumable)."""
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop training after this many minutes in the training loop (over all resumes, "
                             "periodic evaluation excluded); sets the config's max_wall_seconds")
    parser.add_argument("--max-cpu-minutes", type=float, default=None,
                        help="stop training after this many minutes of the process's CPU time (all cores; fair "
                             "between runs on a busy machine); sets the config's max_cpu_seconds")


def budget_config(args) -> str:
    """`args.config` with the budget flags appended as overrides (`max_wall_seconds`, `max_cpu_seconds`)."""
    overrides = []
    for flag, key in (("max_minutes", "max_wall_seconds"), ("max_cpu_minutes", "max_cpu_seconds")):
        minutes = getattr(args, flag, None)
        if minutes is not None:
            if minutes <= 0:
                raise FunmatchError(f"--{flag.replace('_', '-')}: need a positive number of minutes, got {minutes:g}")
            overrides.append(f"{key}={60 * minutes:g}")
    if not overrides:
        return args.config
    return args.config + ("," if ":" in args.config else ":") + ",".join(overrides)
