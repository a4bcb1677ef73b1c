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


def _logits_and_gradients(model, images):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        loss = tf.reduce_sum(tf.square(logits))
    return logits.numpy(), [gradient.numpy() for gradient in tape.gradient(loss, model.trainable_weights)]


def _assert_same_function(ours, theirs, images):
    logits, gradients = _logits_and_gradients(ours, images)
    reference, reference_gradients = _logits_and_gradients(theirs, images)
    np.testing.assert_allclose(logits, reference, atol=1e-5)
    assert len(gradients) == len(reference_gradients)
    for gradient, expected in zip(gradients, reference_gradients):
        np.testing.assert_allclose(gradient, expected, atol=1e-5 * max(1.0, float(np.abs(expected).max())))


def _graph(model, shape) -> tuple[set, int]:
    """The op types of the model's traced graph, and how many of its function calls XLA must compile
    (Keras' path for a grouped convolution)."""
    import tensorflow as tf

    graph = tf.function(lambda x: model(x, training=True)).get_concrete_function(
        tf.TensorSpec(shape, tf.float32)).graph
    types, compiled = set(), 0
    for op in graph.get_operations():
        types.add(op.type)
        try:
            compiled += bool(op.get_attr("_XlaMustCompile"))
        except ValueError:
            pass
    return types, compiled


def test_hub_student_depthwise_convs_run_as_depthwise_on_tensorflow(hub_presets):
    """(TensorFlow backend, as the suite's TensorFlow pass runs it.) keras-hub's MobileNet writes its depthwise
    convolutions as Conv2D(groups=C); TensorFlow has no CPU kernel for those (Keras compiles each with XLA,
    11x slower per step). The Classifier runs them as depthwise convolutions: the same logits and gradients
    as keras-hub's own model, another op, nothing left for XLA."""
    import keras_hub

    from funmatch import models

    source = str(hub_presets["mobilenet"])
    student = models.create(f"hub:{source}", num_classes=10)
    theirs = keras_hub.models.MobileNetImageClassifier.from_preset(source, activation=None)
    theirs.preprocessor = None
    images = np.random.default_rng(0).uniform(-2, 2, (4, 32, 32, 3)).astype("float32")
    _assert_same_function(student.backbone, theirs, images)
    ours_types, ours_compiled = _graph(student, (4, 32, 32, 3))
    their_types, their_compiled = _graph(theirs, (4, 32, 32, 3))
    assert "DepthwiseConv2dNative" in ours_types and ours_compiled == 0
    assert "DepthwiseConv2dNative" not in their_types and their_compiled > 0


def test_grouped_convs_with_a_multiplier_and_several_channels_per_group(tmp_path):
    """A depthwise Conv2D(groups=4, filters=8) (multiplier 2) runs as depthwise, a Conv2D(groups=2) on 4
    channels (2 per group) as one convolution per group; both give Keras' own outputs and gradients, also
    after a save and load, with nothing left for XLA."""
    import keras

    from funmatch import models
    from funmatch.models.classifier import Classifier, native_grouped_convs

    def backbone():
        inputs = keras.Input((12, 12, 4))
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", groups=4, name="depthwise_x2")(inputs)
        x = keras.layers.Conv2D(4, 3, padding="valid", groups=2, dilation_rate=2, name="two_per_group")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, keras.layers.Dense(3)(x))

    keras.utils.set_random_seed(0)
    ours = Classifier(backbone(), arch="grouped", num_classes=3, resolution=12)
    theirs = backbone()
    theirs.set_weights(ours.backbone.get_weights())
    images = np.random.default_rng(1).uniform(-1, 1, (2, 12, 12, 4)).astype("float32")
    _assert_same_function(ours.backbone, theirs, images)
    assert native_grouped_convs(ours.backbone) == 2  # both; a second call changes nothing
    shape = (2, 12, 12, 4)
    ours_types, ours_compiled = _graph(ours.backbone, shape)
    assert "DepthwiseConv2dNative" in ours_types and ours_compiled == 0 and _graph(theirs, shape)[1] == 2
    models.save(ours, tmp_path / "grouped.keras")
    loaded = models.load(tmp_path / "grouped.keras")
    _assert_same_function(loaded.backbone, theirs, images)
    assert _graph(loaded.backbone, shape)[1] == 0
