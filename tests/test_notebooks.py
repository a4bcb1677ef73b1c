"""The notebook suite: generated from its percent-format sources, free of library code, and executed end to
end in smoke mode on the CPU (nbclient, the venv's python as kernel, parameters injected as papermill does).
"""

import importlib.util
import json
import os
import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NAMES = [
    "00_quickstart",
    "01_prepare_data",
    "02_train_teacher",
    "03_function_matching",
    "04_hyperparameter_search",
    "05_evaluate_and_export",
]

# What a smoke run must leave behind: PNG outputs in the executed notebook, and files under its folder.
EXPECTED = {
    "00_quickstart": (3, ["funmatch_smoke/quickstart/student/student.keras",
                          "funmatch_smoke/quickstart/student/evaluation.json",
                          "funmatch_smoke/quickstart/report/index.html"]),
    "01_prepare_data": (3, ["funmatch_smoke/data/dataset.json"]),
    "02_train_teacher": (2, ["funmatch_smoke/teacher/teacher.keras", "funmatch_smoke/teacher/teacher_metrics.json"]),
    "03_function_matching": (4, ["funmatch_smoke/distill/function_matching/student.keras",
                                 "funmatch_smoke/distill/report/index.html"]),
    "04_hyperparameter_search": (1, ["funmatch_smoke/search/summary.md", "funmatch_smoke/search/summary.png"]),
    "05_evaluate_and_export": (1, ["funmatch_smoke/student/evaluation.json",
                                   "funmatch_smoke/export/student.keras", "funmatch_smoke/export/student.tflite"]),
}

# Library code does not belong in a notebook: models, losses, pipelines, training loops, hard-coded paths.
FORBIDDEN = [
    (r"class\s+\w+\s*\(.*keras", "a Keras class definition"),
    (r"^\s*class\s", "a class definition"),
    (r"def\s+\w*loss", "a loss function"),
    (r"tf\.data\.Dataset", "a tf.data pipeline"),
    (r"GradientTape", "a hand-written training step"),
    (r"jax\.grad|value_and_grad|optax", "a hand-written training step"),
    (r"keras\.layers\.", "model code"),
    (r"keras\.(Sequential|Model)\s*\(", "model code"),
    (r"\.fit\(|\.compile\(|train_step", "a training loop"),
    (r"sys\.path\.(insert|append)", "a sys.path hack"),
    (r"/home/|/Users/|/root/|~/", "a home path"),
    (r"gs://(?!YOUR_BUCKET/)", "a cloud bucket"),
    (r"s3://|/content/", "a platform-specific path"),
    # Kaggle paths only as the Kaggle branch of a parameter's default (`X = "/kaggle/..." if KAGGLE else "..."`).
    (r"^(?!.*\bKAGGLE\b).*/kaggle/", "a Kaggle path outside a `... if KAGGLE else ...` default"),
]


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", REPO / "scripts" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


builder = _load_builder()


def _cells(name):
    return builder.parse_percent((NOTEBOOKS / f"{name}.py").read_text(), name)


# ---------------------------------------------------------------------------------------------------------
# Sources and generated files
# ---------------------------------------------------------------------------------------------------------


def test_suite_is_complete_and_generated_notebooks_are_in_sync():
    assert [p.stem for p in builder.sources()] == NAMES
    assert builder.out_of_sync() == []


def test_check_fails_on_stale_missing_and_orphaned_notebooks(tmp_path):
    (tmp_path / "01_a.py").write_text("# %% [markdown]\n# # A\n\n# %%\nx = 1\n")
    (tmp_path / "02_b.py").write_text("# %%\ny = 2\n")
    assert builder.main(["--dir", str(tmp_path)]) == 0
    assert builder.main(["--dir", str(tmp_path), "--check"]) == 0
    (tmp_path / "01_a.py").write_text("# %% [markdown]\n# # A\n\n# %%\nx = 2\n")  # edited source, stale notebook
    (tmp_path / "02_b.ipynb").unlink()
    (tmp_path / "03_c.ipynb").write_text("{}")
    problems = builder.out_of_sync(tmp_path)
    assert len(problems) == 3
    assert "01_a.ipynb: differs" in problems[0] and "02_b.ipynb: missing" in problems[1]
    assert "03_c.ipynb: no percent-format source" in problems[2]
    assert builder.main(["--dir", str(tmp_path), "--check"]) == 1
    builder.main(["--dir", str(tmp_path)])
    import nbformat

    assert nbformat.read(tmp_path / "01_a.ipynb", as_version=4).cells[1].source == "x = 2"


def test_percent_format_parser():
    text = (
        "\n# %% [markdown]\n# # Title\n#\n# Some *text*.\n\n"
        '# %% tags=["parameters"]\nSMOKE = False\n\n\n'
        "# %%\nif SMOKE:\n    # a comment stays code\n    pass\n"
    )
    cells = builder.parse_percent(text, "x.py")
    assert [(c.kind, c.source, c.tags) for c in cells] == [
        ("markdown", "# Title\n\nSome *text*.", []),
        ("code", "SMOKE = False", ["parameters"]),
        ("code", "if SMOKE:\n    # a comment stays code\n    pass", []),
    ]
    notebook = builder.build_notebook(cells)
    assert [c["id"] for c in notebook.cells] == ["cell-00", "cell-01", "cell-02"]
    assert notebook.cells[1]["metadata"] == {"tags": ["parameters"]} and notebook.cells[1]["outputs"] == []
    for bad, message in [
        ("x = 1\n# %%\ny = 2\n", "x.py:1: text before the first"),
        ("# %% [markdown]\nnot a comment\n", "x.py:2: a markdown cell's lines must start with '# '"),
        ("# %% title\nx = 1\n", "x.py:1: unknown cell options"),
        ("# %% tags=[1]\nx = 1\n", "x.py:1: tags must be a JSON list of strings"),
        ("# %%\n\n# %%\nx = 1\n", "x.py:2: empty code cell"),
    ]:
        with pytest.raises(builder.FormatError, match=re.escape(message)):
            builder.parse_percent(bad, "x.py")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_begins_with_install_accelerator_and_parameters(name):
    code = [c for c in _cells(name) if c.kind == "code"]
    install, accelerator, parameters = code[:3]
    assert "pip" in install.source and "FUNMATCH_SOURCE" in install.source and 'find_spec("funmatch")' in install.source
    assert "runtime.setup()" in accelerator.source and "KERAS_BACKEND" in accelerator.source
    assert parameters.tags == ["parameters"] and [c for c in code if "parameters" in c.tags] == [parameters]
    assert re.search(r"^SMOKE = False\b", parameters.source, re.M)
    # The defaults are plain values a user edits (papermill can override each of them).
    for line in parameters.source.splitlines():
        assert re.match(r"^[A-Z_]+ = .+", line), f"{name}: parameters cell line {line!r} is not `NAME = value`"
    # The setup cells are the same in every notebook (one text to maintain and review).
    reference = [c for c in _cells(NAMES[0]) if c.kind == "code"][:2]
    assert [install.source, accelerator.source] == [c.source for c in reference]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_has_no_library_code_or_hard_coded_paths(name):
    text = (NOTEBOOKS / f"{name}.py").read_text()
    for pattern, what in FORBIDDEN:
        for number, line in enumerate(text.splitlines(), start=1):
            assert not re.search(pattern, line), f"notebooks/{name}.py:{number}: {what}: {line.strip()}"


def test_forbidden_patterns_catch_library_code():
    samples = [
        "class Student(keras.Model):", "def distillation_loss(s, t):", "ds = tf.data.Dataset.range(3)",
        "with tf.GradientTape() as tape:", "x = keras.layers.Dense(3)(x)", 'DATA_DIR = "gs://my-bucket/data"',
        'DATA_DIR = "/home/me/data"', "model.fit(ds)", "sys.path.insert(0, '../src')",
    ]
    for sample in samples:
        assert any(re.search(pattern, sample) for pattern, _ in FORBIDDEN), sample
    assert not any(re.search(p, 'DATA_DIR = "gs://YOUR_BUCKET/data"') for p, _ in FORBIDDEN)
    assert any(re.search(p, 'DATA_DIR = "/kaggle/input/flowers"') for p, _ in FORBIDDEN)
    assert not any(re.search(p, 'DATA_DIR = "/kaggle/input/flowers" if KAGGLE else "data/flowers"') for p, _ in FORBIDDEN)


# ---------------------------------------------------------------------------------------------------------
# Execution in smoke mode
# ---------------------------------------------------------------------------------------------------------


def inject_parameters(notebook, parameters: dict):
    """Insert a cell that overrides `parameters` right after the `parameters` cell (as papermill does)."""
    import nbformat

    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    source = "# Parameters injected by tests/test_notebooks.py\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(source.rstrip("\n"), metadata={"tags": ["injected-parameters"]})
    cell["id"] = "injected-parameters"
    notebook.cells.insert(index + 1, cell)
    return notebook


def _kernel_spec_dir(root: pathlib.Path) -> str:
    """A Jupyter data folder whose `funmatch-test` kernel is this interpreter (the venv), whatever else is installed."""
    spec = root / "kernels" / "funmatch-test"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "funmatch test", "language": "python",
    }))
    return str(root)


@pytest.fixture(scope="session")
def kernel_environment(tmp_path_factory):
    """Environment for the kernels: the venv's python, the JAX backend on the CPU, one shared JAX compilation
    cache (the notebooks compile the same small programs), funmatch importable (no install)."""
    root = tmp_path_factory.mktemp("jupyter")
    return {
        "JUPYTER_PATH": _kernel_spec_dir(root),
        "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax"),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(root / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.5",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def execute(name: str, workdir: pathlib.Path, parameters: dict):
    """Run notebooks/NAME.ipynb in `workdir` with `parameters` injected; returns the executed notebook.

    The kernel inherits this process's environment (see `kernel_environment`)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = inject_parameters(nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4), parameters)
    client = NotebookClient(notebook, timeout=600, kernel_name="funmatch-test", allow_errors=False,
                            resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    finally:
        nbformat.write(notebook, workdir / f"{name}.executed.ipynb")  # for inspection when a cell fails
    return notebook


def png_outputs(notebook) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


@pytest.mark.slow
@pytest.mark.both_backends  # JAX is the notebooks' default backend; TensorFlow is the CPU default
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_smoke_mode(name, tmp_path, kernel_environment, monkeypatch):
    for key, value in kernel_environment.items():
        monkeypatch.setenv(key, value)
    notebook = execute(name, tmp_path, {"SMOKE": True})
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    pictures, files = EXPECTED[name]
    assert png_outputs(notebook) >= pictures
    for relative in files:
        path = tmp_path / relative
        assert path.exists() and (path.is_dir() or path.stat().st_size > 0), relative
