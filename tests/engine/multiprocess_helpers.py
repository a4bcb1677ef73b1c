"""Starting N cooperating processes on 127.0.0.1 (a module with a unique name, not `conftest`)."""

import os
import socket
import subprocess


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(**extra) -> dict:
    """The environment of a JAX worker process: one CPU device each, quiet TensorFlow."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_DISTRIBUTION_")}
    env.update(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu", **extra)
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f)
    return env


def launch(command, count: int, *, port: int, log_dir, env_extra=None) -> list[subprocess.Popen]:
    """`count` processes of `command` + `--coordinator 127.0.0.1:PORT --num-processes N --process-id I`."""
    processes = []
    for index in range(count):
        log = open(os.path.join(log_dir, f"process{index}.log"), "w")
        argv = [*command, "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(count), "--process-id", str(index)]
        processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=process_env(**(env_extra or {}))))
    return processes


def log_tail(log_dir, count: int, chars: int = 3000) -> str:
    out = []
    for index in range(count):
        path = os.path.join(log_dir, f"process{index}.log")
        if os.path.exists(path):
            out.append(f"--- process {index}:\n" + open(path).read()[-chars:])
    return "\n".join(out)
