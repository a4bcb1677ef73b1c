"""`funmatch report`: pages, plots and numbers from hand-written distillation workdirs.

The workdirs are built here with the files `funmatch distill` writes (config.json, metrics.jsonl,
metrics.json) plus evaluation.json and augmentations.png; all numbers are written by hand so the
page can be checked against them cell by cell. Pure numpy/matplotlib: no Keras, one backend.
"""

import html.parser
import json
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from funmatch import cli
from funmatch.errors import FunmatchError
from funmatch.reporting import (
    PNG_SIGNATURE,
    class_gap_table,
    class_gaps,
    format_value,
    load_run,
    plot_class_gaps,
    save_augmentation_grid,
    write_report,
)

CHROMIUM = pathlib.Path("/usr/bin/chromium")
NUM_TRAIN = 2000
BATCH = 100  # 20 steps per epoch

# (step, train_loss, validation accuracy, validation agreement, test accuracy, test agreement);
# None: a chunk without evaluation.
FM_HISTORY = [
    (100, 2.3125, 0.4375, 0.5, 0.4219, 0.4844),
    (200, 1.5, None, None, None, None),
    (300, 0.875, 0.7188, 0.7813, 0.7031, 0.7656),
    (400, 0.5625, None, None, None, None),
    (500, 0.4375, 0.8125, 0.875, 0.7969, 0.8594),
    (600, 0.375, 0.8438, 0.9063, 0.8281, 0.8906),
]
FM_FINAL = {
    "step": 600, "mode": "function_matching", "recipe": "eurosat",
    "validation_accuracy": 0.8450, "validation_accuracy_top5": 0.9925, "validation_agreement": 0.9075,
    "validation_agreement_top5": 0.9975, "validation_kl": 0.21875, "validation_num_examples": 400,
    "test_accuracy": 0.83, "test_accuracy_top5": 0.99, "test_agreement": 0.8925, "test_agreement_top5": 0.995,
    "test_kl": 0.234375, "test_num_examples": 400,
    "teacher_validation_accuracy": 0.9125, "teacher_validation_accuracy_top5": 1.0, "teacher_validation_num_examples": 400,
    "teacher_test_accuracy": 0.905, "teacher_test_accuracy_top5": 0.9975, "teacher_test_num_examples": 400,
    "wall_time_sec_this_process": 312.5,
}
CLASS_NAMES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial"]
STUDENT_PER_CLASS = [0.875, 0.95, 0.625, 0.8, 0.9]
TEACHER_PER_CLASS = [0.9, 0.925, 0.875, 0.85, 0.975]


def latency(batch_size, median_ms):
    return {"batch_size": batch_size, "median_ms": median_ms, "min_ms": 0.875 * median_ms, "repeats": 20,
            "throughput_images_per_sec": batch_size / median_ms * 1e3}


# The layout of `funmatch evaluate --json` (schema funmatch.evaluate/1, see src/funmatch/evaluation/evaluate.py).
EVALUATION = {
    "schema": "funmatch.evaluate/1",
    "backend": "jax",
    "device": "cpu",
    "data": {"data_dir": "/data/eurosat", "dataset_name": "eurosat_rgb", "split": "test", "num_examples": 400,
             "num_classes": 5, "class_names": CLASS_NAMES},
    "student": {
        "path": "run/student.keras", "arch": "tiny_cnn", "resolution": 64, "eval_pp": "decode|resize_small(64)|...",
        "num_examples": 400, "accuracy_top1": 0.83, "accuracy_top5": 0.99, "ece": 0.0412,
        "params": 18250, "flops_per_image": 2_500_000, "size_bytes": 312_456,
        "latency": {"batch_1": latency(1, 1.75), "batch_64": latency(64, 22.5)}, "latency_compiler": "jax.jit",
    },
    "teacher": {
        "path": "teacher.keras", "arch": "bit_r26x0.25", "resolution": 64, "eval_pp": "decode|resize_small(64)|...",
        "num_examples": 400, "accuracy_top1": 0.905, "accuracy_top5": 0.9975, "ece": 0.0275,
        "params": 312_000, "flops_per_image": 41_000_000, "size_bytes": 3_900_000,
        "latency": {"batch_1": latency(1, 6.25), "batch_64": latency(64, 180.0)}, "latency_compiler": "jax.jit",
    },
    "fidelity": {"agreement_top1": 0.8925, "agreement_top5": 0.995, "kl_mean": 0.234375},
    "per_class": sorted(
        [{"class_index": i, "class_name": name, "num_examples": 80, "student_accuracy": s, "teacher_accuracy": t,
          "gap": s - t} for i, (name, s, t) in enumerate(zip(CLASS_NAMES, STUDENT_PER_CLASS, TEACHER_PER_CLASS))],
        key=lambda row: row["gap"]),
    "ratios": {"params": 17.1, "flops_per_image": 16.4, "size_bytes": 12.48, "latency_batch_1": 3.57,
               "latency_batch_64": 8.0},
}


def write_workdir(root: pathlib.Path, name: str, *, mode="function_matching", history=FM_HISTORY, final=FM_FINAL,
                  evaluation=EVALUATION, augmentations=True, steps=600, **config_overrides) -> pathlib.Path:
    """A workdir as `funmatch distill` (+ `evaluate --json`, + the augmentation grid) leaves it."""
    workdir = root / name
    workdir.mkdir(parents=True)
    config = {
        "recipe": "eurosat", "variant": "", "mode": mode, "dataset": "eurosat_rgb", "student": "tiny_resnet_s",
        "teacher": "gn_resnet_m", "student_resolution": 64, "teacher_resolution": 64, "batch_size": BATCH,
        "steps": steps, "total_steps": steps, "epochs": 0.0, "num_train_examples": NUM_TRAIN, "temperature": 1.0,
        "mixup_p": 1.0, "learning_rate": 0.003, "weight_decay": 3e-4, "val_split": "validation", "test_split": "test",
        "train_split": "train", "data_dir": "/data/eurosat", "teacher_path": "/teachers/eurosat.keras", "backend": "jax",
        "eval_max_examples": 0, **config_overrides,
    }
    (workdir / "config.json").write_text(json.dumps(config, indent=2))
    lines = []
    for step, loss, val_acc, val_agree, test_acc, test_agree in history:
        record = {"step": step, "epoch": step * BATCH / NUM_TRAIN, "images_per_sec": 650.0, "wall_time": 1.7e9 + step,
                  "train_loss": loss, "train_agreement": 0.9, "train_accuracy": 0.8, "train_kl": loss}
        if val_acc is not None:
            record.update({"validation_accuracy": val_acc, "validation_agreement": val_agree, "validation_kl": loss / 2,
                           "test_accuracy": test_acc, "test_agreement": test_agree, "test_kl": loss / 2,
                           "teacher_validation_accuracy": 0.9125, "teacher_test_accuracy": 0.905})
        lines.append(json.dumps(record))
    (workdir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if final is not None:
        (workdir / "metrics.json").write_text(json.dumps({**final, "mode": mode}, indent=2))
    if evaluation is not None:
        (workdir / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
    if augmentations:
        rng = np.random.default_rng(0)
        batch = {"image": rng.uniform(-1, 1, (4, 16, 16, 3)), "teacher": rng.uniform(-1, 1, (4, 24, 24, 3))}
        mixed = {k: 0.7 * v + 0.3 * np.roll(v, 1, axis=0) for k, v in batch.items()}
        save_augmentation_grid(batch, mixed, workdir / "augmentations.png", max_images=4, mixup_coefficient=0.7)
    return workdir


class PageParser(html.parser.HTMLParser):
    """Collects image sources and table cells ({table id: [[(text, attrs), ...], ...]})."""

    def __init__(self):
        super().__init__()
        self.images, self.tables, self.stack = [], {}, []
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [[], attrs]

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> after {self.stack[-3:]}"
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(("".join(self._cell[0]).strip(), self._cell[1]))
            self._cell = None
        elif tag == "tr":
            if self._table is not None:
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0].append(data)


def parse_page(path: pathlib.Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    assert parser.stack == [], f"unclosed tags {parser.stack}"
    return parser


def assert_png(path: pathlib.Path, min_size=(100, 100)) -> Image.Image:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        image.load()  # decodes every pixel: a truncated file fails here
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], (path, image.size)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 5, f"{path} is blank"
    return image


def cells_by_key(parser: PageParser, table_id: str) -> dict[str, tuple[str, float]]:
    out = {}
    for row in parser.tables[table_id]:
        for text, attrs in row:
            if attrs.get("data-key") and attrs.get("data-value") is not None:
                out[attrs["data-key"]] = (text, float(attrs["data-value"]))
    return out


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A finished function-matching run and a shorter, unfinished fixed-teacher run; one report."""
    root = tmp_path_factory.mktemp("report")
    fm = write_workdir(root, "fm_600")
    fixed_history = [(100, 1.9, 0.5, 0.55, 0.48, 0.53), (200, 0.9, 0.65, 0.7, 0.62, 0.68), (300, 0.5, 0.66, 0.7, 0.64, 0.69)]
    fixed = write_workdir(root, "fixed_300", mode="fixed_teacher", history=fixed_history, final=None, evaluation=None,
                          augmentations=False, steps=600, eval_max_examples=64)
    page = write_report([fm, fixed], root / "out", title="EuroSAT: function matching vs fixed teacher")
    return root, page, parse_page(page)


def test_format_value_reads_metrics_by_key():
    assert format_value("test_accuracy", 0.83) == "83.00 %"
    assert format_value("validation_agreement_top5", 0.9975) == "99.75 %"
    assert format_value("gap", -0.25) == "-25.00 pp"
    assert format_value("test_kl", 0.234375) == "0.2344"
    assert format_value("ratios.params", 17.1) == "17.10×"
    assert format_value("fidelity.kl_mean", 0.5) == "0.5000"
    assert format_value("size_bytes", 3 * 2**20) == "3.00 MiB"
    assert format_value("latency.batch_1.throughput_images_per_sec", 355.5) == "355.5"
    assert format_value("cost.params", 18250) == "18,250"
    assert format_value("cost.flops_per_image", 41_000_000) == "41,000,000"
    assert format_value("cost.flops_per_image", 4.1e9) == "4.1 G"
    assert format_value("latency.batch_1.median_ms", 1.75) == "1.75"
    assert format_value("test_accuracy", float("nan")) == "n/a"
    assert format_value("test_accuracy", None) == "n/a"


def test_page_parses_and_every_image_is_a_real_png(two_runs):
    root, page, parser = two_runs
    out = page.parent
    assert page.name == "index.html"
    assert (out / "summary.md").exists()
    expected = {"comparison.png", "run1-fm_600-curves.png", "run1-fm_600-class-gaps.png",
                "run1-fm_600-augmentations.png", "run2-fixed_300-curves.png"}
    assert set(parser.images) == expected
    for source in parser.images:
        assert not source.startswith(("/", "http", "data:")), "images are relative files next to index.html"
        assert_png(out / source)
    # The copied grid is the workdir's own file.
    assert (out / "run1-fm_600-augmentations.png").read_bytes() == (root / "fm_600" / "augmentations.png").read_bytes()
    # Markdown links the same pictures and has the same tables (text columns left, numbers right).
    summary = (out / "summary.md").read_text()
    assert "| test | 83.00 % | 99.00 % | 89.25 % | 99.50 % | 0.2344 | 90.50 % | 99.75 % | 400 |" in summary
    assert "| fm_600 | function_matching | tiny_resnet_s | finished | 600 | 30 | test | 83.00 % |" in summary
    assert "|---|---|---|---|---:|---:|---|---:|" in summary
    for source in expected:
        assert f"]({source})" in summary


def test_final_metrics_in_page_equal_metrics_json(two_runs):
    _, _, parser = two_runs
    cells = cells_by_key(parser, "table-final-1")
    keys = [f"{split}_{suffix}" for split in ("validation", "test")
            for suffix in ("accuracy", "accuracy_top5", "agreement", "agreement_top5", "kl", "num_examples")]
    keys += [f"teacher_{split}_{suffix}" for split in ("validation", "test") for suffix in ("accuracy", "accuracy_top5")]
    for key in keys:
        assert cells[key][1] == FM_FINAL[key], key
    # What the reader sees, formatted.
    assert cells["test_accuracy"][0] == "83.00 %"
    assert cells["validation_agreement"][0] == "90.75 %"
    assert cells["test_kl"][0] == "0.2344"
    assert cells["teacher_test_accuracy"][0] == "90.50 %"
    assert cells["test_num_examples"][0] == "400"


def test_unfinished_run_reports_its_last_evaluation_and_says_so(two_runs):
    root, page, parser = two_runs
    cells = cells_by_key(parser, "table-final-2")
    assert cells["test_accuracy"] == ("64.00 %", 0.64)
    assert cells["validation_agreement"] == ("70.00 %", 0.7)
    text = page.read_text()
    assert "no metrics.json: the run has not finished (600 steps planned)" in text
    assert "the periodic evaluation at step 300" in text
    # The missing evaluation is named with the command that makes it.
    assert f"--json {root / 'fixed_300' / 'evaluation.json'}" in text
    assert "no augmentations.png" in text
    assert "periodic evaluations (the curves) used the first 64 examples of each split" in text
    assert text.count("periodic evaluations (the curves)") == 1  # the finished run evaluated full splits


def test_comparison_table_has_one_row_per_run(two_runs):
    _, _, parser = two_runs
    rows = parser.tables["table-comparison"]
    header = [text for text, _ in rows[0]]
    assert header[:7] == ["run", "mode", "student", "status", "steps", "epochs", "split"]
    body = rows[1:]
    assert [row[0][0] for row in body] == ["fm_600", "fixed_300"]
    assert [row[1][0] for row in body] == ["function_matching", "fixed_teacher"]
    by_column = [dict(zip(header, row)) for row in body]
    assert float(by_column[0]["accuracy"][1]["data-value"]) == 0.83
    assert float(by_column[0]["agreement"][1]["data-value"]) == 0.8925
    assert float(by_column[0]["KL(teacher ‖ student)"][1]["data-value"]) == 0.234375
    assert float(by_column[0]["teacher accuracy"][1]["data-value"]) == 0.905
    assert by_column[0]["epochs"][0] == "30"  # 600 steps · 100 / 2000
    assert by_column[0]["student − teacher"][0] == "-7.50 pp"
    assert float(by_column[1]["accuracy"][1]["data-value"]) == 0.64
    assert by_column[1]["steps"][0] == "300"
    assert [row[3][0] for row in body] == ["finished", "unfinished (300/600 steps)"]


def test_evaluation_numbers_in_page_equal_evaluation_json(two_runs):
    _, _, parser = two_runs
    cells = cells_by_key(parser, "table-evaluation-models-1")
    for model in ("student", "teacher"):
        block = EVALUATION[model]
        for key in ("accuracy_top1", "accuracy_top5", "ece", "params", "flops_per_image", "size_bytes", "resolution"):
            assert cells[f"{model}.{key}"][1] == block[key], (model, key)
        for batch in ("batch_1", "batch_64"):
            for key in ("median_ms", "throughput_images_per_sec"):
                assert cells[f"{model}.latency.{batch}.{key}"][1] == block["latency"][batch][key]
    assert cells["student.ece"][0] == "4.12 %"
    assert cells["teacher.accuracy_top1"][0] == "90.50 %"
    assert cells["teacher.params"][0] == "312,000"
    assert cells["teacher.size_bytes"][0] == "3.72 MiB"
    assert cells["student.size_bytes"][0] == "305.1 KiB"
    assert cells["student.latency.batch_64.throughput_images_per_sec"][0] == "2,844.4"
    shared = cells_by_key(parser, "table-evaluation-shared-1")
    assert shared["fidelity.agreement_top1"] == ("89.25 %", 0.8925)
    assert shared["fidelity.kl_mean"] == ("0.2344", 0.234375)
    assert shared["ratios.params"] == ("17.10×", 17.1)
    assert shared["ratios.size_bytes"] == ("12.48×", 12.48)
    assert shared["data.num_examples"] == ("400", 400)
    # Strings are shown, not lost: the shared table lists the device, the models' table names the paths.
    shared_text = {row[0][0]: row[1][0] for row in parser.tables["table-evaluation-shared-1"][1:]}
    assert shared_text["device"] == "cpu" and shared_text["schema"] == "funmatch.evaluate/1"


def test_class_gaps_worst_first_on_page(two_runs):
    _, _, parser = two_runs
    rows = parser.tables["table-class-gaps-1"][1:]
    # gaps: -0.025, +0.025, -0.25, -0.05, -0.075 -> worst first
    assert [row[0][0] for row in rows] == ["HerbaceousVegetation", "Industrial", "Highway", "AnnualCrop", "Forest"]
    assert [row[4][0] for row in rows] == ["-25.00 pp", "-7.50 pp", "-5.00 pp", "-2.50 pp", "+2.50 pp"]
    assert float(rows[0][2][1]["data-value"]) == 0.625 and float(rows[0][3][1]["data-value"]) == 0.875
    assert rows[0][1][0] == "80"


def test_class_gaps_from_per_model_lists_only():
    """Another layout: per-model per-class accuracy lists; the gaps are computed and sorted here."""
    evaluation = {"student": {"accuracy": 0.8, "per_class_accuracy": STUDENT_PER_CLASS},
                  "teacher": {"accuracy": 0.9, "per_class_accuracy": TEACHER_PER_CLASS},
                  "class_names": CLASS_NAMES}
    gaps = class_gaps(evaluation)
    assert [g["name"] for g in gaps] == ["HerbaceousVegetation", "Industrial", "Highway", "AnnualCrop", "Forest"]
    np.testing.assert_allclose([g["gap"] for g in gaps], [-0.25, -0.075, -0.05, -0.025, 0.025])
    assert class_gaps({"student": {"accuracy": 0.5}, "teacher": {"accuracy": 0.6}}) is None


def test_many_classes_show_the_worst(tmp_path):
    """60 classes: the table lists the worst 10, the chart the worst 40, and both say so."""
    gaps = [{"name": f"class_{i:02d}", "student": 0.5, "teacher": 0.5 + i / 100, "gap": -i / 100, "count": 5}
            for i in range(60)][::-1]
    table = class_gap_table(gaps, 1)
    assert [row[0].text for row in table.rows] == [f"class_{i:02d}" for i in range(59, 49, -1)]
    assert table.caption.startswith("the worst 10 of 60 classes")
    short = assert_png(plot_class_gaps(gaps[:10], tmp_path / "ten.png"))
    tall = assert_png(plot_class_gaps(gaps, tmp_path / "sixty.png"))
    # One bar row per shown class: 40 bars make the chart taller than 10, and no taller than 40 would.
    assert tall.size[1] > 2.5 * short.size[1]
    assert tall.size[1] == assert_png(plot_class_gaps(gaps[:40], tmp_path / "forty.png")).size[1]


def test_evaluation_without_teacher(tmp_path):
    """`funmatch evaluate` without --teacher: null teacher, fidelity, ratios and gaps."""
    evaluation = {**EVALUATION, "teacher": None, "fidelity": None, "ratios": None,
                  "per_class": [{**row, "teacher_accuracy": None, "gap": None} for row in EVALUATION["per_class"]]}
    gaps = class_gaps(evaluation)
    assert [g["name"] for g in gaps] == ["HerbaceousVegetation", "Highway", "AnnualCrop", "Industrial", "Forest"]
    workdir = write_workdir(tmp_path, "student_only", evaluation=evaluation, augmentations=False)
    page = write_report([workdir], tmp_path / "out")
    parser = parse_page(page)
    assert parser.images == ["run1-student_only-curves.png"]  # no gap chart without gaps
    assert [text for text, _ in parser.tables["table-evaluation-models-1"][0]] == ["metric", "student"]
    assert "fidelity.agreement_top1" not in cells_by_key(parser, "table-evaluation-shared-1")
    assert [row[4][0] for row in parser.tables["table-class-gaps-1"][1:]] == ["n/a"] * 5
    assert "evaluation.json was made without --teacher" in page.read_text()


def test_report_without_evaluation_renders_what_is_there(tmp_path):
    workdir = write_workdir(tmp_path, "bare", evaluation=None, augmentations=False)
    page = write_report([workdir], tmp_path / "out")
    parser = parse_page(page)
    assert parser.images == ["run1-bare-curves.png"]
    assert "table-comparison" not in parser.tables  # one run: no comparison
    assert "table-final-1" in parser.tables and "table-evaluation-models-1" not in parser.tables
    assert "no evaluation.json" in page.read_text()


def test_rerun_replaces_own_files_and_keeps_others(tmp_path):
    first, second = write_workdir(tmp_path, "a"), write_workdir(tmp_path, "b", augmentations=False)
    out = tmp_path / "out"
    write_report([first, second], out)
    (out / "notes.txt").write_text("mine")
    assert (out / "comparison.png").exists()
    page = write_report([second], out, title="only b")
    assert not (out / "comparison.png").exists() and not (out / "run1-a-curves.png").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert "<title>only b</title>" in page.read_text()
    assert sorted(json.loads((out / ".funmatch-report.json").read_text())["files"]) == sorted(
        ["run1-b-curves.png", "run1-b-class-gaps.png", "index.html", "summary.md"])


def test_out_dir_with_foreign_index_is_refused(tmp_path):
    workdir = write_workdir(tmp_path, "a", augmentations=False, evaluation=None)
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("<p>someone else's page</p>")
    with pytest.raises(FunmatchError, match=r"--out .*site: holds index.html not written by `funmatch report`"):
        write_report([workdir], out)
    assert (out / "index.html").read_text() == "<p>someone else's page</p>"


def test_missing_and_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(FunmatchError, match=r"workdir .*nowhere: no such directory"):
        load_run(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(FunmatchError, match=r"workdir .*empty: no metrics.jsonl or metrics.json"):
        write_report([empty], tmp_path / "out")
    broken = write_workdir(tmp_path, "broken", augmentations=False)
    lines = (broken / "metrics.jsonl").read_text().splitlines()
    (broken / "metrics.jsonl").write_text("\n".join(lines[:2] + ['{"step": 3'] + lines[2:]) + "\n")
    with pytest.raises(FunmatchError, match=r"broken/metrics.jsonl:3: not valid JSON"):
        load_run(broken)
    (broken / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 70')  # killed mid-append
    run = load_run(broken)
    assert [r["step"] for r in run.history] == [100, 200, 300, 400, 500, 600]
    assert any("truncated last line" in note for note in run.notes)
    (broken / "evaluation.json").write_text("{not json")
    with pytest.raises(FunmatchError, match=r"broken/evaluation.json: not valid JSON"):
        load_run(broken)


def test_resumed_run_logs_each_step_once(tmp_path):
    """A run killed after logging a chunk but before its checkpoint logs that chunk again on resume."""
    workdir = write_workdir(tmp_path, "resumed", augmentations=False)
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    repeated = json.loads(lines[2])
    repeated["train_loss"] = 0.75
    (workdir / "metrics.jsonl").write_text("\n".join(lines[:3] + [json.dumps(repeated)] + lines[3:]) + "\n")
    run = load_run(workdir)
    assert [r["step"] for r in run.history] == [100, 200, 300, 400, 500, 600]
    assert run.history[2]["train_loss"] == 0.75


def test_augmentation_grid_rows_and_columns(tmp_path):
    rng = np.random.default_rng(1)
    batch = {"image": rng.uniform(-1, 1, (10, 32, 32, 3)), "teacher": rng.uniform(-1, 1, (10, 48, 48, 3))}
    mixed = {k: 0.6 * v + 0.4 * np.roll(v, 1, axis=0) for k, v in batch.items()}
    path = save_augmentation_grid(batch, mixed, tmp_path / "grid.png", max_images=6)
    with_teacher = assert_png(path)
    path = save_augmentation_grid({"image": batch["image"]}, {"image": mixed["image"]}, tmp_path / "grid2.png", max_images=6)
    student_only = assert_png(path)
    # 4 rows (teacher, student, both mixed) vs 2 rows; 6 columns in both.
    assert with_teacher.size[0] == student_only.size[0]
    assert with_teacher.size[1] > 1.6 * student_only.size[1]
    with pytest.raises(ValueError, match=r"'image' must be \[B, H, W, 3\]"):
        save_augmentation_grid({"image": np.zeros((4, 8, 8))}, {}, tmp_path / "bad.png")


def test_cli_report_command(tmp_path, capsys):
    workdir = write_workdir(tmp_path, "cli_run", augmentations=False, evaluation=None)
    assert cli.main(["report", str(workdir), "--out", str(tmp_path / "out")]) == 0
    assert f"wrote {tmp_path / 'out' / 'index.html'}" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "funmatch report: error: workdir" in capsys.readouterr().err


def test_page_in_headless_chromium(two_runs, tmp_path):
    """Chromium renders the page; every image loads (naturalWidth > 0) and the screenshot is not blank.

    Needs Debian's chromium (`apt-get install -y chromium`). Without it the test fails when CI or
    FUNMATCH_REQUIRE_CHROMIUM is set, and is skipped (with the install command) elsewhere.
    """
    if not CHROMIUM.exists():
        message = "chromium not installed: apt-get update && apt-get install -y chromium"
        if os.environ.get("CI") or os.environ.get("FUNMATCH_REQUIRE_CHROMIUM"):
            pytest.fail(message + " (required under CI / FUNMATCH_REQUIRE_CHROMIUM)")
        pytest.skip(message)  # developer machines only; CI fails instead (above)
    _, page, parser = two_runs
    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2000"]
    # The rendered DOM after load, with a probe of every image's decoded size.
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace(
        "</body>",
        "<script>window.addEventListener('load', () => { const sizes = [...document.images]"
        ".map(i => i.complete && i.naturalWidth > 0 ? 'ok' : 'broken:' + i.getAttribute('src'));"
        " document.body.setAttribute('data-images', sizes.join(','));"
        " document.body.setAttribute('data-overflow', document.documentElement.scrollWidth > window.innerWidth); });"
        "</script></body>"))
    for source in parser.images:
        shutil.copyfile(page.parent / source, tmp_path / source)
    dom = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert f'data-images="{",".join(["ok"] * len(parser.images))}"' in dom.stdout, dom.stdout[-500:]
    assert 'data-overflow="false"' in dom.stdout, "the page is wider than a 1200 px window"
    screenshot = tmp_path / "screenshot.png"
    shot = subprocess.run(flags + [f"--screenshot={screenshot}", page.as_uri()], capture_output=True, text=True, timeout=60)
    assert shot.returncode == 0, shot.stderr[-2000:]
    image = assert_png(screenshot)
    assert image.size == (1200, 2000)


# ----------------------------------------------------------------------------------------------
# Training time, label runs, the first figure
# ----------------------------------------------------------------------------------------------

SECONDS_PER_STEP = 0.5  # the hand-written runs' training clock: train_seconds = 0.5 · step


def add_training_time(workdir: pathlib.Path, seconds_per_step: float = SECONDS_PER_STEP) -> None:
    """Give a hand-written workdir the training clocks every run now logs (and its metrics.json)."""
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    for record in lines:
        record.update(train_seconds=seconds_per_step * record["step"], train_cpu_seconds=2 * seconds_per_step * record["step"])
    (workdir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    if (workdir / "metrics.json").exists():
        final = json.loads((workdir / "metrics.json").read_text())
        final.update(train_seconds=seconds_per_step * final["step"], train_cpu_seconds=2 * seconds_per_step * final["step"])
        (workdir / "metrics.json").write_text(json.dumps(final))


# A label run as `funmatch teacher` writes it (the demo's reference student): the recipe's fields
# (3,000 distillation steps, mixup 1, teacher tiny_cnn...) plus the teacher_* fields it trained with.
LABEL_HISTORY = [(4000, 0.9, 0.70, None, 0.69, None), (8000, 0.6, 0.80, None, 0.79, None), (12000, 0.4, 0.86, None, 0.85, None)]
LABEL_FINAL = {"step": 12000, "steps": 12000, "mode": "labels", "arch": "tiny_cnn", "mixup_p": 0.0, "dataset": "eurosat_mini",
               "num_train_examples": 4000, "validation_accuracy": 0.865, "test_accuracy": 0.852, "test_num_examples": 400,
               "test_agreement": 0.878, "teacher_test_accuracy": 0.905}


def write_label_workdir(root: pathlib.Path, name: str = "labels") -> pathlib.Path:
    workdir = write_workdir(root, name, mode="labels", history=LABEL_HISTORY, final=LABEL_FINAL, evaluation=None,
                            augmentations=False, steps=3000, teacher="tiny_cnn", teacher_resolution=32, num_train_examples=0,
                            teacher_total_steps=12000, teacher_batch_size=128, teacher_mixup_p=0.0, teacher_optimizer="adam",
                            teacher_learning_rate=0.01, teacher_crop_area_min=5.0, epochs=30.0, total_steps=3000)
    add_training_time(workdir, seconds_per_step=0.02)
    return workdir


@pytest.fixture(scope="module")
def timed_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("timed")
    fm = write_workdir(root, "function_matching", dataset="eurosat_rgb")
    add_training_time(fm)
    labels = write_label_workdir(root)
    page = write_report([fm, labels], root / "out")
    return root, page, parse_page(page)


def test_first_figure_is_accuracy_against_training_time(timed_runs):
    from funmatch.reporting.figures import time_series

    root, page, parser = timed_runs
    assert parser.images[0] == "accuracy-vs-time.png"
    assert page.read_text().index("accuracy-vs-time.png") < page.read_text().index("comparison.png")
    assert_png(page.parent / "accuracy-vs-time.png", min_size=(900, 500))
    # The plotted series: each evaluated record at its train_seconds (minutes), ending at the final
    # full-split figure at the run's whole training time.
    fm, labels = load_run(root / "function_matching"), load_run(root / "labels")
    minutes, accuracy = time_series(fm, "test_accuracy")
    evaluated = [(step, test) for step, _, _, _, test, _ in FM_HISTORY if test is not None]
    np.testing.assert_allclose(minutes, [SECONDS_PER_STEP * step / 60 for step, _ in evaluated])
    np.testing.assert_allclose(accuracy, [test for _, test in evaluated[:-1]] + [FM_FINAL["test_accuracy"]])
    minutes, accuracy = time_series(labels, "test_accuracy")
    np.testing.assert_allclose(minutes, [0.02 * 4000 / 60, 0.02 * 8000 / 60, 0.02 * 12000 / 60])
    np.testing.assert_allclose(accuracy, [0.69, 0.79, 0.852])


def test_no_time_figure_without_training_time(tmp_path):
    workdir = write_workdir(tmp_path, "old_run", augmentations=False, evaluation=None)  # logged before train_seconds
    parser = parse_page(write_report([workdir], tmp_path / "out"))
    assert "accuracy-vs-time.png" not in parser.images


def test_label_run_settings_are_the_run_s_own(timed_runs):
    _, page, parser = timed_runs
    settings = {row[0][0]: row[1] for row in parser.tables["table-config-2"][1:]}
    assert settings["steps"][0] == "12,000"
    assert settings["mixup_p"][0] == "0"
    assert settings["model"][0] == "tiny_cnn" and settings["resolution"][0] == "32"
    assert settings["batch_size"][0] == "128" and settings["learning_rate"][0] == "0.01"
    assert settings["dataset"][0] == "eurosat_mini"
    assert settings["epochs (from steps)"][0] == "384.0"  # 12,000 · 128 / 4,000
    assert "temperature" not in settings and "teacher (agreement only)" in settings
    assert settings["training time"][0] == "4.0 min"  # 0.02 s · 12,000
    fm_settings = {row[0][0]: row[1][0] for row in parser.tables["table-config-1"][1:]}
    assert fm_settings["mixup_p"] == "1" and fm_settings["temperature"] == "1" and fm_settings["training time"] == "5.0 min"


def test_comparison_shows_training_time_and_the_label_run_as_finished(timed_runs):
    _, _, parser = timed_runs
    rows = parser.tables["table-comparison"]
    header = [text for text, _ in rows[0]]
    by_run = {row[0][0]: dict(zip(header, row)) for row in rows[1:]}
    assert by_run["labels"]["status"][0] == "finished"
    assert by_run["labels"]["steps"][0] == "12,000"
    assert float(by_run["labels"]["agreement"][1]["data-value"]) == 0.878
    assert by_run["labels"]["training time"][0] == "4.0 min"
    assert float(by_run["function_matching"]["training time"][1]["data-value"]) == SECONDS_PER_STEP * 600
    assert float(by_run["function_matching"]["CPU time"][1]["data-value"]) == 2 * SECONDS_PER_STEP * 600


def test_latency_ratio_spread_from_quartiles(tmp_path):
    evaluation = json.loads(json.dumps(EVALUATION))
    for model, (p25, p75) in (("student", (1.5, 2.0)), ("teacher", (6.0, 8.0))):
        evaluation[model]["latency"]["batch_1"].update(p25_ms=p25, p75_ms=p75)
    workdir = write_workdir(tmp_path, "spread", evaluation=evaluation, augmentations=False)
    parser = parse_page(write_report([workdir], tmp_path / "out"))
    shared = {row[0][0]: row[1][0] for row in parser.tables["table-evaluation-shared-1"][1:]}
    assert shared["ratios.latency_batch_1 spread"] == "3.00×–5.33×"  # 6 / 2 to 8 / 1.5
    assert "ratios.latency_batch_64 spread" not in shared  # no quartiles logged there


def test_augmentation_grid_names_what_each_mode_shows(tmp_path):
    from funmatch.reporting.figures import _SHARED_VIEW_ROW, augmentation_subtitle

    # fixed_teacher: the teacher does not see the student's view, and nothing is mixed.
    assert "= teacher view" not in _SHARED_VIEW_ROW["fixed_teacher"]
    assert augmentation_subtitle("fixed_teacher", False) == "no mixup; the teacher's targets: its eval view, computed once"
    assert augmentation_subtitle("consistent", False) == "no mixup"
    assert augmentation_subtitle("function_matching", True, 0.7) == "mixup: a = 0.70, image i mixed with image i−1"
    assert _SHARED_VIEW_ROW["function_matching"] == "student view\n= teacher view"
    assert _SHARED_VIEW_ROW["labels"] == "training view"
    rng = np.random.default_rng(2)
    assert_png(save_augmentation_grid({"image": rng.uniform(-1, 1, (4, 16, 16, 3))}, {}, tmp_path / "fixed.png",
                                      mode="fixed_teacher"))


def test_seconds_read_as_minutes():
    assert format_value("train_seconds", 246.0) == "4.1 min"
    assert format_value("train_cpu_seconds", 42.25) == "42.2 s"


def test_legends_name_the_mode_once_and_stored_targets(tmp_path):
    labels = load_run(write_label_workdir(tmp_path, "labels"))
    labels.label = "labels"
    assert labels.legend == "labels"  # not "labels (labels)"
    stored = write_workdir(tmp_path, "fm_store", final={**FM_FINAL, "targets": "stored"}, evaluation=None, augmentations=False)
    add_training_time(stored)
    run = load_run(stored)
    run.label = "fm_store"
    assert run.legend == "fm_store (function_matching, stored targets)"
    parser = parse_page(write_report([stored], tmp_path / "out"))
    assert parser.images[0] == "accuracy-vs-time.png"  # stored-target runs get the first figure too


def test_time_figure_uses_cpu_time_and_counts_the_targets_generation(tmp_path):
    """With every run's CPU clock, the figure's x-axis is CPU time; a run that recorded the generation of its
    stored targets starts after it (its curve shifted by exactly that time)."""
    from funmatch.reporting.figures import plot_accuracy_vs_time, time_series

    fm = write_workdir(tmp_path, "function_matching", dataset="eurosat_rgb")
    add_training_time(fm)
    final = json.loads((fm / "metrics.json").read_text())
    final.update(targets_cpu_seconds=90.0, targets_seconds=60.0)
    (fm / "metrics.json").write_text(json.dumps(final))
    run = load_run(fm)
    assert run.setup_time("train_cpu_seconds") == 90.0 and run.setup_time("train_seconds") == 60.0
    evaluated = [step for step, _, _, _, test, _ in FM_HISTORY if test is not None]
    minutes, _ = time_series(run, "test_accuracy", "train_cpu_seconds")
    np.testing.assert_allclose(minutes, [(90.0 + 2 * SECONDS_PER_STEP * step) / 60 for step in evaluated])
    labels = write_label_workdir(tmp_path)
    assert load_run(labels).setup_time("train_cpu_seconds") == 0.0
    assert_png(plot_accuracy_vs_time([run, load_run(labels)], tmp_path / "time.png"), min_size=(900, 500))


def test_three_runs_named_as_the_demo_names_them(tmp_path):
    """The demo's report: function matching and both label references on the first figure (CPU time), each
    run under the name given to it; a wrong list of names is one clear error."""
    from funmatch.errors import FunmatchError

    fm = write_workdir(tmp_path, "function_matching", dataset="eurosat_rgb", augmentations=False)
    add_training_time(fm)
    subset, everything = write_label_workdir(tmp_path, "labels_subset"), write_label_workdir(tmp_path, "labels_all")
    names = ["function matching", "labels on the 1,000 labelled images", "labels on all 4,900 images"]
    page = write_report([fm, subset, everything], tmp_path / "out", names=names)
    parser, text = parse_page(page), page.read_text(encoding="utf-8")
    assert parser.images[0] == "accuracy-vs-time.png"
    assert all(f">{name}<" in text for name in names)
    assert "labels_subset" not in text.replace("/labels_subset", "")  # the workdir's name is not the run's name
    for bad in (names[:2], [names[0]] * 3, [*names[:2], ""]):
        with pytest.raises(FunmatchError, match=r"report: need one distinct, non-empty name per workdir \(3\)"):
            write_report([fm, subset, everything], tmp_path / "bad", names=bad)
