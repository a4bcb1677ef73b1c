"""`tune --targets`: the store is checked before the first trial (one line), and a top-k store serves only
trials at the temperature it was stored at; the others run online and say so."""

import dataclasses

import pytest

from funmatch.configs import get_config
from funmatch.errors import FunmatchError
from funmatch.tuning import parse_space, resolve_axes
from funmatch.tuning.search import tune
from funmatch.tuning.stored import check_store, online_reason, stored_or_online

RECIPE = "eurosat:smoke=true"


@pytest.fixture(scope="module")
def top_k_store(tiny_data, tiny_teacher, tmp_path_factory):
    """Top-3 targets of the 10 classes, one view (a store above the full-storage limit behaves so)."""
    from funmatch.training.targets import generate_for_config

    out = tmp_path_factory.mktemp("tune_store") / "targets"
    card = generate_for_config(get_config(RECIPE), tiny_teacher, tiny_data, out, views=1, top_k=3, batch_size=8,
                               progress=False)
    assert card["storage"] == "top_k" and card["complete"]
    return out


@pytest.fixture(scope="module")
def other_teacher(tmp_path_factory):
    from funmatch import models

    path = tmp_path_factory.mktemp("tune_other") / "other.keras"
    models.create("tiny_cnn", num_classes=10, resolution=64).save(path)  # another random initialisation
    return path


def test_a_store_that_fits_names_the_trials_it_cannot_serve(top_k_store, tiny_data, tiny_teacher, capsys):
    config = get_config(RECIPE)
    axes = resolve_axes(config, parse_space(["T=1,2,5"]), only=["T"])
    card = check_store(top_k_store, config, axes, teacher_path=tiny_teacher, data_dir=tiny_data)
    assert card["top_k"] == 3
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "top-3 of 10 classes, exact only at T=1: trials at T=2,5 run online" in lines[0]

    assert online_reason(top_k_store, dataclasses.replace(config, temperature=1.0)) is None
    assert online_reason(top_k_store, dataclasses.replace(config, temperature=2.0)) == \
        "T=2: top-k targets are exact only at the store's T=1"
    assert "views" in online_reason(top_k_store, dataclasses.replace(config, temperature=1.0, mixup_p=0.5))
    assert online_reason(top_k_store, dataclasses.replace(config, temperature=1.0, teacher_resolution=48)).startswith(
        "teacher resolution 48")
    capsys.readouterr()
    assert stored_or_online(top_k_store, dataclasses.replace(config, temperature=2.0), "03") is None
    assert capsys.readouterr().out == \
        "funmatch tune: trial 03 runs online (T=2: top-k targets are exact only at the store's T=1)\n"
    assert stored_or_online(top_k_store, dataclasses.replace(config, temperature=1.0), "04") == top_k_store
    assert capsys.readouterr().out == ""


def test_a_store_of_another_teacher_stops_the_search_before_any_trial(top_k_store, tiny_data, other_teacher, tmp_path):
    ran = []
    with pytest.raises(FunmatchError) as error:
        tune(RECIPE, tiny_data, tmp_path / "search", teacher_path=other_teacher, targets_dir=top_k_store,
             space=["T=1"], axes=["T"], max_trials=1, run_fn=lambda config, workdir: ran.append(workdir) or {},
             verbose=False)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"--targets {top_k_store}: does not fit this search: computed with another teacher")
    assert ran == [] and not (tmp_path / "search").exists()


def test_a_store_at_another_resolution_is_refused_in_one_line(top_k_store, tiny_data, tiny_teacher):
    config = get_config(f"{RECIPE},teacher_resolution=48")
    with pytest.raises(FunmatchError, match=r"^--targets .*: does not fit this search: teacher resolution 64, "
                                            r"the recipe's is 48$"):
        check_store(top_k_store, config, teacher_path=tiny_teacher, data_dir=tiny_data)
