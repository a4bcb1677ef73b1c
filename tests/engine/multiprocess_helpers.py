"""Starting N cooperating processes on 127.0.0.1 (a module with a unique name, not `conftest`)."""

import os
import signal
import socket
import subprocess
import time


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


def wait_all(processes, log_dir, timeout: float = 600) -> None:
    """Wait for every process to end; all must exit 0 (the logs' tails otherwise). Kills any left running."""
    try:
        codes = [p.wait(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    assert codes == [0] * len(processes), log_tail(log_dir, len(processes))


def kill_when(path, processes, victim: int, log_dir, timeout: float = 600) -> None:
    """SIGKILL `processes[victim]` as soon as `path` exists, then stop the others, as a job scheduler does."""
    try:
        deadline = time.time() + timeout
        while time.time() < deadline and not os.path.exists(path):
            assert all(p.poll() is None for p in processes), \
                "a process ended before the kill\n" + log_tail(log_dir, len(processes))
            time.sleep(0.02)
        assert os.path.exists(path), f"{path} not written in {timeout:.0f} s\n" + log_tail(log_dir, len(processes))
        processes[victim].send_signal(signal.SIGKILL)
        assert processes[victim].wait(30) == -signal.SIGKILL
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(30)
