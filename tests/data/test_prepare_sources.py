"""`prepare` reads only what lies inside its source, and its errors name the real cause."""

import os

import pytest
from data_test_images import make_image_folder

from funmatch import cli
from funmatch.data.prepare import prepare
from funmatch.errors import FunmatchError


def test_links_out_of_the_source_are_not_followed(tmp_path):
    outside = make_image_folder(tmp_path / "elsewhere", {"": {"x": 2}}, size=(8, 8))
    root = make_image_folder(tmp_path / "src", {"train": {"a": 3, "b": 3}, "test": {"a": 1, "b": 1}}, size=(8, 8))
    # The same outside image linked into train and test, and a whole class folder linked in from outside.
    os.symlink(outside / "x" / "img_0.jpg", root / "train" / "a" / "linked.jpg")
    os.symlink(outside / "x" / "img_0.jpg", root / "test" / "a" / "linked.jpg")
    os.symlink(outside / "x", root / "train" / "c")
    card = prepare(f"folder:{root}", tmp_path / "out", progress=False)
    assert card["splits"]["train"]["num_examples"] == 6 and card["splits"]["test"]["num_examples"] == 2
    assert card["class_names"] == ["a", "b"]
    reasons = {entry["path"] if isinstance(entry, dict) else str(entry): entry for entry in card["ignored"]}
    assert card["num_ignored"] == 3 and "link out of the source folder" in str(reasons)


def test_a_link_inside_the_source_that_puts_one_image_in_two_splits_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "src", {"train": {"a": 3}, "test": {"a": 1}}, size=(8, 8))
    os.symlink(root / "train" / "a" / "img_0.jpg", root / "test" / "a" / "same.jpg")
    with pytest.raises(FunmatchError, match=r"(test/a/same.jpg \(test\) and train/a/img_0.jpg \(train\)|train/a/img_0.jpg \(train\) and test/a/same.jpg \(test\)) are the same file"):
        prepare(f"folder:{root}", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_too_large_a_val_fraction_names_the_class_folder_that_exists(tmp_path):
    root = make_image_folder(tmp_path / "src", {"train": {"a": 2, "b": 2}}, size=(8, 8))
    with pytest.raises(FunmatchError) as error:
        prepare(f"folder:{root}", tmp_path / "out", progress=False, val_fraction=0.99)
    named = str(error.value).split(":")[0]
    assert os.path.isdir(named) and named.endswith(os.path.join("train", "a")), error.value
    assert "--val-fraction 0.99" in str(error.value)


def test_files_that_are_not_tfrecords_are_named_as_the_source(tmp_path, capsys):
    (tmp_path / "a.conf").write_text("key = value\n" * 20)
    assert cli.main(["prepare", f"tfrecord:{tmp_path}/*.conf", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "a.conf is not a TFRecord file" in error[0] and "cannot write" not in error[0], error
    assert not (tmp_path / "out").exists()


def test_unlabeled_union_never_replaces_someone_elses_folder(tmp_path):
    from funmatch import outputs
    from funmatch.data.unlabeled import add_unlabeled

    root = make_image_folder(tmp_path / "src", {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}}, size=(8, 8))
    extra = make_image_folder(tmp_path / "extra", {"": {"u": 2}}, size=(8, 8))
    prepare(f"folder:{root}", tmp_path / "data", progress=False)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("mine")
    with pytest.raises(FunmatchError, match="holds no dataset card"):
        add_unlabeled(tmp_path / "data", f"folder:{extra}", theirs)
    assert [p.name for p in theirs.iterdir()] == ["keep.txt"]
    card = add_unlabeled(tmp_path / "data", f"folder:{extra}", tmp_path / "union")
    assert outputs.is_funmatch_folder(tmp_path / "union") and card["unlabeled"]["images"] == 2
