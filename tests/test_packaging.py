"""Packaging: installing funmatch keeps an accelerator image's own JAX and TensorFlow builds.

Kaggle's TPU image ships `tensorflow-cpu` + `jax[tpu]`, its GPU image CUDA `tensorflow` + CUDA `jax`. A
runtime requirement on `tensorflow-cpu`, `tensorflow` or `jax[cpu]` would make pip replace or double them
(`tensorflow` and `tensorflow-cpu` write the same package folder). So TensorFlow is not a runtime
requirement at all (import funmatch checks for it and names the fix), JAX is required without an extra,
and plain machines take the `cpu` extra.
"""

import pathlib
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement

REPO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
ACCELERATOR_BUILDS = {"tensorflow", "tensorflow-cpu", "tf-nightly", "jaxlib", "libtpu", "torch"}


def _names(requirements):
    return {Requirement(r).name.lower().replace("_", "-"): Requirement(r) for r in requirements}


def test_runtime_requirements_leave_an_images_jax_and_tensorflow_alone():
    runtime = _names(PROJECT["dependencies"])
    assert not ACCELERATOR_BUILDS & set(runtime), sorted(ACCELERATOR_BUILDS & set(runtime))
    assert runtime["jax"].extras == set()  # jax[tpu] / CUDA jax satisfy it; jax[cpu] would not be needed
    assert "keras" in runtime and "tensorflow-datasets" in runtime


def test_cpu_extra_brings_the_cpu_builds_and_never_tensorflow():
    cpu = _names(PROJECT["optional-dependencies"]["cpu"])
    assert set(cpu) == {"jax", "tensorflow-cpu"} and cpu["jax"].extras == {"cpu"}
    for extra, requirements in PROJECT["optional-dependencies"].items():
        # `tensorflow` beside `tensorflow-cpu` overwrites one with the other.
        assert "tensorflow" not in _names(requirements), extra


def test_license_file_is_the_apache_license():
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("Copyright 2026 The funmatch authors\n")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_constraints_pin_every_package_once():
    lines = [line for line in (REPO / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    names = [Requirement(line).name.lower().replace("_", "-") for line in lines]
    assert len(names) == len(set(names))
    assert all(str(Requirement(line).specifier).startswith("==") for line in lines)
    assert "tensorflow" not in names and "tensorflow-cpu" in names  # the test machine is a plain CPU one


def test_scripts_are_valid_bash():
    for script in ("scripts/setup.sh", "scripts/test.sh", ".ci/run"):
        result = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_import_names_the_fix_when_tensorflow_is_missing():
    """`import funmatch` without any TensorFlow: one ImportError that says what to install."""
    code = "import sys; sys.modules['tensorflow'] = None; import funmatch"  # find_spec() sees no TensorFlow
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: ") and "funmatch[cpu]" in last and "tensorflow" in last, last
