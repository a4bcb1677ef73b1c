"""`funmatch teacher`: train or fine-tune a teacher on labels (`funmatch.training.labels.train_teacher`)."""

from __future__ import annotations

import argparse

from funmatch.commands import add_budget_arguments, budget_config, check_config, check_data_dir, check_place
from funmatch import runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="RECIPE[:key=value,...]")
    parser.add_argument("--data", required=True, help="a folder written by `funmatch prepare`")
    parser.add_argument("--workdir", required=True, help="run folder; re-running the same command resumes")
    parser.add_argument("--init", default=None,
                        help="checkpoint to fine-tune from: official BiT .npz, a funmatch .keras file, or a keras-hub "
                             "preset (folder, kaggle:// or hf:// handle; imported with a head for the data's classes into WORKDIR/.init.keras)")
    add_budget_arguments(parser)
    runtime.add_launch_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    config = budget_config(args)
    check_config(config)
    check_data_dir(args.data)
    check_place("--workdir", args.workdir, {"--data": args.data, "--init": args.init})
    runtime.check_launch_arguments(args)
    runtime.launch(args, verbose=not args.no_progress)  # backend, processes, precision: before any compute
    from funmatch.training.labels import train_teacher  # the library (and Keras) after the cheap checks

    init = args.init
    if init is not None:  # a preset becomes a funmatch model file in the workdir first
        from funmatch.data.tfrecords import load_card
        from funmatch.models.importer import init_model_file

        init = init_model_file(init, int(load_card(args.data)["num_classes"]), args.workdir)
    train_teacher(config, args.data, args.workdir, init=init, progress=not args.no_progress)
    return 0
