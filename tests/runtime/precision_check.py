"""Run by test_precision.py (JAX backend): the same distillation steps in float32 and in bfloat16.

Prints one line `RESULT {json}`: per-step losses of both runs, their held-out metrics, and the dtypes seen.
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from funmatch import models, runtime  # noqa: E402
from funmatch.distill import Distiller  # noqa: E402
from funmatch.optim import make_optimizer  # noqa: E402

STEPS, BATCH, RESOLUTION, CLASSES = 10, 16, 32, 5


def run(precision, images, held_out):
    runtime.set_precision(precision)
    keras.utils.set_random_seed(0)
    teacher = models.create("tiny_cnn_w8", num_classes=CLASSES, resolution=RESOLUTION)
    rng = np.random.default_rng(0)
    for variable in teacher.trainable_variables:  # an informative teacher: non-zero head
        variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
    teacher = runtime.apply_precision(teacher)
    student = runtime.apply_precision(models.create("tiny_cnn_w8", num_classes=CLASSES, resolution=RESOLUTION))
    distiller = Distiller(teacher, student, mode="function_matching", temperature=2.0, seed=1)
    optimizer = make_optimizer("adam", learning_rate=0.01, total_steps=STEPS, warmup_steps=2, weight_decay=1e-4,
                               clip_norm=1.0)
    distiller.compile(optimizer=optimizer)
    losses = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(logs["loss"]))

    distiller.fit({"image": images}, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[Record()])
    metrics = distiller.evaluate({"image": held_out}, batch_size=BATCH, verbose=0, return_dict=True)
    return {
        "losses": losses,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "compute_dtypes": sorted({layer.compute_dtype for layer in student._flatten_layers() if layer.weights}
                                 | {layer.compute_dtype for layer in teacher._flatten_layers() if layer.weights}),
        "variable_dtypes": sorted({str(v.dtype) for v in [*student.weights, *optimizer.variables]}),
        "logits_dtype": str(student(held_out[:2]).dtype),
    }


def main():
    rng = np.random.default_rng(1)
    # Smooth images (a random low-resolution pattern, upsampled): the models see structure, not noise.
    low = rng.uniform(-1, 1, (STEPS * BATCH + 64, 4, 4, 3)).astype("float32")
    images = np.asarray(keras.ops.image.resize(low, (RESOLUTION, RESOLUTION)))
    train, held_out = images[: STEPS * BATCH], images[STEPS * BATCH:]
    print("RESULT " + json.dumps({p: run(p, train, held_out) for p in ("float32", "bfloat16")}))


if __name__ == "__main__":
    main()
