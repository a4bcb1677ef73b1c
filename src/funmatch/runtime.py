"""Backends, devices, processes and precision: one place that knows what a run runs on.

- Backend: on a TPU or GPU machine the Keras backend is JAX (`choose_backend`); on CPU it is Keras'
  own default (TensorFlow) unless `KERAS_BACKEND` says otherwise. `tf.data` feeds every backend, and
  on JAX TensorFlow is kept off the accelerators (`keep_tensorflow_off_accelerators`), so that it
  never claims the TPU or the GPU memory JAX needs. Every command that builds or runs a model does both
  through `launch`, before Keras is imported, so every command and tuning trial runs where distill runs.
- Processes: `initialize` joins N processes into one JAX runtime (`keras.distribution.initialize`,
  i.e. `jax.distributed.initialize`) from the launch flags (`--coordinator HOST:PORT --num-processes N
  --process-id I`) or the `KERAS_DISTRIBUTION_*` variables. Each process reads its own shard of the
  records (`process_info`), the global batch spans every process's devices
  (`keras.distribution.DataParallel`), and only process 0 writes (`is_writer`).
- Precision: `"auto"` computes the teacher's forward pass and the student in bfloat16 (float32
  variables, loss and optimizer state) on TPUs and on GPUs with bfloat16 tensor cores (compute
  capability 8.0 and up: A100, L4, H100...), float32 elsewhere (CPU, T4, P100).

TensorFlow's `TPUStrategy` is not supported: on today's TPU VMs (Kaggle's v5e-8 included) TensorFlow
is the CPU build and finds no TPU; TPUs are used through JAX. Several GPUs on the TensorFlow backend
use `MirroredStrategy` (one process).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.abc
import importlib.util
import json
import os
import pathlib
import sys
import tempfile
from typing import Any

from funmatch.errors import FunmatchError

PRECISIONS = ("auto", "float32", "bfloat16")
BACKENDS = ("jax", "tensorflow")  # the Keras backends funmatch runs on
ENV_ADDRESSES = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_NUM_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
ENV_PRECISION = "FUNMATCH_PRECISION"
ENV_COORDINATOR_TIMEOUT = "FUNMATCH_COORDINATOR_TIMEOUT"
DEFAULT_COORDINATOR_TIMEOUT_S = 60.0

_state: dict[str, Any] = {"initialized": False, "precision": None, "tensorflow_kept_off": None}


# --- What the machine has, without importing TensorFlow or JAX. ---------------------------------------

def detect_accelerator(environ=None) -> str:
    """"TPU", "GPU" or "CPU" from the machine's devices and environment; imports nothing heavy.

    TPU VMs have /dev/accel* (v2-v4) or /dev/vfio/N (v5e, v6e) and set TPU_* variables; NVIDIA GPUs
    have /dev/nvidia0...
    """
    environ = os.environ if environ is None else environ
    if environ.get("TPU_ACCELERATOR_TYPE") or environ.get("TPU_WORKER_HOSTNAMES") or environ.get("COLAB_TPU_ADDR") \
            or glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"):
        return "TPU"
    if glob.glob("/dev/nvidia[0-9]*") or glob.glob("/proc/driver/nvidia/gpus/*"):
        return "GPU"
    return "CPU"


def default_backend(environ=None) -> str:
    """The backend a run gets: `KERAS_BACKEND` when set; else "jax" on TPU/GPU machines and for multi-process
    runs; else Keras' own default (the backend in ~/.keras/keras.json, or TensorFlow). Imports nothing."""
    environ = os.environ if environ is None else environ
    if environ.get("KERAS_BACKEND"):
        return check_backend_name(environ["KERAS_BACKEND"])
    multi_process = int(environ.get(ENV_NUM_PROCESSES) or 1) > 1
    if multi_process or detect_accelerator(environ) != "CPU":
        return "jax"
    return _keras_json_backend() or "tensorflow"


def check_backend_name(name: str) -> str:
    """`name` when funmatch runs on it; else FunmatchError in one line (before Keras sees the name)."""
    if name not in BACKENDS:
        raise FunmatchError(f"KERAS_BACKEND={name}: funmatch runs on the {' or '.join(BACKENDS)} backend; "
                            "set KERAS_BACKEND to one of them, or unset it (JAX on GPUs and TPUs, else TensorFlow)")
    return name


def choose_backend(environ=None) -> str:
    """Set `KERAS_BACKEND` to `default_backend()` unless it is set; returns the backend.

    Must run before Keras is imported; afterwards it only reports the backend Keras has.
    """
    environ = os.environ if environ is None else environ
    if "keras" in sys.modules:
        return backend()
    chosen = default_backend(environ)
    if chosen == "jax":
        environ.setdefault("KERAS_BACKEND", "jax")
    return chosen


def _keras_json_backend() -> str | None:
    home = pathlib.Path(os.environ.get("KERAS_HOME") or pathlib.Path.home() / ".keras")
    try:
        return json.loads((home / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        return None


def backend() -> str:
    import keras

    return keras.backend.backend()


def keep_tensorflow_off_accelerators() -> bool:
    """Hide the GPUs and TPUs from TensorFlow (the input pipeline) when JAX computes.

    TensorFlow would otherwise reserve most of the GPU memory (or the TPU) the moment it starts.
    Must run before TensorFlow runs any op; returns False (and warns) when it is too late.
    """
    if _state["tensorflow_kept_off"] is not None:
        return _state["tensorflow_kept_off"]
    import tensorflow as tf

    kept_off = True
    for kind in ("GPU", "TPU"):
        try:
            if tf.config.list_physical_devices(kind):
                tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError) as e:  # devices already initialised
            kept_off = False
            print(f"funmatch: could not hide {kind}s from TensorFlow ({e}); start the run in a fresh process",
                  file=sys.stderr)
    _state["tensorflow_kept_off"] = kept_off
    return kept_off


# --- Processes. -------------------------------------------------------------------------------------

def launch_settings(coordinator: str | None = None, num_processes: int | None = None,
                    process_id: int | None = None, environ=None) -> dict[str, Any] | None:
    """The multi-process settings from the arguments, else `KERAS_DISTRIBUTION_*`; None for one process.

    Raises FunmatchError for an incomplete or inconsistent set (checked before anything is imported).
    """
    environ = os.environ if environ is None else environ
    coordinator = coordinator or environ.get(ENV_ADDRESSES) or None

    def integer(value, name):
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise FunmatchError(f"{name}: need an integer, got {value!r}") from None

    num_processes = integer(num_processes if num_processes is not None else environ.get(ENV_NUM_PROCESSES),
                            f"--num-processes / {ENV_NUM_PROCESSES}")
    process_id = integer(process_id if process_id is not None else environ.get(ENV_PROCESS_ID),
                         f"--process-id / {ENV_PROCESS_ID}")
    if num_processes is None and process_id is None and coordinator is None:
        return None
    if coordinator == "auto":  # JAX finds the processes itself (Cloud TPU pod slices, SLURM, Open MPI)
        return {"coordinator": "auto", "num_processes": num_processes, "process_id": process_id}
    if num_processes is None or num_processes < 1:
        raise FunmatchError(f"--num-processes / {ENV_NUM_PROCESSES}: need a positive number of processes "
                            f"(with --coordinator and --process-id), got {num_processes}")
    if num_processes == 1 and process_id in (None, 0):
        return None
    if process_id is None or not 0 <= process_id < num_processes:
        raise FunmatchError(f"--process-id / {ENV_PROCESS_ID}: need 0..{num_processes - 1}, got {process_id}")
    if not coordinator:
        raise FunmatchError(f"--coordinator / {ENV_ADDRESSES}: need HOST:PORT of process 0 for {num_processes} processes")
    first = coordinator.split(",")[0]
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise FunmatchError(f"--coordinator: need HOST:PORT (process 0's address), got {first!r}")
    return {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}


def add_precision_argument(parser) -> None:
    """`--precision` of every command that computes (see `resolve_precision`)."""
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="compute dtype of the teacher's and the student's forward and backward passes (variables, "
                             "loss and optimizer state stay float32). auto (default): bfloat16 on TPUs and on GPUs with "
                             "bfloat16 tensor cores, float32 on CPU. A run resumes only in the precision it began in")


def add_launch_arguments(parser) -> None:
    """The multi-process and precision flags of the training commands (distill, teacher, targets, labels)."""
    group = parser.add_argument_group(
        "processes and precision",
        "N processes (one per host, or per GPU) train one model: start the same command on each with the same "
        "--coordinator and --num-processes and its own --process-id (or set KERAS_DISTRIBUTION_JOB_ADDRESSES, "
        "KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID). Needs the JAX backend.",
    )
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="address of process 0, where the JAX coordination service listens; 'auto': JAX finds "
                            "the processes itself (every host of a Cloud TPU pod slice, SLURM, Open MPI)")
    group.add_argument("--num-processes", type=int, default=None, metavar="N", help="number of processes in the run")
    group.add_argument("--process-id", type=int, default=None, metavar="I", help="this process's index, 0..N-1")
    group.add_argument("--coordinator-timeout", type=float, default=None, metavar="SECONDS",
                       help=f"give up when --coordinator cannot be reached within this time (default "
                            f"{DEFAULT_COORDINATOR_TIMEOUT_S:g}, or {ENV_COORDINATOR_TIMEOUT})")
    add_precision_argument(group)


def check_launch_arguments(args) -> dict[str, Any] | None:
    """Cheap checks of the launch flags (before Keras is imported); returns `launch_settings`."""
    return launch_settings(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
                           getattr(args, "process_id", None))


def coordinator_timeout(args=None, environ=None) -> float:
    """Seconds to wait for process 0: `--coordinator-timeout`, else FUNMATCH_COORDINATOR_TIMEOUT, else 60."""
    environ = os.environ if environ is None else environ
    value = getattr(args, "coordinator_timeout", None)
    flag = "--coordinator-timeout"
    if value is None and environ.get(ENV_COORDINATOR_TIMEOUT):
        value, flag = environ[ENV_COORDINATOR_TIMEOUT], ENV_COORDINATOR_TIMEOUT
    if value is None:
        return DEFAULT_COORDINATOR_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise FunmatchError(f"{flag}: need a positive number of seconds, got {value!r}")
    return seconds


def launch(args=None, *, verbose: bool = True, distribute: bool = True) -> dict[str, Any]:
    """What every command that builds or runs a model does before it imports the library.

    Chooses the backend (JAX on GPUs and TPUs) and keeps TensorFlow off the accelerators, joins the
    processes of a multi-process run (the launch flags of `add_launch_arguments`, where the command has
    them), and sets the compute precision (`--precision`, where the command has it). `distribute=False`:
    no data parallelism over the devices (a command that only converts a model). Returns the `setup()`
    report.
    """
    settings = check_launch_arguments(args)
    precision = getattr(args, "precision", None) or os.environ.get(ENV_PRECISION) or "auto"
    choose_backend()
    if settings is not None:
        initialize(**settings, timeout_s=coordinator_timeout(args))
    return setup(precision=precision, verbose=verbose, distribute=distribute)


def wait_for_coordinator(address: str, timeout_s: float = DEFAULT_COORDINATOR_TIMEOUT_S) -> None:
    """Returns once process 0's coordination service at HOST:PORT accepts a connection; raises
    FunmatchError naming the address when it does not within `timeout_s` (JAX itself waits 5 minutes,
    then aborts the process with a C++ stack trace)."""
    import socket
    import time

    host, _, port = address.split(",")[0].rpartition(":")
    host = host.strip("[]")
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(5.0, max(0.1, timeout_s))):
                return
        except OSError as error:
            last = error.strerror or type(error).__name__
        if time.monotonic() >= deadline:
            raise FunmatchError(
                f"--coordinator {host}:{port}: process 0 cannot be reached ({last}) within {timeout_s:g} s; start "
                f"process 0 first, check the address and the firewall, or raise --coordinator-timeout")
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: float = DEFAULT_COORDINATOR_TIMEOUT_S) -> dict[str, Any] | None:
    """Join this process to a multi-process JAX run; a no-op for one process. Call before any compute.

    Processes other than 0 wait up to `timeout_s` for process 0's address to answer (after their own
    imports of TensorFlow, JAX and Keras, which take process 0 as long before it listens)."""
    settings = launch_settings(coordinator, num_processes, process_id)
    if settings is None or _state["initialized"]:
        return settings
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "jax")  # several processes: JAX unless the user chose otherwise
    if choose_backend() != "jax":
        raise FunmatchError(
            f"{settings['num_processes'] or 'Several'} processes need the JAX backend (KERAS_BACKEND=jax); the "
            f"{os.environ.get('KERAS_BACKEND')} backend runs one process (MultiWorkerMirroredStrategy "
            "does not work with Keras 3)")
    import jax

    # CPU collectives between processes (tests, CPU clusters); GPUs and TPUs use NCCL / ICI.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keep_tensorflow_off_accelerators()
    import keras

    coordinator = None if settings["coordinator"] == "auto" else settings["coordinator"]
    if coordinator is not None and settings["process_id"] != 0:  # the clock starts once the imports are paid
        wait_for_coordinator(coordinator, timeout_s)
    keras.distribution.initialize(coordinator, settings["num_processes"], settings["process_id"])
    _state["initialized"] = True
    return settings


def replica_count() -> int:
    """Number of devices a training step is split over on this process."""
    if backend() == "jax":
        import jax

        return jax.local_device_count()
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return len(gpus)
    # One CPU device unless the user split it into logical devices (as the multi-device tests do).
    return max(1, len(tf.config.list_logical_devices("CPU")))


def process_info() -> tuple[int, int]:
    """(process index, process count) for multi-host input sharding."""
    if "keras" in sys.modules and backend() == "jax":
        import jax

        return jax.process_index(), jax.process_count()
    return 0, 1


def is_writer() -> bool:
    """True on the process that writes checkpoints, metrics and reports (process 0)."""
    return process_info()[0] == 0


def barrier(name: str) -> None:
    """Wait until every process reaches `barrier(name)`; a no-op for one process."""
    if process_info()[1] > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def from_process_0(value: int) -> int:
    """Process 0's `value` on every process: a decision (e.g. stop at this step) that must not differ."""
    if process_info()[1] == 1:
        return int(value)
    import numpy as np
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int32)))


def every_process(value: int) -> list[int]:
    """`value` of every process, in process order, on every process (one collective); [value] for one."""
    if process_info()[1] == 1:
        return [int(value)]
    import numpy as np
    from jax.experimental import multihost_utils

    return [int(v) for v in np.asarray(multihost_utils.process_allgather(np.asarray(value, np.int64))).reshape(-1)]


def check_same_step(step: int, where) -> None:
    """After a restore: every process restored the same step, else every process refuses to run (one line).

    Processes that see different checkpoints (a workdir that is not one shared folder, a copy that lags)
    would otherwise train from different states in lockstep."""
    steps = every_process(step)
    if len(set(steps)) > 1:
        seen = ", ".join(f"process {index}: step {value}" for index, value in enumerate(steps))
        raise FunmatchError(
            f"{where}: the processes restored different checkpoints ({seen}); every process must see the same "
            "workdir on a shared file system (see the README: several hosts)")


def check_batch_size(global_batch: int, flag: str = "batch_size") -> int:
    """The per-process batch; the global batch must divide over processes and devices."""
    devices = replica_count()
    process_index, process_count = process_info()
    if global_batch % (devices * process_count):
        raise FunmatchError(
            f"config field {flag!r}: the global batch {global_batch} does not divide by the "
            f"{devices * process_count} devices ({process_count} process(es) × {devices} device(s))"
        )
    return global_batch // process_count


def distribution_scope() -> Any:
    """A context in which models and optimizers are built for all devices of all processes.

    JAX: sets `keras.distribution.DataParallel` over every device of every process when there is more
    than one (each process feeds its own shard: the datasets are not sharded again).
    TensorFlow: enters `MirroredStrategy` when there are several GPUs (or logical CPU devices).
    """
    if backend() == "jax":
        import jax
        import keras

        if jax.device_count() > 1 and keras.distribution.distribution() is None:
            keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
        return contextlib.nullcontext()
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return contextlib.nullcontext()
    if replica_count() > 1:
        global _MIRRORED
        if _MIRRORED is None:  # one strategy per process: a model built in one scope is used in the next
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
            _MIRRORED = tf.distribute.MirroredStrategy(devices)
        return _MIRRORED.scope()
    return contextlib.nullcontext()


_MIRRORED = None


@contextlib.contextmanager
def local_only():
    """Compute on this process alone (no global distribution), e.g. a picture only process 0 draws."""
    if backend() != "jax":
        yield
        return
    import keras

    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


@contextlib.contextmanager
def process_local():
    """Compute on this process's own devices (JAX: data parallel over them), with no collective between
    processes: for work split into independent units per process (stored targets), where processes get
    unequal work and must never wait on each other. One process: the run's own distribution."""
    if backend() != "jax" or process_info()[1] == 1:
        yield
        return
    import jax
    import keras

    previous = keras.distribution.distribution()
    devices = [f"{d.platform}:{d.id}" for d in jax.local_devices()]
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def accelerator() -> str:
    """"TPU", "GPU" or "CPU": the kind of device a step runs on."""
    if backend() == "jax":
        import jax

        return jax.devices()[0].platform.upper()
    import tensorflow as tf

    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"


def device_kind() -> str:
    """The chip's name as the runtime reports it, e.g. "TPU v5 lite", "Tesla T4", "cpu"."""
    if backend() == "jax":
        import jax

        return str(getattr(jax.devices()[0], "device_kind", jax.devices()[0].platform))
    return accelerator().lower()


# --- Precision. -------------------------------------------------------------------------------------

def bfloat16_pays() -> bool:
    """bfloat16 has hardware support: TPUs, and GPUs of compute capability >= 8.0 (on JAX)."""
    if backend() != "jax":
        return False
    import jax

    device = jax.devices()[0]
    if device.platform == "tpu":
        return True
    if device.platform == "gpu":
        capability = str(getattr(device, "compute_capability", "0"))
        try:
            return float(capability) >= 8.0
        except ValueError:
            return False
    return False


def resolve_precision(requested: str | None = "auto") -> str:
    """"float32" or "bfloat16" for a requested "auto" / "float32" / "bfloat16"."""
    requested = requested or "auto"
    if requested not in PRECISIONS:
        raise FunmatchError(f"--precision: choose one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "auto":
        return "bfloat16" if bfloat16_pays() else "float32"
    return requested


def set_precision(requested: str | None = "auto") -> str:
    """Set the run's compute precision (see `resolve_precision`); returns it."""
    _state["precision"] = resolve_precision(requested)
    return _state["precision"]


def precision() -> str:
    """The run's compute precision: what `set_precision` chose, else "auto" resolved now."""
    if _state["precision"] is None:
        set_precision(os.environ.get(ENV_PRECISION) or "auto")
    return _state["precision"]


def apply_precision(model, compute: str | None = None):
    """Make every floating-point layer of `model` compute in `compute` (default: the run's precision).

    Variables stay float32 (`mixed_bfloat16`): the loss, gradients and optimizer state are float32,
    and the model's outputs are cast to float32 by the Distiller and the label trainer. funmatch's
    GroupNorm and Keras' BatchNormalization normalise in float32 inside. Works on built models
    (e.g. a loaded teacher). `compute="float32"` undoes it (before saving a model). Returns `model`.
    """
    compute = compute or precision()
    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16"}.get(compute)
    if policy is None:
        raise FunmatchError(f"precision: need float32 or bfloat16, got {compute!r}")
    for layer in model._flatten_layers(include_self=True, recursive=True):
        current = getattr(layer, "dtype_policy", None)
        if current is None or current.quantization_mode is not None:
            continue
        if current.variable_dtype == "float32" and current.name != policy:
            layer.dtype_policy = policy
    return model


# --- The report. ------------------------------------------------------------------------------------

def setup(precision: str | None = None, verbose: bool = True, distribute: bool = True) -> dict[str, Any]:
    """Detect the accelerator, keep TensorFlow off it (JAX), set data parallelism and precision.

    The first cell of the notebooks and the start of every training command. Returns {"backend",
    "accelerator", "device_kind", "chips" (all processes), "devices" (this process), "hosts",
    "process", "precision", "tensorflow_on_cpu"}; prints one line of it (process 0).
    """
    chosen = choose_backend()
    if chosen == "jax":
        keep_tensorflow_off_accelerators()
    if precision is not None or _state["precision"] is None:
        set_precision(precision or os.environ.get(ENV_PRECISION) or "auto")
    if backend() == "jax":
        import jax

        if distribute:
            distribution_scope()  # sets the global distribution; nothing to enter
        chips = jax.device_count()
    else:
        chips = replica_count()
    index, count = process_info()
    info = {
        "backend": backend(),
        "accelerator": accelerator(),
        "device_kind": device_kind(),
        "chips": chips,
        "devices": replica_count(),
        "hosts": count,
        "process": index,
        "processes": count,
        "precision": _state["precision"],
        "tensorflow_on_cpu": bool(_state["tensorflow_kept_off"]) if backend() == "jax" else False,
    }
    if verbose and index == 0:
        print(describe(info))
    return info


def describe(info: dict[str, Any]) -> str:
    """One line: backend, chips on hosts, precision, where TensorFlow runs."""
    hosts = f"{info['hosts']} process{'es' if info['hosts'] != 1 else ''}"
    tf_place = "TensorFlow (input pipeline) on CPU" if info["tensorflow_on_cpu"] else "TensorFlow computes"
    if info["backend"] != "jax":
        tf_place = "TensorFlow computes"
    return (f"funmatch runtime: Keras backend {info['backend']}, {info['chips']} × {info['accelerator']} "
            f"({info['device_kind']}) on {hosts}, {info['devices']} on this one (process {info['process']}), "
            f"compute {info['precision']}, {tf_place}")


# --- TensorFlow's start-up notices. -------------------------------------------------------------

# Some are written through absl before its logging is set up, where TF_CPP_MIN_LOG_LEVEL does not reach
# (once per TensorFlow shared library: twice); `quiet_tensorflow_import` drops exactly those lines.
STARTUP_NOTICES = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized",
    "To enable the following instructions",
)


@contextlib.contextmanager
def stderr_without(notices: tuple[str, ...]):
    """Captures file descriptor 2 (C++ writes there too) and writes back every line but `notices`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not any(notice in line for notice in notices))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports `tensorflow`, whenever a command first does, with its start-up notices left out."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            exec_module = spec.loader.exec_module

            def quiet_exec_module(module):
                with stderr_without(STARTUP_NOTICES):
                    exec_module(module)

            spec.loader.exec_module = quiet_exec_module
        return spec


def quiet_tensorflow_import() -> None:
    """From now on, the first import of `tensorflow` leaves out its start-up notices (`STARTUP_NOTICES`); the
    command line and the processes the demo starts call it before anything imports TensorFlow."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
