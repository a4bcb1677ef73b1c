"""`funmatch models import`: each source kind round-trips with the source's own logits; the contract of a
keras-hub preset is its image converter's, and the pixels each model receives are keras-hub's own.
The preset and .keras round trips run on JAX as well; a SavedModel teacher is TensorFlow-only (the tests make
one with TensorFlow)."""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest

from funmatch import cli

MINI = pathlib.Path(__file__).resolve().parents[2] / "src" / "funmatch" / "assets" / "eurosat_mini"


def _pixels(count=3, size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3)).astype("float32")


def _run(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.both_backends
def test_preset_import_gives_keras_hubs_own_logits_and_converter_contract(hub_presets, tmp_path, capsys):
    import keras_hub

    from funmatch import models

    out = tmp_path / "teacher.keras"
    code, text = _run(capsys, "models", "import", str(hub_presets["resnet"]), "--out", str(out))
    assert code == 0, text
    assert "mean (0.485, 0.456, 0.406) std (0.229, 0.224, 0.225)" in text
    teacher = models.load(out)
    contract = models.contract(teacher)
    assert contract["resolution"] == 64 and contract["num_classes"] == 10
    converter = keras_hub.layers.ImageConverter.from_preset(str(hub_presets["resnet"]))
    np.testing.assert_allclose(contract["preprocessing"]["scale"], converter.scale, rtol=1e-7)
    np.testing.assert_allclose(contract["preprocessing"]["offset"], converter.offset, rtol=1e-7)
    pixels = _pixels()
    reference = keras_hub.models.ImageClassifier.from_preset(str(hub_presets["resnet"])).predict(pixels, verbose=0)
    np.testing.assert_allclose(teacher.predict(pixels / 127.5 - 1, verbose=0), reference, atol=2e-5, rtol=1e-5)


def _eval_view(path, resolution):
    """funmatch's evaluation view of one image file at `resolution` (crop fraction 1), in [-1, 1]."""
    import tensorflow as tf

    from funmatch.data.ops import get_preprocess_fn
    from funmatch.evaluation.logits import eval_pp

    spec = eval_pp(resolution, 1.0).split('|keep')[0]
    example = get_preprocess_fn(spec)({"image": tf.io.read_file(str(path)), "label": 0})
    return np.asarray(example["image"], np.float32)[None]


@pytest.mark.both_backends
def test_teacher_and_student_receive_keras_hubs_own_pixels_at_their_own_resolutions(hub_presets):
    """One EuroSAT tile (64 px): the teacher (64 px, mean/std) and the student (32 px, [0, 1]) each get the
    window in their own preprocessing, as keras-hub's own preprocessor gives it for the same image."""
    import keras_hub
    import tensorflow as tf

    from funmatch.models import hub
    from funmatch.models.preprocessing import to_model_input

    path = sorted((MINI / "test" / "001_forest").iterdir())[0]
    # The same decoded pixels for both (JPEG decoders differ by a level here and there; not the subject).
    image = np.asarray(tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=3), np.float32)[None]
    for name, resolution, pixel_tolerance in (("resnet", 64, 1e-3), ("mobilenet", 32, 0.51)):
        model = hub.hub_classifier(str(hub_presets[name]))
        assert model.resolution == resolution
        received = np.asarray(to_model_input(_eval_view(path, resolution), model.preprocessing))
        preprocessor = keras_hub.models.ImageClassifier.from_preset(str(hub_presets[name])).preprocessor
        expected = np.asarray(preprocessor(image))
        assert received.shape == expected.shape == (1, resolution, resolution, 3)
        scale = np.asarray(model.preprocessing["scale"])
        # In pixel units: identical at the image's own size; within the uint8 rounding funmatch's resize
        # keeps (half a pixel level) when it resizes.
        assert np.abs((received - expected) / scale).max() <= pixel_tolerance


def test_caffe_mode_matches_keras_applications_preprocess_input():
    import keras

    from funmatch.models.preprocessing import APPLICATION_MODES, normalize, to_model_input

    pixels = _pixels(2, 8)
    for mode, module in (("caffe", keras.applications.resnet), ("torch", keras.applications.densenet),
                         ("tf", keras.applications.mobilenet_v2)):
        ours = np.asarray(to_model_input(pixels / 127.5 - 1, normalize(APPLICATION_MODES[mode])))
        np.testing.assert_allclose(ours, module.preprocess_input(pixels.copy()), atol=1e-4)


def test_applications_import_round_trip(tmp_path, capsys):
    import keras

    from funmatch import models

    source = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=7,
                                                 classifier_activation=None)
    source.save_weights(tmp_path / "net.weights.h5")
    out = tmp_path / "imported.keras"
    code, text = _run(capsys, "models", "import", "keras.applications.MobileNetV3Small", "--weights",
                      str(tmp_path / "net.weights.h5"), "--num-classes", "7", "--resolution", "32", "--out", str(out))
    assert code == 0, text
    assert "RGB range [0, 255]" in text  # MobileNetV3 rescales inside itself
    pixels = _pixels(2, 32)
    np.testing.assert_allclose(models.load(out).predict(pixels / 127.5 - 1, verbose=0),
                               source.predict(pixels, verbose=0), atol=2e-5, rtol=1e-5)


def _small_functional(outputs="logits"):
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    if outputs == "map":
        return keras.Model(inputs, x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax" if outputs == "softmax" else None)(x))


@pytest.mark.both_backends
def test_keras_file_import_round_trip(tmp_path, capsys):
    from funmatch import models

    source = _small_functional()
    source.save(tmp_path / "mine.keras")
    out = tmp_path / "imported.keras"
    code, text = _run(capsys, "models", "import", str(tmp_path / "mine.keras"), "--preprocessing",
                      "range=0,1 crop=0.875", "--out", str(out))
    assert code == 0, text
    imported = models.load(out)
    assert models.contract(imported)["resolution"] == 16 and models.contract(imported)["eval_crop_fraction"] == 0.875
    pixels = _pixels(2, 16)
    np.testing.assert_allclose(imported.predict(pixels / 127.5 - 1, verbose=0),
                               source.predict(pixels / 255.0, verbose=0), atol=1e-5, rtol=1e-5)


def _savedmodel(path, signature=True):
    import tensorflow as tf

    source = _small_functional()
    module = tf.Module()
    module.model = source

    @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32)])
    def serve(images):
        return {"logits": source(images)}

    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve} if signature else {})
    return source


def test_savedmodel_import_round_trip(tmp_path, capsys):
    from funmatch import models

    source = _savedmodel(tmp_path / "saved")
    out = tmp_path / "imported.keras"
    code, text = _run(capsys, "models", "import", str(tmp_path / "saved"), "--preprocessing",
                      "mean=0.5,0.5,0.5 std=0.25,0.25,0.25", "--out", str(out))
    assert code == 0, text
    pixels = _pixels(2, 16)
    np.testing.assert_allclose(models.load(out).predict(pixels / 127.5 - 1, verbose=0),
                               source.predict((pixels / 255.0 - 0.5) / 0.25, verbose=0), atol=1e-5, rtol=1e-5)


def test_bad_sources_get_one_line_each(hub_presets, tmp_path, capsys):
    _small_functional("map").save(tmp_path / "map.keras")
    _small_functional("softmax").save(tmp_path / "softmax.keras")
    _small_functional().save(tmp_path / "logits.keras")
    _savedmodel(tmp_path / "unsigned", signature=False)
    damaged = tmp_path / "damaged"
    shutil.copytree(hub_presets["resnet"], damaged)
    (damaged / "model.weights.h5").write_bytes(b"not hdf5")
    no_config = tmp_path / "no_config"
    shutil.copytree(hub_presets["resnet"], no_config)
    (no_config / "config.json").unlink()
    cases = [
        ([str(hub_presets["bert"])], "BertBackbone, which is not an image model"),
        ([str(damaged)], "damaged keras-hub preset"),
        ([str(no_config)], "damaged keras-hub preset (no config.json"),
        ([str(tmp_path / "map.keras"), "--preprocessing", "tf"], "not [batch, classes] logits: not an image classifier"),
        ([str(tmp_path / "softmax.keras"), "--preprocessing", "tf"], "outputs probabilities"),
        ([str(tmp_path / "logits.keras"), "--preprocessing", "tf", "--num-classes", "3"],
         "the model has 5 classes, --num-classes 3"),
        ([str(tmp_path / "logits.keras")], "give --preprocessing"),
        ([str(tmp_path / "logits.keras"), "--preprocessing", "range=1,0"], "HIGH must exceed LOW"),
        ([str(tmp_path / "unsigned"), "--preprocessing", "tf"], "no serving signature"),
    ]
    for argv, message in cases:
        out = tmp_path / "out.keras"
        code, text = _run(capsys, "models", "import", *argv, "--out", str(out))
        assert code != 0 and message in text, (argv, text)
        assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
        assert not out.exists()
