"""The data's truth is checked, not trusted: record order, shard counts in the card, folder-source faults."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from data_test_images import make_image_folder

from funmatch.errors import FunmatchError

CLASSES = ["a", "b", "c", "d"]


def _prepare(source, out, **kwargs):
    from funmatch.data.prepare import prepare

    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 2)
    return prepare(source, out, **kwargs)


def _first_batch_histogram(data_dir, batch_size=64, buffer=32):
    from funmatch.data import pipeline

    dataset = pipeline.train_dataset(data_dir, "train", 'keep("label")', batch_size, seed=0, shuffle_buffer=buffer)
    return np.bincount(next(iter(dataset))["label"].numpy(), minlength=len(CLASSES))


@pytest.fixture(scope="module")
def sorted_source(tmp_path_factory):
    """A class-sorted ImageFolder: 4 classes × 64 train images (more than the shuffle buffer of 32)."""
    root = tmp_path_factory.mktemp("sorted")
    return make_image_folder(root, {"train": dict.fromkeys(CLASSES, 64), "test": dict.fromkeys(CLASSES, 1)}, size=(8, 8))


def test_first_batch_of_a_class_sorted_source_holds_every_class(sorted_source, tmp_path):
    # Source order in one shard, a buffer of 32: the first batch of 64 comes from a window of two classes.
    _prepare(f"folder:{sorted_source}", tmp_path / "kept", examples_per_shard=1000, shuffle_seed=None)
    kept = _first_batch_histogram(tmp_path / "kept")
    assert (kept > 0).sum() <= 2, kept
    # prepare's seeded order alone (still one shard) mixes every class into the first batch ...
    card = _prepare(f"folder:{sorted_source}", tmp_path / "shuffled", examples_per_shard=1000)
    assert card["options"]["order"] == "shuffled (seed 0)"
    assert (_first_batch_histogram(tmp_path / "shuffled") >= 8).all()
    # ... and so does reading the shards interleaved, even of records kept in class order (8 shards).
    _prepare(f"folder:{sorted_source}", tmp_path / "kept8", examples_per_shard=32, shuffle_seed=None)
    assert (_first_batch_histogram(tmp_path / "kept8") >= 8).all()


def test_record_order_is_a_function_of_the_seed(sorted_source, tmp_path):
    from funmatch.data import tfrecords

    def ids(name, seed):
        _prepare(f"folder:{sorted_source}", tmp_path / name, examples_per_shard=100, shuffle_seed=seed)
        return [r["id"] for r in tfrecords.read_records(tmp_path / name, "train").as_numpy_iterator()]

    first, again, other = ids("one", 0), ids("two", 0), ids("three", 1)
    assert first == again and first != other and sorted(first) == sorted(other)


def test_streamed_source_is_shuffled_through_buckets(sorted_source, tmp_path, monkeypatch):
    from funmatch.data import prepare as prepare_module
    from funmatch.data import tfrecords

    _prepare(f"folder:{sorted_source}", tmp_path / "kept", examples_per_shard=64, shuffle_seed=None)
    monkeypatch.setattr(prepare_module, "EXAMPLES_PER_BUCKET", 50)  # several buckets for 256 records
    card = _prepare(f"tfrecord:{tmp_path / 'kept'}/train-*.tfrecord", tmp_path / "out", examples_per_shard=64)
    labels = [int(r["label"]) for r in tfrecords.read_records(tmp_path / "out", "train").as_numpy_iterator()]
    assert card["splits"]["train"]["num_examples"] == 256 and sorted(labels) == sorted([0, 1, 2, 3] * 64)
    assert len(set(labels[:64])) == 4  # the first shard is no longer one class
    assert not list((tmp_path / "out").glob(".bucket-*"))


def test_card_keeps_shard_counts_and_sizes(tiny_dataset):
    from funmatch.data import tfrecords

    info = tfrecords.load_card(tiny_dataset)["splits"]["train"]
    assert info["shard_lengths"] == [3, 3, 3, 1] and sum(info["shard_lengths"]) == info["num_examples"]
    paths = tfrecords.shard_paths(tiny_dataset, "train", info["num_shards"])
    assert info["shard_bytes"] == [os.path.getsize(p) for p in paths]
    assert [tfrecords.count_records(p) for p in paths] == info["shard_lengths"]


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_hand_edited_count_is_refused(tiny_dataset, tmp_path):
    from funmatch.data import pipeline

    data = _copy(tiny_dataset, tmp_path / "edited")
    card = json.loads((data / "dataset.json").read_text())
    card["splits"]["train"]["num_examples"] = 8
    (data / "dataset.json").write_text(json.dumps(card))
    with pytest.raises(FunmatchError, match=r"dataset\.json.*num_examples is 8 but its shards hold 10"):
        pipeline.train_dataset(data, "train", 'keep("label")', 2)
    # Without the per-shard figures (a card of an earlier version) the records are counted.
    for key in ("shard_lengths", "shard_bytes"):
        del card["splits"]["train"][key]
    (data / "dataset.json").write_text(json.dumps(card))
    with pytest.raises(FunmatchError, match=r"num_examples is 8 but its shards hold 10 records"):
        pipeline.train_dataset(data, "train", 'keep("label")', 2)


def test_truncated_shard_is_named(tiny_dataset, tmp_path):
    from funmatch.data import pipeline, tfrecords

    data = _copy(tiny_dataset, tmp_path / "truncated")
    shard = sorted(data.glob("train-*.tfrecord"))[1]
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(FunmatchError, match=rf"{shard.name}: .*bytes, the dataset card says"):
        pipeline.eval_dataset(data, "train", 'keep("label")', 2)
    card = json.loads((data / "dataset.json").read_text())
    del card["splits"]["train"]["shard_bytes"]
    (data / "dataset.json").write_text(json.dumps(card))
    with pytest.raises(FunmatchError, match=rf"{shard.name}: truncated inside record 2"):
        tfrecords.verify_split(data, "train")


@pytest.mark.parametrize("extra", ["val", "Train"])
def test_two_folders_for_one_split_are_an_error(tmp_path, extra):
    root = make_image_folder(tmp_path / "src", {"train": {"a": 2}, "validation": {"a": 1}, extra: {"a": 1}})
    with pytest.raises(FunmatchError, match=r"folders '.*' and '.*' are both split"):
        _prepare(f"folder:{root}", tmp_path / "out")


def test_skipped_files_are_listed_in_the_card(tmp_path):
    root = make_image_folder(tmp_path / "src", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    (root / "train" / "a" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (root / "train" / "b" / "notes.txt").write_text("not an image")
    (root / "train" / "b" / "nested").mkdir()
    (root / "README.md").write_text("metadata, not listed")
    card = _prepare(f"folder:{root}", tmp_path / "out")
    listed = {item["path"]: item["reason"] for item in card["ignored"]}
    assert listed == {"train/a/gone.jpg": "dangling symlink",
                      "train/b/notes.txt": "not an image extension (.jpg/.jpeg/.png/.bmp/.gif/.webp)",
                      "train/b/nested/": "sub-folder (not read)"}
    assert card["num_ignored"] == 3 and card["splits"]["train"]["num_examples"] == 4


def test_class_emptied_by_skip_bad_is_an_error(tmp_path):
    root = make_image_folder(tmp_path / "src", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 2}})
    for path in (root / "test" / "b").iterdir():
        path.write_bytes(b"not a jpeg")
    with pytest.raises(FunmatchError, match=r"split 'test': class\(es\) 'b' have no image left"):
        _prepare(f"folder:{root}", tmp_path / "out", skip_bad=True)
    # One bad file of several is still skipped and recorded.
    (root / "test" / "b" / "img_0.jpg").unlink()
    make_image_folder(root, {"test": {"b": 1}})
    card = _prepare(f"folder:{root}", tmp_path / "out2", skip_bad=True)
    assert card["splits"]["test"]["per_class_counts"] == [1, 1] and len(card["skipped"]) == 1


def test_missing_validation_split_names_the_way_out(tiny_dataset):
    from funmatch.data import tfrecords

    with pytest.raises(FunmatchError, match=r"no split 'validation'.*--val-fraction 0\.1"):
        tfrecords.split_info(tiny_dataset, "validation")


def test_killed_prepare_leaves_nothing_behind_after_a_success(tmp_path):
    root = make_image_folder(tmp_path / "src", {"train": {"a": 2}, "test": {"a": 1}})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process id that is gone
    for kind in ("partial", "previous"):
        (tmp_path / f".out.{kind}-{dead_pid}" / "sub").mkdir(parents=True)
    alive = tmp_path / f".out.partial-{os.getppid()}"  # a live run's folder is not touched
    alive.mkdir()
    _prepare(f"folder:{root}", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.glob(".out*")) == [alive.name]


def test_write_error_is_one_line_naming_out(tmp_path, monkeypatch):
    from funmatch.data import tfrecords

    root = make_image_folder(tmp_path / "src", {"train": {"a": 2}, "test": {"a": 1}})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tfrecords.SplitWriter, "write", full)
    with pytest.raises(FunmatchError, match=r"--out .*out: cannot write split 'train' \(No space left on device\)"):
        _prepare(f"folder:{root}", tmp_path / "out")
    assert not list(tmp_path.glob(".out*")) and not (tmp_path / "out").exists()


def _bytes_read() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_counting_records_reads_their_headers_only(tmp_path):
    from funmatch.data import tfrecords
    import tensorflow as tf

    path = str(tmp_path / "big.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(40):
            writer.write(tfrecords.serialize_example(os.urandom(100_000), i, str(i), i))
    before = _bytes_read()
    assert tfrecords.count_records(path) == 40
    # 12 bytes per header (and the /proc read itself), not a 64 KiB buffer per 100 KB record.
    assert _bytes_read() - before < 40 * 12 + 2048


def test_card_keeps_each_shards_digests(tiny_dataset):
    import hashlib

    from funmatch.data import tfrecords

    info = tfrecords.load_card(tiny_dataset)["splits"]["train"]
    paths = tfrecords.shard_paths(tiny_dataset, "train", info["num_shards"])
    assert info["shard_sha256"] == [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]
    assert info["shard_probe"] == [tfrecords.probe_digest(p) for p in paths]
    assert tfrecords.verify_dataset(tiny_dataset) == {"train": 4, "test": 2}


def test_same_size_shard_of_another_prepare_is_refused(tmp_path):
    """Byte-identical images under equally long names: the shards of two shuffle seeds have the same sizes
    and different contents (other ids in other places)."""
    from data_test_images import coordinate_image, jpeg_bytes

    from funmatch.data import pipeline, tfrecords

    image = jpeg_bytes(coordinate_image(8, 8))
    for name in ("a", "b"):
        (tmp_path / "src" / "train" / name).mkdir(parents=True)
        for k in range(4):
            (tmp_path / "src" / "train" / name / f"img_{k}.jpg").write_bytes(image)
    for seed in (0, 1):
        _prepare(f"folder:{tmp_path / 'src'}", tmp_path / f"seed{seed}", shuffle_seed=seed, examples_per_shard=4)
    swapped = tfrecords.shard_paths(tmp_path / "seed0", "train", 2)[1]
    other = tfrecords.shard_paths(tmp_path / "seed1", "train", 2)[1]
    assert os.path.getsize(swapped) == os.path.getsize(other) and open(swapped, "rb").read() != open(other, "rb").read()
    os.replace(other, swapped)
    with pytest.raises(FunmatchError, match=rf"^{swapped}: not the shard the dataset card was written with"):
        pipeline.train_dataset(tmp_path / "seed0", "train", 'keep("label")', 2)
    with pytest.raises(FunmatchError, match=rf"^{swapped}: "):
        tfrecords.verify_dataset(tmp_path / "seed0")


def test_full_verify_rehashes_what_the_probe_does_not_read(tmp_path, monkeypatch):
    from funmatch.data import tfrecords

    root = make_image_folder(tmp_path / "src", {"train": {"a": 3}}, size=(16, 16))
    _prepare(f"folder:{root}", tmp_path / "out")
    shard = tfrecords.shard_paths(tmp_path / "out", "train", 1)[0]
    data = bytearray(open(shard, "rb").read())
    data[len(data) // 2] ^= 1  # in the middle of the file, inside an image
    open(shard, "wb").write(bytes(data))
    monkeypatch.setattr(tfrecords, "PROBE_BYTES", 64)  # the probe reads the ends only
    card = tfrecords.load_card(tmp_path / "out")
    card["splits"]["train"]["shard_probe"] = [tfrecords.probe_digest(shard)]
    tfrecords.write_card(tmp_path / "out", card)
    tfrecords.verify_split(tmp_path / "out", "train")  # the cheap start-up check passes
    with pytest.raises(FunmatchError, match=rf"^{shard}: content differs from the SHA-256 in the dataset card"):
        tfrecords.verify_dataset(tmp_path / "out")
