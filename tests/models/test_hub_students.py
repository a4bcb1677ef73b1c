"""Students from elsewhere in the registry: keras-hub presets (pretrained or random init from the preset's
config) with a new head, and keras.applications networks from a weights file without their top."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("name", ["mobilenet", "efficientnet", "resnet", "vit"])
def test_hub_student_pretrained_and_random_with_a_new_head(hub_presets, name, tmp_path):
    import keras_hub

    from funmatch import models

    source = str(hub_presets[name])
    preset_backbone = keras_hub.models.Backbone.from_preset(source)
    student = models.create(f"hub:{source}", num_classes=4, resolution=32 if name != "resnet" else 64)
    assert models.contract(student)["num_classes"] == 4 and student.arch == f"hub:{source}"
    for ours, theirs in zip(student.backbone.backbone.get_weights(), preset_backbone.get_weights()):
        np.testing.assert_array_equal(ours, theirs)  # the preset's weights: a pretrained start
    random = models.create(f"hub_random:{source}", num_classes=4)
    assert any(not np.array_equal(ours, theirs)
               for ours, theirs in zip(random.backbone.backbone.get_weights(), preset_backbone.get_weights()))
    # save -> load -> same outputs
    size = models.contract(student)["resolution"]
    images = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    models.save(student, tmp_path / "student.keras")
    loaded = models.load(tmp_path / "student.keras")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), student.predict(images, verbose=0), atol=1e-6)


def test_applications_student_from_a_notop_weights_file(tmp_path):
    import keras

    from funmatch import models

    base = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), include_top=False, weights=None,
                                               pooling="avg", include_preprocessing=False)
    base.save_weights(tmp_path / "notop.weights.h5")
    student = models.create(f"mobilenet_v3_small@{tmp_path / 'notop.weights.h5'}", num_classes=4, resolution=32)
    assert models.contract(student)["num_classes"] == 4
    for ours, theirs in zip(student.backbone.get_weights(), base.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(Exception, match="not the weights of MobileNetV3Large without its top"):
        models.create(f"mobilenet_v3_large@{tmp_path / 'notop.weights.h5'}", num_classes=4, resolution=32)
    with pytest.raises(Exception, match="weights file not found"):
        models.create("mobilenet_v3_small@/no/such.h5", num_classes=4, resolution=32)


def test_an_imported_model_at_another_resolution_keeps_its_weights(hub_presets):
    from funmatch import models
    from funmatch.errors import FunmatchError
    from funmatch.models import hub

    teacher = hub.hub_classifier(str(hub_presets["resnet"]))
    resized = models.with_resolution(teacher, 48)
    assert models.contract(resized)["resolution"] == 48
    assert models.contract(resized)["preprocessing"] == models.contract(teacher)["preprocessing"]
    for ours, theirs in zip(resized.get_weights(), teacher.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 48, 48, 3)).astype("float32")
    np.testing.assert_allclose(resized.predict(images, verbose=0), teacher.predict(images, verbose=0), atol=1e-6)
    with pytest.raises(FunmatchError, match="does not run at 48 px"):  # a ViT's patch grid is fixed
        models.with_resolution(hub.hub_classifier(str(hub_presets["vit"])), 48)
