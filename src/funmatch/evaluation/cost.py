"""What a model costs: loading, resolution, parameters, FLOPs, `.keras` size and compiled latency."""

from __future__ import annotations

import os
import pathlib
import statistics
import tempfile
import time
from typing import Any, Callable

import numpy as np

from funmatch.errors import FunmatchError


LATENCY_BATCH_SIZES = (1, 64)


def resolve_model(model, flag: str = "model"):
    """(keras model, path or None) from a `.keras` path or an in-memory Keras model."""
    if isinstance(model, (str, os.PathLike)):
        from funmatch import models

        path = pathlib.Path(model)
        if not path.is_file():
            raise FunmatchError(f"--{flag} {path}: no such file")
        return models.load(path), str(path)
    if not hasattr(model, "predict_on_batch"):
        raise FunmatchError(f"--{flag}: expected a .keras path or a Keras model, got {type(model).__name__}")
    return model, None


def model_resolution(model, flag: str = "model") -> int:
    """Input resolution R: the funmatch contract's, else a static square input shape."""
    contract = getattr(model, "contract", None)
    if isinstance(contract, dict) and contract.get("resolution"):
        return int(contract["resolution"])
    inputs = getattr(model, "inputs", None)
    if inputs:
        shape = tuple(inputs[0].shape)
        if len(shape) == 4 and shape[1] and shape[1] == shape[2]:
            return int(shape[1])
    raise FunmatchError(
        f"--{flag} {getattr(model, 'name', '?')!r}: no funmatch contract and no static square input shape, "
        "so its resolution is unknown (build it with funmatch.models.create)"
    )


def keras_file_size(model, path: str | None = None) -> int:
    """Bytes of the model as a `.keras` file: the file itself when given, else a temporary save."""
    if path is not None and str(path).endswith(".keras"):
        return os.path.getsize(path)
    with tempfile.TemporaryDirectory() as directory:
        target = os.path.join(directory, "model.keras")
        model.save(target)
        return os.path.getsize(target)


def device_name() -> str:
    """A readable name of the device Keras computes on (first accelerator, else "cpu")."""
    from funmatch import runtime

    if runtime.backend() not in ("jax", "tensorflow"):
        return runtime.backend()
    kind = runtime.accelerator()
    if kind == "CPU":
        return "cpu"
    if runtime.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return str(getattr(device, "device_kind", device.platform))
    if kind == "GPU":
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return str(details.get("device_name", "gpu"))
    return kind.lower()


def compiled_forward(model) -> tuple[Callable[[Any], Any], Callable[[np.ndarray], Any], str]:
    """(forward(x) -> blocked output, to_device(array) -> backend input, compiler name).

    The forward pass is the model in inference mode, compiled: `jax.jit` of `stateless_call` on
    JAX, `tf.function(jit_compile=True)` on TensorFlow (plain `tf.function` when XLA cannot compile
    the model). `forward` waits for the result, so timing it measures the computation.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def run(trainable_values, non_trainable_values, images):
            return model.stateless_call(trainable_values, non_trainable_values, images, training=False)[0]

        def forward(images):
            return jax.block_until_ready(run(trainable, non_trainable, images))

        return forward, jax.device_put, "jax.jit"
    if backend == "tensorflow":
        import tensorflow as tf

        def make(jit_compile: bool):
            function = tf.function(lambda images: model(images, training=False), jit_compile=jit_compile)
            return lambda images: function(images).numpy()

        return make(True), tf.constant, "tf.function(jit_compile=True)"
    raise FunmatchError(f"latency: backend {backend!r} is not supported (use KERAS_BACKEND=jax or tensorflow)")


# A timed sample lasts at least this long: sub-millisecond calls (a small student at batch 1) are
# timed in groups, so that timer resolution and dispatch jitter do not decide the figure.
MIN_SAMPLE_SECONDS = 0.005


def time_calls(function: Callable[[], Any], *, repeats: int, warmup: int = 2, max_seconds: float = 10.0,
               clock: Callable[[], float] = time.perf_counter, min_sample_seconds: float = MIN_SAMPLE_SECONDS) -> list[float]:
    """Seconds per call of `function()`, one value per timed sample (up to `repeats`), after `warmup`
    untimed calls.

    When the first timed call is shorter than `min_sample_seconds`, it only calibrates: each sample
    then times as many consecutive calls as last about that long, and divides. Stops early once
    `max_seconds` of timed samples have passed (at least 3 samples are always timed), so a large model
    on a slow device does not stall the evaluation.
    """
    for _ in range(warmup):
        function()
    durations: list[float] = []
    calls, spent = 1, 0.0
    while len(durations) < max(1, repeats):
        start = clock()
        for _ in range(calls):
            function()
        duration = clock() - start
        spent += duration
        if calls == 1 and not durations and 0 < duration < min_sample_seconds:
            calls = min(1000, int(min_sample_seconds / duration) + 1)  # calibration: not a sample
            continue
        durations.append(duration / calls)
        if spent > max_seconds and len(durations) >= 3:
            break
    return durations


def latency_summary(durations: list[float], batch_size: int) -> dict[str, Any]:
    """{batch_size, median_ms, p25_ms, p75_ms, min_ms, repeats, throughput_images_per_sec} of per-call seconds.

    The quartiles are the spread: on a shared CPU one measurement differs from the next, and a ratio
    of two medians is only as good as that spread allows.
    """
    ordered = sorted(durations)
    median = statistics.median(ordered)
    quartiles = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else [median, median, median]
    return {
        "batch_size": int(batch_size),
        "median_ms": median * 1e3,
        "p25_ms": quartiles[0] * 1e3,
        "p75_ms": quartiles[2] * 1e3,
        "min_ms": ordered[0] * 1e3,
        "repeats": len(ordered),
        "throughput_images_per_sec": batch_size / median if median > 0 else float("inf"),
    }


def measure_latency(model, resolution: int, batch_sizes=LATENCY_BATCH_SIZES, *, repeats: int = 20,
                    max_seconds: float = 10.0, seed: int = 0) -> tuple[dict[str, dict[str, Any]], str]:
    """Latency of a compiled forward pass at each batch size, on the current device.

    Returns ({"batch_{B}": `latency_summary` (median with quartiles, min, repeats, throughput)},
    compiler name).
    """
    forward, to_device, compiler = compiled_forward(model)
    out = {}
    random = np.random.default_rng(seed)
    for batch_size in batch_sizes:
        images = to_device(random.uniform(-1, 1, (batch_size, resolution, resolution, 3)).astype(np.float32))
        try:
            durations = time_calls(lambda: forward(images), repeats=repeats, max_seconds=max_seconds)
        except Exception:  # noqa: BLE001 - XLA could not compile the model on TensorFlow
            if compiler != "tf.function(jit_compile=True)":
                raise
            import tensorflow as tf

            function = tf.function(lambda x: model(x, training=False))
            forward, compiler = (lambda x: function(x).numpy()), "tf.function"
            durations = time_calls(lambda: forward(images), repeats=repeats, max_seconds=max_seconds)
        out[f"batch_{batch_size}"] = latency_summary(durations, batch_size)
    return out, compiler


def model_cost(model, path: str | None, resolution: int, *, latency: bool = True, latency_repeats: int = 20,
               latency_max_seconds: float = 10.0) -> dict[str, Any]:
    """Parameters, FLOPs per image, `.keras` size and (optionally) latency of one model."""
    from funmatch import models

    try:
        flops = models.count_flops(model, resolution)
    except FunmatchError:
        flops = None  # not a functional graph: FLOPs cannot be counted by shape propagation
    cost = {
        "params": models.count_params(model),
        "flops_per_image": flops,
        "size_bytes": keras_file_size(model, path),
        "latency": None,
        "latency_compiler": None,
    }
    if latency:
        cost["latency"], cost["latency_compiler"] = measure_latency(
            model, resolution, repeats=latency_repeats, max_seconds=latency_max_seconds
        )
    return cost
