"""The evaluation view a `.keras` carries, and cached teacher logits keyed by the file's content."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    import sys

    from funmatch.data.prepare import prepare

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent / "data"))
    from data_test_images import make_image_folder

    root = make_image_folder(tmp_path_factory.mktemp("src"), {"train": {"a": 2, "b": 2}, "test": {"a": 3, "b": 3}},
                             size=(20, 24))
    out = tmp_path_factory.mktemp("data") / "prepared"
    prepare(f"folder:{root}", out, progress=False, workers=1)
    return out


def _model(tmp_path, name, crop_fraction, seed=0):
    from funmatch import models
    from funmatch.training.checkpoints import atomic_save_keras

    model = models.create("tiny_cnn_w8", num_classes=2, resolution=16)
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
    atomic_save_keras(model, tmp_path / name, eval_crop_fraction=crop_fraction)
    return tmp_path / name


@pytest.mark.both_backends
def test_evaluate_uses_the_view_the_file_carries(tiny_data, tmp_path):
    from funmatch.evaluation import evaluate_models

    recorded = _model(tmp_path, "recorded.keras", 1.0)
    report = evaluate_models(recorded, data_dir=tiny_data, latency=False)
    assert "resize_small(16)|central_crop(16)" in report["student"]["eval_pp"]
    unrecorded = _model(tmp_path, "old.keras", None)
    report = evaluate_models(unrecorded, data_dir=tiny_data, latency=False)
    assert "resize_small(20)|central_crop(16)" in report["student"]["eval_pp"]  # the paper's 0.8
    report = evaluate_models(recorded, data_dir=tiny_data, latency=False, crop_fraction=0.5)
    assert "resize_small(32)" in report["student"]["eval_pp"]  # an explicit flag wins


def test_logits_cache_is_keyed_by_content_and_heals(tiny_data, tmp_path, capsys):
    from funmatch import models
    from funmatch.evaluation import cached_split_logits, eval_pp, model_key

    path = _model(tmp_path, "teacher.keras", None, seed=1)
    first_key = model_key(path)
    teacher = models.load(path)
    spec = eval_pp(16)
    first = cached_split_logits(teacher, first_key, tmp_path / "run", tiny_data, "test", spec, 4)
    # Another teacher written to the same path has another key: its logits are never the old ones.
    _model(tmp_path, "teacher.keras", None, seed=2)
    assert model_key(path) != first_key and model_key(path).startswith("teacher-")
    # A damaged cache file is computed again, with a note.
    cache = next((tmp_path / "run").glob(f"{first_key}_test_*_logits.npy"))
    cache.write_bytes(cache.read_bytes()[:40])
    again = cached_split_logits(teacher, first_key, tmp_path / "run", tiny_data, "test", spec, 4)
    np.testing.assert_allclose(again["logits"], first["logits"], rtol=1e-5)
    assert "not used (ValueError" in capsys.readouterr().err
    # A cache of the right shape whose values were changed (negated) fails its digest: computed again.
    np.save(cache, -np.load(cache))
    healed = cached_split_logits(teacher, first_key, tmp_path / "run", tiny_data, "test", spec, 4)
    np.testing.assert_allclose(healed["logits"], first["logits"], rtol=1e-5)
    assert "digest does not match" in capsys.readouterr().err
    reused = cached_split_logits(teacher, first_key, tmp_path / "run", tiny_data, "test", spec, 4)
    assert capsys.readouterr().err == "" and np.array_equal(reused["logits"], healed["logits"])
