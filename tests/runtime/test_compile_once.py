"""The training step compiles once per run: 20 steps in 4 chunks, with checkpoints and evaluation between them."""

import logging
import re

import numpy as np
import pytest

from funmatch.errors import FunmatchError  # noqa: F401  (the package imports without Keras)


def _batches(seed=0, batch=8, resolution=16, classes=4):
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(-1, 1, (batch, resolution, resolution, 3)).astype("float32"),
            "label": rng.integers(0, classes, batch).astype("int64")}


@pytest.mark.both_backends
def test_the_training_step_compiles_once_in_20_steps(tmp_path, backend, caplog):
    import keras
    import tensorflow as tf

    from funmatch import models, runtime
    from funmatch.distill import Distiller
    from funmatch.optim import make_optimizer
    from funmatch.training.loop import fit_resumable

    # JAX: the names of the functions XLA compiled, from the line jax.dispatch logs (at DEBUG) after each
    # compilation, persistent-cache hits included. Every supported jax logs it; its monitoring events name
    # the function only in newer releases (not in 0.4.30 or 0.5.3).
    caplog.set_level(logging.DEBUG, logger="jax._src.dispatch")

    def compiled():
        return [match.group(1) for record in caplog.records
                if (match := re.match(r"Finished XLA compilation of (.+?) in ", record.getMessage()))]

    keras.utils.set_random_seed(0)
    with runtime.distribution_scope():
        teacher = runtime.apply_precision(models.create("tiny_cnn_w8", num_classes=4, resolution=16))
        student = runtime.apply_precision(models.create("tiny_cnn_w8", num_classes=4, resolution=16))
        distiller = Distiller(teacher, student, mode="function_matching", temperature=2.0, seed=1)
        optimizer = make_optimizer("adam", learning_rate=0.01, total_steps=20, warmup_steps=2,
                                   weight_decay=1e-4, clip_norm=1.0)
        distiller.compile(optimizer=optimizer)
        optimizer.build(student.trainable_variables)
    eval_images = _batches(seed=9)["image"]
    traces = []  # the step's Python code runs once per trace (TensorFlow graph, JAX jit)
    step = distiller.train_step

    def counted_train_step(*args, **kwargs):
        traces.append(1)
        return step(*args, **kwargs)

    distiller.train_step = counted_train_step

    def make_dataset(start_step):
        data = [_batches(seed=s) for s in range(4)]
        stream = tf.data.Dataset.from_tensor_slices({k: np.stack([d[k] for d in data]) for k in data[0]})
        return stream.repeat().skip(start_step % 4)

    def evaluate(step):
        logits = student.predict_on_batch(eval_images)
        return {"eval_mean_logit": float(np.mean(logits))}

    def groups():
        return {"student": list(student.variables), "optimizer": list(optimizer.variables),
                "rng": [distiller.seed_generator.state]}

    compiled_before = len(compiled())
    fit_resumable(distiller, make_dataset, workdir=tmp_path, total_steps=20, chunk_steps=5, groups=groups,
                  images_per_step=8, steps_per_data_epoch=4, evaluate=evaluate, eval_every=5, progress=False)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 20
    assert len(list((tmp_path / "checkpoints").glob("ckpt-*"))) >= 1
    assert len(traces) == 1
    if backend == "jax":  # and XLA compiled one training program
        programs = compiled()[compiled_before:]
        train = [name for name in programs if "train" in name]
        assert len(train) == 1, programs
