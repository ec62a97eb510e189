"""Tests for darknet_py.imageio: bad-input cases I1-I14 of docs/bad-inputs.md, on fixtures built here.

Expected values come from how each fixture was built (numpy arrays written losslessly, PNG/EXIF
structures assembled by hand), never from the module's own output.
"""
from __future__ import annotations

import os
import struct
import zlib

import cv2
import numpy as np
import pytest

from darknet_py import imageio
from darknet_py.errors import DarknetPyError, ImageError
from darknet_py.imageio import DEFAULT_MAX_PIXELS, ImageMeta, is_image_file, load_image, save_image, to_rgb_uint8

RNG = np.random.default_rng(1234)


# ------------------------------------------------------------------------------------- fixtures

def encode(ext: str, arr: np.ndarray, params: tuple = ()) -> bytes:
    ok, buf = cv2.imencode(ext, arr, list(params))
    assert ok
    return buf.tobytes()


def write(tmp_path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def chunk(ctype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def png(width: int, height: int, colour: int, rows: list[bytes], depth: int = 8, extra: bytes = b"") -> bytes:
    """A PNG built by hand: IHDR, optional extra chunks, one IDAT (filter 0 per row), IEND."""
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
            + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def exif_tiff(orientation: int, order: str = "MM") -> bytes:
    """A minimal TIFF structure with IFD0 holding only Orientation (0x0112, SHORT)."""
    e = ">" if order == "MM" else "<"
    return (order.encode() + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1)
            + struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "H", orientation) + b"\x00\x00"
            + struct.pack(e + "I", 0))


def jpeg_with_exif(jpeg: bytes, tiff: bytes, trailer: bytes = b"") -> bytes:
    """Insert an APP1 'Exif' segment right after SOI (trailer: extra bytes inside the segment)."""
    payload = b"Exif\x00\x00" + tiff + trailer
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def png_with_exif(png_bytes: bytes, tiff: bytes) -> bytes:
    i = png_bytes.index(b"IDAT") - 4
    return png_bytes[:i] + chunk(b"eXIf", tiff) + png_bytes[i:]


def expect_error(path, fragment: str, **kwargs) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(path, **kwargs)
    msg = str(info.value)
    assert str(path) in msg and fragment in msg, msg
    assert isinstance(info.value, DarknetPyError)
    return info.value


def noise(h: int, w: int, c: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, c) if c else (h, w), dtype=np.uint8)


# ------------------------------------------------------------------------- I1-I3: unreadable input

def test_missing_path(tmp_path):
    expect_error(tmp_path / "nope.jpg", "No such file")


def test_directory(tmp_path):
    (tmp_path / "dir.jpg").mkdir()
    expect_error(tmp_path / "dir.jpg", "directory")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_permission_denied(tmp_path):
    p = write(tmp_path, "locked.png", encode(".png", noise(4, 4)))
    os.chmod(p, 0)
    expect_error(p, "Permission denied")


def test_empty_file(tmp_path):
    expect_error(write(tmp_path, "empty.jpg", b""), "empty file")


@pytest.mark.parametrize("content", [b"<!DOCTYPE html><html><body>404</body></html>", b"hello world\n",
                                     b"\x00\x00\x00\x18ftypmp42" + bytes(100)])
def test_not_an_image(tmp_path, content):
    expect_error(write(tmp_path, "page.jpg", content), "unrecognised image data")


# ----------------------------------------------------------------------------------- I4 truncation

def test_truncated_jpeg(tmp_path):
    data = encode(".jpg", noise(64, 64), (cv2.IMWRITE_JPEG_QUALITY, 95))
    expect_error(write(tmp_path, "half.jpg", data[: len(data) // 2]), "truncated")
    expect_error(write(tmp_path, "no_eoi.jpg", data[:-2]), "truncated")
    # a partial download into a preallocated file: zeros where the tail should be
    expect_error(write(tmp_path, "zero_tail.jpg", data[: len(data) // 2] + bytes(len(data) // 2)), "truncated")


@pytest.mark.parametrize("params", [(cv2.IMWRITE_JPEG_PROGRESSIVE, 1), (cv2.IMWRITE_JPEG_RST_INTERVAL, 1)])
def test_progressive_and_restart_jpeg(tmp_path, params):
    """Several scans (progressive) or RSTn markers inside the entropy data: whole file loads, cut one does not."""
    data = encode(".jpg", noise(64, 64), params)
    rgb, _ = load_image(write(tmp_path, "full.jpg", data))
    np.testing.assert_array_equal(rgb, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1])
    for cut in (len(data) // 3, len(data) // 2, len(data) - 40):
        expect_error(write(tmp_path, f"cut{cut}.jpg", data[:cut]), "truncated")


def test_truncated_jpeg_with_thumbnail_eoi_is_still_truncated(tmp_path):
    """An EXIF thumbnail carries its own FFD9; only the main image's EOI counts."""
    thumb = encode(".jpg", noise(8, 8))
    data = jpeg_with_exif(encode(".jpg", noise(48, 48)), exif_tiff(1), trailer=thumb)
    assert load_image(write(tmp_path, "full.jpg", data))[0].shape == (48, 48, 3)
    expect_error(write(tmp_path, "cut.jpg", data[: len(data) - 200]), "truncated")


def test_jpeg_with_bytes_after_eoi_loads(tmp_path):
    src = noise(16, 16)
    data = encode(".jpg", src)
    rgb, _ = load_image(write(tmp_path, "trailer.jpg", data + b"camera trailer\x00\x00\x00"))
    ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(rgb, ref)


def test_truncated_png(tmp_path):
    data = encode(".png", noise(64, 64))
    expect_error(write(tmp_path, "half.png", data[: len(data) // 2]), "truncated")
    expect_error(write(tmp_path, "no_iend.png", data[:-12]), "truncated")


def test_truncated_gif(tmp_path):
    data = encode(".gif", np.kron(noise(4, 4), np.ones((8, 8, 1), np.uint8)))
    assert load_image(write(tmp_path, "ok.gif", data))[0].shape == (32, 32, 3)
    expect_error(write(tmp_path, "half.gif", data[: len(data) // 2]), "truncated")


# ---------------------------------------------------------------------------------- I5 huge images

def test_huge_png_header_rejected_before_decoding(tmp_path):
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0))
    data = b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")
    p = write(tmp_path, "bomb.png", data)
    err = expect_error(p, "50000x50000")
    assert str(DEFAULT_MAX_PIXELS) in str(err)
    # past our own limit OpenCV raises cv2.error (or gives None): still an ImageError with the path
    expect_error(p, "", max_pixels=10 ** 12)


def test_huge_jpeg_header_rejected(tmp_path):
    data = bytearray(encode(".jpg", noise(16, 16)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 60000, 60000)  # height, width
    expect_error(write(tmp_path, "bomb.jpg", bytes(data)), "60000x60000")


def test_max_pixels_on_real_images(tmp_path):
    src = noise(10, 20)  # 20 wide, 10 high
    for ext in (".png", ".jpg", ".bmp", ".tiff", ".ppm", ".webp", ".gif"):
        p = write(tmp_path, "img" + ext, encode(ext, src))
        expect_error(p, "20x10", max_pixels=199)
        assert load_image(p, max_pixels=200)[0].shape == (10, 20, 3)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".ppm", ".pgm", ".webp", ".gif"])
def test_header_dimensions_read_before_decoding(ext):
    src = noise(13, 29, 0 if ext == ".pgm" else 3)
    data = encode(ext, src)
    fmt = imageio._sniff(data[:32])
    assert fmt is not None
    assert imageio._header(fmt, data).size == (29, 13)


# ------------------------------------------------------------------------------ I6 tiny, I12 order

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


# ------------------------------------------------------------------------------ I7 gray, I8 alpha

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


# ------------------------------------------------------------------------------------- I9 16 bit

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


# -------------------------------------------------------------------------------- I10 orientation

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


# ------------------------------------------------------------------------ I11 palette, multi-frame

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


# ---------------------------------------------------------------------------------- I14 odd names

def test_odd_file_names(tmp_path):
    src = noise(3, 5)
    name = "my photo ü 日本 $(touch pwned); 'q' \"dq\" & `x` *.png"
    p = write(tmp_path, name, encode(".png", src))
    rgb, meta = load_image(p)
    np.testing.assert_array_equal(rgb, src[:, :, ::-1])
    assert meta.path == p and not (tmp_path / "pwned").exists()
    expect_error(tmp_path / ("missing " + name), "No such file")


# ------------------------------------------------------------------------------- to_rgb_uint8 API

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


# ------------------------------------------------------------------------------------- save_image

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


# ---------------------------------------------------------------------------------- is_image_file

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
