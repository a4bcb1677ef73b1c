"""`add_unlabeled`: a prepared dataset plus images without labels, as one distillation split."""

import pathlib
import shutil

import numpy as np
import pytest

ASSETS = pathlib.Path(__file__).resolve().parents[2] / "src" / "funmatch" / "assets"
MINI, UNLABELED_IMAGES = ASSETS / "eurosat_mini", ASSETS / "eurosat_unlabeled" / "images"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """2 classes × (6 train, 2 validation, 2 test) prepared; 9 unlabelled images in a nested folder."""
    from funmatch.data.prepare import prepare

    root = tmp_path_factory.mktemp("unlabeled")
    for split, count in (("train", 6), ("validation", 2), ("test", 2)):
        for class_dir in ("001_forest", "008_river"):
            (root / "src" / split / class_dir).mkdir(parents=True)
            for f in sorted((MINI / split / class_dir).iterdir())[:count]:
                shutil.copy(f, root / "src" / split / class_dir / f.name)
    prepare(f"folder:{root / 'src'}", root / "data", progress=False, examples_per_shard=4)
    (root / "photos" / "deeper").mkdir(parents=True)
    for n, f in enumerate(sorted(UNLABELED_IMAGES.iterdir())[:9]):
        shutil.copy(f, root / "photos" / ("deeper" if n % 2 else "") / f.name)
    (root / "photos" / "notes.txt").write_text("not an image")
    return root


def _records(data_dir, split):
    from funmatch.data.tfrecords import read_records

    return list(read_records(data_dir, split).as_numpy_iterator())


def test_union_split_holds_labelled_and_unlabelled_images(small):
    from funmatch.data.tfrecords import load_card
    from funmatch.data.unlabeled import UNION_SPLIT, add_unlabeled

    card = add_unlabeled(small / "data", f"folder:{small / 'photos'}", small / "fm", seed=3)
    union = card["splits"][UNION_SPLIT]
    assert union["num_examples"] == 12 + 9 and union["labelled_examples"] == 12 and union["unlabeled_examples"] == 9
    assert load_card(small / "fm") == card
    records = _records(small / "fm", UNION_SPLIT)
    labels = np.array([r["label"] for r in records])
    assert (labels == -1).sum() == 9 and sorted(labels[labels >= 0].tolist()) == [0] * 6 + [1] * 6
    assert [r["index"] for r in records] == list(range(21))
    assert len(set(labels[:6].tolist())) > 1 or len(set(labels[6:].tolist())) > 1  # mixed, not in blocks
    unlabeled_bytes = {r["image"] for r in records if r["label"] == -1}
    assert unlabeled_bytes == {f.read_bytes() for f in sorted(UNLABELED_IMAGES.iterdir())[:9]}
    for split in ("train", "validation", "test"):  # the original splits, unchanged
        assert _records(small / "fm", split) == _records(small / "data", split)
    # Same arguments again: nothing to do; other arguments on the same folder: refused.
    assert add_unlabeled(small / "data", f"folder:{small / 'photos'}", small / "fm", seed=3) == card
    from funmatch.errors import FunmatchError

    with pytest.raises(FunmatchError, match="holds another dataset"):
        add_unlabeled(small / "data", f"folder:{small / 'photos'}", small / "fm", seed=4)
    # The same images at another path (a copy; the package's images after a reinstall elsewhere): the same data.
    moved = small / "photos_moved"
    shutil.copytree(small / "photos", moved)
    assert add_unlabeled(small / "data", f"folder:{moved}", small / "fm", seed=3) == card
    shutil.copy(sorted((small / "photos" / "deeper").iterdir())[0], moved / "deeper" / "extra.jpg")
    with pytest.raises(FunmatchError, match="holds another dataset"):  # another image: another source
        add_unlabeled(small / "data", f"folder:{moved}", small / "fm", seed=3)


def test_ratio_caps_the_unlabelled_images_and_a_prepared_source_works(small):
    from funmatch.data.unlabeled import UNION_SPLIT, add_unlabeled

    card = add_unlabeled(small / "data", f"folder:{small / 'photos'}", small / "fm_half", ratio=0.5)
    assert card["splits"][UNION_SPLIT]["unlabeled_examples"] == 6  # 0.5 × 12 labelled
    # A prepared folder as the source: its train split's images, labels dropped.
    card = add_unlabeled(small / "fm_half", str(small / "data"), small / "fm_prepared")
    assert card["splits"][UNION_SPLIT]["unlabeled_examples"] == 12
    assert {r["label"] for r in _records(small / "fm_prepared", UNION_SPLIT)} == {-1, 0, 1}


def test_unlabelled_images_from_an_evaluation_split_are_refused(small, tmp_path):
    from funmatch.data.unlabeled import add_unlabeled
    from funmatch.errors import FunmatchError

    leak = tmp_path / "leak"
    leak.mkdir()
    shutil.copy(next((small / "src" / "test" / "008_river").iterdir()), leak / "x.jpg")
    with pytest.raises(FunmatchError, match="'test' split"):
        add_unlabeled(small / "data", f"folder:{leak}", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial*"))
    with pytest.raises(FunmatchError, match="no such folder"):
        add_unlabeled(small / "data", f"folder:{tmp_path / 'missing'}", tmp_path / "out")
    with pytest.raises(FunmatchError, match="unlabeled_ratio"):
        add_unlabeled(small / "data", f"folder:{leak}", tmp_path / "out", ratio=-1)


def _textured_test_image(small):
    """A test-split image of the fixture with enough contrast for the perceptual hash."""
    from funmatch.data.unlabeled import FLAT_STD, image_signature

    files = sorted((small / "src" / "test").rglob("*.jpg"))
    return next(f for f in files if image_signature(f.read_bytes())[1].std() >= 2 * FLAT_STD)


def _encoded(image, fmt, **kwargs):
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("copy", ["jpeg_quality_60", "png", "resized_3_2", "resized_1_2"])
def test_near_duplicates_of_a_test_image_are_refused(small, tmp_path, copy):
    from PIL import Image

    from funmatch.data.unlabeled import add_unlabeled
    from funmatch.errors import FunmatchError

    original = _textured_test_image(small)
    image = Image.open(original).convert("RGB")
    w, h = image.size
    data, suffix = {
        "jpeg_quality_60": (lambda: _encoded(image, "JPEG", quality=60), ".jpg"),
        "png": (lambda: _encoded(image, "PNG"), ".png"),
        "resized_3_2": (lambda: _encoded(image.resize((3 * w // 2, 3 * h // 2), Image.Resampling.BICUBIC), "JPEG", quality=90), ".jpg"),
        "resized_1_2": (lambda: _encoded(image.resize((w // 2, h // 2), Image.Resampling.LANCZOS), "PNG"), ".png"),
    }[copy]
    data = data()
    assert data != original.read_bytes()
    photos = tmp_path / "photos"
    shutil.copytree(small / "photos", photos)
    (photos / f"copy{suffix}").write_bytes(data)
    with pytest.raises(FunmatchError, match=rf"copy{suffix} is \(nearly\) the same image as "
                                            rf"test/{original.parent.name}/{original.name} of the 'test' split"):
        add_unlabeled(small / "data", f"folder:{photos}", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial*"))


def test_the_union_streams_through_bucket_files(small, tmp_path, monkeypatch):
    """Many small buckets (as at scale): every image once, in a seeded order mixed across buckets."""
    from funmatch.data import prepare
    from funmatch.data.unlabeled import UNION_SPLIT, add_unlabeled

    monkeypatch.setattr(prepare, "EXAMPLES_PER_BUCKET", 4)
    add_unlabeled(small / "data", f"folder:{small / 'photos'}", tmp_path / "a", seed=5)
    add_unlabeled(small / "data", f"folder:{small / 'photos'}", tmp_path / "b", seed=5)
    records = _records(tmp_path / "a", UNION_SPLIT)
    assert [r["image"] for r in records] == [r["image"] for r in _records(tmp_path / "b", UNION_SPLIT)]
    expected = [r["image"] for r in _records(small / "data", "train")]
    expected += [f.read_bytes() for f in sorted(UNLABELED_IMAGES.iterdir())[:9]]
    assert sorted(r["image"] for r in records) == sorted(expected)
    assert not list((tmp_path / "a").glob(".bucket-*"))


def test_bit_counts_counts_the_set_bits_of_every_uint64():
    from funmatch.data.unlabeled import bit_counts

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.integers(0, 2**63, 200, dtype=np.uint64) * np.uint64(2) + np.uint64(1),
                             np.array([0, 1, 2**63, 2**64 - 1, 0xF0F0], dtype=np.uint64)])
    assert bit_counts(values).tolist() == [bin(int(v)).count("1") for v in values]
    assert bit_counts(values[:0]).tolist() == []
