"""Copy a finished `funmatch teacher` run into the package as the shipped EuroSAT teacher, with its card.

    python scripts/ship_teacher.py WORKDIR --command "funmatch teacher --config eurosat ..." [--note TEXT]

Writes src/funmatch/assets/teachers/eurosat_teacher.keras and eurosat_teacher.json (command, wall time,
data, accuracy, cost), all read from the run's own files (plus `--earlier-minutes` for the stages that
a fine-tuned run started from).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "funmatch" / "assets" / "teachers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=pathlib.Path)
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--prepare-command", required=True, help="the command that prepared its data")
    parser.add_argument("--note", default="", help="anything else a user should know about the run")
    parser.add_argument("--earlier-minutes", type=float, default=0.0,
                        help="training minutes of earlier stages this run was initialised from (--init)")
    args = parser.parse_args()

    from funmatch import models

    run = json.loads((args.workdir / "config.json").read_text())
    metrics = json.loads((args.workdir / "teacher_metrics.json").read_text())
    records = [json.loads(line) for line in (args.workdir / "metrics.jsonl").read_text().splitlines()]
    card_data = json.loads((pathlib.Path(run["data_dir"]) / "dataset.json").read_text())
    model = models.load(args.workdir / "teacher.keras")
    contract = models.contract(model)
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.workdir / "teacher.keras", OUT / "eurosat_teacher.keras")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    card = {
        "arch": contract["arch"],
        "resolution": contract["resolution"],
        "value_range": list(contract["value_range"]),
        "num_classes": contract["num_classes"],
        "class_names": card_data["class_names"],
        "params": models.count_params(model),
        "flops_per_image": models.count_flops(model, contract["resolution"]),
        "size_bytes": (OUT / "eurosat_teacher.keras").stat().st_size,
        "command": args.command,
        "prepare_command": args.prepare_command,
        "data": {split: info["num_examples"] for split, info in card_data["splits"].items()},
        "data_source": card_data.get("source"),
        "steps": metrics["steps"],
        "batch_size": run["teacher_batch_size"],
        "epochs": records[-1]["epoch"],
        "wall_time_minutes": round(args.earlier_minutes + records[-1]["train_seconds"] / 60, 1),
        "last_stage_wall_time_minutes": round(records[-1]["train_seconds"] / 60, 1),
        "validation_accuracy": metrics["validation_accuracy"],
        "test_accuracy": metrics["test_accuracy"],
        "test_accuracy_top5": metrics["test_accuracy_top5"],
        "hardware": "2 CPU cores (shared with other jobs), no accelerator",
        "trained_on": datetime.date.today().isoformat(),
        "funmatch_commit": commit,
        "training_images": {
            "shared_split": "train", "file_number_not_multiple_of": 5,
            "description": ("The shared EuroSAT RGB train split: every <Class>_<n>.jpg whose n is not a multiple of 5 "
                            "(21,600 images; 5 % of them carved out as validation by the prepare command). No image "
                            "of the shared test split (n a multiple of 5) was used in training."),
        },
        "note": args.note,
    }
    (OUT / "eurosat_teacher.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({k: card[k] for k in ("arch", "params", "test_accuracy", "wall_time_minutes", "size_bytes")}))


if __name__ == "__main__":
    main()
