"""The `funmatch` command line.

Each subcommand lives in its own module, which provides

    add_arguments(parser: argparse.ArgumentParser) -> None
    main(args: argparse.Namespace) -> int | None

The modules are `funmatch.commands.<name>`. Only the module of the chosen subcommand is imported, and a
command imports its library inside `main`, so `funmatch --help` and `funmatch COMMAND --help` do not pay
for TensorFlow or JAX. A `FunmatchError` raised anywhere below is printed as one line (no traceback)
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
from funmatch.runtime import quiet_tensorflow_import

# name -> (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("funmatch.commands.prepare", "convert a dataset (tfds, ImageFolder, TFRecords) into TFRecord shards + dataset card"),
    "models": ("funmatch.commands.models", "list the model registry; convert official BiT checkpoints to .keras"),
    "teacher": ("funmatch.commands.teacher", "train (from scratch) or fine-tune (BiT-HyperRule) a teacher with labels"),
    "targets": ("funmatch.commands.targets", "run the teacher once on K stored views of every training image (read by distill/tune --targets)"),
    "labels": ("funmatch.commands.labels", "train a model (the recipe's student, or any registry model) on labels: the reference run"),
    "distill": ("funmatch.commands.distill", "distill a frozen teacher into a student (function matching and the paper's other modes)"),
    "evaluate": ("funmatch.commands.evaluate", "accuracy, agreement, KL, per-class gaps, calibration and cost of a student (and its teacher)"),
    "export": ("funmatch.commands.export", "export a .keras model to keras / savedmodel / tflite / onnx and verify the outputs"),
    "tune": ("funmatch.commands.tune", "hyperparameter search with keras-tuner (one process or chief/workers; resumable; best-K models kept)"),
    "report": ("funmatch.commands.report", "HTML + markdown report with plots from distillation workdir(s); several workdirs are compared"),
    "demo": ("funmatch.commands.demo", "the whole pipeline on the embedded EuroSAT cut: distill vs. labels, evaluate, report"),
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
    quiet_tensorflow_import()
    try:
        if os.environ.get("KERAS_BACKEND"):  # a name Keras cannot import: one line, before any command imports it
            from funmatch.runtime import check_backend_name

            check_backend_name(os.environ["KERAS_BACKEND"])
        result = args._main(args)
    except FunmatchError as e:
        print(f"funmatch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"funmatch {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = file_error_message(e)
        if message is None:
            raise  # a bug: the traceback is what a report needs
        print(f"funmatch {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(result or 0)


def file_error_message(error: BaseException) -> str | None:
    """One line naming the file and the cause for the errors a damaged or unwritable file raises
    (OSError, a damaged zip / npz / JSON, TensorFlow's DataLossError and other file errors); None for
    anything else. The library names the file itself where it can; this is the last line of defence."""
    import json
    import zipfile

    if isinstance(error, OSError):
        cause = error.strerror or str(error) or type(error).__name__
        where = error.filename if error.filename is not None else "a file could not be read or written"
        other = f" -> {error.filename2}" if getattr(error, "filename2", None) else ""
        return f"{where}{other}: {cause}"
    if isinstance(error, (zipfile.BadZipFile, EOFError, json.JSONDecodeError)):
        return f"a damaged file ({type(error).__name__}: {_first_line(error)}); the command above names its inputs"
    tensorflow = sys.modules.get("tensorflow")
    op_error = getattr(getattr(tensorflow, "errors", None), "OpError", None)
    if op_error is not None and isinstance(error, op_error):
        names = {"DataLossError": "a damaged record file (truncated or corrupted; re-run `funmatch prepare`)",
                 "ResourceExhaustedError": "out of memory or disk space",
                 "PermissionDeniedError": "permission denied",
                 "NotFoundError": "a file was not found",
                 "UnavailableError": "a resource is unavailable"}
        kind = names.get(type(error).__name__)
        if kind is None:
            return None
        return f"{kind}: {_first_line(error.message if hasattr(error, 'message') else error)}"
    return None


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else ""


if __name__ == "__main__":
    sys.exit(main())
