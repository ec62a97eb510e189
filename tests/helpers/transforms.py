"""The single home of the ports of pjreddie/darknet src/image.c that darknet_py.transforms is held to:
``resize_image`` and ``load_image_stb`` + ``letterbox_image`` + ``embed_image``, written as the C is
written (per-pixel loops, one channel/row/column at a time) and never from darknet_py's code.

``ref_resize`` runs either in float32 (every operation rounded to float32 via NumPy scalars, which is
what the C does: pass ``F32``) or in float64 (Python floats: Darknet's algorithm without float32
rounding: pass ``f64``).
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def f64(v):
    """The float64 "C float": a Python float."""
    return float(v)


def ref_resize(im, w, h, f):
    """resize_image(im, w, h) from src/image.c; ``im`` is a (C,H,W) array, ``f`` the C float type."""
    C, H, W = im.shape
    src = [[[f(v) for v in row] for row in ch] for ch in im.tolist()]
    part = [[[f(0)] * w for _ in range(H)] for _ in range(C)]
    out = [[[f(0)] * w for _ in range(h)] for _ in range(C)]
    one = f(1)
    # (float)(im.w-1)/(w-1): with w == 1 the C divides by zero, but the value is never used
    # because every column then takes the `c == w-1` branch.
    w_scale = f(W - 1) / f(w - 1) if w > 1 else None
    if h == 1:
        raise NotImplementedError("h == 1 is undefined behaviour in Darknet ((int)NaN row index)")
    h_scale = f(H - 1) / f(h - 1)
    for k in range(C):
        for r in range(H):
            for c in range(w):
                if c == w - 1 or W == 1:
                    val = src[k][r][W - 1]
                else:
                    sx = f(c) * w_scale
                    ix = int(sx)
                    dx = sx - f(ix)
                    val = (one - dx) * src[k][r][ix] + dx * src[k][r][ix + 1]
                part[k][r][c] = val
    for k in range(C):
        for r in range(h):
            sy = f(r) * h_scale
            iy = int(sy)
            dy = sy - f(iy)
            for c in range(w):
                out[k][r][c] = (one - dy) * part[k][iy][c]
            if r == h - 1 or H == 1:
                continue
            for c in range(w):
                out[k][r][c] = out[k][r][c] + dy * part[k][iy + 1][c]
    return np.array(out, dtype=np.float64)


def ref_letterbox(u8_hwc: np.ndarray, w: int, h: int, f):
    """load_image_stb's conversion + letterbox_image(im, w, h) + embed_image, as in the C."""
    H, W, C = u8_hwc.shape
    # data[dst] = (float)u8/255.  -> a double quotient, then rounded to float (f)
    im = np.array([[[f(int(u8_hwc[j, i, k]) / 255.) for i in range(W)] for j in range(H)]
                   for k in range(C)], dtype=np.float64)
    if F32(w) / F32(W) < F32(h) / F32(H):
        new_w, new_h = w, (H * w) // W
    else:
        new_w, new_h = (W * h) // H, h
    resized = ref_resize(im, new_w, new_h, f)
    boxed = np.full((C, h, w), 0.5)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    for k in range(C):
        for y in range(new_h):
            for x in range(new_w):
                if 0 <= dx + x < w and 0 <= dy + y < h:  # set_pixel ignores out-of-range writes
                    boxed[k, dy + y, dx + x] = resized[k, y, x]
    return boxed, (new_w, new_h, dx, dy)
