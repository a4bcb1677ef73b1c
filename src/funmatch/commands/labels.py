"""`funmatch labels`: train a registry model on labels with a distillation recipe's own settings
(`funmatch.training.labels.train_labels`): the reference a distilled student is compared with."""

from __future__ import annotations

import argparse

from funmatch import runtime
from funmatch.commands import add_budget_arguments, budget_config, check_config, check_data_dir, check_file, check_place


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the distillation recipe, RECIPE[:key=value,...]")
    parser.add_argument("--data", required=True, help="a folder written by `funmatch prepare`")
    parser.add_argument("--workdir", required=True, help="run folder; re-running the same command resumes")
    parser.add_argument("--model", default="student",
                        help="what to train: 'student' (the recipe's student, default) or any registry name "
                             "(see `funmatch models`; also hub:PRESET, a keras-hub preset's backbone with its weights, "
                             "hub_random:PRESET, and NAME@FILE, a keras.applications network from its weights "
                             "without the top), at the recipe's student resolution")
    parser.add_argument("--teacher", default=None,
                        help="a teacher .keras file: its agreement with the trained model is measured (not trained on)")
    parser.add_argument("--mixup", type=float, default=0.0, help="mixup p of label training (default 0: none)")
    add_budget_arguments(parser)
    runtime.add_launch_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to the workdir)")


def main(args: argparse.Namespace) -> int:
    config = budget_config(args)
    check_config(config)
    check_data_dir(args.data)
    if args.teacher is not None:
        check_file("--teacher", args.teacher)
    check_place("--workdir", args.workdir, {"--data": args.data, "--teacher": args.teacher})
    runtime.check_launch_arguments(args)
    runtime.launch(args, verbose=not args.no_progress)  # backend, processes, precision: as distill's
    from funmatch.training.labels import train_labels  # the library (and Keras) after the cheap checks

    train_labels(config, args.data, args.workdir, model=args.model, teacher_path=args.teacher, mixup_p=args.mixup,
                 progress=not args.no_progress)
    return 0
