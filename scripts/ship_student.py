"""Ship a finished distillation's student inside the package: `.keras`, int8 TFLite, card and README.

    python scripts/ship_student.py WORKDIR --teacher T.keras --data DATA_DIR --demo-summary SUMMARY.json \\
        --command "funmatch demo --out runs/demo_default" [--command ...] [--note TEXT] [--out FOLDER]

Copies WORKDIR/student.keras to src/funmatch/assets/students/eurosat_student.keras, exports
eurosat_student_int8.tflite with `funmatch.export` (calibrated on DATA_DIR's train split), evaluates the
float32 model and the int8 file on DATA_DIR's test split (accuracy; top-1 agreement with the teacher, each
model at its own evaluation view), times one image on this CPU (median of repeats) and writes the card
eurosat_student.json and README.md beside them. `--out` writes elsewhere (a dry run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import shutil
import subprocess
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "funmatch" / "assets" / "students"
NAME = "eurosat_student"
HARDWARE = "2 CPU cores (shared with other jobs), no accelerator"


def _logits(run, data_dir, spec, batch_size=64):
    """Logits and labels of `run(images) -> logits` over the test split (padding dropped)."""
    from funmatch.data import pipeline

    logits, labels = [], []
    for batch in pipeline.eval_dataset(data_dir, "test", spec, batch_size, process_index=0, process_count=1):
        mask = np.asarray(batch["_mask"]).astype(bool)
        logits.append(np.asarray(run(np.asarray(batch["image"], np.float32)), np.float32)[mask])
        labels.append(np.asarray(batch["label"])[mask])
    return np.concatenate(logits), np.concatenate(labels).astype(np.int64)


def _tflite_latency(path, resolution, repeats):
    """Median (with quartiles) of one-image TFLite interpreter calls on this CPU."""
    import warnings

    import tensorflow as tf

    from funmatch.evaluation.cost import latency_summary, time_calls

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    (detail,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(detail["index"], (1, resolution, resolution, 3))
    interpreter.allocate_tensors()
    image = np.random.default_rng(0).uniform(-1, 1, (1, resolution, resolution, 3)).astype(np.float32)
    interpreter.set_tensor(detail["index"], image)
    return latency_summary(time_calls(interpreter.invoke, repeats=repeats, max_seconds=20.0), 1)


def _rounded(latency):
    return {key: (round(value, 4) if isinstance(value, float) else value) for key, value in latency.items()}


def ship(workdir, teacher_path, data_dir, summary_path, commands, out=OUT, note="", repeats=50) -> dict:
    from funmatch import models
    from funmatch.evaluation.cost import measure_latency
    from funmatch.evaluation.evaluate import model_crop_fraction
    from funmatch.evaluation.logits import eval_pp
    from funmatch.export import export_model, load_exported

    workdir, data_dir, out = pathlib.Path(workdir), pathlib.Path(data_dir), pathlib.Path(out)
    summary = json.loads(pathlib.Path(summary_path).read_text())
    dataset = json.loads((data_dir / "dataset.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    keras_path, int8_path = out / f"{NAME}.keras", out / f"{NAME}_int8.tflite"
    shutil.copyfile(workdir / "student.keras", keras_path)
    student, teacher = models.load(keras_path), models.load(teacher_path)
    contract, teacher_contract = models.contract(student), models.contract(teacher)
    resolution = contract["resolution"]

    export = export_model(keras_path, int8_path, "tflite-int8", overwrite=True, data_dir=data_dir)
    student_spec = eval_pp(resolution, model_crop_fraction(student))
    teacher_logits, labels = _logits(teacher.predict_on_batch,
                                     data_dir, eval_pp(teacher_contract["resolution"], model_crop_fraction(teacher)))
    keras_logits, keras_labels = _logits(student.predict_on_batch, data_dir, student_spec)
    int8_logits, int8_labels = _logits(load_exported(int8_path, "tflite-int8"), data_dir, student_spec)
    assert (keras_labels == labels).all() and (int8_labels == labels).all()
    teacher_top1 = teacher_logits.argmax(-1)

    def scores(logits):
        top1 = logits.argmax(-1)
        return {"test_accuracy": float(np.mean(top1 == labels)), "test_agreement": float(np.mean(top1 == teacher_top1))}

    keras_scores, int8_scores = scores(keras_logits), scores(int8_logits)
    keras_latency = measure_latency(student, resolution, (1,), repeats=repeats, max_seconds=20.0)
    with tempfile.TemporaryDirectory() as directory:  # the float32 TFLite file: size and latency only
        float_tflite = pathlib.Path(directory) / "float32.tflite"
        export_model(keras_path, float_tflite, "tflite")
        float_tflite_size = float_tflite.stat().st_size
        float_tflite_latency = _tflite_latency(float_tflite, resolution, repeats)
    int8_latency = _tflite_latency(int8_path, resolution, repeats)
    keras_size, int8_size = keras_path.stat().st_size, int8_path.stat().st_size
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    fm = summary.get("function_matching", {})
    card = {
        "name": NAME,
        "arch": contract["arch"],
        "resolution": resolution,
        "value_range": list(contract["value_range"]),
        "eval_crop_fraction": model_crop_fraction(student),
        "num_classes": contract["num_classes"],
        "class_names": dataset.get("class_names"),
        "params": models.count_params(student),
        "flops_per_image": models.count_flops(student, resolution),
        "test_accuracy": keras_scores["test_accuracy"],
        "test_agreement": keras_scores["test_agreement"],
        "size_bytes": keras_size,
        "latency_batch1_ms": round(keras_latency[0]["batch_1"]["median_ms"], 4),
        "data": {
            "evaluated_on": f"the test split of {dataset.get('name', data_dir.name)} "
                            f"({dataset['splits']['test']['num_examples']} images)",
            "splits": {split: info["num_examples"] for split, info in dataset["splits"].items()},
            "source": _packaged(dataset.get("source")),
            "training_images": fm.get("images"),
        },
        "teacher": {
            "file": pathlib.Path(teacher_path).name,
            "arch": teacher_contract["arch"],
            "resolution": teacher_contract["resolution"],
            "test_accuracy": float(np.mean(teacher_top1 == labels)),
            "flops_ratio": summary.get("flops_ratio"),
        },
        "commands": list(commands),
        "training": {key: fm.get(key) for key in ("steps", "views", "cpu_seconds", "train_cpu_seconds",
                                                   "targets_cpu_seconds", "seconds") if key in fm},
        "files": {
            "keras": {"file": keras_path.name, "size_bytes": keras_size, **keras_scores,
                      "latency_batch1": _rounded(keras_latency[0]["batch_1"]), "runtime": f"keras, {keras_latency[1]}"},
            "tflite-int8": {"file": int8_path.name, "size_bytes": int8_size, **int8_scores,
                            "latency_batch1": _rounded(int8_latency), "runtime": "tf.lite.Interpreter",
                            "quantization": "post-training int8 weights and activations (ops without an int8 kernel "
                                            "stay float), float32 input and output",
                            "calibration_images": export["calibration_images"],
                            "calibration_agreement_with_keras": export["agreement_top1"],
                            "command": f"funmatch export {NAME}.keras --format tflite-int8 --data {data_dir} "
                                       f"--out {int8_path.name}"},
        },
        "float32_vs_int8": {
            "test_accuracy_float32": keras_scores["test_accuracy"],
            "test_accuracy_int8": int8_scores["test_accuracy"],
            "test_agreement_float32": keras_scores["test_agreement"],
            "test_agreement_int8": int8_scores["test_agreement"],
            "int8_agrees_with_float32": float(np.mean(int8_logits.argmax(-1) == keras_logits.argmax(-1))),
            "size_bytes_keras": keras_size,
            "size_bytes_tflite_float32": float_tflite_size,
            "size_bytes_tflite_int8": int8_size,
            "latency_batch1_ms_tflite_float32": round(float_tflite_latency["median_ms"], 4),
            "latency_batch1_ms_tflite_int8": round(int8_latency["median_ms"], 4),
        },
        "hardware": HARDWARE,
        "shipped_on": datetime.date.today().isoformat(),
        "funmatch_commit": commit,
        "note": note,
    }
    (out / f"{NAME}.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "README.md").write_text(_readme(card))
    return card


def _packaged(source):
    """A prepare source inside some checkout's package assets, as the repository-relative path (the card
    ships with the package; the machine's absolute path says nothing to a user)."""
    marker = "/src/funmatch/assets/"
    if isinstance(source, str) and marker in source:
        return source.split(":", 1)[0] + ":src/funmatch/assets/" + source.split(marker, 1)[1]
    return source


def _readme(card) -> str:
    cmp = card["float32_vs_int8"]

    def pct(value):
        return f"{100 * value:.1f} %"

    lines = [
        "# Shipped students",
        "",
        f"`{card['name']}`: a {card['arch']} student at {card['resolution']} px, distilled by function matching from "
        f"the teacher `{card['teacher']['file']}` ({card['teacher']['arch']} @ {card['teacher']['resolution']} px, "
        f"{pct(card['teacher']['test_accuracy'])} test accuracy here). Card: `{card['name']}.json`.",
        "",
        "```python",
        "import funmatch",
        f"model = funmatch.models.load(\"{card['name']}\")  # images [B, {card['resolution']}, {card['resolution']}, 3] in [-1, 1] -> logits",
        "```",
        "",
        f"The int8 file `{card['files']['tflite-int8']['file']}` runs with `tf.lite.Interpreter` (float32 input and output).",
        "",
        "| file | test accuracy | agreement with the teacher | size | latency, 1 image (median) |",
        "|---|---|---|---|---|",
        f"| `{card['files']['keras']['file']}` (float32, Keras) | {pct(cmp['test_accuracy_float32'])} | "
        f"{pct(cmp['test_agreement_float32'])} | {cmp['size_bytes_keras'] / 1e3:.0f} kB | {card['latency_batch1_ms']:.2f} ms |",
        f"| float32 TFLite (not shipped) | - | - | {cmp['size_bytes_tflite_float32'] / 1e3:.0f} kB | "
        f"{cmp['latency_batch1_ms_tflite_float32']:.2f} ms |",
        f"| `{card['files']['tflite-int8']['file']}` (int8) | {pct(cmp['test_accuracy_int8'])} | "
        f"{pct(cmp['test_agreement_int8'])} | {cmp['size_bytes_tflite_int8'] / 1e3:.0f} kB | "
        f"{cmp['latency_batch1_ms_tflite_int8']:.2f} ms |",
        "",
        f"Evaluated on {card['data']['evaluated_on']}; the int8 file's top-1 agrees with the float32 model on "
        f"{pct(cmp['int8_agrees_with_float32'])} of them. The int8 file is "
        f"{cmp['size_bytes_tflite_float32'] / cmp['size_bytes_tflite_int8']:.1f}× smaller than the float32 TFLite file; "
        f"latencies are medians of one-image calls on {card['hardware']} (int8 kernels pay off on CPUs and "
        "accelerators with fast int8 arithmetic; on this one compare the two TFLite rows).",
        "",
        "Commands:",
        "",
        *[f"    {command}" for command in card["commands"]],
        f"    {card['files']['tflite-int8']['command']}",
        "",
    ]
    if card.get("note"):
        lines += [card["note"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=pathlib.Path, help="the distillation's workdir (with student.keras)")
    parser.add_argument("--teacher", required=True, help="the teacher .keras file it was distilled from")
    parser.add_argument("--data", required=True, help="the prepared data folder (train: calibration; test: evaluation)")
    parser.add_argument("--demo-summary", required=True, help="the demo's summary.json")
    parser.add_argument("--command", action="append", required=True, help="a command that made it (repeatable)")
    parser.add_argument("--note", default="", help="anything else a user should know")
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help=f"output folder (default {OUT})")
    parser.add_argument("--repeats", type=int, default=50, help="timed one-image calls per latency (default 50)")
    args = parser.parse_args()
    card = ship(args.workdir, args.teacher, args.data, args.demo_summary, args.command, out=args.out, note=args.note,
                repeats=args.repeats)
    print(json.dumps({"out": str(args.out), **card["float32_vs_int8"]}, indent=2))


if __name__ == "__main__":
    main()
