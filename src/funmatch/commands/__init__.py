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


def check_place(flag: str, path, inputs: dict, *, kind: str = "folder", overwrite: bool | None = None) -> None:
    """The overwrite guard (`funmatch.outputs.check_output`) for the output `path` given as `flag`.

    `inputs` maps the flags the command reads to their paths; `overwrite` None is for outputs the command takes
    over itself (a workdir or store that resumes): only the place is checked then.
    """
    from funmatch.outputs import check_output

    check_output(path, flag=flag, kind=kind, overwrite=overwrite, inputs=inputs)


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


def add_unlabeled_argument(parser) -> None:
    parser.add_argument(
        "--unlabeled", default=None, metavar="SOURCE",
        help="images without labels added to the distillation stream: a folder of images (classes ignored) or a "
             "folder written by `funmatch prepare` (its train split). They join --data's train split as the split "
             "train_and_unlabeled, written once to --unlabeled-data; the config's unlabeled_ratio caps them per "
             "labelled image (0: all)")
    parser.add_argument("--unlabeled-data", default=None, metavar="DIR",
                        help="where the dataset with the unlabelled images goes (default: DATA_unlabeled beside --data)")


def with_unlabeled(args, config: str) -> tuple[str, str]:
    """(data folder, config) of a run with `--unlabeled`: the union dataset (written once) and its split.
    Without the flag, (`args.data`, `config`) unchanged."""
    if not getattr(args, "unlabeled", None):
        return args.data, config
    import os

    from funmatch.configs import get_config
    from funmatch.data.unlabeled import UNION_SPLIT, add_unlabeled

    ratio = get_config(config).unlabeled_ratio
    out = args.unlabeled_data or os.path.normpath(args.data).rstrip(os.sep) + "_unlabeled"
    source = args.unlabeled.partition(":")[2] if args.unlabeled.startswith("folder:") else args.unlabeled
    check_place("--unlabeled-data", out, {"--data": args.data, "--unlabeled": source})
    add_unlabeled(args.data, args.unlabeled, out, ratio=ratio, seed=get_config(config).seed)
    return out, config + ("," if ":" in config else ":") + f"train_split={UNION_SPLIT}"
