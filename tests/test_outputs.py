"""The overwrite guard (`funmatch.outputs`): what a command may write or replace, and that a failed write leaves
the old output as it was. The data-loss cases of the command-line campaign run through the real commands."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from funmatch import outputs
from funmatch.errors import FunmatchError


def _tree(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_refuses_the_current_folder_and_its_parents(tmp_path, monkeypatch):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for given, words in ((".", "the current folder"), ("..", "a parent of the current folder"),
                         (str(tmp_path), "a parent of the current folder")):
        with pytest.raises(FunmatchError, match=f"--out {given}: is {words}"):
            outputs.check_output(given, overwrite=True)
        with pytest.raises(FunmatchError, match="is the current folder|a parent"):
            outputs.check_output(given, overwrite=None)  # also for outputs that resume
    with pytest.raises(FunmatchError, match="the home folder"):
        outputs.check_output("~", overwrite=True)


def test_refuses_an_output_that_is_holds_or_lies_inside_an_input(tmp_path):
    source = tmp_path / "src"
    (source / "cats").mkdir(parents=True)
    model = tmp_path / "m.keras"
    model.write_text("model")
    cases = [
        (source, {"SOURCE": source}, "is the input SOURCE"),
        (tmp_path, {"SOURCE": source}, "holds the input SOURCE"),
        (source / "cats", {"SOURCE": source}, "lies inside the input SOURCE"),
        (source / "new", {"SOURCE": source}, "lies inside the input SOURCE"),
        (model, {"MODEL": model}, "is the input MODEL"),
    ]
    for out, inputs, words in cases:
        with pytest.raises(FunmatchError, match=words):
            outputs.check_output(out, overwrite=True, inputs=inputs)
    # Beside an input file is fine: a file is no folder to lie inside.
    assert outputs.check_output(tmp_path / "m.tflite", kind="file", inputs={"MODEL": model}) == tmp_path / "m.tflite"


def test_overwrite_replaces_only_funmatch_folders(tmp_path):
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FunmatchError, match="exists and is not empty .*--overwrite"):
        outputs.check_output(foreign)
    with pytest.raises(FunmatchError, match="holds files funmatch did not write"):
        outputs.check_output(foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    outputs.check_output(tmp_path / "empty")
    ours = tmp_path / "ours"
    with outputs.staged(ours, command="test") as temporary:
        (temporary / "a.txt").write_text("1")
    assert outputs.is_funmatch_folder(ours) and (ours / "a.txt").read_text() == "1"
    assert outputs.check_output(ours, overwrite=True) == ours.resolve()
    with pytest.raises(FunmatchError, match="already exists"):
        outputs.check_output(ours / "a.txt", kind="file")
    outputs.check_output(ours / "a.txt", kind="file", overwrite=True)


def test_a_failed_write_leaves_the_old_output_and_no_temporary(tmp_path):
    out = tmp_path / "out"
    with outputs.staged(out, command="test") as temporary:
        (temporary / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with outputs.staged(out, command="test") as temporary:
            (temporary / "new.txt").write_text("half")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in out.iterdir()) == [outputs.MARKER, "old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    with outputs.staged(out, command="test") as temporary:
        (temporary / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [outputs.MARKER, "new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    report = tmp_path / "r.json"
    report.write_text("old")
    with pytest.raises(RuntimeError):
        with outputs.staged(report, command="test", kind="file") as temporary:
            temporary.write_text("half")
            raise RuntimeError
    assert report.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out", "r.json"]


def test_leftovers_of_dead_processes_on_this_host_are_removed(tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    mine = outputs.temporary_name(out)
    stale = mine.with_name(mine.name.replace(f"-{os.getpid()}", f"-{dead_pid}"))
    other_host = mine.with_name(f".out.partial-elsewhere-{dead_pid}")
    old_style = mine.with_name(f".out.partial-{dead_pid}")
    for folder in (mine, stale, other_host, old_style):
        folder.mkdir()
    outputs.remove_leftovers(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other_host.name])


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "funmatch.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _one_line_error(result, words):
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr, result.stderr


@pytest.fixture
def user_folder(tmp_path):
    """A folder of someone's images and files: nothing of it may be lost."""
    from PIL import Image

    root = tmp_path / "home"
    for class_name in ("cats", "dogs"):
        (root / "photos" / class_name).mkdir(parents=True)
        for number in range(3):
            Image.new("RGB", (8, 8), (40 * number, 90, 20)).save(root / "photos" / class_name / f"{number}.jpg")
    (root / "thesis.tex").write_text("years of work")
    return root


def test_prepare_never_deletes_its_source_or_the_current_folder(user_folder):
    before = _tree(user_folder)
    for out, words in (("photos", "is the input SOURCE"), (".", "is the current folder"),
                       ("photos/cats", "lies inside the input SOURCE")):
        _one_line_error(_cli("prepare", "folder:photos", "--out", out, "--overwrite", "--no-progress",
                             cwd=user_folder), words)
    _one_line_error(_cli("prepare", "folder:home/photos", "--out", "home", "--overwrite", "--no-progress",
                         cwd=user_folder.parent), "holds the input SOURCE")
    assert _tree(user_folder) == before


def test_prepare_overwrite_replaces_its_own_output_but_not_a_foreign_folder(user_folder):
    assert _cli("prepare", "folder:photos", "--out", "data", "--no-progress", cwd=user_folder).returncode == 0
    assert (user_folder / "data" / outputs.MARKER).is_file()
    assert _cli("prepare", "folder:photos", "--out", "data", "--overwrite", "--no-progress",
                cwd=user_folder).returncode == 0
    (user_folder / "mine").mkdir()
    (user_folder / "mine" / "keep.txt").write_text("mine")
    _one_line_error(_cli("prepare", "folder:photos", "--out", "mine", "--overwrite", "--no-progress", cwd=user_folder),
                    "holds files funmatch did not write")
    assert (user_folder / "mine" / "keep.txt").read_text() == "mine"


def test_export_never_deletes_the_current_folder_or_its_model(user_folder):
    import keras

    from funmatch import models

    model = models.create("tiny_cnn_w8", num_classes=2, resolution=16)
    models.save(model, user_folder / "student.keras")
    keras.backend.clear_session()
    before = _tree(user_folder)
    _one_line_error(_cli("export", "student.keras", "--format", "savedmodel", "--out", ".", "--overwrite",
                         cwd=user_folder), "is the current folder")
    _one_line_error(_cli("export", "student.keras", "--format", "keras", "--out", "student.keras", "--overwrite",
                         cwd=user_folder), "is the input MODEL")
    assert _tree(user_folder) == before



def test_the_demo_resumes_its_own_folder_and_refuses_anyone_elses(tmp_path, monkeypatch):
    from funmatch.commands.demo import _claim_out

    legacy = tmp_path / "demo_out"  # written by a demo from before the marker
    for name in ("data", "function_matching", "labels_subset"):
        (legacy / name).mkdir(parents=True)
    (legacy / "labels_subset_plan.json").write_text("{}")
    _claim_out(legacy, None)
    assert outputs.is_funmatch_folder(legacy)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "data").mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    with pytest.raises(FunmatchError, match=r"--out .*theirs: holds files `funmatch demo` did not write \(thesis.tex\)"):
        _claim_out(theirs, None)
    assert not outputs.is_funmatch_folder(theirs)
    monkeypatch.chdir(theirs)
    with pytest.raises(FunmatchError, match="is the current folder"):
        _claim_out(pathlib.Path("."), None)
