"""`funmatch teacher` and `funmatch distill` on 2 JAX devices, run as a user runs them (the command line):
every model, the loaded teacher included, is created inside the distribution scope."""

import os
import subprocess
import sys

import pytest


def _cli(*args, cwd):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    return subprocess.run([sys.executable, "-m", "funmatch.cli", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_teacher_then_distill_on_two_jax_devices(engine_data, tmp_path):
    teacher = _cli("teacher", "--config", "eurosat:smoke=true", "--data", engine_data, "--workdir", tmp_path / "teacher",
                   "--no-progress", cwd=tmp_path)
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    distill = _cli("distill", "--config", "eurosat:smoke=true", "--data", engine_data, "--teacher",
                   tmp_path / "teacher" / "teacher.keras", "--workdir", tmp_path / "student", "--no-progress",
                   cwd=tmp_path)
    assert distill.returncode == 0, distill.stderr[-3000:]
    assert (tmp_path / "student" / "student.keras").is_file()
    assert "Traceback" not in distill.stderr + teacher.stderr
