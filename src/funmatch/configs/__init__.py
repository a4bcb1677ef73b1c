"""Recipes as Python: `get_config("flowers102:variant=fast,lr=0.001")` -> `Config`.

`RECIPE[:key=value,...]` names a recipe (below) and overrides its fields; `smoke=true` shrinks a recipe
to a few tiny steps for tests. Unknown recipes and keys are errors.

The bottom of the house with `errors` and `runtime`: imports nothing of funmatch but `errors`, and no
Keras or TensorFlow, so commands check `--config` before the heavy imports.
"""

from __future__ import annotations

import importlib

from funmatch.configs.common import MODES, Config, parse_overrides
from funmatch.errors import FunmatchError

# recipe name -> (module, fixed selector overrides)
RECIPES: dict[str, tuple[str, str]] = {
    "flowers102": ("funmatch.configs.transfer", "data=flowers102"),
    "pets37": ("funmatch.configs.transfer", "data=pets37"),
    "food101": ("funmatch.configs.transfer", "data=food101"),
    "sun397": ("funmatch.configs.transfer", "data=sun397"),
    "imagenet": ("funmatch.configs.imagenet", ""),
    "eurosat": ("funmatch.configs.eurosat", ""),
    "flowers102_cpu": ("funmatch.configs.flowers102_cpu", ""),
}


def get_config(spec: str) -> Config:
    """Parse `RECIPE[:key=value,...]` into a validated `Config`."""
    name, _, arg = spec.partition(":")
    name = name.strip()
    if name not in RECIPES:
        raise FunmatchError(f"--config: unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    module_name, fixed = RECIPES[name]
    if "data=" in arg and fixed:
        raise FunmatchError(f"--config {name}: 'data' is fixed by the recipe name; use another recipe instead")
    module = importlib.import_module(module_name)
    return module.get_config(",".join(filter(None, [fixed, arg])))


__all__ = ["MODES", "RECIPES", "Config", "get_config", "parse_overrides"]
