"""Preprocessing ops: each op eagerly and in tf.data, numerics, same-crop views, independence, errors."""

import io
import math

import numpy as np
import pytest
import tensorflow as tf
from data_test_images import coordinate_image, jpeg_bytes

from funmatch.data import ops
from funmatch.errors import FunmatchError


def example(image_bytes: bytes, rng=(7, 11)) -> dict:
    return {
        "image": tf.constant(image_bytes),
        "label": tf.constant(3, tf.int64),
        "id": tf.constant("x/1.jpg"),
        ops.RNG_KEY: tf.constant(rng, tf.int64),
    }


@pytest.fixture(scope="module")
def photo() -> bytes:
    return jpeg_bytes(coordinate_image(48, 64))


def run_in_tf_data(spec: str, inputs: dict) -> dict:
    dataset = tf.data.Dataset.from_tensors(inputs).map(ops.get_preprocess_fn(spec))
    return next(iter(dataset.as_numpy_iterator()))


EVERY_OP = [
    "decode",
    "decode_jpeg_and_inception_crop(24)",
    "decode|inception_crop(24)",
    "decode|inception_crop(area_min=50, area_max=60)",
    "decode|flip_lr",
    "decode|resize(16)",
    "decode|resize((12, 20), method='bicubic')",
    "decode|resize_small(20)",
    "decode|central_crop(16)",
    "decode|value_range(-1, 1)",
    "decode|copy('image', 'teacher')|resize(8, key='teacher')",
    "decode|keep('image', 'label')",
    "decode|drop('id')",
]


@pytest.mark.parametrize("spec", EVERY_OP)
def test_op_eager_equals_tf_data(spec, photo):
    inputs = example(photo)
    eager = {k: v.numpy() for k, v in ops.get_preprocess_fn(spec)(inputs).items()}
    graph = run_in_tf_data(spec, inputs)
    assert eager.keys() == graph.keys()
    for key in eager:
        np.testing.assert_array_equal(eager[key], graph[key], err_msg=f"{spec}: {key}")


def test_decode_is_lossless_for_png():
    from PIL import Image

    array = coordinate_image(10, 12)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    decoded = ops.get_preprocess_fn("decode")({"image": tf.constant(buffer.getvalue())})["image"]
    np.testing.assert_array_equal(decoded.numpy(), array)


def test_value_range_numbers():
    image = tf.constant([[[0, 255, 51]]], tf.uint8)
    out = ops.get_preprocess_fn("value_range(-1, 1)")({"image": image})["image"]
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), [[[-1.0, 1.0, -0.6]]], atol=1e-6)
    out = ops.get_preprocess_fn("value_range(0, 1, in_min=-1, in_max=1)")({"image": tf.constant([[[-1.0, 0.0, 1.0]]])})
    np.testing.assert_allclose(out["image"].numpy(), [[[0.0, 0.5, 1.0]]])


def test_central_crop_takes_the_middle():
    image = tf.reshape(tf.range(6 * 8 * 1), [6, 8, 1])
    out = ops.get_preprocess_fn("central_crop((2, 4))")({"image": image})["image"].numpy()
    np.testing.assert_array_equal(out, image.numpy()[2:4, 2:6])


def test_resize_small_keeps_aspect_and_dtype():
    image = tf.zeros([40, 60, 3], tf.uint8) + 77
    out = ops.get_preprocess_fn("resize_small(20)")({"image": image})["image"]
    assert out.shape == (20, 30, 3) and out.dtype == tf.uint8
    assert np.all(out.numpy() == 77)  # a constant image stays constant (rounding back to uint8)
    tall = ops.get_preprocess_fn("resize_small(10)")({"image": tf.zeros([33, 11, 3])})["image"]
    assert tall.shape == (30, 10, 3)


def test_resize_rounds_uint8():
    image = tf.constant([[[0], [255]]], tf.uint8)  # 1 x 2
    out = ops.get_preprocess_fn("resize((1, 4), antialias=False)")({"image": image})["image"].numpy()
    # Half-pixel bilinear: sample points at x = -0.25, 0.25, 0.75, 1.25 of the source -> 0, 63.75, 191.25, 255.
    np.testing.assert_array_equal(out[0, :, 0], [0, 64, 191, 255])


@pytest.mark.parametrize("name, flipped_view", [("flip_lr", lambda a: a[:, ::-1]), ("flip_ud", lambda a: a[::-1])])
def test_flips_flip_about_half_the_examples(name, flipped_view):
    image = tf.reshape(tf.range(2 * 3 * 1), [2, 3, 1])
    flip = ops.get_preprocess_fn(name)
    flipped = 0
    for position in range(200):
        out = flip({"image": image, ops.RNG_KEY: tf.constant([5, position], tf.int64)})["image"].numpy()
        if np.array_equal(out, flipped_view(image.numpy())):
            flipped += 1
        else:
            np.testing.assert_array_equal(out, image.numpy())
    assert 70 < flipped < 130


def test_rot90_with_flips_samples_all_eight_symmetries_of_the_square():
    base = np.arange(9).reshape(3, 3, 1)
    symmetries = {np.rot90(b, k, axes=(0, 1)).tobytes(): 0 for b in (base, base[:, ::-1]) for k in range(4)}
    assert len(symmetries) == 8
    augment = ops.get_preprocess_fn("flip_lr|rot90")
    rotate_only = ops.get_preprocess_fn("rot90")
    turns = [0, 0, 0, 0]
    for position in range(400):
        example = {"image": tf.constant(base), ops.RNG_KEY: tf.constant([3, position], tf.int64)}
        out = augment(example)["image"].numpy()
        symmetries[out.tobytes()] += 1  # KeyError if the output is not a symmetry of the square
        rotated = rotate_only(example)["image"].numpy()
        turns[[np.rot90(base, k, axes=(0, 1)).tobytes() for k in range(4)].index(rotated.tobytes())] += 1
    assert min(symmetries.values()) > 20, symmetries  # 50 expected each
    assert min(turns) > 60, turns  # 100 expected each (counterclockwise k x 90 degrees)


def test_supervised_pp_appends_the_recipe_augmentations():
    from funmatch.training.labels import supervised_pp

    assert "|flip_lr|value_range" in supervised_pp(32)
    spec = supervised_pp(32, 50, "flip_ud|rot90")
    assert "inception_crop(32, area_min=50)|flip_lr|flip_ud|rot90|value_range(-1, 1)" in spec
    ops.get_preprocess_fn(spec)  # every op exists


def crop_window(crop: np.ndarray, height: int, width: int):
    """(top, left, crop height, crop width) of an unresized crop of a float coordinate image."""
    top, left = int(crop[0, 0, 0]), int(crop[0, 0, 1])
    return top, left, crop.shape[0], crop.shape[1]


def float_coordinates(height, width):
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return tf.constant(np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.float32))


def test_inception_crop_is_a_window_with_the_right_area_and_aspect():
    height, width = 60, 80
    image = float_coordinates(height, width)
    crop_fn = ops.get_preprocess_fn("inception_crop")  # size None: no resize, the raw window
    areas, log_aspects = [], []
    for position in range(300):
        crop = crop_fn({"image": image, ops.RNG_KEY: tf.constant([1, position], tf.int64)})["image"].numpy()
        top, left, crop_h, crop_w = crop_window(crop, height, width)
        # A contiguous window of the original: every pixel holds its own coordinates.
        rows, cols = np.meshgrid(np.arange(top, top + crop_h), np.arange(left, left + crop_w), indexing="ij")
        np.testing.assert_array_equal(crop[..., 0], rows)
        np.testing.assert_array_equal(crop[..., 1], cols)
        areas.append(crop_h * crop_w / (height * width))
        log_aspects.append(math.log(crop_w / crop_h))
    areas, log_aspects = np.array(areas), np.array(log_aspects)
    # Rounding to whole pixels moves area and aspect slightly outside the nominal ranges.
    assert areas.min() >= 0.045 and areas.max() <= 1.0
    assert np.all(np.abs(log_aspects) <= math.log(4 / 3) + 0.1)
    # The whole range is used: small and large crops both occur.
    assert areas.min() < 0.1 and areas.max() > 0.8 and 0.25 < areas.mean() < 0.6
    assert 0.3 < np.mean(log_aspects > 0) < 0.7  # wider and taller crops both occur


def test_inception_crop_area_arguments_in_percent():
    image = float_coordinates(50, 50)
    crop_fn = ops.get_preprocess_fn("inception_crop(area_min=30, area_max=31)")
    for position in range(20):
        crop = crop_fn({"image": image, ops.RNG_KEY: tf.constant([2, position], tf.int64)})["image"]
        area = crop.shape[0] * crop.shape[1] / 2500
        assert 0.27 < area < 0.34


def test_fused_decode_and_crop_equals_decode_then_crop(photo):
    fused = ops.get_preprocess_fn("decode_jpeg_and_inception_crop(24)")
    unfused = ops.get_preprocess_fn("decode|inception_crop(24)")
    for position in range(20):
        inputs = example(photo, rng=(3, position))
        fast = fused(inputs)["image"].numpy().astype(int)
        slow = unfused(inputs)["image"].numpy().astype(int)
        # Same window; libjpeg's chroma upsampling at the cropped border differs by a level or two.
        assert np.abs(fast - slow).max() <= 3
        assert np.abs(fast - slow).mean() < 0.2


def test_same_crop_views_teacher_and_student(photo):
    spec = 'decode|inception_crop(32)|flip_lr|copy("image", "teacher")|resize(16)'
    out = ops.get_preprocess_fn(spec)(example(photo))
    teacher, student = out["teacher"], out["image"]
    assert teacher.shape == (32, 32, 3) and student.shape == (16, 16, 3)
    expected = tf.image.resize(teacher, [16, 16], antialias=True)
    np.testing.assert_array_equal(student.numpy(), tf.cast(tf.clip_by_value(tf.round(expected), 0, 255), tf.uint8))
    # And the views come from the same window: the unresized crop matches both.
    window = ops.get_preprocess_fn("decode|inception_crop|flip_lr")(example(photo))["image"]
    np.testing.assert_array_equal(
        teacher.numpy(), tf.cast(tf.round(tf.image.resize(window, [32, 32])), tf.uint8).numpy()
    )


def test_random_ops_on_different_keys_are_independent():
    image = float_coordinates(60, 80)
    spec = 'copy("image", "teacher")|inception_crop|inception_crop(key="teacher")'
    fn = ops.get_preprocess_fn(spec)
    different = 0
    for position in range(20):
        out = fn({"image": image, ops.RNG_KEY: tf.constant([0, position], tf.int64)})
        windows = [crop_window(out[k].numpy(), 60, 80) for k in ("image", "teacher")]
        different += windows[0] != windows[1]
    assert different >= 19
    # Same key twice in one spec: also two different draws.
    twice = ops.get_preprocess_fn("flip_lr|flip_lr")
    flips = ops.get_preprocess_fn("flip_lr")
    row = tf.reshape(tf.range(4), [1, 4, 1])
    outcomes = set()
    for position in range(40):
        seed = tf.constant([9, position], tf.int64)
        outcomes.add((bool(flips({"image": row, ops.RNG_KEY: seed})["image"][0, 0, 0] == 3),
                      bool(twice({"image": row, ops.RNG_KEY: seed})["image"][0, 0, 0] == 3)))
    assert len(outcomes) == 4


def test_randomness_is_a_function_of_the_example_seed(photo):
    fn = ops.get_preprocess_fn("decode|inception_crop(24)|flip_lr")
    first = fn(example(photo, rng=(1, 2)))["image"].numpy()
    again = fn(example(photo, rng=(1, 2)))["image"].numpy()
    other = fn(example(photo, rng=(1, 3)))["image"].numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # Without a seed in the dict (eager use), the default seed is used.
    no_seed = {"image": tf.constant(photo)}
    np.testing.assert_array_equal(fn(no_seed)["image"].numpy(), fn(dict(no_seed))["image"].numpy())
    np.testing.assert_array_equal(
        fn(no_seed)["image"].numpy(), fn({"image": tf.constant(photo), ops.RNG_KEY: tf.constant(ops.DEFAULT_RNG, tf.int64)})["image"].numpy()
    )


def test_keep_drops_everything_else(photo):
    out = ops.get_preprocess_fn('decode|keep("image", "label")')(example(photo))
    assert set(out) == {"image", "label"}


@pytest.mark.parametrize(
    "spec, words",
    [
        ("decode|no_such_op(3)", ["no_such_op", "decode|no_such_op(3)"]),
        ("decode|resize('big')", ["resize", "decode|resize('big')"]),
        ("decode|resize(16, colour=2)", ["resize", "colour"]),
        ("decode|inception_crop(24, area_min=0)", ["inception_crop", "area_min"]),
        ("decode|resize(x)", ["resize", "non-literal"]),
        ("decode|resize(16", ["resize(16"]),
        ("", ["empty"]),
    ],
)
def test_bad_specs_raise_errors_naming_op_and_spec(spec, words):
    with pytest.raises(FunmatchError) as error:
        ops.get_preprocess_fn(spec)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_missing_key_names_the_op_and_key():
    with pytest.raises(FunmatchError, match="flip_lr.*'teacher'"):
        ops.get_preprocess_fn("flip_lr(key='teacher')")({"image": tf.zeros([2, 2, 3])})


def test_register_adds_an_op():
    @ops.register("test_add_constant")
    def make(value, key="image"):
        return lambda e: {**e, key: e[key] + value}

    out = ops.get_preprocess_fn("test_add_constant(2)")({"image": tf.constant([1])})
    assert out["image"].numpy().tolist() == [3]
    assert "test_add_constant" in ops.registered_ops()
