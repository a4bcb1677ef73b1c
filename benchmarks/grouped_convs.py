"""Grouped convolutions on TensorFlow's CPU: Keras' own path against funmatch's (`native_grouped_convs`).

    taskset -c 1 python benchmarks/grouped_convs.py

TensorFlow has no CPU kernel for grouped convolutions; Keras compiles each one with XLA on its own. A
funmatch `Classifier` runs them on TensorFlow's kernels instead (depthwise as depthwise, other groups one
convolution each). Prints process CPU seconds side by side, each case with and without the `Classifier`:

    layer       one 3x3 Conv2D on [128, 24, 24, 64] -> 64 channels, forward and backward, 2 / 8 / 32 groups
    hub         a train step (SGD, batch 128, 48 px) of `benchmarks/hub_student.py`'s keras-hub
                MobileNetV3-Small-style student (random weights, saved locally)
    convnext    keras.applications ConvNeXtTiny's forward pass at 112 px (random weights), per image

TensorFlow backend only (JAX has grouped convolutions of its own). Pin it to one core that runs nothing
else, and quote the load.

Measured (2026-12-07, `taskset -c 1`, the other core idle, load 0.7-1.0):

    case                                             Keras      funmatch   ratio
    layer, 2 groups (forward + backward)         1442.1 ms       55.0 ms   26.2x
    layer, 8 groups (forward + backward)         5145.2 ms       53.4 ms   96.4x
    layer, 32 groups (forward + backward)       19556.0 ms       98.7 ms  198.1x
    hub MobileNetV3-S train step, 48 px           1.545 s       0.154 s    10.0x
    ConvNeXtTiny forward, 112 px, per image       126.4 ms       21.1 ms    6.0x
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cpu_seconds(function, repeats: int, warmup: int = 2) -> float:
    """Process CPU seconds per call of `function`, after `warmup` calls."""
    for _ in range(warmup):
        function()
    start = time.process_time()
    for _ in range(repeats):
        function()
    return (time.process_time() - start) / repeats


def wrapped(model, resolution: int, num_classes: int):
    from funmatch.models.classifier import Classifier

    return Classifier(model, arch="benchmark", num_classes=num_classes, resolution=resolution)


def layer_case(groups: int, native: bool) -> float:
    import keras
    import numpy as np
    import tensorflow as tf

    inputs = keras.Input((24, 24, 64))
    model = keras.Model(inputs, keras.layers.Conv2D(64, 3, padding="same", groups=groups)(inputs))
    if native:
        model = wrapped(model, 24, 64)
    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (128, 24, 24, 64)).astype("float32"))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(model(images)))
        return tape.gradient(loss, model.trainable_weights)

    return cpu_seconds(step, repeats=2, warmup=1)


def train_step_case(model) -> float:
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (128, 48, 48, 3)).astype("float32")
    labels = rng.integers(0, 10, 128)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return cpu_seconds(lambda: model.train_on_batch(images, labels), repeats=5, warmup=3)


def hub_case(preset: pathlib.Path, native: bool) -> float:
    import keras_hub

    task = keras_hub.models.MobileNetImageClassifier.from_preset(str(preset), load_weights=False, num_classes=10,
                                                                 activation=None)
    task.preprocessor = None
    return train_step_case(wrapped(task, 48, 10) if native else task)


def convnext_case(native: bool) -> float:
    import keras
    import numpy as np
    import tensorflow as tf

    model = keras.applications.ConvNeXtTiny(weights=None, input_shape=(112, 112, 3), classifier_activation=None,
                                            include_preprocessing=False)
    if native:
        model = wrapped(model, 112, 1000)
    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (32, 112, 112, 3)).astype("float32"))
    forward = tf.function(lambda x: model(x, training=False))
    return cpu_seconds(lambda: forward(images), repeats=3) / 32


def main() -> None:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from hub_models import zoo_preset

    print(f"load average (1, 5, 15 min): {os.getloadavg()}", flush=True)
    print(f"{'case':<40}{'Keras':>14}{'funmatch':>14}{'ratio':>8}", flush=True)

    def row(name, keras_value, native_value, unit, scale, digits=1):
        print(f"{name:<40}{keras_value * scale:>11.{digits}f} {unit}{native_value * scale:>11.{digits}f} {unit}"
              f"{keras_value / native_value:>7.1f}x", flush=True)

    for groups in (2, 8, 32):
        row(f"layer, {groups} groups (forward + backward)", layer_case(groups, False), layer_case(groups, True),
            "ms", 1e3)
    with tempfile.TemporaryDirectory() as directory:
        preset = pathlib.Path(directory) / "preset"
        zoo_preset(preset, 48)
        row("hub MobileNetV3-S train step, 48 px", hub_case(preset, False), hub_case(preset, True), "s ", 1, 3)
    row("ConvNeXtTiny forward, 112 px, per image", convnext_case(False), convnext_case(True), "ms", 1e3)
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
