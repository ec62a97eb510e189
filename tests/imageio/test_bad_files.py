"""darknet_py.imageio on files that are not a whole image: missing, unreadable, empty, not image data,
truncated, or too large to decode; and is_image_file, which tells image data from anything else."""
from __future__ import annotations

import os
import struct
import zlib

import cv2
import numpy as np
import pytest

from darknet_py import imageio
from darknet_py.imageio import DEFAULT_MAX_PIXELS, is_image_file, load_image
from tests.helpers.images import chunk, encode, exif_tiff, expect_image_error, jpeg_with_exif, noise, write


# --------------------------------------------------------------------------------- unreadable input

def test_missing_path(tmp_path):
    expect_image_error(tmp_path / "nope.jpg", "No such file")


def test_directory(tmp_path):
    (tmp_path / "dir.jpg").mkdir()
    expect_image_error(tmp_path / "dir.jpg", "directory")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_permission_denied(tmp_path):
    p = write(tmp_path, "locked.png", encode(".png", noise(4, 4)))
    os.chmod(p, 0)
    expect_image_error(p, "Permission denied")


def test_empty_file(tmp_path):
    expect_image_error(write(tmp_path, "empty.jpg", b""), "empty file")


@pytest.mark.parametrize("content", [b"<!DOCTYPE html><html><body>404</body></html>", b"hello world\n",
                                     b"\x00\x00\x00\x18ftypmp42" + bytes(100)])
def test_not_an_image(tmp_path, content):
    expect_image_error(write(tmp_path, "page.jpg", content), "unrecognised image data")


# --------------------------------------------------------------------------------------- truncation

def test_truncated_jpeg(tmp_path):
    data = encode(".jpg", noise(64, 64), (cv2.IMWRITE_JPEG_QUALITY, 95))
    expect_image_error(write(tmp_path, "half.jpg", data[: len(data) // 2]), "truncated")
    expect_image_error(write(tmp_path, "no_eoi.jpg", data[:-2]), "truncated")
    # a partial download into a preallocated file: zeros where the tail should be
    expect_image_error(write(tmp_path, "zero_tail.jpg", data[: len(data) // 2] + bytes(len(data) // 2)), "truncated")


@pytest.mark.parametrize("params", [(cv2.IMWRITE_JPEG_PROGRESSIVE, 1), (cv2.IMWRITE_JPEG_RST_INTERVAL, 1)])
def test_progressive_and_restart_jpeg(tmp_path, params):
    """Several scans (progressive) or RSTn markers inside the entropy data: whole file loads, cut one does not."""
    data = encode(".jpg", noise(64, 64), params)
    rgb, _ = load_image(write(tmp_path, "full.jpg", data))
    np.testing.assert_array_equal(rgb, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1])
    for cut in (len(data) // 3, len(data) // 2, len(data) - 40):
        expect_image_error(write(tmp_path, f"cut{cut}.jpg", data[:cut]), "truncated")


def test_truncated_jpeg_with_thumbnail_eoi_is_still_truncated(tmp_path):
    """An EXIF thumbnail carries its own FFD9; only the main image's EOI counts."""
    thumb = encode(".jpg", noise(8, 8))
    data = jpeg_with_exif(encode(".jpg", noise(48, 48)), exif_tiff(1), trailer=thumb)
    assert load_image(write(tmp_path, "full.jpg", data))[0].shape == (48, 48, 3)
    expect_image_error(write(tmp_path, "cut.jpg", data[: len(data) - 200]), "truncated")


def test_jpeg_with_bytes_after_eoi_loads(tmp_path):
    src = noise(16, 16)
    data = encode(".jpg", src)
    rgb, _ = load_image(write(tmp_path, "trailer.jpg", data + b"camera trailer\x00\x00\x00"))
    ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(rgb, ref)


def test_truncated_png(tmp_path):
    data = encode(".png", noise(64, 64))
    expect_image_error(write(tmp_path, "half.png", data[: len(data) // 2]), "truncated")
    expect_image_error(write(tmp_path, "no_iend.png", data[:-12]), "truncated")


def test_truncated_gif(tmp_path):
    data = encode(".gif", np.kron(noise(4, 4), np.ones((8, 8, 1), np.uint8)))
    assert load_image(write(tmp_path, "ok.gif", data))[0].shape == (32, 32, 3)
    expect_image_error(write(tmp_path, "half.gif", data[: len(data) // 2]), "truncated")


# -------------------------------------------------------------------------------------- huge images

def test_huge_png_header_rejected_before_decoding(tmp_path):
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0))
    data = b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")
    p = write(tmp_path, "bomb.png", data)
    err = expect_image_error(p, "50000x50000")
    assert str(DEFAULT_MAX_PIXELS) in str(err)
    # past our own limit OpenCV raises cv2.error (or gives None): still an ImageError with the path
    expect_image_error(p, "", max_pixels=10 ** 12)


def test_huge_jpeg_header_rejected(tmp_path):
    data = bytearray(encode(".jpg", noise(16, 16)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 60000, 60000)  # height, width
    expect_image_error(write(tmp_path, "bomb.jpg", bytes(data)), "60000x60000")


def test_max_pixels_on_real_images(tmp_path):
    src = noise(10, 20)  # 20 wide, 10 high
    for ext in (".png", ".jpg", ".bmp", ".tiff", ".ppm", ".webp", ".gif"):
        p = write(tmp_path, "img" + ext, encode(ext, src))
        expect_image_error(p, "20x10", max_pixels=199)
        assert load_image(p, max_pixels=200)[0].shape == (10, 20, 3)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".ppm", ".pgm", ".webp", ".gif"])
def test_header_dimensions_read_before_decoding(ext):
    src = noise(13, 29, 0 if ext == ".pgm" else 3)
    data = encode(ext, src)
    fmt = imageio._sniff(data[:32])
    assert fmt is not None
    assert imageio._header(fmt, data).size == (29, 13)


# ------------------------------------------------------------------------------------ is_image_file

def test_is_image_file(tmp_path):
    for ext in (".jpg", ".png", ".bmp", ".gif", ".tiff", ".webp", ".ppm"):
        assert is_image_file(write(tmp_path, "img" + ext[1:] + ".dat", encode(ext, noise(3, 3)))), ext
    assert is_image_file(write(tmp_path, "gray.txt", encode(".pgm", noise(3, 3, 0))))
    assert not is_image_file(write(tmp_path, "page.jpg", b"<html></html>"))
    assert not is_image_file(write(tmp_path, "label.txt", b"0 0.5 0.5 0.1 0.1\n"))
    assert not is_image_file(write(tmp_path, "bm.txt", b"BMW owners manual, chapter one\n"))
    assert not is_image_file(write(tmp_path, "empty.png", b""))
    assert not is_image_file(tmp_path)
    assert not is_image_file(tmp_path / "missing.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "broken.png")
    assert not is_image_file(tmp_path / "broken.png")
