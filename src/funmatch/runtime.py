"""Devices and distribution: one place that knows how many replicas a step runs on and sets up the
engine that exists for the backend (`keras.distribution.DataParallel` on JAX, `tf.distribute` on
TensorFlow)."""

from __future__ import annotations

import contextlib
from typing import Any

from funmatch.errors import FunmatchError


def backend() -> str:
    import keras

    return keras.backend.backend()


def replica_count() -> int:
    """Number of devices a training step is split over on this process."""
    if backend() == "jax":
        import jax

        return jax.local_device_count()
    import tensorflow as tf

    accelerators = tf.config.list_logical_devices("TPU") or tf.config.list_logical_devices("GPU")
    if accelerators:
        return len(accelerators)
    # One CPU device unless the user split it into logical devices (as the multi-device tests do).
    return max(1, len(tf.config.list_logical_devices("CPU")))


def process_info() -> tuple[int, int]:
    """(process index, process count) for multi-host input sharding."""
    if backend() == "jax":
        import jax

        return jax.process_index(), jax.process_count()
    return 0, 1


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
    """A context in which models and optimizers are built for all local devices.

    JAX: sets `keras.distribution.DataParallel` over all devices when there is more than one.
    TensorFlow: enters `TPUStrategy` / `MirroredStrategy` when there are several devices.
    """
    if backend() == "jax":
        import jax
        import keras

        if jax.device_count() > 1 and keras.distribution.distribution() is None:
            keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    import tensorflow as tf

    if tf.distribute.has_strategy():
        return contextlib.nullcontext()
    tpus = tf.config.list_logical_devices("TPU")
    if tpus:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver).scope()
    if replica_count() > 1:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices).scope()
    return contextlib.nullcontext()


def accelerator() -> str:
    """"TPU", "GPU" or "CPU": the kind of device a step runs on."""
    if backend() == "jax":
        import jax

        return jax.devices()[0].platform.upper()
    import tensorflow as tf

    return next((kind for kind in ("TPU", "GPU") if tf.config.list_logical_devices(kind)), "CPU")


def setup(verbose: bool = True) -> dict[str, Any]:
    """Detect the accelerator and set up data parallelism over all local devices (notebooks' first cell).

    JAX: `keras.distribution.DataParallel` when there are several devices. TensorFlow: the training
    entries enter `TPUStrategy` / `MirroredStrategy` themselves (`distribution_scope`). Returns
    {"accelerator", "devices", "backend", "processes"}.
    """
    if backend() == "jax":
        distribution_scope()  # sets the global distribution; nothing to enter
    info = {"accelerator": accelerator(), "devices": replica_count(), "backend": backend(), "processes": process_info()[1]}
    if verbose:
        print(f"accelerator: {info['accelerator']}, {info['devices']} device(s) on {info['processes']} process(es), "
              f"Keras backend {info['backend']}")
    return info
