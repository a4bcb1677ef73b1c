"""Every command that builds or runs a model picks its backend through `runtime.launch`: JAX when a GPU or
TPU is reported (the device query faked), with TensorFlow kept off it, before Keras is imported; and the
launch's own faults (an unknown backend, an unreachable coordinator) are one line."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

# Each command with the flags that pass its cheap checks; the last item: whether it takes --precision.
COMMANDS = {
    "distill": (["distill", "--config", "eurosat", "--data", "data", "--teacher", "t.keras", "--workdir", "w"], True),
    "teacher": (["teacher", "--config", "eurosat", "--data", "data", "--workdir", "w"], True),
    "targets": (["targets", "--teacher", "t.keras", "--data", "data", "--config", "eurosat", "--views", "2",
                 "--out", "o"], True),
    "labels": (["labels", "--config", "eurosat", "--data", "data", "--workdir", "w"], True),
    "tune": (["tune", "--config", "eurosat", "--data", "data", "--teacher", "t.keras", "--dir", "s"], True),
    "demo": (["demo", "--out", "d"], True),
    "evaluate": (["evaluate", "--student", "t.keras", "--teacher", "t.keras", "--data", "data"], False),
    "export": (["export", "t.keras", "--format", "keras", "--out", "x.keras"], False),
    "models resolution": (["models", "resolution", "--model", "t.keras", "--data", "data", "--resolutions", "32",
                           "--out", "r.keras"], False),
}

PROBE = """
import json, os, sys
from funmatch import cli, runtime

runtime.detect_accelerator = lambda environ=None: {accelerator!r}  # the device query, faked
picked = {{}}

class Launched(Exception):
    pass

def setup(precision=None, verbose=True, distribute=True):  # what launch hands on; nothing computes
    picked[command] = {{"backend": os.environ.get("KERAS_BACKEND"), "precision": precision}}
    raise Launched

runtime.setup = setup
for command, argv in {commands!r}.items():
    os.environ.pop("KERAS_BACKEND", None)
    try:
        status = cli.main(argv)
        picked[command] = {{"status": status}}
    except Launched:
        pass
print(json.dumps({{"picked": picked, "heavy": [m for m in ("tensorflow", "jax", "keras") if m in sys.modules]}}))
"""


def _fixture_files(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset.json").write_text("{}")
    (tmp_path / "t.keras").write_text("")


def _probe(tmp_path, accelerator, commands):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    code = PROBE.format(accelerator=accelerator, commands=commands)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("accelerator", ["GPU", "TPU"])
def test_every_model_command_picks_jax_on_an_accelerator(tmp_path, accelerator):
    _fixture_files(tmp_path)
    argvs = {name: argv + (["--precision", "bfloat16"] if precision else []) for name, (argv, precision) in COMMANDS.items()}
    out = _probe(tmp_path, accelerator, argvs)
    assert out["heavy"] == []  # chosen before TensorFlow, JAX or Keras is imported
    for name, (_, precision) in COMMANDS.items():
        assert out["picked"][name] == {"backend": "jax", "precision": "bfloat16" if precision else "auto"}, name


def test_on_cpu_the_commands_leave_the_backend_to_keras(tmp_path):
    _fixture_files(tmp_path)
    out = _probe(tmp_path, "CPU", {name: argv for name, (argv, _) in COMMANDS.items()})
    assert {name: picked["backend"] for name, picked in out["picked"].items()} == {name: None for name in COMMANDS}


def _cli(argv, tmp_path, **env):
    code = ("import json, sys\nfrom funmatch.cli import main\n"
            f"status = main({argv!r})\n"
            "print(json.dumps({'status': status, 'heavy': [m for m in ('tensorflow', 'jax', 'keras') if m in sys.modules]}))\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, **env})
    assert result.stdout.strip(), result.stderr[-3000:]
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "stderr": result.stderr,
            "seconds": time.monotonic() - started}


@pytest.mark.parametrize("argv", [COMMANDS["labels"][0], ["models", "list", "--names", "tiny*"]])
def test_an_unknown_backend_is_one_line(tmp_path, argv):
    _fixture_files(tmp_path)
    result = _cli(argv, tmp_path, KERAS_BACKEND="nonsense")
    assert result["status"] == 2 and "Traceback" not in result["stderr"], result
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert lines == [f"funmatch {argv[0]}: error: KERAS_BACKEND=nonsense: funmatch runs on the jax or tensorflow backend; "
                     "set KERAS_BACKEND to one of them, or unset it (JAX on GPUs and TPUs, else TensorFlow)"]


def test_an_unreachable_coordinator_is_one_line_within_its_timeout(tmp_path):
    _fixture_files(tmp_path)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = COMMANDS["distill"][0] + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1",
                                     "--coordinator-timeout", "2"]
    result = _cli(argv, tmp_path, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")  # several processes run on JAX
    assert result["status"] == 2, result
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and f"--coordinator 127.0.0.1:{port}: process 0 cannot be reached" in lines[0], lines
    assert "within 2 s" in lines[0] and result["seconds"] < 280  # imports + 2 s; JAX alone waits 300 s


def test_the_coordinator_timeout_defaults_to_a_minute_and_is_checked():
    from funmatch import runtime
    from funmatch.errors import FunmatchError

    assert runtime.coordinator_timeout(None, environ={}) == 60.0
    assert runtime.coordinator_timeout(None, environ={"FUNMATCH_COORDINATOR_TIMEOUT": "5"}) == 5.0
    with pytest.raises(FunmatchError, match="FUNMATCH_COORDINATOR_TIMEOUT: need a positive number of seconds"):
        runtime.coordinator_timeout(None, environ={"FUNMATCH_COORDINATOR_TIMEOUT": "soon"})
