"""`funmatch evaluate`: a student (and its teacher) on a split (`funmatch.evaluation.evaluate_models`)."""

from __future__ import annotations

import argparse
import json
import pathlib

from funmatch.commands import check_config, check_data_dir, check_file, check_place
from funmatch.errors import FunmatchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--student", required=True, help="the student's .keras file")
    parser.add_argument("--teacher", default=None, help="the teacher's .keras file (optional)")
    parser.add_argument("--data", required=True, help="a folder written by `funmatch prepare`")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the full report as JSON to this file")
    parser.add_argument("--batch-size", type=int, default=64, help="eval batch size (default: 64)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency / throughput measurement")
    parser.add_argument("--latency-repeats", type=int, default=20, help="timed calls per batch size (default: 20)")
    crop = parser.add_mutually_exclusive_group()
    crop.add_argument("--crop-fraction", type=float, default=None,
                      help="R / resize_small of the eval pp (default: the view the model's funmatch run scored it "
                           "at, recorded in its .keras; else 0.8, the paper's central_crop(128) of resize_small(160))")
    crop.add_argument("--config", default=None, help="take the eval pp ratio from this recipe, e.g. eurosat")


def _is_evaluation_report(path: pathlib.Path) -> bool:
    """True for a file an earlier `funmatch evaluate --json` wrote (re-running replaces it; nothing else is)."""
    try:
        return str(json.loads(path.read_text()).get("schema", "")).startswith("funmatch.evaluate/")
    except (OSError, ValueError, AttributeError):
        return False


def main(args: argparse.Namespace) -> int:
    json_path = pathlib.Path(args.json) if args.json else None
    if json_path is not None:
        check_place("--json", json_path, {"--student": args.student, "--teacher": args.teacher, "--data": args.data},
                    kind="file", overwrite=_is_evaluation_report(json_path) or not json_path.exists())
    if args.config is not None:  # the cheap checks, in the library's order, before Keras is imported
        check_config(args.config)
    check_data_dir(args.data)
    for flag, path in (("--student", args.student), ("--teacher", args.teacher)):
        if path is not None:
            check_file(flag, path)
    from funmatch import runtime

    runtime.launch(args, verbose=False, distribute=False)  # distill's backend; latency is timed on one device
    from funmatch.evaluation import evaluate_models, format_summary

    report = evaluate_models(
        args.student, args.teacher, data_dir=args.data, split=args.split, batch_size=args.batch_size,
        latency=not args.no_latency, latency_repeats=args.latency_repeats, crop_fraction=args.crop_fraction,
        config=args.config,
    )
    print(format_summary(report))
    if json_path is not None:
        try:
            from funmatch.outputs import staged

            with staged(json_path, command="evaluate", kind="file") as temporary:
                temporary.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as error:
            raise FunmatchError(f"--json {json_path}: cannot write the report ({error.strerror or error})") from None
        print(f"wrote {json_path}")
    return 0
