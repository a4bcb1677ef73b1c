"""The CPU recipes' students are as much cheaper than their teachers as their docstrings say."""

import pytest

from funmatch import models
from funmatch.configs import get_config


def flops(arch: str, resolution: int, num_classes: int) -> float:
    return models.count_flops(models.create(arch, num_classes=num_classes, resolution=resolution), resolution)


@pytest.mark.parametrize("recipe, num_classes, teacher_resolution, ratio", [
    ("flowers102_cpu", 102, None, 10.4),  # the recipe's own teacher resolution (96 px)
    ("eurosat", 10, 112, 15.3),  # the resolution the shipped EuroSAT teacher is served at
    ("eurosat", 10, 96, 10.7),  # the resolution it was trained at
    ("eurosat", 10, None, 4.7),  # the recipe's default teacher resolution (64 px)
])
def test_student_cost_ratio_matches_the_recipe_docstring(recipe, num_classes, teacher_resolution, ratio):
    config = get_config(recipe)
    teacher = flops(config.teacher, teacher_resolution or config.teacher_resolution, num_classes)
    student = flops(config.student, config.student_resolution, num_classes)
    assert teacher / student == pytest.approx(ratio, abs=0.05)
    module = __import__(f"funmatch.configs.{recipe}", fromlist=["__doc__"])
    assert f"{ratio:.1f}×" in module.__doc__
