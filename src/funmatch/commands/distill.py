"""`funmatch distill`: distill a frozen teacher into a student (`funmatch.training.distill.distill`)."""

from __future__ import annotations

import argparse

from funmatch.commands import (add_budget_arguments, add_unlabeled_argument, budget_config, check_config, check_data_dir,
                               check_file, check_place, with_unlabeled)
from funmatch import runtime
from funmatch.configs import MODES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="RECIPE[:key=value,...], e.g. flowers102:variant=fast or eurosat:smoke=true")
    parser.add_argument("--data", required=True, help="a folder written by `funmatch prepare`")
    parser.add_argument("--teacher", required=True, help="the teacher's .keras file (frozen during distillation)")
    parser.add_argument("--workdir", required=True, help="run folder; re-running the same command resumes from it")
    parser.add_argument("--mode", choices=MODES, default=None, help="override the recipe's mode (default: function_matching)")
    parser.add_argument("--targets", default=None, metavar="TARGETS_DIR",
                        help="stored teacher targets (`funmatch targets`): the step runs no teacher")
    parser.add_argument("--init", default=None, metavar="FILE",
                        help="start the student from this funmatch .keras file (e.g. the student.keras of funmatch "
                             "labels; the student's architecture, classes and resolution) or a keras-hub preset "
                             "(imported with a head for the data's classes into WORKDIR/.init.keras); optimizer and "
                             "step start fresh (recipe key student_init)")
    add_unlabeled_argument(parser)
    add_budget_arguments(parser)
    runtime.add_launch_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to the workdir)")


def main(args: argparse.Namespace) -> int:
    config = budget_config(args)
    check_config(config)
    check_data_dir(args.data)
    check_file("--teacher", args.teacher)
    check_place("--workdir", args.workdir, {"--data": args.data, "--teacher": args.teacher, "--targets": args.targets,
                                            "--init": args.init})
    runtime.check_launch_arguments(args)
    runtime.launch(args, verbose=not args.no_progress)  # backend, processes, precision: before any compute
    from funmatch.training.distill import distill  # the library (and Keras) after the cheap checks

    data, config = with_unlabeled(args, config)
    init = args.init
    if init is not None:  # a preset becomes a funmatch model file in the workdir first (as teacher --init)
        from funmatch.data.tfrecords import load_card
        from funmatch.models.importer import init_model_file

        init = init_model_file(init, int(load_card(args.data)["num_classes"]), args.workdir)
    distill(config, data, args.teacher, args.workdir, mode=args.mode, targets=args.targets, init=init,
            progress=not args.no_progress)
    return 0
