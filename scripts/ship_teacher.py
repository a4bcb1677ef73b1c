"""Copy a finished `funmatch teacher` run into the package as the shipped EuroSAT teacher, with its card.

    python scripts/ship_teacher.py WORKDIR --command "funmatch teacher --config eurosat ..." [--note TEXT]
    python scripts/ship_teacher.py --resolution-of MODEL.keras --data DIR --resolutions 96,104,112,120,128 \
        --command "funmatch models resolution ..."

Writes src/funmatch/assets/teachers/eurosat_teacher.keras and eurosat_teacher.json (command, wall time,
data, accuracy, cost), all read from the run's own files (plus `--earlier-minutes` for the stages that
a fine-tuned run started from).

`--resolution-of` is the last stage: the same weights served at the resolution that scores best on the
validation split (`funmatch models resolution`, crop fraction 1: the whole tile); the card gains the
choice table, the new resolution, FLOPs and accuracies, and the command is appended to its chain.
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


def ship_resolution(model_path: pathlib.Path, data_dir: str, resolutions: str, command: str) -> None:
    import time

    from funmatch import models
    from funmatch.evaluation.logits import eval_pp, split_logits
    from funmatch.evaluation.metrics import topk_accuracy
    from funmatch.evaluation.resolution import pick_resolution, score
    from funmatch.training.checkpoints import atomic_save_keras

    card_path = OUT / "eurosat_teacher.json"
    card = json.loads(card_path.read_text())
    start = time.time()
    model = models.load(model_path)
    trained_at = models.contract(model)["resolution"]
    scores, chosen = pick_resolution(model, data_dir, [int(r) for r in resolutions.split(",")], crop_fraction=1.0)
    resolution = models.contract(chosen)["resolution"]
    test = split_logits(chosen, data_dir, "test", eval_pp(resolution, 1.0), 256)
    test_accuracy, _ = score(test["logits"], test["labels"])
    top5 = topk_accuracy(test["logits"], test["labels"], 5)
    atomic_save_keras(chosen, OUT / "eurosat_teacher.keras")
    card.update({
        "resolution": resolution,
        "flops_per_image": models.count_flops(chosen, resolution),
        "size_bytes": (OUT / "eurosat_teacher.keras").stat().st_size,
        "command": card["command"] + " && " + command,
        "trained_resolution": trained_at,
        "resolution_choice": {
            "split": "validation", "crop_fraction": 1.0,
            "rows": [{"resolution": s.resolution, "accuracy": s.accuracy, "nll": s.nll} for s in scores],
        },
        "validation_accuracy": max(s.accuracy for s in scores if s.resolution == resolution),
        "test_accuracy_at_trained_resolution": card["test_accuracy"],
        "test_accuracy": test_accuracy,
        "test_accuracy_top5": top5,
        "wall_time_minutes": round(card["wall_time_minutes"] + (time.time() - start) / 60, 1),
    })
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({k: card[k] for k in ("resolution", "validation_accuracy", "test_accuracy", "flops_per_image")}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=pathlib.Path, nargs="?")
    parser.add_argument("--resolution-of", type=pathlib.Path, help="serve this .keras at the validation-best resolution")
    parser.add_argument("--data", help="with --resolution-of: the prepared EuroSAT folder (validation + test)")
    parser.add_argument("--resolutions", default="96,104,112,120,128", help="with --resolution-of: sizes to score")
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--prepare-command", help="the command that prepared its data")
    parser.add_argument("--note", default="", help="anything else a user should know about the run")
    parser.add_argument("--earlier-minutes", type=float, default=0.0,
                        help="training minutes of earlier stages this run was initialised from (--init)")
    args = parser.parse_args()
    if args.resolution_of:
        ship_resolution(args.resolution_of, args.data, args.resolutions, args.command)
        return
    if args.workdir is None or not args.prepare_command:
        parser.error("WORKDIR and --prepare-command are needed (or --resolution-of)")

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
