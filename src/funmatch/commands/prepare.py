"""`funmatch prepare SOURCE --out DIR`: any source -> TFRecord shards + dataset card (`funmatch.data.prepare`)."""

from __future__ import annotations

import argparse

from funmatch.data.prepare import DEFAULT_EXAMPLES_PER_SHARD


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `funmatch prepare`."""
    parser.add_argument("source", metavar="SOURCE",
                        help="tfds:NAME[:OUT=SPLIT,...] (e.g. tfds:oxford_iiit_pet), folder:PATH (ImageFolder "
                             "PATH/<split>/<class>/* or flat PATH/<class>/*), or tfrecord:GLOB")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (TFRecord shards + dataset.json)")
    parser.add_argument("--splits", default=None, help="comma-separated output splits to write (default: all)")
    parser.add_argument("--shorter-side", type=int, default=None, metavar="N",
                        help="downscale (antialiased, never upscale) so the shorter side is N px")
    parser.add_argument("--jpeg-quality", type=int, default=95, help="quality of re-encoded JPEGs (default 95)")
    parser.add_argument("--examples-per-shard", type=int, default=DEFAULT_EXAMPLES_PER_SHARD,
                        help=f"records per TFRecord shard (default {DEFAULT_EXAMPLES_PER_SHARD})")
    parser.add_argument("--workers", type=int, default=None, help="decode/resize/encode threads (default: CPUs, max 8)")
    parser.add_argument("--val-fraction", type=float, default=0.0,
                        help="folder source without a validation split: carve this fraction per class from train")
    parser.add_argument("--test-fraction", type=float, default=0.0,
                        help="folder source without a test split: carve this fraction per class from train")
    parser.add_argument("--skip-bad", action="store_true", help="skip undecodable files (recorded in the card)")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    parser.add_argument("--name", default=None, help="dataset name in the card (default: from the source)")
    parser.add_argument("--tfds-data-dir", default=None, help="tfds data folder (default: tfds' own)")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--shuffle-seed", type=int, default=0,
                       help="records are written in a random order drawn from this seed (default 0)")
    order.add_argument("--keep-order", action="store_true", help="write records in source order instead")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Runs `funmatch prepare`; prints a one-line summary per split."""
    from funmatch.data.prepare import prepare

    card = prepare(
        args.source,
        args.out,
        splits=[s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None,
        shorter_side=args.shorter_side,
        jpeg_quality=args.jpeg_quality,
        examples_per_shard=args.examples_per_shard,
        workers=args.workers,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        name=args.name,
        tfds_data_dir=args.tfds_data_dir,
        shuffle_seed=None if args.keep_order else args.shuffle_seed,
    )
    for split, info in card["splits"].items():
        print(f"{split}: {info['num_examples']} examples in {info['num_shards']} shard(s)"
              + (f", {info['num_skipped']} skipped" if info["num_skipped"] else ""))
    if card.get("num_ignored"):
        print(f"{card['num_ignored']} file(s) were not images and are left out (listed under 'ignored' in "
              f"{args.out}/dataset.json), e.g. {card['ignored'][0]['path']} ({card['ignored'][0]['reason']})")
    if "validation" not in card["splits"]:
        print("no validation split: training needs one; re-run with --val-fraction 0.1 (folder sources) to carve "
              "one from train, or name it in the source (tfds:NAME:train=train[:90%],validation=train[90%:])")
    print(f"wrote {args.out} ({card['num_classes']} classes)")
    return 0
