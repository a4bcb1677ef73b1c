"""Fixtures of the data tests: tiny synthetic ImageFolders and prepared datasets."""

import pathlib

import pytest
from data_test_images import make_image_folder


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> pathlib.Path:
    """Prepared dataset: train 10 examples (2 classes: 6 + 4), test 5, in shards of 3 records."""
    from funmatch.data.prepare import prepare

    root = make_image_folder(
        tmp_path_factory.mktemp("tiny_src"),
        {"train": {"a_class": 6, "b_class": 4}, "test": {"a_class": 3, "b_class": 2}},
    )
    out = tmp_path_factory.mktemp("tiny") / "prepared"
    # Source order (class by class): the pipeline tests check positions against it.
    prepare(f"folder:{root}", out, examples_per_shard=3, progress=False, workers=2, shuffle_seed=None)
    return out


@pytest.fixture(scope="session")
def flowers64(tmp_path_factory, shared_data) -> tuple[pathlib.Path, dict]:
    """The shared Flowers102, all splits, prepared at shorter side 64 (~10 s); (folder, card)."""
    from funmatch.data.prepare import prepare

    out = tmp_path_factory.mktemp("flowers") / "flowers102_64"
    card = prepare(f"folder:{shared_data / 'flowers102'}", out, shorter_side=64, progress=False)
    return out, card
