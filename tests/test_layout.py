"""The house rules of `src/funmatch`: no import cycles, imports only downwards, and commands that answer
`--help` (and errors about a flag's form) before TensorFlow or JAX is imported.

The import graph is read from the source with `ast` (nothing is imported), every `import` counted,
including the ones inside functions: a lazy import that points upwards is still a circle in the design.
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"

# Rank of each part of the package, lowest first; a module may import its own part or a lower rank.
# Evaluation and reporting sit below training: a run evaluates its student and draws its inputs.
RANKS = {
    "errors": 0,
    "funmatch": 1,  # the package root: __version__ and FunmatchError
    "configs": 2,
    "runtime": 2,
    "optim": 2,
    "outputs": 2,  # the overwrite guard of every command that writes
    "data": 3,
    "models": 4,
    "distill": 5,
    "evaluation": 6,
    "reporting": 7,
    "export": 7,
    "training": 8,
    "tuning": 9,
    "commands": 10,
    "cli": 11,
}
HEAVY = ("tensorflow", "jax", "keras", "keras_tuner")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted((SRC / "funmatch").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """The funmatch modules that module `name` imports (anywhere in the file)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from funmatch.data import ops` imports the module funmatch.data.ops
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import funmatch.models.bit` -> that module
                target = target.rpartition(".")[0]
            if target.startswith("funmatch") and target != name:
                found.add(target)
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "funmatch"


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_part_of_the_package_has_a_rank(graph):
    unranked = sorted({_part(module) for module in graph} - set(RANKS))
    assert not unranked, f"parts of funmatch without a place in tests/test_layout.py RANKS: {unranked}"


def test_imports_only_point_downwards(graph):
    upward = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in sorted(targets)
        if _part(target) != _part(module) and RANKS[_part(target)] >= RANKS[_part(module)]
    ]
    assert not upward, "imports that do not point downwards:\n" + "\n".join(upward)


def test_no_import_cycles(graph):
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [module, target]) if target in path
                              else f"{module} -> {target}")
            elif target not in state:
                visit(target, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_check_finds_a_cycle():
    # The check itself: a two-module circle like the one between the old train.py and distill/teacher.py.
    fake = {"funmatch.training.a": {"funmatch.training.b"}, "funmatch.training.b": {"funmatch.training.a"}}
    state: dict[str, int] = {}
    found = []

    def visit(module):
        state[module] = 1
        for target in fake[module]:
            if state.get(target) == 1:
                found.append((module, target))
            elif target not in state:
                visit(target)
        state[module] = 2

    visit("funmatch.training.a")
    assert found == [("funmatch.training.b", "funmatch.training.a")]


def _run_cli(argv: list[str]) -> dict:
    """Runs `funmatch.cli.main(argv)` in a fresh interpreter; returns its status, stderr and heavy imports."""
    code = (
        "import json, sys\n"
        "from funmatch.cli import main\n"
        "try:\n"
        f"    status = main({argv!r})\n"
        "except SystemExit as e:\n"
        "    status = e.code\n"
        f"print(json.dumps({{'status': status, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "stderr": result.stderr}


def test_every_command_answers_help_before_tensorflow_or_jax():
    from funmatch.cli import COMMANDS

    for command in COMMANDS:
        result = _run_cli([command, "--help"])
        assert result["status"] == 0, (command, result["stderr"])
        assert result["heavy"] == [], f"funmatch {command} --help imported {result['heavy']}"


def test_every_flag_has_help_text():
    import argparse

    from funmatch.cli import COMMANDS, build_parser

    def missing(parser: argparse.ArgumentParser, where: str) -> list[str]:
        out = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out += missing(sub, f"{where} {name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not action.help:
                out.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
        return out

    undocumented = []
    for command in COMMANDS:
        top = build_parser(command)
        commands = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
        undocumented += missing(commands.choices[command], f"funmatch {command}")
    assert not undocumented, "flags without help text: " + ", ".join(undocumented)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["distill", "--config", "nosuch", "--data", "x", "--teacher", "y", "--workdir", "z"], "--config: unknown recipe 'nosuch'"),
        (["distill", "--config", "eurosat:nosuchkey=1", "--data", "x", "--teacher", "y", "--workdir", "z"], "nosuchkey"),
        (["distill", "--config", "eurosat", "--data", "missing_data", "--teacher", "y", "--workdir", "z"],
         "--data missing_data: dataset card not found"),
        (["teacher", "--config", "eurosat", "--data", "missing_data", "--workdir", "z"], "--data missing_data: dataset card not found"),
        (["tune", "--config", "nosuch", "--data", "x", "--dir", "z"], "--config: unknown recipe 'nosuch'"),
        (["evaluate", "--student", "missing.keras", "--data", "missing_data"], "--data missing_data: dataset card not found"),
        (["export", "missing.keras", "--format", "keras", "--out", "z"], "MODEL missing.keras: no such file"),
    ],
)
def test_flag_form_errors_answer_before_tensorflow_or_jax(argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _run_cli(argv)
    assert result["status"] == 2
    assert message in result["stderr"]
    assert result["heavy"] == [], f"funmatch {' '.join(argv)} imported {result['heavy']}"
    assert not (tmp_path / "z").exists()  # nothing was written


def test_every_script_of_the_repository_parses():
    """benchmarks/, scripts/ and .ci/ are run by hand or by CI, not imported by the package: a syntax error there
    (an unclosed docstring) would otherwise show only when someone runs the script."""
    root = SRC.parent
    python = sorted([*root.glob("benchmarks/*.py"), *root.glob("scripts/*.py")])
    shell = sorted([*root.glob("benchmarks/*.sh"), *root.glob("scripts/*.sh"), root / ".ci" / "run"])
    assert len(python) >= 10 and any(path.name == "scale.py" for path in python)
    for path in python:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")  # a SyntaxError names the file and line
    for path in shell:
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, f"{path}: {result.stderr}"
