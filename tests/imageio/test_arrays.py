"""darknet_py.imageio.to_rgb_uint8: arrays (gray, RGB, RGBA, uint16, float) to contiguous RGB uint8, and the
arrays it refuses."""
from __future__ import annotations

import numpy as np
import pytest

from darknet_py.errors import ImageError
from darknet_py.imageio import to_rgb_uint8
from tests.helpers.images import noise


# ------------------------------------------------------------------------------------- to_rgb_uint8

def test_array_gray_2d_and_hw1():
    gray = noise(4, 5, 0)
    for arr in (gray, gray[:, :, None]):
        rgb, meta = to_rgb_uint8(arr)
        np.testing.assert_array_equal(rgb, np.dstack([gray, gray, gray]))
        assert meta.source_channels == 1 and meta.path is None and (meta.width, meta.height) == (5, 4)


def test_array_rgb_is_not_swapped_and_not_aliased():
    src = noise(4, 5)
    rgb, meta = to_rgb_uint8(src[:, ::-1])  # non-contiguous view
    np.testing.assert_array_equal(rgb, src[:, ::-1])
    assert rgb.flags.c_contiguous and not np.shares_memory(rgb, src)
    rgb2, _ = to_rgb_uint8(src)
    assert not np.shares_memory(rgb2, src) and meta.notes == ()


def test_array_rgba_drops_alpha():
    src = noise(3, 3, 4)
    rgb, meta = to_rgb_uint8(src)
    np.testing.assert_array_equal(rgb, src[:, :, :3])
    assert meta.source_channels == 4 and "alpha dropped" in meta.notes


def test_array_uint16():
    src = np.array([[[0, 257, 65535], [128, 129, 32767]]], np.uint16)
    rgb, meta = to_rgb_uint8(src)
    np.testing.assert_array_equal(rgb, [[[0, 1, 255], [0, 1, 127]]])  # 128/257 < .5, 129/257 > .5
    assert meta.source_dtype == "uint16"


def test_array_float():
    src = np.array([[[0.0, 1.0, 0.2], [0.75, 0.5 / 255 + 1e-6, 0.5 / 255 - 1e-6]]], np.float32)
    rgb, meta = to_rgb_uint8(src)
    np.testing.assert_array_equal(rgb, [[[0, 255, 51], [191, 1, 0]]])
    assert meta.source_dtype == "float32"


@pytest.mark.parametrize("arr,fragment", [
    (np.full((2, 2, 3), 1.5, np.float32), "[0, 1]"),
    (np.full((2, 2, 3), -0.1, np.float64), "[0, 1]"),
    (np.full((2, 2, 3), np.nan, np.float32), "NaN"),
    (np.zeros((2, 2, 3), bool), "bool"),
    (np.zeros((2, 2, 3), np.int32), "int32"),
    (np.zeros((2, 2, 3), np.int64), "(2, 2, 3)"),
    (np.zeros((1, 2, 2, 3), np.uint8), "(1, 2, 2, 3)"),
    (np.zeros((2, 2, 5), np.uint8), "(2, 2, 5)"),
    (np.zeros((0, 2, 3), np.uint8), "(0, 2, 3)"),
    (np.zeros(5, np.uint8), "(5,)"),
])
def test_array_rejected(arr, fragment):
    with pytest.raises(ImageError) as info:
        to_rgb_uint8(arr, path="frame.npy")
    assert "frame.npy" in str(info.value) and fragment in str(info.value), str(info.value)


def test_array_not_ndarray():
    with pytest.raises(ImageError, match="list"):
        to_rgb_uint8([[1, 2], [3, 4]])
