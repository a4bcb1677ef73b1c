"""`load_script(NAME)`: a script of benchmarks/ imported as a module, for the tests of that script."""

import importlib.util
import pathlib

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str, module_name: str):
    """benchmarks/NAME as a fresh module called `module_name`."""
    spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
