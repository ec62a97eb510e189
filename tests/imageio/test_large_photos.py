"""Large photos cost memory in proportion to the network input, not to the photo: the uint8 decode
(3 bytes a pixel) is the only full-size copy. resize_u8 (rows converted to float a strip at a time)
equals the whole-photo float path, darknet_resize(u8_to_float(.)), bit for bit; a 16000x16000 PNG
is detected in a child whose peak RSS stays under 2 GB (OpenCV's decode alone is 1.47 GB); max_pixels
refuses from the header."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from darknet_py.errors import ImageError
from darknet_py.imageio import load_image
from darknet_py.transforms import STRIP_ROWS, darknet_resize, letterbox, resize_u8, u8_to_float
from tests.helpers.cfgs import fixture_cfg_path
from tests.helpers.processes import child_env


@pytest.mark.parametrize("h,w,out_w,out_h", [(1, 1, 5, 3), (1, 7, 3, 9), (9, 1, 4, 4), (16, 16, 416, 416),
                                             (STRIP_ROWS * 3 + 5, 333, 96, 71), (480, 640, 416, 312),
                                             (1000, 37, 13, 500), (37, 1000, 500, 13), (200, 300, 200, 300)])
def test_strip_resize_equals_the_whole_photo_float_path(h, w, out_w, out_h):
    rng = np.random.default_rng(h * 1000 + w)
    photo = torch.from_numpy(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    whole = darknet_resize(u8_to_float(photo.permute(2, 0, 1)), out_w, out_h)
    strips = resize_u8(photo, out_w, out_h)
    assert strips.dtype == torch.float32 and strips.shape == whole.shape
    assert torch.equal(strips, whole)


def test_letterbox_keeps_its_values():
    photo = np.random.default_rng(3).integers(0, 256, (301, 517, 3), dtype=np.uint8)
    canvas, info = letterbox(photo, 128, 96)
    ref = darknet_resize(u8_to_float(torch.from_numpy(photo).permute(2, 0, 1)), info.new_w, info.new_h)
    assert torch.equal(canvas[:, info.dy:info.dy + info.new_h, info.dx:info.dx + info.new_w], ref)


def write_flat_png(path, w: int, h: int, rgb=(40, 120, 200)) -> None:
    """A WxH RGB PNG of one colour with a white band, written row by row (a few MB on disk, cheap)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\0" + bytes(rgb) * w
    band = b"\0" + b"\xff" * (3 * w)
    z = zlib.compressobj(1)
    parts = [z.compress(band if h // 3 <= y < h // 3 + 100 else row) for y in range(h)]
    parts.append(z.flush())
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        fh.write(chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def test_flat_png_decodes_to_what_was_written(tmp_path):
    p = tmp_path / "flat.png"
    write_flat_png(p, 50, 400)
    rgb, meta = load_image(p)
    assert (meta.width, meta.height) == (50, 400)
    assert (rgb[0] == (40, 120, 200)).all() and (rgb[140] == 255).all()


# Peak RSS as VmHWM: a child's ru_maxrss starts at the forking test process's own.
DETECT = r"""
import sys
import darknet_py
model = darknet_py.load(sys.argv[1])
dets = darknet_py.detect(model, sys.argv[2])
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
print("OK", len(dets) >= 0, "PEAK_KB", peak)
"""


def test_16000_square_png_detects_within_2_gb(tmp_path):
    p = tmp_path / "big.png"
    write_flat_png(p, 16000, 16000)
    out = subprocess.run([sys.executable, "-c", DETECT, str(fixture_cfg_path("tiny-shapes")), str(p)],
                         capture_output=True, text=True, timeout=300, env=child_env(OMP_NUM_THREADS="2"),
                         cwd=os.getcwd())
    assert "OK True" in out.stdout, (out.stdout, out.stderr)
    peak = int(out.stdout.split("PEAK_KB")[1]) * 1024
    # OpenCV's PNG decoder alone peaks at two uint8 copies (1.47 GB measured for cv2.imread of this
    # file), torch's import adds ~0.3 GB; float copies of the photo at 4-40 bytes a pixel would add 1-10 GB
    assert peak < 2.0e9, peak / 1e6


def test_max_pixels_refuses_from_the_header(tmp_path):
    p = tmp_path / "big.png"
    write_flat_png(p, 3000, 2000)
    with pytest.raises(ImageError, match=r"image is 3000x2000 = 6000000 pixels, above max_pixels=5999999"):
        load_image(p, max_pixels=5999999)
