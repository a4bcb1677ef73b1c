"""Tiny hand-built models and batches for the distillation tests (not the model registry)."""

import numpy as np
import pytest


def conv_classifier(resolution, num_classes=5, seed=0, batch_norm=False, name=None):
    """Conv(4) → [BatchNorm] → GAP → Dense(num_classes): a few hundred weights, deterministic."""
    import keras

    inputs = keras.Input((resolution, resolution, 3))
    x = keras.layers.Conv2D(
        4, 3, padding="same", kernel_initializer=keras.initializers.GlorotUniform(seed)
    )(inputs)
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.GlorotUniform(seed + 1),
        bias_initializer=keras.initializers.RandomNormal(seed=seed + 2),
    )(x)
    return keras.Model(inputs, outputs, name=name)


def pixel_probe(resolution, pool=1, trainable_identity=False):
    """A "classifier" whose logits are its input pixels (after `pool`×`pool` average pooling).

    Two probes see the same pixels iff their logits are equal, so a zero distillation loss
    proves that teacher and student received identical inputs. With `trainable_identity` an
    identity-initialised Dense follows, so that `fit` has something to train.
    """
    import keras

    inputs = keras.Input((resolution, resolution, 3))
    x = keras.layers.AveragePooling2D(pool)(inputs) if pool > 1 else inputs
    x = keras.layers.Flatten()(x)
    if trainable_identity:
        x = keras.layers.Dense(x.shape[-1], kernel_initializer="identity", bias_initializer="zeros")(x)
    return keras.Model(inputs, x)


def random_batch(batch_size=8, resolution=8, num_classes=5, seed=0, teacher_resolution=None):
    """A dict batch as the data pipeline yields it (numpy)."""
    rng = np.random.default_rng(seed)
    batch = {
        "image": rng.uniform(-1, 1, (batch_size, resolution, resolution, 3)).astype("float32"),
        "label": rng.integers(0, num_classes, batch_size).astype("int64"),
        "index": np.arange(batch_size, dtype="int64"),
    }
    if teacher_resolution:
        batch["teacher"] = rng.uniform(
            -1, 1, (batch_size, teacher_resolution, teacher_resolution, 3)
        ).astype("float32")
    return batch


def as_dataset(*batches):
    """A tf.data.Dataset of known cardinality yielding the given dict batches in order.

    (Known cardinality matters on TensorFlow: with `from_generator` datasets Keras 3.15 counts an
    extra optimizer iteration and metric update at the end of the epoch.)
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(batches[0])
    for batch in batches[1:]:
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(batch))
    return dataset


@pytest.fixture
def models():
    """Namespace of the builders above, for tests."""
    import types

    return types.SimpleNamespace(
        conv_classifier=conv_classifier,
        pixel_probe=pixel_probe,
        random_batch=random_batch,
        as_dataset=as_dataset,
    )
