"""Unlabelled images (label -1) teach through the teacher only: the training accuracy counts labelled ones."""

import numpy as np
import pytest

pytestmark = pytest.mark.both_backends


def test_training_accuracy_ignores_unlabelled_examples(models):
    from funmatch.distill import Distiller
    from funmatch.optim import make_optimizer

    teacher, student = models.conv_classifier(8, seed=10), models.conv_classifier(8, seed=20)
    distiller = Distiller(teacher, student, mode="consistent", temperature=1.0)
    distiller.compile(optimizer=make_optimizer("adam", learning_rate=1e-3, total_steps=1, warmup_steps=0))
    batch = models.random_batch(batch_size=8, resolution=8)
    predicted = np.argmax(np.asarray(student.predict(batch["image"], verbose=0)), axis=-1)
    labels = predicted.copy()
    labels[[1, 2]] = (predicted[[1, 2]] + 1) % 5  # two labelled mistakes
    labels[4:] = -1  # four unlabelled images: never right or wrong
    history = distiller.fit(models.as_dataset(dict(batch, label=labels)), epochs=1, verbose=0)
    assert history.history["accuracy"][0] == pytest.approx(2 / 4)
