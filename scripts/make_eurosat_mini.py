"""Builds src/funmatch/assets/eurosat_mini (the demo dataset shipped in the package) from the shared EuroSAT RGB.

    python scripts/make_eurosat_mini.py [--source ../shared/data/eurosat_rgb] [--out src/funmatch/assets/eurosat_mini]

Cut rule (deterministic, no randomness): per class, files sorted naturally (by their number),
  train      = the first 400 of the shared *train* split,
  validation = the next 50 of the shared *train* split,
  test       = the first 100 of the shared *test* split (disjoint from all of the shared train split).
JPEG bytes are copied unchanged; labels.txt is copied. README.md is written by hand (provenance).
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil

REPO = pathlib.Path(__file__).resolve().parents[1]
CUTS = {  # output split -> (shared split, first position, count) per class
    "train": ("train", 0, 400),
    "validation": ("train", 400, 50),
    "test": ("test", 0, 100),
}


def natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "eurosat_rgb")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "src" / "funmatch" / "assets" / "eurosat_mini")
    args = parser.parse_args()
    for split in CUTS:
        if (args.out / split).exists():
            shutil.rmtree(args.out / split)
    args.out.mkdir(parents=True, exist_ok=True)
    total_files = total_bytes = 0
    for split, (shared_split, start, count) in CUTS.items():
        for class_dir in sorted(p for p in (args.source / shared_split).iterdir() if p.is_dir()):
            files = sorted((p for p in class_dir.iterdir() if p.suffix == ".jpg"), key=lambda p: natural_key(p.name))
            chosen = files[start : start + count]
            if len(chosen) != count:
                raise SystemExit(f"{class_dir}: only {len(chosen)} files at {start}..{start + count}")
            target = args.out / split / class_dir.name
            target.mkdir(parents=True)
            for file in chosen:
                shutil.copyfile(file, target / file.name)
                total_files += 1
                total_bytes += file.stat().st_size
    shutil.copyfile(args.source / "labels.txt", args.out / "labels.txt")
    print(f"wrote {total_files} images, {total_bytes:,} bytes of JPEG data, to {args.out}")


if __name__ == "__main__":
    main()
