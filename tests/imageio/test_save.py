"""darknet_py.imageio.save_image: PNG and JPEG written as OpenCV reads them back, and the paths and arrays
it refuses."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from darknet_py.errors import ImageError
from darknet_py.imageio import save_image
from tests.helpers.images import noise


# --------------------------------------------------------------------------------------- save_image

def test_save_png_round_trip_unicode_path(tmp_path):
    rgb = noise(6, 9)
    p = str(tmp_path / "out ü.png")
    save_image(p, rgb)
    on_disk = cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(on_disk, rgb[:, :, ::-1])  # stored as BGR by the PNG encoder's convention


def test_save_jpg(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 255
    p = tmp_path / "red.JPG"
    save_image(p, rgb)
    back = cv2.imdecode(np.fromfile(str(p), np.uint8), cv2.IMREAD_COLOR)
    assert back[..., 2].min() > 240 and back[..., :2].max() < 15


@pytest.mark.parametrize("name", ["out.txt", "noext", "out.gifx"])
def test_save_unknown_extension(tmp_path, name):
    with pytest.raises(ImageError) as info:
        save_image(tmp_path / name, noise(2, 2))
    assert name in str(info.value) and "extension" in str(info.value)


def test_save_unwritable(tmp_path):
    for p in (tmp_path / "no_such_dir" / "x.png", tmp_path / "isdir.png"):
        if p.name == "isdir.png":
            p.mkdir()
        with pytest.raises(ImageError) as info:
            save_image(p, noise(2, 2))
        assert str(p) in str(info.value) and "cannot write" in str(info.value)


@pytest.mark.parametrize("arr", [np.zeros((2, 2), np.uint8), np.zeros((2, 2, 4), np.uint8),
                                 np.zeros((2, 2, 3), np.float32), "not an array"])
def test_save_bad_array(tmp_path, arr):
    with pytest.raises(ImageError, match="HxWx3 uint8"):
        save_image(tmp_path / "x.png", arr)
