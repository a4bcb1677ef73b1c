"""`funmatch export MODEL --format F --out PATH`: write and verify a deployable file (`funmatch.export`).

`--format keras-hub`: a keras-hub preset folder of a keras-hub student, with its model card (README.md).

`--format tflite-int8 --data DIR`: int8 TFLite, calibrated on DIR's train split (a prepared data folder)."""

from __future__ import annotations

import argparse
import pathlib

from funmatch.errors import FunmatchError
from funmatch.export.formats import DEFAULT_ATOL, DEFAULT_RTOL, FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the .keras model to export")
    parser.add_argument("--format", required=True, choices=FORMATS, help="artefact format")
    parser.add_argument("--out", required=True, help="output file (.keras / .tflite / .onnx) or folder (savedmodel, keras-hub)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--data", default=None, help="tflite-int8: a prepared data folder; its train split calibrates the int8 ranges")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL, help=f"absolute tolerance of the check (default {DEFAULT_ATOL:g})")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help=f"relative tolerance of the check (default {DEFAULT_RTOL:g})")


def main(args: argparse.Namespace) -> int:
    if not pathlib.Path(args.model).is_file():
        raise FunmatchError(f"MODEL {args.model}: no such file")
    from funmatch import runtime

    runtime.launch(args, verbose=False, distribute=False)  # the backend distill picks; one device converts
    from funmatch.export import export_model

    result = export_model(args.model, args.out, args.format, overwrite=args.overwrite, atol=args.atol, rtol=args.rtol,
                          data_dir=args.data)
    if "agreement_top1" in result:  # quantized: checked by top-1 agreement on the calibration images
        print(f"wrote {result['path']} ({result['format']}, {result['size_bytes'] / 1e6:.2f} MB, {result['backend']} backend); "
              f"top-1 agreement with keras {100 * result['agreement_top1']:.1f} % over {result['num_images']} calibration "
              f"images (needed {100 * result['min_agreement']:g} %), max |exported − keras| = {result['max_abs_diff']:.3g}: ok")
        return 0
    if result["format"] == "keras-hub":
        print(f"model card: {pathlib.Path(result['path']) / 'README.md'}")
    print(
        f"wrote {result['path']} ({result['format']}, {result['size_bytes'] / 1e6:.2f} MB, {result['backend']} backend); "
        f"max |exported − keras| = {result['max_abs_diff']:.3g} over {result['num_images']} images "
        f"(tolerance atol {result['atol']:g} + rtol {result['rtol']:g}·|logit|): ok"
    )
    return 0
