"""darknet_py.imageio.load_image on whole files of every format and layout: tiny images, RGB channel
order, lossless formats pixel for pixel, gray, alpha, 16 bit, palettes, multi-frame files, odd names."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from darknet_py.imageio import ImageMeta, load_image
from tests.helpers.images import RNG, chunk, encode, expect_image_error, noise, png, write


# ----------------------------------------------------------------------- tiny images, channel order

@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1)])
def test_tiny_images(tmp_path, shape):
    src = noise(*shape)
    rgb, meta = load_image(write(tmp_path, "tiny.png", encode(".png", src)))
    np.testing.assert_array_equal(rgb, src[:, :, ::-1])
    assert (meta.height, meta.width) == shape


def test_pure_red_lights_channel_0(tmp_path):
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[:, :, 2] = 255  # red in OpenCV's BGR
    rgb, _ = load_image(write(tmp_path, "red.png", encode(".png", bgr)))
    assert (rgb[:, :, 0] == 255).all() and (rgb[:, :, 1:] == 0).all()
    rgb, _ = load_image(write(tmp_path, "red.jpg", encode(".jpg", np.tile(bgr, (4, 4, 1)))))
    assert rgb[:, :, 0].min() > 240 and rgb[:, :, 1:].max() < 15


def test_load_returns_contiguous_rgb_uint8_and_meta(tmp_path):
    src = noise(5, 7)
    p = write(tmp_path, "c.png", encode(".png", src))
    rgb, meta = load_image(p)
    assert rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, src[:, :, ::-1])
    assert meta == ImageMeta(p, 7, 5, 3, "uint8", 1, ())


@pytest.mark.parametrize("ext,params", [(".bmp", ()), (".tiff", ()), (".ppm", ()),
                                        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101))])
def test_lossless_formats_exact(tmp_path, ext, params):
    src = noise(6, 11)
    rgb, meta = load_image(write(tmp_path, "x" + ext, encode(ext, src, params)))
    np.testing.assert_array_equal(rgb, src[:, :, ::-1])
    assert meta.source_channels == 3


# -------------------------------------------------------------------------------------- gray, alpha

def test_gray_png_replicated(tmp_path):
    gray = noise(5, 6, 0)
    for ext in (".png", ".pgm"):
        rgb, meta = load_image(write(tmp_path, "g" + ext, encode(ext, gray)))
        np.testing.assert_array_equal(rgb, np.stack([gray] * 3, axis=2))
        assert meta.source_channels == 1 and "gray replicated to 3 channels" in meta.notes


def test_rgba_png_alpha_dropped_without_compositing(tmp_path):
    bgra = noise(5, 6, 4)
    bgra[0, :, 3] = 0  # fully transparent row: colour must survive unchanged (stb drops, never blends)
    rgb, meta = load_image(write(tmp_path, "rgba.png", encode(".png", bgra)))
    np.testing.assert_array_equal(rgb, bgra[:, :, 2::-1])
    assert meta.source_channels == 4 and "alpha dropped" in meta.notes


def test_gray_alpha_png(tmp_path):
    rows = [bytes([10, 0, 200, 255]), bytes([77, 128, 255, 3])]  # (gray, alpha) pairs, 2x2
    rgb, meta = load_image(write(tmp_path, "la.png", png(2, 2, 4, rows)))
    np.testing.assert_array_equal(rgb[:, :, 0], [[10, 200], [77, 255]])
    assert (rgb == rgb[:, :, :1]).all()
    assert meta.source_channels == 2 and "alpha dropped" in meta.notes


# ------------------------------------------------------------------------------------------- 16 bit

def test_16bit_gray_gradient_exact(tmp_path):
    grad = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    rgb, meta = load_image(write(tmp_path, "g16.png", encode(".png", grad)))
    expected = np.round(grad.astype(np.float64) / 257.0).astype(np.uint8)
    assert (expected != grad >> 8).any()  # the test tells /257 from OpenCV's >>8
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], expected)
    assert rgb[-1, -1, 0] == 255 and meta.source_dtype == "uint16"
    assert "16-bit scaled to 8-bit (/257)" in meta.notes


def test_16bit_colour_png(tmp_path):
    bgr = RNG.integers(0, 65536, (7, 9, 3), dtype=np.uint16)
    rgb, _ = load_image(write(tmp_path, "c16.png", encode(".png", bgr)))
    np.testing.assert_array_equal(rgb, np.round(bgr[:, :, ::-1] / 257.0).astype(np.uint8))


# ----------------------------------------------------------------------------- palette, multi-frame

def test_palette_png(tmp_path):
    palette = [(255, 0, 0), (0, 128, 255), (7, 8, 9)]
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    data = png(3, 2, 3, [r.tobytes() for r in idx], extra=chunk(b"PLTE", bytes(sum(palette, ()))))
    rgb, meta = load_image(write(tmp_path, "pal.png", data))
    np.testing.assert_array_equal(rgb, np.array(palette, np.uint8)[idx])
    assert meta.source_channels == 3


def test_palette_png_with_transparency(tmp_path):
    palette = [(10, 20, 30), (40, 50, 60)]
    extra = chunk(b"PLTE", bytes(sum(palette, ()))) + chunk(b"tRNS", bytes([0]))
    rgb, meta = load_image(write(tmp_path, "palt.png", png(2, 1, 3, [bytes([0, 1])], extra=extra)))
    np.testing.assert_array_equal(rgb[0], palette)
    assert meta.source_channels == 4 and "alpha dropped" in meta.notes


@pytest.mark.parametrize("ext,note", [(".tiff", "multi-page TIFF"), (".gif", "animated GIF")])
def test_multi_frame_first_frame_with_warning(tmp_path, ext, note):
    frames = [np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)]
    ok, buf = cv2.imencodemulti(ext, frames)
    assert ok
    p = write(tmp_path, "multi" + ext, buf.tobytes())
    with pytest.warns(UserWarning, match="first"):
        rgb, meta = load_image(p)
    assert rgb.shape == (8, 8, 3) and rgb.max() == 0
    assert any(note in n for n in meta.notes)


# ----------------------------------------------------------------------------------- odd file names

def test_odd_file_names(tmp_path):
    src = noise(3, 5)
    name = "my photo ü 日本 $(touch pwned); 'q' \"dq\" & `x` *.png"
    p = write(tmp_path, name, encode(".png", src))
    rgb, meta = load_image(p)
    np.testing.assert_array_equal(rgb, src[:, :, ::-1])
    assert meta.path == p and not (tmp_path / "pwned").exists()
    expect_image_error(tmp_path / ("missing " + name), "No such file")
