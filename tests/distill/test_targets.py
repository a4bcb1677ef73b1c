"""Stored teacher targets: exactness (the teacher on regenerated views reproduces the store), the student's
view is the teacher's window, partner/coefficient distributions, the top-k rule, resumable generation, the
stream's view order and exact resume, and refusal of a store that does not fit the run."""

import io
import json
import pathlib
import shutil

import numpy as np
import pytest

from funmatch.errors import FunmatchError

REPO = pathlib.Path(__file__).resolve().parents[2]
MINI = REPO / "src" / "funmatch" / "assets" / "eurosat_mini"
CLASSES = ["000_annualcrop", "001_forest", "003_highway", "008_river"]


def _jpeg(array, quality=95):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _teacher(path, num_classes=4, resolution=64, seed=0):
    """A tiny random funmatch model (non-zero head, so its logits are informative), saved as .keras."""
    from funmatch import models

    model = models.create("tiny_cnn_w8", num_classes=num_classes, resolution=resolution)
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
    model.save(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 EuroSAT classes of the vendored mini set: 48 train / 12 validation / 20 test, record files of 16."""
    from funmatch.data.prepare import prepare

    source = tmp_path_factory.mktemp("targets_src")
    for split, count in {"train": 12, "validation": 3, "test": 5}.items():
        for class_dir in CLASSES:
            (source / split / class_dir).mkdir(parents=True)
            for f in sorted((MINI / split / class_dir).iterdir())[:count]:
                shutil.copy(f, source / split / class_dir / f.name)
    out = tmp_path_factory.mktemp("targets_data") / "data"
    prepare(f"folder:{source}", out, progress=False, examples_per_shard=16)
    return out


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return _teacher(tmp_path_factory.mktemp("targets_teacher") / "teacher.keras")


@pytest.fixture(scope="module")
def store(data, teacher, tmp_path_factory):
    from funmatch.distill import targets

    out = tmp_path_factory.mktemp("targets_store") / "store"
    card = targets.generate(teacher, data, out, views=3, batch_size=16, seed=5, progress=False)
    return out, card


def _stream(store_dir, data, batches, **kwargs):
    from funmatch.distill import targets

    dataset = targets.train_dataset(store_dir, data, kwargs.pop("batch_size", 8), **kwargs)
    return list(dataset.take(batches).as_numpy_iterator())


# ------------------------------------------------------------------------------------------------
# Storage rows


def test_full_rows_are_float16_log_probs_and_topk_keeps_ranking_and_mass():
    import tensorflow as tf

    from funmatch.distill import targets

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (6, 300)).astype(np.float32) + 40.0  # a shift changes nothing
    full = targets.encode_rows(logits[:, :100], "full", 0)
    assert full.dtype == np.float16 and full.shape == (6, 100)
    np.testing.assert_allclose(full, targets.log_softmax(logits[:, :100] - 40.0), rtol=2**-11, atol=1e-3)

    rows = targets.encode_rows(logits, "top_k", 10)
    assert rows.dtype.itemsize == 40  # 10 × (uint16 index + float16 value)
    restored = targets.decode_rows(rows, 300)
    probs = np.exp(restored.astype(np.float64))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=5e-3)
    exact = targets.log_softmax(logits)
    top = np.argsort(-exact, 1)[:, :10]
    np.testing.assert_array_equal(np.argsort(-restored, 1, kind="stable")[:, :10], top)  # ranking kept
    np.testing.assert_allclose(np.take_along_axis(restored, top, 1), np.take_along_axis(exact, top, 1), atol=2e-2)
    # The rest: the remaining probability spread uniformly over the other 290 classes, below the k-th.
    others = np.ones_like(restored, bool)
    np.put_along_axis(others, top, False, 1)
    rest = 1 - np.exp(np.take_along_axis(exact, top, 1).astype(np.float64)).sum(1)
    np.testing.assert_allclose(restored[others].reshape(6, 290), np.log(rest / 290)[:, None].repeat(290, 1), rtol=2e-2)
    assert np.all(restored[others].reshape(6, 290).max(1) <= np.take_along_axis(restored, top, 1).min(1))
    # The TensorFlow twin used by the input pipeline gives the same vectors.
    tf_restored = targets._tf_topk_to_log_probs(tf.constant(rows["index"].astype(np.int32)),
                                                 tf.constant(rows["value"].astype(np.float32)), 300)
    np.testing.assert_allclose(tf_restored.numpy(), restored, atol=1e-5)
    assert targets.storage_kind(128, None) == "full" and targets.storage_kind(129, None) == "top_k"


# ------------------------------------------------------------------------------------------------
# Exactness


@pytest.mark.both_backends
def test_teacher_on_regenerated_views_reproduces_the_stored_targets(store, data, teacher):
    from funmatch import models
    from funmatch.distill import targets

    store_dir, card = store
    assert card["complete"] and card["storage"] == "full" and card["views"] == 3
    assert card["bytes_per_target"] == 8 and card["bytes_per_view"] == 48 * 8
    model = models.load(teacher)
    seen_views = set()
    for batch in _stream(store_dir, data, 7, resolution=64, seed=1):  # a pass of 6 batches and one more
        recomputed = targets.log_softmax(np.asarray(model.predict_on_batch(batch["image"])))
        np.testing.assert_allclose(batch["teacher_logits"], recomputed, rtol=2e-3, atol=2e-3)
        # ... and they are the rows stored for (index, view).
        for index, view, row in zip(batch["index"], batch["view"], batch["teacher_logits"]):
            np.testing.assert_array_equal(row, targets.read_targets(store_dir, card, int(view))[index].astype(np.float32))
            seen_views.add(int(view))
    assert len(seen_views) == 2  # two passes, two different views


def test_topk_store_reproduces_the_teachers_top_k(data, teacher, tmp_path):
    from funmatch import models
    from funmatch.distill import targets

    card = targets.generate(teacher, data, tmp_path / "top2", views=1, top_k=2, batch_size=16, progress=False)
    assert card["storage"] == "top_k" and card["top_k"] == 2 and card["bytes_per_target"] == 8
    model = models.load(teacher)
    batch = _stream(tmp_path / "top2", data, 1, resolution=64)[0]
    recomputed = targets.log_softmax(np.asarray(model.predict_on_batch(batch["image"])))
    top = np.argsort(-recomputed, 1)[:, :2]
    np.testing.assert_allclose(np.take_along_axis(batch["teacher_logits"], top, 1),
                               np.take_along_axis(recomputed, top, 1), atol=4e-3)
    rest = 1 - np.exp(np.take_along_axis(recomputed, top, 1)).sum(1)
    others = np.ones_like(recomputed, bool)
    np.put_along_axis(others, top, False, 1)
    np.testing.assert_allclose(batch["teacher_logits"][others].reshape(-1, 2), np.log(rest / 2)[:, None].repeat(2, 1),
                               atol=1e-2)


def test_student_view_is_the_teachers_window(tmp_path):
    """A coordinate gradient (red = row, green = column): the 32 px student view is the 64 px teacher view of
    the same window, resized; and the window changes from view to view."""
    import tensorflow as tf

    from funmatch.distill import targets

    rows, cols = np.meshgrid(np.linspace(0, 255, 96), np.linspace(0, 255, 128), indexing="ij")
    image = np.stack([rows, cols, np.full_like(rows, 128)], -1).round().astype(np.uint8)
    record = {"image": tf.constant(_jpeg(image, 100)), "label": tf.constant(0, tf.int64),
              "id": tf.constant(b"x"), "index": tf.constant(0, tf.int64)}
    card = {"seed": 3, "mixup_p": 0.0, "mode": "consistent", "view_spec": targets.view_spec()}
    teacher_maker, student_maker = targets.ViewMaker(card, 64), targets.ViewMaker(card, 32)
    means = set()
    for view in range(6):
        big = teacher_maker.mixed(record, record, 7, 7, view).numpy()
        small = student_maker.mixed(record, record, 7, 7, view).numpy()
        assert big.shape == (64, 64, 3) and small.shape == (32, 32, 3)
        downscaled = tf.image.resize(big, (32, 32), method="area").numpy()
        np.testing.assert_allclose(small, downscaled, atol=0.05)  # [-1, 1] scale: a few levels of 255
        means.add((round(float(big[..., 0].mean()), 2), round(float(big[..., 1].mean()), 2)))
    assert len(means) == 6


def test_partners_and_coefficients_follow_online_function_matching(store):
    """Partners: another example, a bijection per view, different across views. Coefficients: folded
    Beta(p, p), the distribution of online mixup's coefficient (two-sample KS test against it)."""
    import keras
    from scipy import stats

    from funmatch.distill import targets
    from funmatch.distill.mixup import symmetric_beta

    _, card = store
    n = card["data"]["num_examples"]
    for view in range(3):
        partners = [targets.partner_and_coefficient(card, i, view)[0] for i in range(n)]
        assert sorted(partners) == list(range(n)) and all(j != i for i, j in enumerate(partners))
    assert len(set(card["partner_shifts"])) == 3
    import tensorflow as tf

    for p in (1.0, 0.4):
        rngs = tf.random.experimental.stateless_split(tf.constant([1, 2], tf.int64), 1500)
        stored = np.array([float(targets.folded_beta(p, rng)) for rng in rngs])
        online = np.asarray(keras.ops.convert_to_numpy(symmetric_beta(p, keras.random.SeedGenerator(3), (1500,))))
        online = np.maximum(online, 1 - online)
        assert stored.min() >= 0.5 and stored.max() <= 1.0
        assert stats.ks_2samp(stored, online).pvalue > 1e-3, p
        folded_cdf = lambda x, p=p: 2 * stats.beta.cdf(x, p, p) - 1  # noqa: E731
        assert stats.kstest(stored, folded_cdf).pvalue > 1e-3, p
    # p = 0 (consistent): no mixup.
    assert float(targets.folded_beta(0.0, rngs[0])) == 1.0


# ------------------------------------------------------------------------------------------------
# The stream: a new view each pass, exact resume


def test_each_pass_takes_a_new_view_and_every_example_once(store, data):
    from funmatch.distill import targets

    store_dir, _ = store
    batches = _stream(store_dir, data, 6 * 7, resolution=32, seed=2, batch_size=8)  # 7 passes over 48 examples
    views = [int(b["view"][0]) for b in batches[::6]]
    for batch_group in range(7):
        group = batches[6 * batch_group: 6 * batch_group + 6]
        assert sorted(np.concatenate([b["index"] for b in group]).tolist()) == list(range(48))
        assert {int(v) for b in group for v in b["view"]} == {views[batch_group]}
    assert sorted(views[:3]) == [0, 1, 2] and sorted(views[3:6]) == [0, 1, 2]  # a permutation per cycle
    assert batches[0]["image"].shape == (8, 32, 32, 3) and batches[0]["teacher_logits"].shape == (8, 4)
    assert [int(targets.view_of_epoch(2, 3, e)) for e in range(7)] == views


def test_stream_resumes_exactly_at_any_step(store, data):
    store_dir, _ = store
    straight = _stream(store_dir, data, 10, resolution=32, seed=4, batch_size=8)
    resumed = _stream(store_dir, data, 3, resolution=32, seed=4, batch_size=8, start_step=7)
    for a, b in zip(straight[7:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_processes_split_the_examples(store, data):
    store_dir, _ = store
    shares = [_stream(store_dir, data, 3, resolution=32, batch_size=8, process_index=p, process_count=2)
              for p in range(2)]
    indices = [np.concatenate([b["index"] for b in share]) for share in shares]
    assert sorted(np.concatenate(indices).tolist()) == list(range(48))
    assert all(np.all(i % 2 == p) for p, i in enumerate(indices))


# ------------------------------------------------------------------------------------------------
# The view cache: each view decoded once per pass, the same bits


def _assert_same_bits(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert sorted(a) == sorted(b)
        for key in a:
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
            np.testing.assert_array_equal(a[key].view(np.uint8), b[key].view(np.uint8), err_msg=key)


def test_view_cache_yields_the_same_batches_bit_for_bit(store, data, caplog):
    """With the decoded cache and the view cache (the default), the view cache alone, and neither: the same
    batches (images, targets, labels, indices, views) over several passes, and from a resumed step."""
    import logging

    store_dir, _ = store
    with caplog.at_level(logging.INFO, logger="funmatch.targets"):
        cached = _stream(store_dir, data, 13, resolution=32, seed=6, batch_size=8)  # 2 passes and one more batch
    assert any("each view decoded once per pass" in r.getMessage() for r in caplog.records)
    assert any("each image decoded once for all of its views" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="funmatch.targets"):
        undecoded = _stream(store_dir, data, 13, resolution=32, seed=6, batch_size=8, decoded_cache_max_bytes=0)
    assert any("decoded cache: off" in r.getMessage() for r in caplog.records)
    _assert_same_bits(cached, undecoded)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="funmatch.targets"):
        plain = _stream(store_dir, data, 13, resolution=32, seed=6, batch_size=8, view_cache_max_bytes=0)
    assert any("not used" in r.getMessage() and "decoded twice" in r.getMessage() for r in caplog.records)
    _assert_same_bits(cached, plain)
    assert len({int(b["view"][0]) for b in cached}) == 3  # the views of three passes
    resumed = _stream(store_dir, data, 4, resolution=32, seed=6, batch_size=8, start_step=9)
    _assert_same_bits(cached[9:], resumed)


def test_holding_every_view_yields_the_same_batches(store, data, caplog):
    """A run that makes more passes than the store has views (K = 3; 40 batches of 8 over 48 examples: 7
    passes) holds every view once made: the same batches as the pass-by-pass cache, from a resumed step too."""
    import logging

    store_dir, card = store
    n = int(card["data"]["num_examples"])
    per_pass = _stream(store_dir, data, 40, resolution=32, seed=6, batch_size=8)
    with caplog.at_level(logging.INFO, logger="funmatch.targets"):
        held = _stream(store_dir, data, 40, resolution=32, seed=6, batch_size=8, steps=40)
    assert any(f"every view held: 3 views x {n:,} examples" in r.getMessage() and "run's 7 passes" in r.getMessage()
               for r in caplog.records)
    _assert_same_bits(per_pass, held)
    assert len({int(b["view"][0]) for b in held}) == 3  # every view read, most of them twice
    resumed = _stream(store_dir, data, 15, resolution=32, seed=6, batch_size=8, start_step=25, steps=40)
    _assert_same_bits(per_pass[25:], resumed)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="funmatch.targets"):  # 3 passes over 3 views: nothing to hold
        _stream(store_dir, data, 1, resolution=32, seed=6, batch_size=8, steps=18)
    assert any("every view held: not used (3 passes over 3 stored views" in r.getMessage() for r in caplog.records)


def test_every_view_plan_needs_more_passes_than_views_and_respects_its_cap():
    from funmatch.distill import targets

    card = {"seed": 0, "mixup_p": 1.0, "mode": "function_matching", "view_spec": targets.view_spec(), "views": 4,
            "data": {"num_examples": 500}}
    per_pass = 500 * 32 * 32 * 3  # uint8 32 px views
    plan = targets.every_view_plan(card, 32, passes=9, max_bytes=(4 + 2) * per_pass)
    assert plan["use"] and plan["bytes"] == 6 * per_pass and "made once for the run's 9 passes" in plan["reason"]
    assert not targets.every_view_plan(card, 32, passes=9, max_bytes=6 * per_pass - 1)["use"]
    assert not targets.every_view_plan(card, 32, passes=4)["use"]  # K = 4: no view would be made twice
    assert not targets.every_view_plan(card, 32, passes=None)["use"]
    assert not targets.every_view_plan(card, 32, passes=9, process_count=2)["use"]
    assert not targets.every_view_plan({**card, "mode": "consistent", "mixup_p": 0.0}, 32, passes=9)["use"]


def test_view_cache_views_for_the_teacher_are_the_same_bits(store, data):
    """Generation's views, with the cache and without, for units in any order (runs of one view)."""
    from funmatch.distill import targets

    _, card = store
    units = [(1, 2), (0, 0), (0, 2), (2, 1), (1, 0)]
    plain = list(targets.views_dataset(card, data, units, 64, 16).as_numpy_iterator())
    cached = list(targets.views_dataset(card, data, units, 64, 16, view_cache=True).as_numpy_iterator())
    _assert_same_bits(plain, cached)
    assert [int(v) for b in cached for v in b["view"][::16]] == [1, 0, 0, 2, 1]
    from funmatch.distill.targets.decoded import decoded_views_dataset  # every image decoded once

    _assert_same_bits(plain, list(decoded_views_dataset(card, data, units, 64, 16).as_numpy_iterator()))
    maker = targets.ViewMaker(card, 64)  # ... and they are the per-example views of the store's definition
    record = next(iter(targets._records_from([str(data / f) for f in card["data"]["files"]],
                                             card["data"]["file_starts"], 48, 32, 1)))
    j, _ = targets.partner_and_coefficient(card, 32, 1)
    partner = next(iter(targets._records_from([str(data / f) for f in card["data"]["files"]],
                                              card["data"]["file_starts"], 48, j, 1)))
    one = maker.mixed(targets._parse(record), targets._parse(partner), 32, j, 1).numpy()
    np.testing.assert_array_equal(one.view(np.uint8), cached[0]["image"][0].view(np.uint8))


def test_generation_with_and_without_the_view_cache_stores_the_same_bits(store, data, teacher, tmp_path, capsys):
    """The default (every image decoded once for its K views), the pass's view cache, and one decode per
    view: the same stored bits."""
    from funmatch.distill import targets

    store_dir, card = store  # generated with the default: the decoded cache, no view cache
    cached = targets.generate(teacher, data, tmp_path / "cached", views=3, batch_size=16, seed=5, progress=True,
                              view_cache_max_bytes=targets.VIEW_CACHE_MAX_BYTES, decoded_cache_max_bytes=0)
    assert "each view decoded once per pass" in capsys.readouterr().err
    plain = targets.generate(teacher, data, tmp_path / "plain", views=3, batch_size=16, seed=5, progress=True,
                             decoded_cache_max_bytes=0)
    err = capsys.readouterr().err
    assert "view cache: not used" in err and "decoded cache: off" in err
    for view in range(3):
        for other, other_card in ((tmp_path / "cached", cached), (tmp_path / "plain", plain)):
            np.testing.assert_array_equal(targets.read_targets(store_dir, card, view).view(np.uint8),
                                          targets.read_targets(other, other_card, view).view(np.uint8))
    targets.generate(teacher, data, tmp_path / "default", views=1, batch_size=16, seed=5, progress=True)
    assert "each image decoded once for all of its views" in capsys.readouterr().err


def test_a_format_1_store_is_read_with_its_own_crop_decoded_views(data, teacher, tmp_path, caplog):
    """Format 1 cut its views from crop-decoded JPEGs: such a store is still read bit for bit with its own
    views (no decoded cache), and fits a run whose template is format 2's."""
    import logging

    from funmatch import models
    from funmatch.distill import targets

    old = targets.view_spec().replace("decode|inception_crop(", "decode_jpeg_and_inception_crop(")
    out = tmp_path / "v1"
    targets.generate(teacher, data, out, views=2, batch_size=16, seed=5, view_template=old, progress=False)
    written = json.loads((out / "targets.json").read_text())
    (out / "targets.json").write_text(json.dumps({**written, "format": "funmatch-targets/1"}))
    card = targets.load_card(out)
    targets.check_card(card, teacher_path=teacher, data_dir=data, num_classes=4, mode="function_matching",
                       view_template=targets.view_spec(), teacher_resolution=64, mixup_p=1.0, split="train",
                       targets_dir=out)
    with caplog.at_level(logging.INFO, logger="funmatch.targets"):
        batches = _stream(out, data, 7, resolution=64, seed=1)
    assert any("crop-decoded" in r.getMessage() for r in caplog.records)
    model = models.load(teacher)
    for batch in batches:
        recomputed = targets.log_softmax(np.asarray(model.predict_on_batch(batch["image"])))
        np.testing.assert_allclose(batch["teacher_logits"], recomputed, rtol=2e-3, atol=2e-3)
    (out / "targets.json").write_text(json.dumps({**written, "format": "funmatch-targets/0"}))
    with pytest.raises(FunmatchError, match="re-run `funmatch targets`"):
        targets.load_card(out)


def test_view_cache_plan_respects_its_cap_and_says_why():
    from funmatch.distill import targets

    card = {"seed": 0, "mixup_p": 1.0, "mode": "function_matching", "view_spec": targets.view_spec(),
            "data": {"num_examples": 1000}}
    held = 3 * 1000 * 32 * 32 * 3  # three passes of uint8 32 px views
    plan = targets.view_cache_plan(card, 32, max_bytes=held)
    assert plan["use"] and plan["bytes"] == held and "each view decoded once" in plan["reason"]
    over = targets.view_cache_plan(card, 32, max_bytes=held - 1)
    assert not over["use"] and "> cap" in over["reason"] and "decoded twice" in over["reason"]
    assert targets.view_cache_plan(card, 64)["bytes"] == 4 * held
    assert targets.VIEW_CACHE_MAX_BYTES == 1 << 30 and targets.view_cache_plan(card, 32)["max_bytes"] == 1 << 30
    big = {**card, "data": {"num_examples": 1_281_167}}  # ImageNet at 224 px: far over the default cap
    assert not targets.view_cache_plan(big, 224)["use"]
    assert not targets.view_cache_plan(card, 32, process_count=2)["use"]
    assert not targets.view_cache_plan(card, 32, examples_needed=499)["use"]
    assert targets.view_cache_plan(card, 32, examples_needed=500)["use"]
    assert not targets.view_cache_plan({**card, "mode": "consistent", "mixup_p": 0.0}, 32)["use"]
    no_size = {**card, "view_spec": "decode_jpeg_and_inception_crop()|flip_lr|value_range(-1, 1)"}
    assert not targets.view_cache_plan(no_size, 32)["use"]


# ------------------------------------------------------------------------------------------------
# Generation: resumable, split over processes; the card


def test_generation_is_split_over_processes_and_resumes(data, teacher, tmp_path):
    from funmatch.distill import targets

    out = tmp_path / "store"
    first = targets.generate(teacher, data, out, views=2, batch_size=16, process_index=0, process_count=2,
                             progress=False)
    assert not first["complete"] and not json.loads((out / "targets.json").read_text())["complete"]
    written = sorted(out.glob("view-*/*.npy"))
    assert len(written) == 3  # units 0, 2, 4 of 2 views × 3 record files
    stamps = {p: p.stat().st_mtime_ns for p in written}
    (out / "view-00001" / ".train-00001.npy.junk.tmp").write_bytes(b"half")  # a killed write
    card = targets.generate(teacher, data, out, views=2, batch_size=16, progress=False)
    assert card["complete"] and len(list(out.glob("view-*/*.npy"))) == 6
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # done units are not recomputed
    assert card["generation_seconds"] > 0 and card["processes"] == 1
    # The same store from one straight run is identical.
    straight = targets.generate(teacher, data, tmp_path / "straight", views=2, batch_size=16, progress=False)
    for view in range(2):
        np.testing.assert_array_equal(targets.read_targets(out, card, view),
                                      targets.read_targets(tmp_path / "straight", straight, view))
    with pytest.raises(FunmatchError, match=r"other settings \(views"):
        targets.generate(teacher, data, out, views=3, batch_size=16, progress=False)


def test_card_records_what_makes_the_targets(store, data, teacher):
    from funmatch.distill import targets

    _, card = store
    assert card["teacher"]["sha256"] == targets.file_sha256(teacher)
    assert card["data"]["card_sha256"] == targets.dataset_card_sha256(data)
    assert card["view_spec"] == "decode|inception_crop({resolution})|flip_lr|value_range(-1, 1)"
    assert card["format"] == targets.FORMAT == "funmatch-targets/2"
    assert (card["seed"], card["views"], card["num_classes"], card["teacher"]["resolution"]) == (5, 3, 4, 64)
    assert card["data"]["file_sizes"] == [16, 16, 16] and card["mixup_p"] == 1.0


def test_a_store_that_does_not_fit_the_run_is_refused(store, data, teacher, tmp_path):
    from funmatch.distill import targets

    store_dir, card = store
    fits = dict(teacher_path=teacher, data_dir=data, num_classes=4, mode="function_matching",
                view_template=targets.view_spec(), teacher_resolution=64, mixup_p=1.0, split="train",
                targets_dir=store_dir)
    targets.check_card(card, **fits)  # the run it was made for
    other_teacher = _teacher(tmp_path / "other.keras", seed=1)
    other_data = tmp_path / "other_data"
    shutil.copytree(data, other_data)
    data_card = json.loads((other_data / "dataset.json").read_text())
    data_card["name"] = "another"
    (other_data / "dataset.json").write_text(json.dumps(data_card))
    cases = [
        (dict(teacher_path=other_teacher), "computed with another teacher"),
        (dict(data_dir=other_data), "computed on other data"),
        (dict(num_classes=5), "4 classes, the run has 5"),
        (dict(view_template=targets.view_spec(30)), "pp spec"),
        (dict(teacher_resolution=128), "teacher resolution 64, the run's is 128"),
        (dict(mixup_p=0.5), "mixup p 1, the run's is 0.5"),
        (dict(mode="consistent"), "stored for mode 'function_matching'"),
        (dict(split="validation"), "computed on split 'train'"),
    ]
    for change, message in cases:
        with pytest.raises(FunmatchError) as info:
            targets.check_card(card, **{**fits, **change})
        assert message in str(info.value), (change, str(info.value))
    with pytest.raises(FunmatchError) as info:  # one line per mismatch
        targets.check_card(card, **{**fits, "teacher_path": other_teacher, "data_dir": other_data})
    assert len(str(info.value).splitlines()) == 3
    with pytest.raises(FunmatchError, match="not complete"):
        targets.check_card({**card, "complete": False}, **fits)


# ------------------------------------------------------------------------------------------------
# The distillation run on stored targets, the command, tuning


SMOKE = "eurosat:smoke=true,student=tiny_cnn_w8"


def _weights(path):
    from funmatch import models

    return [np.asarray(w) for w in models.load(path).get_weights()]


@pytest.fixture(scope="module")
def recipe_store(data, teacher, tmp_path_factory):
    """`funmatch targets` for the smoke recipe: K = 2 function-matching views (through the command)."""
    from funmatch.cli import main

    out = tmp_path_factory.mktemp("recipe_store") / "store"
    assert main(["targets", "--teacher", str(teacher), "--data", str(data), "--config", SMOKE, "--views", "2",
                 "--out", str(out), "--no-progress"]) == 0
    return out


def test_distill_on_stored_targets_resumes_exactly_and_says_so(data, teacher, recipe_store, tmp_path, capsys):
    from funmatch.training.distill import distill

    config = SMOKE + ",total_steps=8,checkpoint_every=4,eval_every=1000"
    straight = tmp_path / "straight"
    metrics = distill(config, data, teacher, straight, targets=recipe_store, progress=False)
    assert metrics["targets"] == "stored" and metrics["mode"] == "function_matching" and metrics["step"] == 8
    assert np.isfinite(metrics["test_kl"]) and json.loads((straight / "config.json").read_text())["targets_dir"]
    # Interrupted after step 4 (the last checkpoint and the outputs gone), then resumed: the same weights.
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "ckpt-000000008")
    (resumed / "student.keras").unlink()
    # ... on another machine, where the data and the store lie at other paths (their cards are the same).
    elsewhere = tmp_path / "elsewhere"
    moved_data, moved_store = shutil.copytree(data, elsewhere / "data"), shutil.copytree(recipe_store, elsewhere / "store")
    distill(config, moved_data, teacher, resumed, targets=moved_store, progress=False)
    for a, b in zip(_weights(straight / "student.keras"), _weights(resumed / "student.keras")):
        np.testing.assert_array_equal(a, b)
    # Online function matching on the same recipe says so too.
    online = distill(SMOKE, data, teacher, tmp_path / "online", progress=False)
    assert online["targets"] == "online"


def test_distill_refuses_a_store_made_for_another_teacher_or_mode(data, teacher, recipe_store, tmp_path):
    from funmatch.training.distill import distill

    other = _teacher(tmp_path / "other.keras", seed=3)
    with pytest.raises(FunmatchError, match="computed with another teacher"):
        distill(SMOKE, data, other, tmp_path / "a", targets=recipe_store, progress=False)
    with pytest.raises(FunmatchError, match="mixup p 1, the run's is 0.5"):
        distill(SMOKE + ",mixup_p=0.5", data, teacher, tmp_path / "b", targets=recipe_store, progress=False)
    with pytest.raises(FunmatchError, match="mode 'independent' cannot use stored targets"):
        distill(SMOKE, data, teacher, tmp_path / "c", mode="independent", targets=recipe_store, progress=False)
    assert not any((tmp_path / name).exists() for name in "abc")


def test_tuning_trials_read_the_store_when_it_holds_their_views(data, teacher, recipe_store, tmp_path):
    from funmatch.configs import get_config
    from funmatch.training import targets as stored_targets
    from funmatch.tuning.tuner import distill_run_fn

    assert stored_targets.fits(recipe_store, get_config(SMOKE))
    assert not stored_targets.fits(recipe_store, get_config(SMOKE + ",mixup_p=0.5"))
    assert not stored_targets.fits(recipe_store, get_config(SMOKE + ",mode=fixed_teacher"))
    run = distill_run_fn(data, teacher, recipe_store)
    run(get_config(SMOKE), tmp_path / "trial_a")
    run(get_config(SMOKE + ",mixup_p=0.5"), tmp_path / "trial_b")
    kinds = [json.loads((tmp_path / t / "metrics.json").read_text())["targets"] for t in ("trial_a", "trial_b")]
    assert kinds == ["stored", "online"]


# ------------------------------------------------------------------------------------------------
# Stores that know what they are: the card's digest, the run's resolution, the temperature served


def test_an_edited_card_is_refused_naming_the_field(store, tmp_path):
    from funmatch.distill import targets

    store_dir, _ = store
    written = json.loads((store_dir / "targets.json").read_text())
    assert targets.load_card(store_dir)["digest"] == written["digest"]  # the card as written reads
    for field, change in (("seed", lambda c: {**c, "seed": c["seed"] + 1}),
                          ("partner_shifts", lambda c: {**c, "partner_shifts": c["partner_shifts"][::-1]}),
                          ("data.file_sizes", lambda c: {**c, "data": {**c["data"], "file_sizes": [17, 15, 16]}}),
                          ("teacher.resolution", lambda c: {**c, "teacher": {**c["teacher"], "resolution": 32}})):
        edited = tmp_path / field
        edited.mkdir()
        (edited / "targets.json").write_text(json.dumps(change(written)))
        with pytest.raises(FunmatchError) as info:
            targets.load_card(edited)
        message = str(info.value)
        assert len(message.splitlines()) == 1 and "targets.json" in message and f": {field} changed" in message
    moved = tmp_path / "moved"  # another machine: paths differ, the digest does not cover them
    moved.mkdir()
    (moved / "targets.json").write_text(json.dumps({**written, "data": {**written["data"], "path": "/elsewhere"}}))
    targets.load_card(moved)
    (moved / "targets.json").write_text(json.dumps({k: v for k, v in written.items() if k != "digest"}))
    with pytest.raises(FunmatchError, match="no digest"):
        targets.load_card(moved)


def test_the_store_is_made_at_the_runs_teacher_resolution(data, teacher, tmp_path):
    """A 64 px teacher and a recipe whose teacher_resolution is 32: the store holds 32 px targets (the
    same weights at 32 px, as the online run feeds them) and the run with the same config accepts it."""
    from funmatch import models
    from funmatch.configs import get_config
    from funmatch.distill import targets
    from funmatch.training import targets as stored_targets

    config = get_config(SMOKE + ",teacher_resolution=32")
    card = stored_targets.generate_for_config(config, teacher, data, tmp_path / "s32", views=1, progress=False)
    assert card["teacher"]["resolution"] == 32 and card["teacher"]["own_resolution"] == 64
    stored_targets.check_for_run(tmp_path / "s32", config, teacher_path=teacher, data_dir=data, num_classes=4)
    with pytest.raises(FunmatchError, match="teacher resolution 32, the run's is 64"):
        stored_targets.check_for_run(tmp_path / "s32", get_config(SMOKE), teacher_path=teacher, data_dir=data,
                                     num_classes=4)
    small = models.with_resolution(models.load(teacher), 32)
    batch = _stream(tmp_path / "s32", data, 1, resolution=32, batch_size=16)[0]
    recomputed = targets.log_softmax(np.asarray(small.predict_on_batch(batch["image"])))
    np.testing.assert_allclose(batch["teacher_logits"], recomputed, rtol=2e-3, atol=2e-3)


def test_a_top_k_store_serves_only_its_own_temperature(store, data, teacher, tmp_path):
    from funmatch.configs import get_config
    from funmatch.distill import targets
    from funmatch.training import targets as stored_targets

    store_dir, card = store
    top = stored_targets.generate_for_config(get_config(SMOKE), teacher, data, tmp_path / "top2", views=1, top_k=2,
                                             progress=False)
    assert targets.store_serves_temperature(card, 1.0) and targets.store_serves_temperature(card, 5.0)
    assert targets.store_serves_temperature(top, 1.0) and not targets.store_serves_temperature(top, 2.0)
    run = dict(teacher_path=teacher, data_dir=data, num_classes=4, mode="function_matching",
               view_template=targets.view_spec(), teacher_resolution=64, mixup_p=1.0, split="train")
    targets.check_card(card, **run, temperature=5.0)  # full rows: every temperature
    run["view_template"] = stored_targets.teacher_view(get_config(SMOKE), "function_matching")
    targets.check_card(top, **run, temperature=1.0)
    with pytest.raises(FunmatchError) as info:
        targets.check_card(top, **run, temperature=2.0)
    assert "top-2 targets are exact only at temperature 1, the run's is 2" in str(info.value)
    assert len(str(info.value).splitlines()) == 2  # the heading and the one mismatch
    assert stored_targets.fits(tmp_path / "top2", get_config(SMOKE))
    assert not stored_targets.fits(tmp_path / "top2", get_config(SMOKE + ",temperature=2"))


def test_the_record_pair_shuffle_is_bounded_in_bytes(store, data, caplog):
    """Without the view cache the shuffle holds undecoded record pairs: at most `shuffle_max_bytes` of them
    (said in the log); every example still comes once per pass."""
    import logging

    from funmatch.distill.targets.stream import SHUFFLE_MAX_BYTES, shuffle_buffer_plan

    store_dir, card = store
    paths = [str(data / f) for f in card["data"]["files"]]
    per_pair = 2 * sum(pathlib.Path(p).stat().st_size for p in paths) / 48 + 8
    assert shuffle_buffer_plan(paths, 48, 48, 8)["buffer"] == 48 and SHUFFLE_MAX_BYTES == 1 << 30
    plan = shuffle_buffer_plan(paths, 48, 48, 8, max_bytes=int(10.5 * per_pair))
    assert plan["buffer"] == 10 and "> cap" in plan["reason"]
    with caplog.at_level(logging.INFO, logger="funmatch.targets"):
        batches = _stream(store_dir, data, 6, resolution=32, batch_size=8, view_cache_max_bytes=0,
                          shuffle_max_bytes=int(10.5 * per_pair))
    assert any("shuffle: 10 record pairs" in r.getMessage() for r in caplog.records)
    assert sorted(np.concatenate([b["index"] for b in batches]).tolist()) == list(range(48))


# ------------------------------------------------------------------------------------------------
# Per-batch mixup stores: the run's own batches, one coefficient per batch, batch neighbours as partners


@pytest.fixture(scope="module")
def batch_store(data, teacher, tmp_path_factory):
    """9 stored batches of 8 (48 examples: a pass is 6 batches; units of 6 and 3 steps)."""
    from funmatch.distill import targets

    out = tmp_path_factory.mktemp("batch_store") / "store"
    card = targets.generate(teacher, data, out, views=1, batch_size=16, seed=5, progress=False, mixup="per_batch",
                            batch=8, steps=9)
    return out, card


def _records_by_index(data):
    import tensorflow as tf

    from funmatch.distill import targets

    paths, _ = targets.record_files(data, "train")
    return [targets._parse(r) for r in tf.data.TFRecordDataset(paths)]


def test_a_per_batch_store_holds_the_teacher_on_the_regenerated_batches(batch_store, data, teacher):
    from funmatch import models
    from funmatch.distill import targets

    store_dir, card = batch_store
    assert card["mixup"] == "per_batch" and card["batches"] == {"size": 8, "steps": 9, "steps_per_unit": 6, "units": 2,
                                                                "shuffle_buffer": 48}
    assert card["bytes_total"] == 9 * 8 * card["bytes_per_target"]
    model = models.load(teacher)
    batches = list(targets.train_dataset(store_dir, data, 8, resolution=64, seed=1).as_numpy_iterator())
    assert len(batches) == 9  # the stream ends with the store
    stored = np.concatenate([np.load(store_dir / "batches" / f"steps-0000{u}.npy") for u in (0, 1)])
    for step, batch in enumerate(batches):
        recomputed = targets.log_softmax(np.asarray(model.predict_on_batch(batch["image"])))
        np.testing.assert_allclose(batch["teacher_logits"], recomputed, rtol=2e-3, atol=2e-3)
        np.testing.assert_array_equal(batch["teacher_logits"], stored[8 * step: 8 * step + 8].astype(np.float32))
    # Composition: a pass is a permutation of the split (6 batches), then the next pass, with new crops.
    indices = np.concatenate([b["index"] for b in batches])
    assert sorted(indices[:48].tolist()) == list(range(48))
    assert np.concatenate([b["view"] for b in batches]).tolist() == [0] * 48 + [1] * 24


def test_per_batch_generation_fills_the_teachers_batches_across_run_batches(batch_store, data):
    """Run batches of 8, teacher batches of 16: three full teacher batches for unit 0 (6 steps), one and a
    half for unit 1 (3 steps); the rows are the same, in batch order, as the teacher on each run batch."""
    from funmatch.distill.targets.batches import batch_views, generate_units

    _, card = batch_store
    sizes, written = [], {}

    def predict(images):
        sizes.append(len(images))
        return images.reshape(len(images), -1)[:, :4]  # rows that identify each image

    generate_units(card, data, [0, 1], batch_size=16, predict=predict, write=written.__setitem__)
    assert sizes == [16, 16, 16, 16, 8]
    # each unit's stream ends with its last batch: no prefetch that tf.data would inject keeps it filling
    views_of_unit = batch_views(card, data, int(card["teacher"]["resolution"]), start_step=0, steps=6)
    assert views_of_unit.options().experimental_optimization.inject_prefetch is False
    views = np.concatenate([b["image"] for b in batch_views(card, data, int(card["teacher"]["resolution"]),
                                                              start_step=0, steps=9).as_numpy_iterator()])
    np.testing.assert_array_equal(np.concatenate([written[0], written[1]]), views.reshape(72, -1)[:, :4])


def test_one_coefficient_per_batch_and_the_batch_neighbour_as_partner(batch_store, data):
    import tensorflow as tf

    from funmatch.distill import targets

    store_dir, card = batch_store
    records = _records_by_index(data)
    maker = targets.ViewMaker(card, 32)
    coefficients = []
    for step, batch in enumerate(targets.train_dataset(store_dir, data, 8, resolution=32).take(7).as_numpy_iterator()):
        own = np.stack([tf.cast(maker.image(records[i], tf.constant(i, tf.int64), tf.constant(v, tf.int64)), tf.float32)
                        for i, v in zip(batch["index"], batch["view"])])
        a = float(targets.batch_coefficient(5, 1.0, step))
        np.testing.assert_allclose(batch["image"], a * own + (1 - a) * np.roll(own, 1, axis=0), atol=1e-6)
        coefficients.append(a)
    assert all(0.5 <= a <= 1 for a in coefficients) and len(set(coefficients)) == 7


def test_a_per_batch_store_resumes_mid_store_and_splits_batches_over_processes(batch_store, data):
    store_dir, _ = batch_store
    straight = _stream(store_dir, data, 9, resolution=32)
    resumed = _stream(store_dir, data, 5, resolution=32, start_step=4)  # across the unit boundary at step 6
    assert len(resumed) == 5
    for a, b in zip(straight[4:], resumed):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # Two processes take rows 0-3 and 4-7 of every batch (row 4's partner, row 3, made by process 1 too).
    shares = [_stream(store_dir, data, 3, resolution=32, batch_size=4, process_index=p, process_count=2, start_step=2)
              for p in range(2)]
    for whole, first, second in zip(straight[2:5], *shares):
        for key in whole:
            np.testing.assert_array_equal(whole[key], np.concatenate([first[key], second[key]]))


def test_per_batch_generation_resumes_and_a_run_keeps_the_stores_batches(batch_store, data, teacher, tmp_path):
    from funmatch.distill import targets

    store_dir, card = batch_store
    copy = tmp_path / "store"
    shutil.copytree(store_dir, copy)
    (copy / "batches" / "steps-00001.npy").unlink()  # a kill before the last unit
    targets.generate(teacher, data, copy, views=1, batch_size=16, seed=5, progress=False, mixup="per_batch",
                     batch=8, steps=9)
    assert (copy / "batches" / "steps-00001.npy").read_bytes() == (store_dir / "batches" / "steps-00001.npy").read_bytes()
    with pytest.raises(FunmatchError, match="holds targets made with other settings \\(batches\\)"):
        targets.generate(teacher, data, copy, views=1, batch_size=16, seed=5, progress=False, mixup="per_batch",
                         batch=8, steps=10)
    with pytest.raises(FunmatchError, match=r"^--targets .*: holds per-batch mixup for batches of 8, the run's "
                                            r"batch_size is 4; set batch_size=8"):
        _stream(store_dir, data, 1, resolution=32, batch_size=4)
    with pytest.raises(FunmatchError, match=r"holds 9 steps of per-batch mixup; a run cannot start at step 9"):
        _stream(store_dir, data, 1, resolution=32, start_step=9)


def test_distill_on_a_per_batch_store_and_its_refusals(data, teacher, tmp_path, capsys):
    from funmatch.cli import main
    from funmatch.training.distill import distill

    out = tmp_path / "store"
    assert main(["targets", "--teacher", str(teacher), "--data", str(data), "--config", SMOKE, "--mixup", "per-batch",
                 "--out", str(out), "--no-progress"]) == 0
    assert "3 batches of 8 (per-batch mixup)" in capsys.readouterr().out
    metrics = distill(SMOKE, data, teacher, tmp_path / "run", targets=out, progress=False)
    assert metrics["targets"] == "stored" and metrics["targets_mixup"] == "per_batch" and metrics["step"] == 3
    with pytest.raises(FunmatchError, match=r"^--targets .*: holds 3 steps of per-batch mixup, the run needs 4; "):
        distill(SMOKE + ",total_steps=4", data, teacher, tmp_path / "a", targets=out, progress=False)
    with pytest.raises(FunmatchError, match=r"^--targets .*: holds per-batch mixup for batches of 8, the run's "
                                            r"batch_size is 4"):
        distill(SMOKE + ",batch_size=4", data, teacher, tmp_path / "b", targets=out, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert main(["targets", "--teacher", str(teacher), "--data", str(data), "--config", SMOKE, "--mixup", "per-batch",
                 "--views", "2", "--out", str(tmp_path / "c")]) == 2
    assert "--views: a per-batch store holds the recipe's steps x batch_size batches" in capsys.readouterr().err


def test_a_per_batch_store_of_a_recipe_counted_in_epochs(data, teacher, tmp_path, capsys):
    """Steps = round(epochs · N / batch) with N from the data card, as the distillation counts them."""
    from funmatch.cli import main
    from funmatch.training.distill import distill

    config, out = SMOKE + ",total_steps=0,epochs=1", tmp_path / "store"  # 48 images in batches of 8: 6 steps
    assert main(["targets", "--teacher", str(teacher), "--data", str(data), "--config", config, "--mixup", "per-batch",
                 "--out", str(out), "--no-progress"]) == 0
    assert "6 batches of 8 (per-batch mixup)" in capsys.readouterr().out
    assert distill(config, data, teacher, tmp_path / "run", targets=out, progress=False)["step"] == 6
