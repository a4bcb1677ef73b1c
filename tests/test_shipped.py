"""Shipped models: `funmatch.models.load(NAME)` loads a shipped `.keras` by name, `funmatch models` lists them
with their card's numbers, and a shipped file that is not installed is a clear error."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from funmatch.errors import FunmatchError


@pytest.fixture
def fake_table(tmp_path, monkeypatch):
    """A shipped entry `tiny_shipped` pointing at a tiny model (+ card, + an int8 file) in tmp_path/assets."""
    from funmatch import models
    from funmatch.models import shipped

    folder = tmp_path / "assets" / "students"
    folder.mkdir(parents=True)
    model = models.create("tiny_cnn_w8", num_classes=3, resolution=16)
    random = np.random.default_rng(0)
    for variable in model.trainable_variables:
        variable.assign(random.normal(0, 0.3, variable.shape).astype(np.float32))
    models.save(model, folder / "tiny_shipped.keras")
    (folder / "tiny_shipped_int8.tflite").write_bytes(b"tflite")
    card = {"arch": "tiny_cnn_w8", "resolution": 16, "test_accuracy": 0.8125, "test_agreement": 0.875}
    (folder / "tiny_shipped.json").write_text(json.dumps(card))
    entry = {"folder": "students", "keras": "tiny_shipped.keras", "card": "tiny_shipped.json",
             "files": {"tflite-int8": "tiny_shipped_int8.tflite"}}
    monkeypatch.setattr(shipped, "SHIPPED", {"tiny_shipped": entry,
                                             "tiny_missing": {**entry, "keras": "none.keras", "card": "none.json"}})
    monkeypatch.setattr(shipped, "asset_path", lambda *parts: tmp_path.joinpath("assets", *parts))
    return model, folder


def test_load_by_name(fake_table, tmp_path, monkeypatch):
    from funmatch import models
    from funmatch.models import shipped

    model, folder = fake_table
    monkeypatch.chdir(tmp_path)  # a name, not a path: no file called tiny_shipped here
    loaded = models.load("tiny_shipped")
    assert models.contract(loaded)["arch"] == "tiny_cnn_w8"
    images = np.random.default_rng(1).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict_on_batch(images), model.predict_on_batch(images), atol=1e-6)
    assert shipped.shipped_file("tiny_shipped", "tflite-int8") == folder / "tiny_shipped_int8.tflite"
    with pytest.raises(FunmatchError, match=r"no onnx file \(it has: keras, tflite-int8\)"):
        shipped.shipped_file("tiny_shipped", "onnx")
    with pytest.raises(FunmatchError, match=r"shipped model 'tiny_missing': .*none.keras is not installed"):
        models.load("tiny_missing")
    with pytest.raises(FunmatchError, match="not_a_model: model file not found"):
        models.load("not_a_model")
    # A file of that name wins over the table.
    (tmp_path / "tiny_shipped").write_text("not a model")
    with pytest.raises(FunmatchError, match="tiny_shipped: not a .keras file"):
        models.load("tiny_shipped")


def test_models_command_lists_shipped(fake_table, capsys):
    from funmatch.cli import main

    assert main(["models", "--names", "tiny_*"]) == 0
    printed = capsys.readouterr().out
    assert "shipped (funmatch.models.load(NAME))" in printed
    (row,) = [line for line in printed.splitlines() if line.startswith("tiny_shipped ")]
    assert "tiny_cnn_w8" in row and "81.2 %" in row and "87.5 %" in row and " MB" in row
    assert "tiny_shipped.keras, tiny_shipped_int8.tflite" in row
    assert any(line.startswith("tiny_missing") and "(not installed)" in line for line in printed.splitlines())
    # The registry's tiny CNNs match the glob too and come first.
    assert printed.index("tiny_cnn_w8 ") < printed.index("shipped")
    assert main(["models", "--names", "zzz*"]) == 2


def test_real_table_loads_what_is_installed():
    """Every shipped entry either loads by name and matches its card, or says it is not installed."""
    from funmatch import models
    from funmatch.models import shipped

    assert "eurosat_student" in shipped.SHIPPED
    assert shipped.SHIPPED["eurosat_student"]["files"] == {"tflite-int8": "eurosat_student_int8.tflite"}
    rows = {row["name"]: row for row in shipped.list_shipped()}
    assert rows["eurosat_teacher"]["installed"]  # shipped since the teacher's card
    for name, row in rows.items():
        if row["installed"]:
            contract = models.contract(models.load(name))
            card = shipped.card(name)
            assert (contract["arch"], contract["resolution"]) == (card["arch"], card["resolution"])
            assert 0 < card["test_accuracy"] <= 1
            assert all(pathlib.Path(path).is_file() for path in row["files"].values())
        else:
            with pytest.raises(FunmatchError, match="is not installed"):
                models.load(name)
