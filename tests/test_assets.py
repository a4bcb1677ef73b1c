"""The shipped demo data and teacher: every image the demo evaluates on is clean (never seen by the teacher)."""

import json
import pathlib
import re

import pytest

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "src" / "funmatch" / "assets"
MINI = ASSETS / "eurosat_mini"
UNLABELED = ASSETS / "eurosat_unlabeled"


def _number(name: str) -> int:
    return int(re.fullmatch(r"[A-Za-z]+_(\d+)\.jpg", name).group(1))


def _teacher_rule() -> dict:
    card = json.loads((ASSETS / "teachers" / "eurosat_teacher.json").read_text())
    return card["training_images"]


def test_teacher_card_states_its_training_images_as_a_rule():
    rule = _teacher_rule()
    assert rule["shared_split"] == "train" and rule["file_number_not_multiple_of"] == 5


@pytest.mark.parametrize("split", ["validation", "test"])
def test_demo_evaluation_images_are_disjoint_from_the_teachers_training_images(split):
    modulus = _teacher_rule()["file_number_not_multiple_of"]
    files = sorted((MINI / split).glob("*/*.jpg"))
    assert len(files) == {"validation": 500, "test": 1000}[split]
    seen_by_teacher = [f.name for f in files if _number(f.name) % modulus != 0]
    assert seen_by_teacher == []


def _sources() -> list[list[str]]:
    return [line.split() for line in (UNLABELED / "SOURCES.txt").read_text().splitlines()]


def test_unlabeled_images_are_outside_the_teachers_training_images():
    """The demo's unlabelled pool: images the shipped teacher never trained on (its outputs there are honest)."""
    rule = _teacher_rule()
    sources = _sources()
    assert len(sources) == 3900
    for _, source in sources:
        split, _, name = source.split("/")
        assert split != rule["shared_split"] and _number(name) % rule["file_number_not_multiple_of"] == 0, source


def test_unlabeled_labels_file_agrees_with_the_sources():
    """LABELS.txt (read only by the all-labels reference) gives each unlabelled image its source's class."""
    classes = {f"{i:03d}_{name.lower()}": i for i, name in enumerate((MINI / "labels.txt").read_text().split())}
    labels = dict(line.split() for line in (UNLABELED / "LABELS.txt").read_text().splitlines())
    assert labels == {name: str(classes[source.split("/")[1]]) for name, source in _sources()}
    counts = {i: list(labels.values()).count(str(i)) for i in range(10)}
    assert counts == {0: 450, 1: 450, 2: 450, 3: 350, 4: 350, 5: 250, 6: 350, 7: 450, 8: 350, 9: 450}


def test_splits_and_unlabeled_images_are_pairwise_disjoint():
    names = {split: {f.name for f in (MINI / split).glob("*/*.jpg")} for split in ("train", "validation", "test")}
    sources = _sources()
    unlabeled = {pathlib.PurePosixPath(source).name for _, source in sources}
    assert len(unlabeled) == 3900 == len(list((UNLABELED / "images").glob("u_*.jpg")))
    groups = [*names.values(), unlabeled]
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            assert not groups[a] & groups[b]
    # Byte-level too: no unlabelled image equals a demo validation or test image.
    judged = {f.read_bytes() for split in ("validation", "test") for f in (MINI / split).glob("*/*.jpg")}
    assert not judged & {f.read_bytes() for f in (UNLABELED / "images").glob("u_*.jpg")}
    # Unlabelled images carry no class in their names.
    assert all(re.fullmatch(r"u_\d{5}\.jpg", name) for name, _ in sources)


@pytest.mark.shared_data
def test_demo_images_are_byte_copies_of_the_shared_release(shared_data):
    eurosat = shared_data / "eurosat_rgb"
    for split, shared_split in (("validation", "test"), ("test", "test"), ("train", "train")):
        for file in sorted((MINI / split).glob("*/*.jpg"))[::37]:
            assert file.read_bytes() == (eurosat / shared_split / file.parent.name / file.name).read_bytes()
    for name, source in _sources()[::97]:
        assert source.startswith("test/")
        assert (UNLABELED / "images" / name).read_bytes() == (eurosat / source).read_bytes()
