"""Run by test_host_sync.py (JAX backend): how often `fit_resumable` reads the values a training step
returns (its logs: the loss, the metrics) to the host over the 100 steps of a run. Each read waits for the
step to finish on the device: a read after every step keeps the accelerator from running ahead.

The step's returned values are wrapped (`Counted`) so that every read of one (`float()`, `np.asarray`,
`keras.ops.convert_to_numpy`) is counted, whichever code does it (Keras' callback list or funmatch's loop).
Prints one line `RESULT {json}`: the counts of three runs: the loop as it is (`check_every` 10), the loop
reading the loss after every step (`check_every` 1), and the loop with a callback that has a per-step hook
(Keras gives such a callback every step's logs as floats).
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from funmatch.training import loop  # noqa: E402

STEPS = 100
READS = {"count": 0}


class Counted:
    """A step's returned value; counts each read of it to the host."""

    def __init__(self, value):
        self.value = value

    def __float__(self):
        READS["count"] += 1
        return float(np.asarray(self.value))

    def __array__(self, dtype=None, copy=None):
        READS["count"] += 1
        return np.asarray(self.value, dtype=dtype)


class CountingModel(keras.Sequential):
    def make_train_function(self, force=False):
        super().make_train_function(force)
        step = self.train_function

        def counted_step(state, data):  # JAX trainer: (logs, state) = train_function(state, data)
            logs, state = step(state, data)
            return {key: Counted(value) for key, value in logs.items()}, state

        self.train_function = counted_step
        return counted_step


class PerStep(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass


def run(workdir, check_every, extra=()):
    keras.utils.set_random_seed(0)
    model = CountingModel([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
    model.optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(256, 8)).astype("float32"), rng.normal(size=(256, 4)).astype("float32")
    READS["count"] = 0
    result = loop.fit_resumable(
        model, lambda start: tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(16),
        workdir=workdir, total_steps=STEPS, chunk_steps=50, images_per_step=16, steps_per_data_epoch=16,
        groups=lambda: {"model": list(model.variables), "optimizer": list(model.optimizer.variables)},
        progress=False, check_every=check_every, extra_callbacks=list(extra))
    assert result["step"] == STEPS, result
    return READS["count"]


def main(out_dir):
    counts = {"loop": run(os.path.join(out_dir, "a"), loop.CHECK_EVERY),
              "check_every_step": run(os.path.join(out_dir, "b"), 1),
              "per_step_callback": run(os.path.join(out_dir, "c"), loop.CHECK_EVERY, [PerStep()])}
    print("RESULT " + json.dumps({"steps": STEPS, "check_every": loop.CHECK_EVERY, "backend": keras.backend.backend(),
                                  **counts}))


if __name__ == "__main__":
    main(sys.argv[1])
