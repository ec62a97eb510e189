"""The single home of the image files the darknet_py.imageio tests build: encoded by OpenCV from NumPy
arrays, or assembled by hand (PNG chunks, EXIF orientation in a JPEG APP1 segment or a PNG eXIf chunk),
so that every expected value comes from how a file was made, never from the module's own output;
and the assertion that loading a file fails with an ImageError naming it."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from darknet_py.errors import DarknetPyError, ImageError
from darknet_py.imageio import load_image

RNG = np.random.default_rng(1234)


def encode(ext: str, arr: np.ndarray, params: tuple = ()) -> bytes:
    """``arr`` (OpenCV's BGR order) encoded by cv2.imencode as ``ext``."""
    ok, buf = cv2.imencode(ext, arr, list(params))
    assert ok
    return buf.tobytes()


def write(tmp_path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def noise(h: int, w: int, c: int = 3) -> np.ndarray:
    """Random uint8 pixels, h x w x c (c=0: h x w)."""
    return RNG.integers(0, 256, (h, w, c) if c else (h, w), dtype=np.uint8)


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
    """An eXIf chunk inserted before the first IDAT."""
    i = png_bytes.index(b"IDAT") - 4
    return png_bytes[:i] + chunk(b"eXIf", tiff) + png_bytes[i:]


def expect_image_error(path, fragment: str, **kwargs) -> ImageError:
    """load_image(path) must fail with an ImageError (a DarknetPyError) naming the path and holding ``fragment``."""
    with pytest.raises(ImageError) as info:
        load_image(path, **kwargs)
    msg = str(info.value)
    assert str(path) in msg and fragment in msg, msg
    assert isinstance(info.value, DarknetPyError)
    return info.value
