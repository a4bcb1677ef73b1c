"""Run by test_multidevice.py in a subprocess: one step on 4 CPU devices vs. one step on one.

JAX: 4 host devices (XLA_FLAGS set by the caller) under keras.distribution.DataParallel.
TensorFlow: 4 logical CPU devices under tf.distribute.MirroredStrategy (model + compile in scope).
Prints one JSON line {variant: {"loss": [single, multi], "max_weight_diff": float, ...}}.
"""

import json
import os
import pathlib
import sys

NUM_DEVICES = 4
BACKEND = os.environ["KERAS_BACKEND"]

if BACKEND == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(NUM_DEVICES)]
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from conftest import as_dataset, conv_classifier, random_batch  # noqa: E402

from funmatch.distill import Distiller  # noqa: E402
from funmatch.optim import make_optimizer  # noqa: E402

VARIANTS = {
    # SGD without clipping: the update is proportional to the gradient, so a loss that is not
    # divided by the replica count would show up as a 4× larger step.
    "sgd_consistent": dict(mode="consistent", optimizer="sgd", clip_norm=0.0, weight_decay=0.0),
    # SGD with an active clip: clipping per replica (before the sum) would differ from one device.
    "sgd_clipped": dict(mode="consistent", optimizer="sgd", clip_norm=0.02, weight_decay=0.0),
    # The official optimizer with weight decay.
    "adam_official": dict(mode="consistent", optimizer="adam", clip_norm=1.0, weight_decay=0.1),
}
if BACKEND == "jax":
    # Under DataParallel the roll runs over the global batch, so mixup matches one device too.
    # (Under MirroredStrategy each replica mixes within its own slice of the batch.)
    VARIANTS["function_matching"] = dict(
        mode="function_matching", optimizer="sgd", clip_norm=0.0, weight_decay=0.0
    )


def build(variant):
    teacher = conv_classifier(8, seed=10)
    student = conv_classifier(8, seed=20)
    distiller = Distiller(teacher, student, mode=variant["mode"], temperature=2.0, seed=3)
    distiller.compile(
        optimizer=make_optimizer(
            variant["optimizer"], learning_rate=0.5, total_steps=10, warmup_steps=0,
            weight_decay=variant["weight_decay"], clip_norm=variant["clip_norm"],
        )
    )
    return distiller


def train(variant):
    batches = [random_batch(batch_size=8, seed=s) for s in (1, 2)]
    distiller = build(variant)
    history = distiller.fit(as_dataset(*batches), epochs=1, verbose=0, shuffle=False)
    return history.history["loss"][0], [np.asarray(w) for w in distiller.student.get_weights()]


def main():
    single = {name: train(variant) for name, variant in VARIANTS.items()}
    if BACKEND == "jax":
        import jax

        assert len(jax.devices()) == NUM_DEVICES, jax.devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        multi = {name: train(variant) for name, variant in VARIANTS.items()}
    else:
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(NUM_DEVICES)])
        assert strategy.num_replicas_in_sync == NUM_DEVICES
        multi = {}
        for name, variant in VARIANTS.items():
            with strategy.scope():
                multi[name] = train(variant)
    report = {}
    for name in VARIANTS:
        (loss_1, weights_1), (loss_n, weights_n) = single[name], multi[name]
        initial = [np.asarray(w) for w in conv_classifier(8, seed=20).get_weights()]
        report[name] = {
            "loss": [float(loss_1), float(loss_n)],
            "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(weights_1, weights_n)),
            "max_weight_change": max(float(np.abs(a - b).max()) for a, b in zip(weights_1, initial)),
        }
    print("RESULT " + json.dumps(report))


if __name__ == "__main__":
    main()
