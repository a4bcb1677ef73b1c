"""`funmatch teacher --init X.keras` at another resolution: the same weights under the new resolution's contract."""

import numpy as np


def test_fine_tuning_a_keras_teacher_at_another_resolution_keeps_its_weights(engine_data, tmp_path):
    from funmatch import models
    from funmatch.configs import get_config
    from funmatch.training.labels import train_teacher

    init = models.create("bit_r14x0.25", num_classes=4, resolution=32)
    rng = np.random.default_rng(0)
    for variable in init.trainable_variables:
        variable.assign(rng.normal(0, 0.05, variable.shape).astype("float32"))
    init.save(tmp_path / "init.keras")
    config = get_config("eurosat:smoke=true,teacher=bit_r14x0.25,teacher_resolution=48,resize_small=48,teacher_steps=1,"
                        "teacher_learning_rate=1e-12,teacher_weight_decay=0,teacher_warmup_steps=1,checkpoint_every=1")
    train_teacher(config, engine_data, tmp_path / "run", init=str(tmp_path / "init.keras"), progress=False)
    tuned = models.load(tmp_path / "run" / "teacher.keras")
    assert models.contract(tuned)["resolution"] == 48 and models.contract(tuned)["arch"] == "bit_r14x0.25"
    # One step at a negligible learning rate and no weight decay: the weights are the initial ones.
    for before, after in zip(init.get_weights(), tuned.get_weights()):
        np.testing.assert_allclose(after, before, atol=1e-6)
