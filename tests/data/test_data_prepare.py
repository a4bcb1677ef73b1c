"""`funmatch prepare`: real Flowers102 counts, tfds (mocked), folders, TFRecords, bad input, errors, CLI."""

import io
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from data_test_images import coordinate_image, jpeg_bytes, make_image_folder

from funmatch import cli
from funmatch.data import prepare as prepare_module
from funmatch.data.prepare import prepare
from funmatch.data.tfrecords import load_card, read_records
from funmatch.errors import FunmatchError


def decoded_records(data_dir, split):
    return [
        {**r, "pixels": tf.io.decode_jpeg(r["image"]).numpy()}
        for r in read_records(data_dir, split).as_numpy_iterator()
    ]


# --- Flowers102 (shared, real images) -------------------------------------------------------------


def test_flowers102_card_matches_its_readme(flowers64):
    data_dir, card = flowers64
    assert card == load_card(data_dir)
    assert card["num_classes"] == 102 and len(card["class_names"]) == 102
    assert card["class_names"][0] == "pink primrose" and card["class_names"][101] == "blackberry lily"
    assert {s: card["splits"][s]["num_examples"] for s in card["splits"]} == {
        "train": 1020, "validation": 1020, "test": 6149,
    }
    test_counts = card["splits"]["test"]["per_class_counts"]
    # From the README's per-class table.
    assert (test_counts[0], test_counts[45], test_counts[50], test_counts[76], test_counts[101]) == (20, 176, 238, 231, 28)
    assert card["splits"]["train"]["per_class_counts"] == [10] * 102
    assert card["splits"]["validation"]["per_class_counts"] == [10] * 102
    assert card["splits"]["test"]["image_size"]["shorter_side"] == {"min": 64, "max": 64, "mean": 64.0}
    assert card["skipped"] == [] and card["funmatch_version"]
    assert card["splits"]["test"]["num_shards"] == 7  # 6,149 / 1,024 per shard


def test_flowers102_records_decode_with_their_labels(flowers64):
    data_dir, _ = flowers64
    records = list(read_records(data_dir, "validation").as_numpy_iterator())
    assert len(records) == 1020
    assert [r["index"] for r in records] == list(range(1020))
    assert np.bincount([r["label"] for r in records]).tolist() == [10] * 102
    # Records are in a seeded random order; every one keeps the label of its class folder.
    assert all(int(r["id"].decode().split("/")[1][:3]) == r["label"] for r in records)
    first = records[0]
    assert min(tf.io.decode_jpeg(first["image"]).shape[:2]) == 64


def test_eurosat_mini_asset_prepares_to_its_documented_counts(tmp_path):
    asset = pathlib.Path(prepare_module.__file__).parents[1] / "assets" / "eurosat_mini"
    card = prepare(f"folder:{asset}", tmp_path / "out", progress=False)
    assert card["class_names"][0] == "AnnualCrop" and card["num_classes"] == 10
    assert {s: v["per_class_counts"] for s, v in card["splits"].items()} == {
        "train": [100] * 10, "validation": [50] * 10, "test": [100] * 10,
    }
    # 64x64 RGB JPEGs are copied byte for byte.
    first = next(read_records(tmp_path / "out", "test").as_numpy_iterator())
    assert first["image"] == (asset / first["id"].decode()).read_bytes()


# --- tfds (mocked) ---------------------------------------------------------------------------------


def test_tfds_flowers102_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        card = prepare("tfds:oxford_flowers102", tmp_path / "out", progress=False, shorter_side=16)
    assert list(card["splits"]) == ["train", "validation", "test"]
    assert all(card["splits"][s]["num_examples"] == 4 for s in card["splits"])
    assert card["num_classes"] == 102 and card["class_names"][0] == "pink primrose"
    records = decoded_records(tmp_path / "out", "train")
    assert records[0]["pixels"].shape[-1] == 3 and min(records[0]["pixels"].shape[:2]) <= 16
    assert card["source_details"]["split_map"] == {"train": "train", "validation": "validation", "test": "test"}


def fake_pets(requested_splits):
    """as_dataset_fn for mock_data: records the tfds split specs; 3 JPEGs per split."""

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False, **kwargs):
        requested_splits.append(split)
        images = [jpeg_bytes(coordinate_image(20 + i, 30)) for i in range(3)]
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": np.array([0, 5, 36], np.int64)})

    return as_dataset


def test_tfds_pets_uses_the_papers_percent_splits(tmp_path):
    import tensorflow_datasets as tfds

    requested = []
    with tfds.testing.mock_data(as_dataset_fn=fake_pets(requested)):
        card = prepare("tfds:oxford_iiit_pet", tmp_path / "out", progress=False, shuffle_seed=None)
    assert requested == ["train[:90%]", "train[90%:]", "test"]
    assert list(card["splits"]) == ["train", "validation", "test"]
    assert card["num_classes"] == 37
    assert card["splits"]["test"]["per_class_counts"][36] == 1
    records = list(read_records(tmp_path / "out", "validation").as_numpy_iterator())
    assert [r["label"] for r in records] == [0, 5, 36]
    assert records[1]["id"] == b"oxford_iiit_pet/train[90%:]/1"


def test_tfds_explicit_split_map(tmp_path):
    import tensorflow_datasets as tfds

    requested = []
    with tfds.testing.mock_data(as_dataset_fn=fake_pets(requested)):
        card = prepare("tfds:oxford_iiit_pet:train=train+test,test=test[:10]", tmp_path / "out", progress=False)
    assert requested == ["train+test", "test[:10]"] and list(card["splits"]) == ["train", "test"]


def test_tfds_unknown_name_is_one_clear_line(tmp_path):
    with pytest.raises(FunmatchError) as error:
        prepare("tfds:no_such_dataset_xyz", tmp_path / "out", progress=False)
    assert "unknown tfds dataset 'no_such_dataset_xyz'" in str(error.value) and "\n" not in str(error.value)


# --- folder and tfrecord sources -------------------------------------------------------------------


def test_flat_folder_with_fractions_is_carved_deterministically(tmp_path):
    root = make_image_folder(tmp_path / "flat", {"": {"cat": 10, "dog": 10, "eel": 20}}, size=(8, 8))
    kwargs = dict(val_fraction=0.2, test_fraction=0.1, progress=False)
    card = prepare(f"folder:{root}", tmp_path / "one", **kwargs)
    assert {s: v["per_class_counts"] for s, v in card["splits"].items()} == {
        "train": [7, 7, 14], "validation": [2, 2, 4], "test": [1, 1, 2],
    }
    ids = {s: [r["id"] for r in read_records(tmp_path / "one", s).as_numpy_iterator()] for s in card["splits"]}
    assert sum(len(v) for v in ids.values()) == 40 and len(set().union(*ids.values())) == 40
    prepare(f"folder:{root}", tmp_path / "two", **kwargs)
    again = {s: [r["id"] for r in read_records(tmp_path / "two", s).as_numpy_iterator()] for s in card["splits"]}
    assert ids == again


def test_tfrecord_source_reshards_the_same_examples(tiny_dataset, tmp_path):
    card = prepare(f"tfrecord:{tiny_dataset}/*.tfrecord", tmp_path / "out", examples_per_shard=4, progress=False,
                   shuffle_seed=None)
    original = load_card(tiny_dataset)
    assert card["class_names"] == original["class_names"]
    assert card["splits"]["train"]["num_shards"] == 3 and card["splits"]["test"]["num_shards"] == 2
    for split in ("train", "test"):
        old = list(read_records(tiny_dataset, split).as_numpy_iterator())
        new = list(read_records(tmp_path / "out", split).as_numpy_iterator())
        assert [(r["id"], r["label"], r["index"], r["image"]) for r in old] == [
            (r["id"], r["label"], r["index"], r["image"]) for r in new
        ]


def test_shorter_side_never_upscales(tmp_path):
    root = make_image_folder(tmp_path / "src", {"": {"a": 1}}, size=(30, 50))
    card = prepare(f"folder:{root}", tmp_path / "down", shorter_side=12, progress=False)
    assert card["splits"]["train"]["image_size"]["height"]["max"] == 12
    assert card["splits"]["train"]["image_size"]["width"]["max"] == 20
    card = prepare(f"folder:{root}", tmp_path / "same", shorter_side=100, progress=False)
    assert card["splits"]["train"]["image_size"]["height"]["max"] == 30


# --- bad input -------------------------------------------------------------------------------------


def save(image, path, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def make_odd_images(root: pathlib.Path) -> None:
    """Convertible images in class 'good', undecodable ones in class 'bad' (plus one valid image there)."""
    from PIL import Image

    good = root / "good"
    save(Image.new("L", (8, 8), 100), good / "gray.png")
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 0))  # fully transparent -> white
    save(rgba, good / "rgba.png")
    save(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), good / "cmyk.jpg")  # no ink -> white
    save(Image.new("RGB", (8, 8), (200, 0, 0)).convert("P"), good / "palette.png")
    sixteen = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    save(sixteen, good / "sixteen.png")
    frames = [Image.new("RGB", (8, 8), (0, 0, 250)), Image.new("RGB", (8, 8), (250, 0, 0))]
    frames[0].save(good / "animated.gif", save_all=True, append_images=frames[1:])
    bad = root / "bad"
    bad.mkdir()
    (bad / "fine.jpg").write_bytes(jpeg_bytes(coordinate_image(8, 8)))
    (bad / "truncated.jpg").write_bytes(jpeg_bytes(coordinate_image(64, 64))[:300])
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("this is not an image\n")


def test_odd_images_are_converted_to_rgb(tmp_path):
    make_odd_images(tmp_path / "src")
    card = prepare(f"folder:{tmp_path / 'src'}", tmp_path / "out", skip_bad=True, progress=False)
    records = {r["id"].decode().split("/")[-1]: r["pixels"] for r in decoded_records(tmp_path / "out", "train")}
    assert set(records) == {"fine.jpg", "animated.gif", "cmyk.jpg", "gray.png", "palette.png", "rgba.png", "sixteen.png"}
    for name, pixels in records.items():
        assert pixels.shape == (8, 8, 3), name

    def near(name, color):
        np.testing.assert_allclose(records[name].reshape(-1, 3).mean(0), color, atol=6, err_msg=name)

    near("gray.png", (100, 100, 100))
    near("rgba.png", (255, 255, 255))
    near("cmyk.jpg", (255, 255, 255))
    near("palette.png", (200, 0, 0))
    near("sixteen.png", (255, 255, 255))  # 65535 scaled to 255, not clipped garbage
    near("animated.gif", (0, 0, 250))  # first frame
    skipped = {item["id"].split("/")[-1]: item["reason"] for item in card["skipped"]}
    assert set(skipped) == {"truncated.jpg", "empty.jpg", "text.jpg"}
    assert skipped["empty.jpg"] == "empty file"
    assert card["splits"]["train"]["num_examples"] == 7 and card["splits"]["train"]["num_skipped"] == 3
    assert card["splits"]["train"]["per_class_counts"] == [1, 6]  # classes: bad, good


def test_undecodable_files_stop_with_one_error_listing_them(tmp_path):
    make_odd_images(tmp_path / "src")
    with pytest.raises(FunmatchError) as error:
        prepare(f"folder:{tmp_path / 'src'}", tmp_path / "out", progress=False)
    message = str(error.value)
    assert "\n" not in message and "3 undecodable" in message and "--skip-bad" in message
    for name in ("truncated.jpg", "empty.jpg", "text.jpg"):
        assert name in message
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temporary folder left


def test_error_lists_first_twenty_and_a_count(tmp_path):
    bad = tmp_path / "src" / "only"
    bad.mkdir(parents=True)
    for k in range(25):
        (bad / f"broken_{k:02d}.jpg").write_bytes(b"nope")
    with pytest.raises(FunmatchError) as error:
        prepare(f"folder:{tmp_path / 'src'}", tmp_path / "out", progress=False)
    message = str(error.value)
    assert "25 undecodable" in message and "and 5 more" in message
    assert "broken_19.jpg" in message and "broken_20.jpg" not in message


# --- one-line errors and atomic output ---------------------------------------------------------------


@pytest.mark.parametrize(
    "layout, expected",
    [
        ({"train": {"a": 2, "b": 0}}, "empty class folder"),
        ({"train": {"a": 2, "b": 2}, "test": {"a": 1, "c": 1}}, "class folders of split 'test' differ"),
    ],
)
def test_folder_structure_errors(tmp_path, layout, expected):
    root = make_image_folder(tmp_path / "src", layout, size=(8, 8))
    for split, classes in layout.items():
        for class_name, count in classes.items():
            (root / split / class_name).mkdir(parents=True, exist_ok=True)
    with pytest.raises(FunmatchError, match=expected) as error:
        prepare(f"folder:{root}", tmp_path / "out", progress=False)
    assert "\n" not in str(error.value)


def test_existing_non_empty_out_needs_overwrite(tmp_path, tiny_dataset):
    root = make_image_folder(tmp_path / "src", {"": {"a": 2}}, size=(8, 8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FunmatchError, match="--overwrite"):
        prepare(f"folder:{root}", out, progress=False)
    # --overwrite replaces only a folder funmatch wrote: someone's own files are never deleted.
    with pytest.raises(FunmatchError, match="holds files funmatch did not write"):
        prepare(f"folder:{root}", out, overwrite=True, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    ours = tmp_path / "ours"
    prepare(f"folder:{root}", ours, progress=False)
    (ours / "stale.txt").write_text("from an earlier run")
    prepare(f"folder:{root}", ours, overwrite=True, progress=False)
    assert not (ours / "stale.txt").exists() and load_card(ours)["splits"]["train"]["num_examples"] == 2


def test_interrupted_prepare_leaves_no_complete_looking_dir(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "src", {"": {"a": 6}}, size=(8, 8))
    calls = []
    real_encode = prepare_module.encode_image

    def encode_then_interrupt(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_encode(*args)

    monkeypatch.setattr(prepare_module, "encode_image", encode_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare(f"folder:{root}", tmp_path / "out", progress=False, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["prepare", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--out", "--shorter-side", "--jpeg-quality", "--workers", "--skip-bad", "--overwrite",
                 "--val-fraction", "--test-fraction", "--examples-per-shard"):
        assert flag in text


def test_cli_end_to_end_and_error_exit(tmp_path, capsys):
    root = make_image_folder(tmp_path / "src", {"train": {"a": 3, "b": 2}, "validation": {"a": 1, "b": 1}}, size=(8, 8))
    out = tmp_path / "out"
    assert cli.main(["prepare", f"folder:{root}", "--out", str(out), "--no-progress", "--examples-per-shard", "2"]) == 0
    printed = capsys.readouterr().out
    assert "train: 5 examples in 3 shard(s)" in printed
    card = json.loads((out / "dataset.json").read_text())
    assert card["splits"]["validation"]["num_examples"] == 2 and card["options"]["examples_per_shard"] == 2
    assert sorted(p.name for p in out.iterdir()) == [
        ".funmatch", "dataset.json", "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
        "train-00002-of-00003.tfrecord", "validation-00000-of-00001.tfrecord",
    ]
    assert cli.main(["prepare", f"folder:{root}", "--out", str(out), "--no-progress"]) == 2
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1 and "--overwrite" in error_lines[0]
