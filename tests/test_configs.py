"""Recipes: the paper's table exactly, steps = round(epochs * N / batch), overrides and their errors."""

import pytest

from funmatch.configs import RECIPES, get_config
from funmatch.errors import FunmatchError

# (recipe, variant) -> (epochs, lr, wd, T, N) copied from the paper's table in DESIGN.md.
PAPER = {
    ("flowers102", "fast"): (10_000, 0.003, 3e-4, 10, 1_020),
    ("flowers102", "medium"): (100_000, 0.001, 1e-4, 1, 1_020),
    ("flowers102", "long"): (1_000_000, 0.0003, 1e-5, 1, 1_020),
    ("pets37", "fast"): (1_000, 0.01, 1e-3, 5, 3_312),
    ("pets37", "medium"): (3_000, 0.003, 3e-4, 10, 3_312),
    ("pets37", "long"): (30_000, 0.003, 1e-5, 2, 3_312),
    ("food101", "fast"): (100, 0.01, 1e-3, 10, 68_175),
    ("food101", "medium"): (1_000, 0.001, 3e-4, 10, 68_175),
    ("food101", "long"): (3_000, 0.01, 1e-4, 5, 68_175),
    ("sun397", "fast"): (100, 0.01, 1e-3, 10, 76_128),
    ("sun397", "medium"): (1_000, 0.001, 1e-4, 10, 76_128),
    ("sun397", "long"): (3_000, 0.01, 3e-5, 10, 76_128),
}


@pytest.mark.parametrize("recipe,variant", sorted(PAPER))
def test_paper_table(recipe, variant):
    epochs, lr, wd, temperature, n = PAPER[(recipe, variant)]
    c = get_config(f"{recipe}:variant={variant}")
    assert (c.epochs, c.learning_rate, c.weight_decay, c.temperature, c.num_train_examples) == (epochs, lr, wd, temperature, n)
    assert c.batch_size == 512 and c.warmup_steps == 1500 and c.mixup_p == 1.0 and c.clip_norm == 1.0
    assert c.student == "bit_r50x1" and c.teacher == "bit_r152x2"
    assert c.student_resolution == c.teacher_resolution == 128 and c.resize_small == 160
    assert c.steps == round(epochs * n / 512)
    assert c.mode == "function_matching" and c.optimizer == "adam"


def test_flowers_fast_steps_by_hand():
    # 10,000 epochs * 1,020 images / 512 = 19,921.875 -> 19,922 steps.
    assert get_config("flowers102:variant=fast").steps == 19_922


def test_imagenet():
    c = get_config("imagenet")
    assert (c.batch_size, c.epochs, c.learning_rate, c.weight_decay, c.temperature, c.warmup_steps) == (4096, 1200, 0.03, 3e-4, 1.0, 5000)
    assert c.student_resolution == 224 and c.resize_small == 256
    # The official distillation config's split and buffer: train[:98%] (1,255,544 of 1,281,167), 250,000.
    assert "train=train[:98%],validation=train[98%:]" in c.source and c.num_train_examples == 1_255_544
    assert c.shuffle_buffer == 250_000


def test_recipe_size_must_match_the_card():
    c = get_config("flowers102:variant=fast")
    assert c.check_dataset_size(1020, split="train", data_dir="d").steps == 19_922
    with pytest.raises(FunmatchError) as info:
        c.check_dataset_size(6552, split="train", data_dir="data/flowers")
    message = str(info.value)
    assert "split 'train' has 6,552 examples" in message and "num_train_examples=1,020" in message
    assert "add num_train_examples=6552 to --config" in message and "\n" not in message
    # The way out named in the message works: steps then follow the data.
    fixed = get_config("flowers102:variant=fast,num_train_examples=6552")
    assert fixed.check_dataset_size(6552, split="train", data_dir="d").steps == round(10_000 * 6552 / 512)
    # A recipe that leaves N open takes the card's; smoke runs of any recipe use their tiny data's N.
    assert get_config("eurosat").check_dataset_size(1280, split="train", data_dir="d").num_train_examples == 1280
    assert get_config("flowers102:smoke=true").check_dataset_size(48, split="train", data_dir="d").steps == 3


def test_overrides_and_aliases():
    c = get_config("pets37:variant=long,lr=0.001,wd=2e-5,T=3,mode=consistent,total_steps=10,warmup_steps=2")
    assert (c.learning_rate, c.weight_decay, c.temperature, c.mode, c.steps) == (0.001, 2e-5, 3.0, "consistent", 10)


def test_smoke_shrinks_but_explicit_overrides_win():
    c = get_config("eurosat:smoke=true")
    assert c.smoke and c.steps == 3 and c.batch_size <= 8
    c = get_config("eurosat:smoke=true,total_steps=5")
    assert c.steps == 5


def test_cpu_recipe_takes_dataset_size_from_card():
    c = get_config("eurosat")
    assert c.steps == 0
    assert c.with_dataset_size(1280).steps == round(c.epochs * 1280 / c.batch_size)


@pytest.mark.parametrize(
    "spec,message",
    [
        ("nosuch", "unknown recipe 'nosuch'"),
        ("flowers102:lrr=0.1", "unknown key(s) lrr"),
        ("flowers102:variant=huge", "'variant': unknown value 'huge'"),
        ("flowers102:mode=magic", "unknown mode 'magic'"),
        ("flowers102:lr=abc", "learning_rate='abc': expected a float"),
        ("flowers102:data=pets37", "'data' is fixed by the recipe name"),
        ("eurosat:temperature=0", "config key 'temperature' (T) must be > 0, got 0.0"),
        ("eurosat:lr=nan", "config key 'learning_rate' (lr) must be a finite number, got nan"),
        ("eurosat:lr=1e400", "config key 'learning_rate' (lr) must be a finite number, got inf"),
        ("eurosat:checkpoint_every=0", "config key 'checkpoint_every' must be > 0, got 0"),
        ("eurosat:checkpoint_every=-1", "config key 'checkpoint_every' must be > 0, got -1"),
        ("eurosat:keep_checkpoints=0", "config key 'keep_checkpoints' must be > 0"),
        ("eurosat:teacher_warmup_steps=-1", "config key 'teacher_warmup_steps' must be >= 0, got -1"),
        ("eurosat:teacher_warmup_steps=5000", "config key 'teacher_warmup_steps' (5000) exceeds teacher_steps (4000)"),
        ("flowers102:total_steps=100", "config key 'warmup_steps' (1500) exceeds the 100 training steps"),
        ("eurosat:crop_area_min=0", "config key 'crop_area_min' is a percentage of the image area in (0, 100]"),
        ("eurosat:wd=-1", "config key 'weight_decay' (wd) must be >= 0"),
    ],
)
def test_bad_configs_are_one_line_errors(spec, message):
    with pytest.raises(FunmatchError) as info:
        get_config(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_recipe_builds():
    for name in RECIPES:
        assert get_config(name).recipe == name
