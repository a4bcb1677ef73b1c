"""`funmatch.runtime`: launch settings, backend choice, the precision policy and the setup report."""

import json
import subprocess
import sys

import pytest

from funmatch import runtime
from funmatch.errors import FunmatchError


def test_launch_settings_from_flags_and_from_the_keras_variables():
    assert runtime.launch_settings(environ={}) is None  # one process
    assert runtime.launch_settings("10.0.0.1:1234", 4, 3, environ={}) == {
        "coordinator": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}
    env = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:1234",
           "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"}
    assert runtime.launch_settings(environ=env)["process_id"] == 1
    assert runtime.launch_settings(process_id=0, environ=env)["process_id"] == 0  # a flag wins over its variable
    assert runtime.launch_settings("h:1", 1, 0, environ={}) is None  # one process of one


@pytest.mark.parametrize("args, message", [
    (("h:1", None, 0), "--num-processes"),
    ((None, 2, 0), "--coordinator"),
    (("h:1", 2, None), "--process-id"),
    (("h:1", 2, 2), r"need 0\.\.1, got 2"),
    (("nohostport", 2, 0), "HOST:PORT"),
    (("h:1", "two", 0), "need an integer"),
])
def test_incomplete_launch_settings_are_one_line_errors(args, message):
    with pytest.raises(FunmatchError, match=message):
        runtime.launch_settings(*args, environ={})


def test_the_backend_is_jax_on_accelerators_and_for_several_processes():
    assert runtime.default_backend({"KERAS_BACKEND": "tensorflow", "TPU_ACCELERATOR_TYPE": "v5litepod-8"}) == "tensorflow"
    assert runtime.default_backend({"TPU_ACCELERATOR_TYPE": "v5litepod-8"}) == "jax"
    assert runtime.default_backend({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}) == "jax"
    assert runtime.detect_accelerator({"TPU_WORKER_HOSTNAMES": "t1v-0,t1v-1"}) == "TPU"


def test_precision_policy_on_cpu_and_on_a_model(backend):
    import keras

    from funmatch import models

    assert runtime.resolve_precision("auto") == "float32"  # CPU: no bfloat16 hardware
    assert runtime.resolve_precision("bfloat16") == "bfloat16"
    with pytest.raises(FunmatchError, match="--precision"):
        runtime.resolve_precision("float16")
    model = models.create("tiny_cnn_w8", num_classes=3, resolution=16)
    runtime.apply_precision(model, "bfloat16")
    layers = [layer for layer in model._flatten_layers() if layer.weights]
    assert {layer.compute_dtype for layer in layers} == {"bfloat16"}
    assert {w.dtype for w in model.weights} == {"float32"}  # variables (and so the optimizer state) stay float32
    assert keras.ops.convert_to_numpy(model(keras.ops.zeros((2, 16, 16, 3)))).dtype.name == "bfloat16"
    runtime.apply_precision(model, "float32")
    assert {layer.compute_dtype for layer in layers} == {"float32"}


def test_setup_reports_backend_chips_hosts_and_precision(backend, capsys):
    info = runtime.setup(precision="float32")
    assert info["backend"] == backend and info["accelerator"] == "CPU" and info["hosts"] == 1
    assert info["precision"] == "float32" and info["chips"] >= 1
    line = capsys.readouterr().out
    assert line.startswith(f"funmatch runtime: Keras backend {backend}, ") and "compute float32" in line


def _cli(argv, tmp_path):
    code = ("import json, sys\nfrom funmatch.cli import main\n"
            f"status = main({argv!r})\n"
            "print(json.dumps({'status': status, 'heavy': [m for m in ('tensorflow', 'jax', 'keras') if m in sys.modules]}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "stderr": result.stderr}


@pytest.mark.parametrize("command", ["distill", "teacher", "targets"])
def test_launch_flag_errors_answer_before_tensorflow_or_jax(command, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset.json").write_text("{}")
    (tmp_path / "teacher.keras").write_text("")
    argv = {"distill": ["distill", "--teacher", "teacher.keras", "--workdir", "w"],
            "teacher": ["teacher", "--workdir", "w"],
            "targets": ["targets", "--teacher", "teacher.keras", "--views", "2", "--out", "o"]}[command]
    argv += ["--config", "eurosat", "--data", "data", "--num-processes", "2", "--process-id", "1"]
    result = _cli(argv, tmp_path)
    assert result["status"] == 2 and "--coordinator" in result["stderr"], result
    assert result["heavy"] == []
