"""Stored float16 targets reach TensorFlow as float32 through integer ops (no float16 tensor; see stream.py)."""

import numpy as np

from funmatch.distill.targets.stream import float16_bits_to_float32


def test_every_float16_bit_pattern_widens_to_numpys_float32():
    bits = np.arange(1 << 16, dtype=np.uint16)
    expected = bits.view(np.float16).astype(np.float32)
    actual = float16_bits_to_float32(bits).numpy()
    assert actual.dtype == np.float32
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(actual), nan) and nan.sum() == 2046
    # Bit for bit, signed zeros, subnormals and infinities included.
    assert np.array_equal(actual[~nan].view(np.uint32), expected[~nan].view(np.uint32))
