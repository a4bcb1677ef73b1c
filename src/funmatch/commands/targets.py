"""`funmatch targets`: run the teacher once on K stored views of every training image
(`funmatch.training.targets.generate_for_config`, store format in `funmatch.distill.targets`).

    funmatch targets --teacher teacher.keras --data data/eurosat --config eurosat --views 16 --out targets/eurosat
    funmatch distill --config eurosat --data data/eurosat --teacher teacher.keras --targets targets/eurosat --workdir runs/a
    funmatch tune    --config eurosat --data data/eurosat --teacher teacher.keras --targets targets/eurosat --dir runs/t

Every later student, mode that fits and tuning trial reads the same store; none runs the teacher. Re-running
the same command continues a killed run (finished units are kept). Several processes (the launch flags or
`KERAS_DISTRIBUTION_*`, as for training) split the units (one view of one record file each): each runs the
teacher on its own devices and never waits on another, so unequal shares cost no stall; every process ends
when the whole store is written. After a kill of any process, start them all again with the same command.

Size and time at scale, on paper (not measured here). Bytes: full float16 log-probabilities (<= 128
classes) take 2·C bytes per image and view, top-k 4·k bytes. Teacher time: images × K forward passes of
BiT-R152x2, ≈ 46 GMAC per image at 224 px and ≈ 15 GMAC at 128 px, here at 40 % of a TPU v5e-8's bf16
peak (≈ 630 TFLOP/s in all); scale by your own teacher throughput (`benchmarks/targets.py` measures it):

    dataset (N, classes)            K (= epochs of the schedule)  storage     size       teacher images  time
    ImageNet (1.28 M, 1000), 224 px 100 (the run reads each 12x)  top-10      5.1 GB     128 M           ~ 5 h
    Flowers102 (1,020, 102)         10,000 (fast)                 full 204 B  2.1 GB     10 M            ~ 8 min
    Pets37 (3,312, 37)              1,000 (fast) / 30,000 (long)  full 74 B   245 MB / 7.4 GB  3.3 M / 99 M  ~ 3 min / 1.3 h
    Food101 (68,175, 101)           100 (fast) / 3,000 (long)     full 202 B  1.4 GB / 41 GB   6.8 M / 205 M ~ 6 min / 2.7 h

K equal to the schedule's epochs costs exactly the teacher compute of one online run, paid once for every
later student and trial; a smaller K (the long Flowers102 schedule's 1 M epochs, ImageNet's 1200) cycles
through the stored views, one new view per pass until all K were used (`benchmarks/targets_fidelity.sh`
measures how small K may be).

`--mixup per-batch` stores the paper's mixup instead: the recipe's `steps` batches of `batch_size`, fixed by
(seed, step), one coefficient per batch and each image mixed with its batch neighbour (no --views; the store
holds steps x batch_size targets). A run on it keeps that batch size and at most those steps; what is the same
as online function matching and what is not: `funmatch.distill.targets.batches`.

The teacher runs at the recipe's `teacher_resolution` (its weights at that size when its own differs), the
resolution `distill --targets` with the same recipe runs it at. Top-k stores hold the teacher at
temperature 1 only: a run at another temperature refuses them (store every class with `--top-k C`).
What each format costs in accuracy, against online function matching, on Flowers102's 102 classes at
temperature 1 (`DATASET=flowers102 FORMATS="full 50 10" benchmarks/targets_fidelity.sh`, two seeds): full
float16, top-50 and top-10 stores all matched it (34.4, 34.4 and 34.6 % test against 33.6 %; agreement 42.8,
42.9 and 42.7 % against 42.0 %), with a weak teacher trained from scratch (43.7 %): README.
"""

from __future__ import annotations

import argparse

from funmatch import runtime
from funmatch.commands import add_unlabeled_argument, check_config, check_data_dir, check_file, check_place, with_unlabeled
from funmatch.errors import FunmatchError

STORED_MODES = ("function_matching", "consistent", "fixed_teacher")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="the teacher's .keras file")
    parser.add_argument("--data", required=True, help="a folder written by `funmatch prepare`")
    parser.add_argument("--config", required=True,
                        help="RECIPE[:key=value,...]: the views (crop, mixup p), seed, split and teacher resolution")
    parser.add_argument("--views", type=int, default=None,
                        help="K: stored views per training image (fixed_teacher: 1); not with --mixup per-batch")
    parser.add_argument("--out", required=True, help="the store; re-running the same command continues it")
    parser.add_argument("--mode", choices=STORED_MODES, default=None,
                        help="the views to store (default: the recipe's mode): mixed (function_matching), unmixed "
                             "(consistent), or one fixed eval view per image (fixed_teacher)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="store the k largest log-probabilities (default: all classes up to 128, else 10)")
    parser.add_argument("--batch-size", type=int, default=None, help="teacher batch (default: the recipe's eval batch)")
    parser.add_argument("--mixup", choices=("per-example", "per-batch"), default="per-example",
                        help="per-example (default): K views, each example with its own coefficient and partner; "
                             "per-batch: the recipe's steps x batch_size batches as a run will see them, one "
                             "coefficient per batch, partners the batch neighbours (the paper's mixup); a run on "
                             "the store keeps that batch size and at most those steps")
    runtime.add_launch_arguments(parser)
    add_unlabeled_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    check_config(args.config)
    check_data_dir(args.data)
    check_file("--teacher", args.teacher)
    check_place("--out", args.out, {"--data": args.data, "--teacher": args.teacher})
    if args.mixup == "per-batch" and args.views is not None:
        raise FunmatchError("--views: a per-batch store holds the recipe's steps x batch_size batches, not K views "
                            "per image; leave --views out")
    if args.mixup == "per-example" and args.views is None:
        raise FunmatchError("--views is required (K stored views per training image)")
    if args.views is not None and args.views < 1:
        raise FunmatchError(f"--views must be >= 1, got {args.views}")
    runtime.check_launch_arguments(args)
    runtime.launch(args, verbose=not args.no_progress)  # backend, processes, precision: before any compute
    from funmatch.configs import get_config
    from funmatch.training.targets import generate_for_config  # the library (and Keras) after the checks

    data, config = with_unlabeled(args, args.config)
    card = generate_for_config(get_config(config), args.teacher, data, args.out, views=args.views or 1,
                               mode=args.mode, top_k=args.top_k, batch_size=args.batch_size,
                               progress=not args.no_progress, mixup=args.mixup.replace("-", "_"))
    n = card["data"]["num_examples"]
    if not runtime.is_writer():  # several processes: all of them finished (generate_for_config waits); 0 reports
        return 0
    if not card["complete"]:
        print(f"funmatch targets: this process's units are written to {args.out}; the store completes when "
              "every process has finished")
        return 0
    storage = "full float16" if card["storage"] == "full" else f"top-{card['top_k']}"
    batches = card.get("batches")
    what = (f"{batches['steps']:,} batches of {batches['size']} (per-batch mixup)" if batches
            else f"{card['views']} view(s) × {n:,} images")
    print(f"funmatch targets: {card['mode']}, {what}, teacher at "
          f"{card['teacher']['resolution']} px (the recipe's teacher_resolution) ({storage}, "
          f"{card['bytes_per_target']} B per view, {card['bytes_total'] / 2**20:,.1f} MiB) in {args.out}; "
          f"generation {card['generation_seconds']:,.0f} s")
    return 0
