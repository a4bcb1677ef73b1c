"""The search space: paper defaults, `--space` syntax, bad input, conditional mixup, trial configs."""

import dataclasses

import pytest

from funmatch.configs import get_config
from funmatch.errors import FunmatchError
from funmatch.tuning import build_hyperparameters, parse_space, resolve_axes, trial_config


def test_default_axes_are_the_papers_sweep():
    config = get_config("eurosat")  # 30 epochs, no fixed step count
    axes = resolve_axes(config, {})
    assert axes["learning_rate"].values == (0.001, 0.003, 0.01)
    assert (axes["weight_decay"].low, axes["weight_decay"].high, axes["weight_decay"].log) == (1e-5, 1e-3, True)
    assert axes["temperature"].values == (1.0, 2.0, 5.0, 10.0)
    assert axes["mixup_p"].values == (0.0, 0.1, 0.5, 1.0)
    assert axes["mode"].values == ("function_matching", "fixed_teacher")
    assert axes["epochs"].values == pytest.approx((10.0, 30.0, 90.0))
    # A smoke recipe fixes its step count, so the length axis is in steps: 3 -> {1, 3, 9}.
    assert resolve_axes(get_config("eurosat:smoke=true"), {})["total_steps"].values == (1, 3, 9)
    assert set(resolve_axes(config, {}, target="teacher")) == {"teacher_learning_rate"}


def test_space_syntax_lists_ranges_aliases_and_overrides():
    space = parse_space(["lr=0.001,0.003;T=1,2", "wd=1e-5..1e-3:log", "mixup=0..1", "crop=consistent,fixed_teacher"])
    assert space["learning_rate"].values == (0.001, 0.003)
    assert space["temperature"].values == (1.0, 2.0)
    assert (space["weight_decay"].low, space["weight_decay"].log) == (1e-5, True)
    assert (space["mixup_p"].low, space["mixup_p"].high, space["mixup_p"].log) == (0.0, 1.0, False)
    assert space["mode"].values == ("consistent", "fixed_teacher")
    axes = resolve_axes(get_config("eurosat"), space, only=["lr", "T"])
    assert list(axes) == ["learning_rate", "temperature"]
    assert axes["learning_rate"].values == (0.001, 0.003)  # the override replaced the default


@pytest.mark.parametrize(
    "items, message",
    [
        (["learning_rat=0.1"], "unknown hyperparameter 'learning_rat'"),
        (["seed=1,2"], "unknown hyperparameter 'seed'"),  # bookkeeping fields are not tunable
        (["lr="], "no values"),
        (["lr=0.1,,0.2"], "empty value"),
        (["wd=1e-3..1e-5"], "empty range"),
        (["wd=0..1e-3:log"], "log range needs LOW > 0"),
        (["T=hot"], "not a float"),
        (["mode=mixup_only"], "unknown mode"),
        (["lr"], "expected NAME=VALUES"),
    ],
)
def test_bad_space_is_a_clear_error(items, message):
    with pytest.raises(FunmatchError, match=message):
        parse_space(items)


def test_empty_search_space_is_an_error():
    config = get_config("eurosat")
    with pytest.raises(FunmatchError, match="empty search space"):
        resolve_axes(config, {}, only=[""])
    with pytest.raises(FunmatchError, match="not in the search space"):
        resolve_axes(config, {}, only=["warmup_steps"])
    with pytest.raises(FunmatchError, match="not used by --target teacher"):
        resolve_axes(config, parse_space(["lr=0.1,0.2"]), target="teacher")
    # Hyperband owns the schedule length: a length-only space is empty there.
    with pytest.raises(FunmatchError, match="empty search space"):
        resolve_axes(config, {}, only=["epochs"], hyperband=True)


def test_mixup_is_conditional_on_function_matching():
    axes = resolve_axes(get_config("eurosat"), {})
    hp = build_hyperparameters(axes)
    hp.values["mode"] = "function_matching"
    mixup = next(h for h in hp.space if h.name == "mixup_p")
    assert hp.is_active(mixup)
    hp.values["mode"] = "fixed_teacher"
    assert not hp.is_active(mixup)
    # With a single mode there is nothing to condition on.
    single = build_hyperparameters(resolve_axes(get_config("eurosat"), parse_space(["mode=function_matching"])))
    assert single.is_active(next(h for h in single.space if h.name == "mixup_p"))


def test_trial_config_applies_values_and_hyperband_budget():
    config = get_config("eurosat:smoke=true")  # total_steps 3
    out = trial_config(config, {"learning_rate": 0.01, "temperature": 2, "mode": "fixed_teacher", "tuner/trial_id": "x"})
    assert (out.learning_rate, out.temperature, out.mode) == (0.01, 2.0, "fixed_teacher")
    assert isinstance(out.temperature, float)
    # An epochs value frees the length from the smoke step count: steps = round(epochs * N / batch).
    out = trial_config(dataclasses.replace(config, num_train_examples=40), {"epochs": 0.4})
    assert (out.total_steps, out.steps) == (0, 2)
    # Hyperband budget r/R scales the length: ceil(3 * 3/9) = 1, ceil(30 * 3/9) = 10.
    assert trial_config(config, {"tuner/epochs": 3}, hyperband_fraction=3 / 9).total_steps == 1
    assert trial_config(dataclasses.replace(config, total_steps=30), {}, hyperband_fraction=3 / 9).total_steps == 10
    with pytest.raises(FunmatchError, match="temperature"):
        trial_config(config, {"temperature": 0.0})
