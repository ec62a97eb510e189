"""darknet_py.imageio.load_image applies the EXIF orientation (a JPEG's APP1 segment, a PNG's eXIf chunk)
unless told not to; an invalid one is ignored with a note."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from darknet_py.imageio import load_image
from tests.helpers.images import encode, exif_tiff, jpeg_with_exif, noise, png_with_exif, write


# --------------------------------------------------------------------------------- EXIF orientation

def oriented(stored: np.ndarray, o: int) -> np.ndarray:
    """Display image from the EXIF definition of where stored row 0 / column 0 go (index form)."""
    h, w = stored.shape[:2]
    if o in (1, 2, 3, 4):
        i, j = np.indices((h, w))
        r, c = {1: (i, j), 2: (i, w - 1 - j), 3: (h - 1 - i, w - 1 - j), 4: (h - 1 - i, j)}[o]
    else:
        i, j = np.indices((w, h))
        r, c = {5: (j, i), 6: (h - 1 - j, i), 7: (h - 1 - j, w - 1 - i), 8: (j, w - 1 - i)}[o]
    return stored[r, c]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("order", ["MM", "II"])
def test_exif_orientation_png_all_eight(tmp_path, orientation, order):
    bgr = noise(5, 8)
    data = png_with_exif(encode(".png", bgr), exif_tiff(orientation, order))
    p = write(tmp_path, "o.png", data)
    rgb, meta = load_image(p)
    np.testing.assert_array_equal(rgb, oriented(bgr[:, :, ::-1], orientation))
    # OpenCV's IMREAD_COLOR applies eXIf too: an independent implementation must agree
    np.testing.assert_array_equal(rgb, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1])
    assert meta.exif_orientation == orientation and (meta.width, meta.height) == rgb.shape[1::-1]
    raw, meta = load_image(p, exif_orientation=False)
    np.testing.assert_array_equal(raw, bgr[:, :, ::-1])
    assert meta.exif_orientation == 1


def quadrant_means(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[0] // 2, img.shape[1] // 2
    return np.array([[img[:h, :w].mean(), img[:h, w:].mean()], [img[h:, :w].mean(), img[h:, w:].mean()]])


@pytest.mark.parametrize("order", ["MM", "II"])
def test_exif_orientation_6_jpeg(tmp_path, order):
    stored = np.zeros((32, 64, 3), np.uint8)
    stored[:16, :32] = 255  # bright top-left quadrant of a landscape image
    data = jpeg_with_exif(encode(".jpg", stored, (cv2.IMWRITE_JPEG_QUALITY, 100)), exif_tiff(6, order))
    p = write(tmp_path, "rot.jpg", data)
    rgb, meta = load_image(p)
    assert rgb.shape == (64, 32, 3) and meta.exif_orientation == 6 and (meta.width, meta.height) == (32, 64)
    q = quadrant_means(rgb)  # rotated 90 clockwise: top-left goes to top-right
    assert q[0, 1] > 240 and q[0, 0] < 15 and q[1].max() < 15
    raw, meta = load_image(p, exif_orientation=False)
    q = quadrant_means(raw)
    assert raw.shape == (32, 64, 3) and meta.exif_orientation == 1 and q[0, 0] > 240 and q[0, 1] < 15


def test_invalid_orientation_ignored(tmp_path):
    bgr = noise(3, 4)
    rgb, meta = load_image(write(tmp_path, "bad.png", png_with_exif(encode(".png", bgr), exif_tiff(9))))
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])
    assert meta.exif_orientation == 1 and any("invalid EXIF orientation 9" in n for n in meta.notes)
