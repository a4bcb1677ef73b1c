"""`funmatch models`: list the registry with parameters and FLOPs; convert official BiT checkpoints.

    funmatch models [list] [--resolution 64] [--num-classes 10] [--names 'bit_r26*']
        (then the shipped models, loadable by name: test accuracy, agreement with the teacher, size, files)
    funmatch models convert --npz BiT-M-R50x1.npz --arch bit_r50x1 [--num-classes 10] \\
        [--resolution 128] --out teacher.keras
    funmatch models resolution --model teacher.keras --data DIR --resolutions 96,104,112,120,128 \\
        --out teacher_112.keras
        (scores the same weights at each resolution on the validation split and writes the best; a model
        trained on random crops often does better evaluated a little larger than it was trained)
    funmatch models import SOURCE --out teacher.keras [--num-classes 10] [--resolution 224] \
        [--preprocessing 'mean=0.485,0.456,0.406 std=0.229,0.224,0.225'] [--weights FILE]
        (any Keras image classifier as a funmatch model with an explicit preprocessing contract: a keras-hub
        preset folder or kaggle:// / hf:// handle (its own image converter), keras.applications.NAME with
        --weights, a .keras file or a TensorFlow SavedModel folder (these two need --preprocessing))

Counting conventions: parameters = all weights; FLOPs per image, multiply-add = 2 FLOPs, convs
and dense layers only (see `funmatch.models.flops`). BiT rows are computed from the architecture
without building the model (`bit.bit_cost`), so bit_r152x4 lists instantly.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import pathlib


def _add_list_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    parser.add_argument("--resolution", type=int, default=default(None),
                        help="input resolution for the FLOPs column (default: each family's contract resolution)")
    parser.add_argument("--num-classes", type=int, default=default(1000), help="head size (default 1000)")
    parser.add_argument("--names", default=default("*"), help="only names matching this glob, e.g. 'bit_r26*'")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_list_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="models_command", metavar="{list,convert,resolution,import}")
    list_parser = sub.add_parser("list", help="list model names with parameters and FLOPs (default)")
    _add_list_options(list_parser, suppress=True)
    convert = sub.add_parser("convert", help="official BiT .npz checkpoint -> funmatch .keras file")
    convert.add_argument("--npz", required=True, help="checkpoint path, URL, gs:// path or tag (e.g. BiT-M-R50x1)")
    convert.add_argument("--arch", required=True, help="funmatch BiT name, e.g. bit_r50x1")
    convert.add_argument("--num-classes", type=int, default=None,
                         help="head size (default: the checkpoint's; another count re-initialises the head to zeros)")
    convert.add_argument("--resolution", type=int, default=None, help="contract resolution (default 128)")
    convert.add_argument("--out", required=True, help="output .keras file")
    convert.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    pick = sub.add_parser("resolution", help="pick a trained model's eval resolution on validation; write it")
    pick.add_argument("--model", required=True, help="a funmatch .keras file (a fully convolutional BiT model)")
    pick.add_argument("--data", required=True, help="a folder written by `funmatch prepare`")
    pick.add_argument("--resolutions", required=True, help="comma-separated sizes to score, e.g. 96,112,128")
    pick.add_argument("--split", default="validation",
                      help="the held-out split that chooses (default: validation; never the test split you report)")
    pick.add_argument("--crop-fraction", type=float, default=None,
                      help="eval view resize_small(R / f)|central_crop(R) (default: the one recorded in the model, "
                           "else 0.8); recorded in the output")
    pick.add_argument("--out", required=True, help="output .keras file (the model at the chosen resolution)")
    pick.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    imported = sub.add_parser("import", help="any Keras image classifier -> funmatch .keras file with its contract")
    imported.add_argument("source", metavar="SOURCE",
                          help="a keras-hub preset folder or kaggle:// / hf:// handle, keras.applications.NAME, "
                               "a .keras file, or a TensorFlow SavedModel folder")
    imported.add_argument("--out", required=True, help="output .keras file")
    imported.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    imported.add_argument("--num-classes", type=int, default=None,
                          help="head size (default: the source's; another count gives a preset or keras.applications "
                               "network a new, randomly initialised head)")
    imported.add_argument("--resolution", type=int, default=None,
                          help="input resolution (default: the preset's image converter, else the model's static input)")
    imported.add_argument("--preprocessing", default=None,
                          help="what the model expects, overriding the source's own: a keras.applications mode "
                               "(tf, torch, caffe, raw) or range=LOW,HIGH or 'mean=R,G,B std=R,G,B' (on [0, 1] "
                               "pixels); optionally bgr, interpolation=NAME, crop=FRACTION")
    imported.add_argument("--weights", default=None, help="keras.applications: the weights file (with its top)")
    imported.add_argument("--crop-fraction", type=float, default=None,
                          help="the evaluation view's crop fraction to record (default: the preprocessing's)")


def _rows(names, resolution, num_classes):
    from funmatch.models import bit, registry
    from funmatch.models.flops import count_flops, count_params

    for name in names:
        model_family = registry.family(name)
        size = resolution or registry.DEFAULT_RESOLUTION[model_family]
        if model_family == "bit":
            params, flops = bit.bit_cost(bit.parse_bit_name(name), num_classes, size)
        else:
            model = registry.create(name, num_classes, resolution=size)
            params, flops = count_params(model), count_flops(model, size)
        yield name, size, params, flops


def main(args: argparse.Namespace) -> int:
    if getattr(args, "models_command", None) == "resolution":
        return _resolution(args)  # picks the backend before anything imports Keras
    from funmatch.commands import check_place
    from funmatch.errors import FunmatchError
    from funmatch.models import registry

    if getattr(args, "models_command", None) == "import":
        return _import(args)
    if getattr(args, "models_command", None) == "convert":
        from funmatch.models.checkpoints import convert_checkpoint
        from funmatch.models.classifier import contract

        if registry.family(args.arch) != "bit":
            raise FunmatchError(f"--arch {args.arch!r}: official .npz checkpoints are BiT ResNet-V2 (bit_r*) models")
        check_place("--out", args.out, {"--npz": args.npz if os.path.exists(args.npz) else None}, kind="file",
                    overwrite=args.overwrite)
        model = convert_checkpoint(args.npz, args.arch, args.out, num_classes=args.num_classes, resolution=args.resolution)
        print(f"wrote {args.out}: {contract(model)}")
        return 0

    from funmatch.models.shipped import SHIPPED

    names = [name for name in registry.list_models() if fnmatch.fnmatch(name, args.names)]
    shipped_names = [name for name in SHIPPED if fnmatch.fnmatch(name, args.names)]
    if not names and not shipped_names:
        raise FunmatchError(
            f"--names {args.names!r} matches no model (known: {', '.join(registry.list_models())}; "
            f"shipped: {', '.join(SHIPPED)})"
        )
    if names:
        print(f"{'model':<22}{'res':>5}{'params':>16}{'MFLOPs/image':>16}")
        for name, size, params, flops in _rows(names, args.resolution, args.num_classes):
            print(f"{name:<22}{size:>5}{params:>16,}{flops / 1e6:>16,.1f}", flush=True)
        print(f"(params: all weights, {args.num_classes} classes; FLOPs: multiply-add = 2, convs + dense)")
    if shipped_names:
        _print_shipped(shipped_names)
    return 0


def _resolution(args: argparse.Namespace) -> int:
    from funmatch.commands import check_data_dir, check_place
    from funmatch.errors import FunmatchError

    try:
        sizes = [int(part) for part in args.resolutions.split(",") if part.strip()]
    except ValueError:
        raise FunmatchError(f"--resolutions {args.resolutions!r}: expected comma-separated integers, e.g. 96,112,128")
    if not str(args.out).endswith(".keras"):
        raise FunmatchError(f"--out {args.out}: a funmatch model file must end in .keras")
    check_data_dir(args.data)
    check_place("--out", args.out, {"--model": args.model, "--data": args.data}, kind="file", overwrite=args.overwrite)
    from funmatch import runtime

    runtime.launch(args, verbose=False)  # the backend distill picks (JAX on GPUs and TPUs)
    from funmatch import models
    from funmatch.data import pipeline
    from funmatch.evaluation.resolution import pick_resolution
    from funmatch.training.checkpoints import atomic_save_keras

    examples = pipeline.num_examples(args.data, args.split)  # one line naming the splits there are, if absent
    model = models.load(args.model)
    print(f"{'resolution':>10}{'accuracy':>10}{'NLL':>8}   ({args.split}, {examples:,} images)")
    scores, chosen = pick_resolution(
        model, args.data, sizes, split=args.split, crop_fraction=args.crop_fraction,
        progress=lambda s: print(f"{s.resolution:>10}{100 * s.accuracy:>9.2f}%{s.nll:>8.4f}", flush=True))
    resolution = models.contract(chosen)["resolution"]
    pathlib.Path(args.out).resolve().parent.mkdir(parents=True, exist_ok=True)
    atomic_save_keras(chosen, args.out)
    print(f"chose {resolution} px (crop fraction {chosen.eval_crop_fraction:g}) on {args.split}; wrote {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    import time

    from funmatch.errors import FunmatchError

    if not str(args.out).endswith(".keras"):
        raise FunmatchError(f"--out {args.out}: a funmatch model file must end in .keras")
    if args.num_classes is not None and args.num_classes < 1:
        raise FunmatchError(f"--num-classes: must be >= 1, got {args.num_classes}")
    from funmatch.commands import check_place

    source = args.source if os.path.exists(args.source) else None
    check_place("--out", args.out, {"SOURCE": source, "--weights": args.weights}, kind="file", overwrite=args.overwrite)
    from funmatch.models.flops import count_params
    from funmatch.models.importer import import_model, save_atomic
    from funmatch.models.preprocessing import describe

    started = time.perf_counter()
    model = import_model(args.source, num_classes=args.num_classes, resolution=args.resolution,
                         preprocessing=args.preprocessing, weights=args.weights, crop_fraction=args.crop_fraction)
    save_atomic(model, args.out)
    print(f"wrote {args.out}: {model.arch}, {model.num_classes} classes, {model.resolution} px, "
          f"{count_params(model):,} params, in {time.perf_counter() - started:.1f} s")
    print(f"preprocessing ({model.preprocessing['source']}): {describe(model.preprocessing)}")
    return 0


def _print_shipped(names) -> None:
    """The shipped models (`funmatch.models.load(NAME)`), with their card's test accuracy and agreement."""
    from funmatch.models.shipped import list_shipped

    def percent(value):
        return f"{100 * value:.1f} %" if isinstance(value, (int, float)) else "-"

    print("shipped (funmatch.models.load(NAME)):")
    print(f"{'name':<22}{'arch':<16}{'res':>5}{'test acc':>10}{'agreement':>11}{'size':>10}  files")
    for row in list_shipped():
        if row["name"] not in names:
            continue
        if not row["installed"]:
            print(f"{row['name']:<22}(not installed)")
            continue
        size = f"{row['size_bytes'] / 1e6:.2f} MB"
        files = ", ".join(pathlib.Path(path).name for path in row["files"].values())
        print(f"{row['name']:<22}{row['arch'] or '-':<16}{row['resolution'] or '-':>5}{percent(row['test_accuracy']):>10}"
              f"{percent(row['agreement']):>11}{size:>10}  {files}")
