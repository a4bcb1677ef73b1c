"""`funmatch report WORKDIR... --out DIR`: HTML + markdown report (`funmatch.reporting.write_report`)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR", help="`funmatch distill` workdir(s); two or more add a comparison")
    parser.add_argument("--out", required=True, help="folder for index.html, summary.md and the PNG plots (created)")
    parser.add_argument("--title", default=None, help="page title (default: from the workdir names)")


def main(args: argparse.Namespace) -> int:
    from funmatch.reporting import write_report

    page = write_report(args.workdirs, args.out, title=args.title)
    print(f"funmatch report: wrote {page} (and summary.md, plots) for {len(args.workdirs)} run(s)")
    return 0
