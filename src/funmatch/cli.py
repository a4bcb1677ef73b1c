"""The `funmatch` command line.

Each subcommand lives in its own module, which provides

    add_arguments(parser: argparse.ArgumentParser) -> None
    main(args: argparse.Namespace) -> int | None

Only the module of the chosen subcommand is imported, so `funmatch --help` does not pay for
TensorFlow or JAX. A `FunmatchError` raised anywhere below is printed as one line (no traceback)
and the process exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# TensorFlow's C++ start-up notes (oneDNN, CPU features) are noise on a command line.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from funmatch import __version__
from funmatch.errors import FunmatchError

# name -> (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("funmatch.data.prepare", "convert a dataset (tfds, ImageFolder, TFRecords) into TFRecord shards + dataset card"),
    "models": ("funmatch.models.cli", "list the model registry; convert official BiT checkpoints to .keras"),
    "teacher": ("funmatch.distill.teacher", "train (from scratch) or fine-tune (BiT-HyperRule) a teacher with labels"),
    "distill": ("funmatch.train", "distill a frozen teacher into a student (function matching and the paper's other modes)"),
    "evaluate": ("funmatch.evaluate", "accuracy, agreement, KL, per-class gaps, calibration and cost of a student (and its teacher)"),
    "export": ("funmatch.export", "export a .keras model to keras / savedmodel / tflite / onnx and verify the outputs"),
    "tune": ("funmatch.tune", "hyperparameter search with keras-tuner (one process or chief/workers; resumable; best-K models kept)"),
    "report": ("funmatch.report", "HTML + markdown report with plots from distillation workdir(s); several workdirs are compared"),
    "demo": ("funmatch.demo", "the whole pipeline on the embedded EuroSAT cut: distill vs. labels, evaluate, report"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funmatch",
        description="Knowledge distillation by function matching (Beyer et al., CVPR 2022).",
    )
    parser.add_argument("--version", action="version", version=f"funmatch {__version__}")
    return parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, that subcommand's arguments are filled in (its module imported)."""
    parser = _top_parser()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        result = args._main(args)
    except FunmatchError as e:
        print(f"funmatch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"funmatch {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
