"""Builds the demo's data shipped in the package from the shared EuroSAT RGB copy:
src/funmatch/assets/eurosat_mini (labelled train / validation / test) and
src/funmatch/assets/eurosat_unlabeled (images whose labels distillation never reads, for
`funmatch distill --unlabeled`; their labels are kept apart for the demo's all-labels reference).

    python scripts/make_eurosat_mini.py [--source ../shared/data/eurosat_rgb] [--assets src/funmatch/assets]

Cut rule (deterministic, no randomness): per class, the files of each shared split sorted naturally (by number),
  train      = the first 100 of the shared *train* split            (labelled, 1,000 images)
  test       = the first 100 of the shared *test* split             (1,000 images)
  validation = the next 50 (positions 100-149) of the shared *test* split (500 images)
  unlabeled  = the rest (positions 150-) of the shared *test* split, without labels (3,900 images:
               450, 350 or 250 per class, as the class's size allows)
The shared test split (file number a multiple of 5) is disjoint from the shared train split on which the
shipped teacher was trained, so every image the demo evaluates on is clean, and so is every unlabelled image:
the teacher's outputs on them are outputs on images it never saw. Unlabelled images are renamed `u_NNNNN.jpg`
(class-interleaved order: round robin over the classes while each has files left) in a flat folder;
`eurosat_unlabeled/SOURCES.txt` maps each name to its source file and `eurosat_unlabeled/LABELS.txt` each
name to its class index (read only by the demo's all-labels reference; distillation never reads it). JPEG
bytes are copied unchanged; labels.txt is copied. The READMEs are written by hand.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil

REPO = pathlib.Path(__file__).resolve().parents[1]
LABELLED = {  # output split -> (shared split, first position, count) per class
    "train": ("train", 0, 100),
    "validation": ("test", 100, 50),
    "test": ("test", 0, 100),
}
UNLABELED = ("test", 150, None)  # None: every file from the start position on


def natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def pick(source: pathlib.Path, shared_split: str, start: int, count: int | None) -> dict[str, list[pathlib.Path]]:
    """Class dir name -> the chosen files of that class, in natural order."""
    out = {}
    for class_dir in sorted(p for p in (source / shared_split).iterdir() if p.is_dir()):
        files = sorted((p for p in class_dir.iterdir() if p.suffix == ".jpg"), key=lambda p: natural_key(p.name))
        chosen = files[start : None if count is None else start + count]
        if not chosen or (count is not None and len(chosen) != count):
            raise SystemExit(f"{class_dir}: only {len(chosen)} files at {start}..{start + count}")
        out[class_dir.name] = chosen
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "eurosat_rgb")
    parser.add_argument("--assets", type=pathlib.Path, default=REPO / "src" / "funmatch" / "assets")
    args = parser.parse_args()
    mini, unlabeled = args.assets / "eurosat_mini", args.assets / "eurosat_unlabeled"
    for folder in [mini / split for split in LABELLED] + [unlabeled / "images"]:
        if folder.exists():
            shutil.rmtree(folder)
    total_files = total_bytes = 0
    for split, (shared_split, start, count) in LABELLED.items():
        for class_name, files in pick(args.source, shared_split, start, count).items():
            target = mini / split / class_name
            target.mkdir(parents=True)
            for file in files:
                shutil.copyfile(file, target / file.name)
                total_files += 1
                total_bytes += file.stat().st_size
    shutil.copyfile(args.source / "labels.txt", mini / "labels.txt")
    per_class = list(pick(args.source, *UNLABELED).items())
    longest = max(len(files) for _, files in per_class)
    interleaved = [(index, files[k]) for k in range(longest)  # no class runs in the order
                   for index, (_, files) in enumerate(per_class) if k < len(files)]
    (unlabeled / "images").mkdir(parents=True)
    sources, labels = [], []
    for number, (index, file) in enumerate(interleaved):
        name = f"u_{number:05d}.jpg"
        shutil.copyfile(file, unlabeled / "images" / name)
        sources.append(f"{name} {file.relative_to(args.source).as_posix()}")
        labels.append(f"{name} {index}")
        total_files += 1
        total_bytes += file.stat().st_size
    (unlabeled / "SOURCES.txt").write_text("\n".join(sources) + "\n")
    (unlabeled / "LABELS.txt").write_text("\n".join(labels) + "\n")
    print(f"wrote {total_files} images, {total_bytes:,} bytes of JPEG data, to {mini} and {unlabeled}")


if __name__ == "__main__":
    main()
