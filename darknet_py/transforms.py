"""Darknet's image preprocessing and its inverse: ``resize_image``, ``letterbox_image`` and
``correct_yolo_boxes`` (pjreddie/darknet ``src/image.c``, ``src/yolo_layer.c``).

The forward transform (:func:`letterbox`) and its inverse (:func:`unletterbox`) sit side by
side and share one record, :class:`LetterboxInfo`, which remembers the photo size, the network
size and where the resized photo was pasted.  Callers never recompute the geometry.

Fidelity goal: the network input is bit-identical to what a CPU build of Darknet (stb image
loader, no FMA contraction) feeds its first layer.  Therefore:

* ``(float)u8/255.`` is reproduced with a 256-entry table made in float64 and rounded to
  float32, exactly as C rounds the double quotient.  A float32 ``u8.float()/255`` gives the
  same bits on CPU, but on CUDA (torch 2.11, H200) 126 of the 256 values differ by one ulp:
  division by a Python scalar is done there as a multiplication by its reciprocal.
* :func:`darknet_resize` is Darknet's own two-pass bilinear, not ``cv2.resize`` or
  ``F.interpolate``: align-corners scale, float32 arithmetic in Darknet's order, every
  product and sum rounded separately (torch eager elementwise ops do exactly that), and
  Darknet's last-row quirk.
* Box correction keeps Darknet's mixed double / float32 arithmetic and its half-pixel offset.

Deliberate deviations, only where Darknet's own output is undefined or meaningless:

* ``out_h == 1``: Darknet computes ``h_scale = (in_h-1)/0`` (inf, or NaN when ``in_h == 1``),
  then ``0*inf = NaN`` and ``(int)NaN``, i.e. it reads a row at index INT_MIN (undefined
  behaviour, usually garbage or a crash).  We take input row 0, which is what the formula
  gives for every finite scale.  (``out_w == 1`` *is* defined in Darknet: the "last column"
  branch copies column ``in_w-1``; we do the same.)
* A letterboxed side that integer division makes 0 (e.g. a 1x1000 photo into 416x416):
  Darknet pastes nothing and ``correct_yolo_boxes`` then divides by zero (inf boxes).  We
  clamp that side to 1 pixel so tiny and extreme-aspect photos still work.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

from .errors import UsageError

__all__ = [
    "GEOMETRY_COLUMNS",
    "LetterboxInfo",
    "correct_boxes",
    "correct_boxes_rows",
    "scale_to_photo_rows",
    "resize_min_crop",
    "resize_u8",
    "darknet_resize",
    "fit",
    "fit_info",
    "geometry_rows",
    "geometry_table",
    "letterbox",
    "letterbox_batch",
    "letterbox_info",
    "letterbox_size",
    "letterbox_u8",
    "pixel_corners",
    "prepare_batch",
    "stretch",
    "stretch_info",
    "to_photo_xyxy",
    "to_photo_xyxy_rows",
    "u8_to_float",
    "unletterbox",
    "uses_letterbox",
]

ImageLike = Union[np.ndarray, torch.Tensor]
DeviceLike = Union[str, torch.device, None]

# Fill value of the letterbox canvas (letterbox_image: fill_image(boxed, .5)).
LETTERBOX_FILL = 0.5

# (float)u8/255. for every u8: the double quotient rounded once to float32, as C does.
_U8_TO_F32 = torch.from_numpy((np.arange(256, dtype=np.float64) / 255.0).astype(np.float32))
_U8_TABLES: dict = {}


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class LetterboxInfo:
    """Everything needed to invert a letterbox: the record that travels with each image."""

    img_w: int  # photo size
    img_h: int
    net_w: int  # network input size
    net_h: int
    new_w: int  # size of the resized photo inside the canvas (Darknet's integer-division rule)
    new_h: int
    dx: int  # paste offset ((net_w-new_w)//2, (net_h-new_h)//2): the odd pixel goes right/bottom
    dy: int


def letterbox_size(img_w: int, img_h: int, net_w: int, net_h: int) -> tuple[int, int]:
    """Darknet's ``new_w, new_h`` for a photo of ``img_w x img_h`` in a ``net_w x net_h`` input.

    Same rule in ``letterbox_image`` (src/image.c) and ``correct_yolo_boxes``
    (src/yolo_layer.c): ``if ((float)w/im.w < (float)h/im.h)`` fit the width, else fit the
    height; the other side is ``im.h*w/im.w`` in C integer division (floor, all positive).
    """
    for name, v in (("img_w", img_w), ("img_h", img_h), ("net_w", net_w), ("net_h", net_h)):
        if int(v) != v or v <= 0:
            raise UsageError(f"letterbox_size: {name} must be a positive integer, got {v!r}")
    img_w, img_h, net_w, net_h = int(img_w), int(img_h), int(net_w), int(net_h)
    # The comparison is in float32 in Darknet; in float64 a tie could fall the other way.
    if np.float32(net_w) / np.float32(img_w) < np.float32(net_h) / np.float32(img_h):
        new_w, new_h = net_w, (img_h * net_w) // img_w
    else:
        new_w, new_h = (img_w * net_h) // img_h, net_h
    # Deviation (see module docstring): Darknet lets a side become 0 and later divides by it.
    return max(new_w, 1), max(new_h, 1)


def letterbox_info(img_w: int, img_h: int, net_w: int, net_h: int) -> LetterboxInfo:
    """The :class:`LetterboxInfo` that :func:`letterbox` records for a photo of this size."""
    new_w, new_h = letterbox_size(img_w, img_h, net_w, net_h)
    return LetterboxInfo(int(img_w), int(img_h), int(net_w), int(net_h), new_w, new_h,
                         (int(net_w) - new_w) // 2, (int(net_h) - new_h) // 2)


# --------------------------------------------------------------------------- resize


def _axis_taps(in_n: int, out_n: int, dtype: torch.dtype):
    """Per output index along one axis: (i0, i1, 1-d, d, special) as Darknet computes them.

    ``scale = (float)(in_n-1)/(out_n-1)``, ``s = o*scale``, ``i0 = (int)s``, ``d = s - i0``;
    all in ``dtype`` (float32 for Darknet), computed on the CPU (IEEE arithmetic, so the
    device does not matter) and moved to the image's device by the caller.
    """
    o = torch.arange(out_n, dtype=dtype)
    if out_n > 1:
        scale = torch.tensor(in_n - 1, dtype=dtype) / torch.tensor(out_n - 1, dtype=dtype)
    else:
        # out_n == 1: Darknet divides by zero here.  Horizontally the value is never used (the
        # last-column branch fires); vertically it is UB and we choose row 0 (docstring).
        scale = torch.zeros((), dtype=dtype)
    s = o * scale
    i0 = s.to(torch.int64)  # (int) cast truncates; s >= 0 so this is floor
    d = s - i0.to(dtype)  # exact: s and i0 are within a factor 2 (Sterbenz)
    one_minus_d = 1 - d
    # Mathematically i0+1 <= in_n-1 whenever it is used; the clamp only keeps the gather in
    # bounds for taps that are masked away (last column/row, in_n == 1).
    i1 = torch.clamp(i0 + 1, max=in_n - 1)
    i0 = torch.clamp(i0, max=in_n - 1)
    # Where the C takes its special path: the last output index, or a 1-pixel input.  The
    # horizontal pass then copies p[in_w-1] (`if(c == w-1 || im.w == 1)`); the vertical pass
    # keeps only its first tap (`if(r == h-1 || im.h == 1) continue;`).
    special = (o == out_n - 1) | torch.tensor(in_n == 1)
    return i0, i1, one_minus_d, d, special


def darknet_resize(img: torch.Tensor, out_w: int, out_h: int) -> torch.Tensor:
    """Darknet's ``resize_image``: separable bilinear, align-corners, no antialiasing.

    ``img`` is ``(C, H, W)`` or ``(N, C, H, W)`` (any leading dims), float32 for Darknet
    fidelity (other float dtypes run the same algorithm in that dtype), on any device.

    Pass 1 (horizontal) fills a ``(..., in_h, out_w)`` buffer with
    ``(1-dx)*p[ix] + dx*p[ix+1]``; the last output column copies ``p[in_w-1]``.
    Pass 2 (vertical) writes ``(1-dy)*row[iy]`` and then adds ``dy*row[iy+1]`` except on the
    last output row.  Each product and the sum are rounded separately, as in the C.
    """
    if not torch.is_tensor(img) or not img.is_floating_point():
        raise TypeError("darknet_resize: img must be a floating-point torch.Tensor")
    if img.dim() < 3:
        raise UsageError(f"darknet_resize: img must be (C,H,W) or (N,C,H,W), got shape {tuple(img.shape)}")
    out_w, out_h = int(out_w), int(out_h)
    in_h, in_w = int(img.shape[-2]), int(img.shape[-1])
    if out_w <= 0 or out_h <= 0 or in_w <= 0 or in_h <= 0:
        raise UsageError(f"darknet_resize: sizes must be positive, got {in_w}x{in_h} -> {out_w}x{out_h}")
    part = _horizontal(img, out_w)
    j0, j1, v0, v1, no_second = (t.to(img.device) for t in _axis_taps(in_h, out_h, img.dtype))
    return _vertical(part, j0, j1, v0, v1, no_second)


def _horizontal(img: torch.Tensor, out_w: int) -> torch.Tensor:
    """Pass 1 of :func:`darknet_resize`: (..., rows, in_w) -> (..., rows, out_w), row by row."""
    in_w = int(img.shape[-1])
    i0, i1, w0, w1, copy_last = (t.to(img.device) for t in _axis_taps(in_w, out_w, img.dtype))
    interp = w0 * img.index_select(-1, i0) + w1 * img.index_select(-1, i1)
    last_col = img[..., in_w - 1:in_w]  # broadcast over the output columns
    return torch.where(copy_last, last_col, interp)


def _vertical(part: torch.Tensor, j0, j1, v0, v1, no_second) -> torch.Tensor:
    """Pass 2 of :func:`darknet_resize`: output row r from rows j0[r] and j1[r] of ``part``."""
    first = v0[:, None] * part.index_select(-2, j0)
    second = v1[:, None] * part.index_select(-2, j1)
    # Last-row quirk (resize_image): the last output row never gets its dy*row[iy+1] term.  When
    # (out_h-1)*h_scale rounds below in_h-1 in float32 (e.g. in_h 16 -> 416), iy = in_h-2 and
    # dy ~ 1, so that row is (1-dy)*row[in_h-2] ~ 1e-6: nearly black.  Kept on purpose.
    return torch.where(no_second[:, None], first, first + second)


# Photo rows converted to float at a time by resize_u8: 64 rows of a 16000-pixel photo are 12 MB.
STRIP_ROWS = 64


def resize_u8(img_u8: torch.Tensor, out_w: int, out_h: int) -> torch.Tensor:
    """``darknet_resize(u8_to_float(img_u8.permute(2, 0, 1)), out_w, out_h)`` bit for bit, for an
    HxWx3 uint8 photo, without a float copy of the photo: only the rows the vertical pass reads
    (at most two per output row) are converted, STRIP_ROWS at a time, so memory follows the
    output size. Every step is elementwise, so grouping rows differently changes no value."""
    in_h = int(img_u8.shape[0])
    out_w, out_h = int(out_w), int(out_h)
    if out_w <= 0 or out_h <= 0:
        raise UsageError(f"resize: sizes must be positive, got {int(img_u8.shape[1])}x{in_h} -> {out_w}x{out_h}")
    j0, j1, v0, v1, no_second = _axis_taps(in_h, out_h, torch.float32)
    rows = torch.unique(torch.cat([j0, j1]))  # sorted: the input rows read
    dev = img_u8.device
    parts = []
    for k in range(0, len(rows), STRIP_ROWS):
        strip = img_u8.index_select(0, rows[k:k + STRIP_ROWS].to(dev))  # (r, W, 3) uint8
        parts.append(_horizontal(u8_to_float(strip.permute(2, 0, 1)), out_w))
    part = torch.cat(parts, dim=-2)  # (3, len(rows), out_w)
    # Row indices of the photo -> positions in ``part``.
    j0, j1 = torch.searchsorted(rows, j0), torch.searchsorted(rows, j1)
    return _vertical(part, *(t.to(dev) for t in (j0, j1, v0, v1, no_second)))


# --------------------------------------------------------------------------- letterbox / unletterbox


def _as_u8_hwc(img: ImageLike, device: DeviceLike) -> torch.Tensor:
    """HxWx3 uint8 (numpy or torch) -> uint8 torch tensor on the target device (upload as u8)."""
    if isinstance(img, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(img))
    elif torch.is_tensor(img):
        t = img
    else:
        raise TypeError(f"letterbox: expected a numpy array or torch tensor, got {type(img).__name__}")
    if t.dtype != torch.uint8:
        raise TypeError(f"letterbox: expected uint8 RGB pixels, got dtype {t.dtype}")
    if t.dim() != 3 or t.shape[2] != 3 or t.shape[0] == 0 or t.shape[1] == 0:
        raise UsageError(f"letterbox: expected an HxWx3 RGB image, got shape {tuple(t.shape)}")
    return t.to(device) if device is not None else t


def u8_to_float(img_u8: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 as Darknet's loader: ``(float)u8/255.`` bit for bit (table lookup)."""
    key = img_u8.device
    table = _U8_TABLES.get(key)
    if table is None:
        table = _U8_TABLES[key] = _U8_TO_F32.to(key)
    return table[img_u8.long()]


def letterbox(img: ImageLike, net_w: int, net_h: int, *,
              device: DeviceLike = None) -> tuple[torch.Tensor, LetterboxInfo]:
    """Darknet's ``letterbox_image``: fit the photo inside ``net_w x net_h`` keeping its aspect.

    ``img`` is an HxWx3 uint8 RGB array (numpy or torch).  The result is a ``(3, net_h, net_w)``
    float32 tensor on ``device`` (or the image's own device): the photo converted by
    ``(float)u8/255.``, resized with :func:`darknet_resize` to ``(new_w, new_h)`` and pasted at
    ``(dx, dy)`` on a canvas of 0.5.  Invert boxes with :func:`unletterbox` and the returned info.
    """
    t = _as_u8_hwc(img, device)
    info = letterbox_info(int(t.shape[1]), int(t.shape[0]), net_w, net_h)
    # load_image_stb stores planar CHW floats; resize_u8 makes them a strip at a time (same values)
    resized = resize_u8(t, info.new_w, info.new_h)
    canvas = torch.full((3, info.net_h, info.net_w), LETTERBOX_FILL, dtype=torch.float32, device=t.device)
    # embed_image at ((w-new_w)/2, (h-new_h)/2) in C integer division.
    canvas[:, info.dy:info.dy + info.new_h, info.dx:info.dx + info.new_w] = resized
    return canvas, info


def stretch_info(img_w: int, img_h: int, net_w: int, net_h: int) -> LetterboxInfo:
    """A plain resize as a degenerate letterbox (the photo fills the canvas): :func:`correct_boxes`
    then leaves boxes as they are, which is what Darknet does for a stretched input."""
    return LetterboxInfo(int(img_w), int(img_h), int(net_w), int(net_h), int(net_w), int(net_h), 0, 0)


def stretch(img: ImageLike, net_w: int, net_h: int, *,
            device: DeviceLike = None) -> tuple[torch.Tensor, LetterboxInfo]:
    """Darknet's ``resize_image`` of the whole photo to ``net_w x net_h`` (no aspect kept): how
    YOLOv1's ``test_yolo`` and ``validate_detector_recall`` prepare a photo."""
    t = _as_u8_hwc(img, device)
    info = stretch_info(int(t.shape[1]), int(t.shape[0]), net_w, net_h)
    return resize_u8(t, int(net_w), int(net_h)), info


def resize_min_crop(img: ImageLike, net_w: int, net_h: int, *, device: DeviceLike = None) -> torch.Tensor:
    """AlexeyAB's ``predict_classifier``: ``resize_min(im, net.w)`` (the short side to ``net_w``,
    the long side ``long * net_w / short`` in C integers), then ``crop_image`` of the centre at
    ``(resized.w - net.w)/2, (resized.h - net.h)/2`` (C division), pixels outside clamped to the
    edge. pjreddie's tree letterboxes instead. Returns the (3, net_h, net_w) float input."""
    t = _as_u8_hwc(img, device)
    h, w = int(t.shape[0]), int(t.shape[1])
    size = int(net_w)
    if w < h:
        rw, rh = size, h * size // w
    else:
        rw, rh = w * size // h, size
    x = resize_u8(t, rw, rh) if (rw, rh) != (w, h) else u8_to_float(t.permute(2, 0, 1))
    dx, dy = int((rw - int(net_w)) / 2), int((rh - int(net_h)) / 2)  # C's truncating division
    cols = (torch.arange(int(net_w), device=x.device) + dx).clamp(0, rw - 1)
    rows = (torch.arange(int(net_h), device=x.device) + dy).clamp(0, rh - 1)
    return x[:, rows][:, :, cols].contiguous()


# --------------------------------------------------------------------------- letterbox or stretch


def uses_letterbox(head_specs: Sequence) -> bool:
    """Whether a network's photos are letterboxed (else stretched): Darknet reads its last layer
    (``net.layers[net.n-1]``), so the last detection head decides; a network without one (a
    classifier) is letterboxed, as ``predict_classifier`` does."""
    return bool(head_specs[-1].letterbox) if head_specs else True


def fit_info(img_w: int, img_h: int, net_w: int, net_h: int, letterboxed: bool = True) -> LetterboxInfo:
    """The :class:`LetterboxInfo` of :func:`fit`."""
    return (letterbox_info if letterboxed else stretch_info)(img_w, img_h, net_w, net_h)


def fit(img: ImageLike, net_w: int, net_h: int, *, letterboxed: bool = True,
        device: DeviceLike = None) -> tuple[torch.Tensor, LetterboxInfo]:
    """One photo to the network input: :func:`letterbox`, or :func:`stretch` when not ``letterboxed``."""
    return (letterbox if letterboxed else stretch)(img, net_w, net_h, device=device)


def prepare_batch(images: Sequence[ImageLike], net_w: int, net_h: int, *, device: DeviceLike = None,
                  letterboxed: bool = True) -> tuple[torch.Tensor, list]:
    """:func:`fit` each image and stack: ``(N, 3, net_h, net_w)`` and one info per image. Each photo
    keeps its own geometry, so rows are identical to the single-image call."""
    outs, infos = [], []
    for im in images:
        x, info = fit(im, net_w, net_h, letterboxed=letterboxed, device=device)
        outs.append(x)
        infos.append(info)
    if not outs:
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return torch.empty((0, 3, int(net_h), int(net_w)), dtype=torch.float32, device=dev), infos
    return torch.stack(outs), infos


def letterbox_batch(images: Sequence[ImageLike], net_w: int, net_h: int, *,
                    device: DeviceLike = None) -> tuple[torch.Tensor, list]:
    """:func:`letterbox` each image and stack (:func:`prepare_batch` with letterboxing)."""
    return prepare_batch(images, net_w, net_h, device=device, letterboxed=True)


_TAPS: dict = {}


def _taps(in_n: int, out_n: int, device) -> tuple:
    # cached per device: a host-to-device copy per call would synchronise the stream each time
    key = (in_n, out_n, str(device))
    taps = _TAPS.get(key)
    if taps is None:
        if len(_TAPS) > 256:
            _TAPS.clear()
        taps = _TAPS[key] = tuple(t.to(device) for t in _axis_taps(in_n, out_n, torch.float32))
    return taps


def letterbox_u8(batch: torch.Tensor, net_w: int, net_h: int, *, letterboxed: bool = True,
                 out: torch.Tensor | None = None) -> tuple[torch.Tensor, LetterboxInfo]:
    """:func:`fit` of N photos of the same size at once, on their device (the GPU path).

    ``batch``: (N, H, W, 3) uint8 RGB. Returns (N, 3, net_h, net_w) float32 (written into ``out``
    when given) and the photos' shared :class:`LetterboxInfo`. Bit-identical to :func:`fit` per
    photo: the same taps (``_axis_taps``) and the same elementwise float32 operations in the same
    order; the columns are gathered from the uint8 pixels before the ``(float)u8/255.`` table
    (which commutes with a gather), so the full-size float photo is never made.
    """
    if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[3] != 3:
        raise UsageError(f"letterbox_u8: expected (N, H, W, 3) uint8, got {tuple(batch.shape)} {batch.dtype}")
    n, in_h, in_w = int(batch.shape[0]), int(batch.shape[1]), int(batch.shape[2])
    net_w, net_h = int(net_w), int(net_h)
    info = fit_info(in_w, in_h, net_w, net_h, letterboxed)
    dev = batch.device
    chw = batch.permute(0, 3, 1, 2)  # load_image_stb's planar layout, as a view
    i0, i1, w0, w1, copy_last = _taps(in_w, info.new_w, dev)
    interp = w0 * u8_to_float(chw.index_select(-1, i0)) + w1 * u8_to_float(chw.index_select(-1, i1))
    part = torch.where(copy_last, u8_to_float(chw[..., in_w - 1:in_w]), interp)
    j0, j1, v0, v1, no_second = _taps(in_h, info.new_h, dev)
    first = v0[:, None] * part.index_select(-2, j0)
    second = v1[:, None] * part.index_select(-2, j1)
    resized = torch.where(no_second[:, None], first, first + second)
    if out is None:
        out = torch.empty((n, 3, net_h, net_w), dtype=torch.float32, device=dev)
    if (info.new_w, info.new_h) != (net_w, net_h):
        out.fill_(LETTERBOX_FILL)
    out[:, :, info.dy:info.dy + info.new_h, info.dx:info.dx + info.new_w] = resized
    return out, info


# --------------------------------------------------------------------------- the inverse: boxes back to the photo

# Columns of the geometry table (float64, one row per image): what the inverse needs of each info.
_OFF_X, _OFF_Y, _RATIO_X, _RATIO_Y, _GROW_X, _GROW_Y, _IMG_W, _IMG_H = range(8)
GEOMETRY_COLUMNS = 8


def geometry_rows(infos: Sequence[LetterboxInfo]) -> np.ndarray:
    """Per image, the scalars of ``correct_yolo_boxes`` and of the drawing clip, as float64: the
    offsets (double, ``(netw-new_w)/2./netw``: the half-pixel quirk, see :func:`correct_boxes_rows`),
    the float32 ratios ``(float)new_w/netw``, the float32 growth factors ``(float)netw/new_w``
    and the photo size (float32 values are exact in double)."""
    out = np.zeros((len(infos), GEOMETRY_COLUMNS), np.float64)
    for k, info in enumerate(infos):
        out[k] = ((info.net_w - info.new_w) / 2.0 / info.net_w, (info.net_h - info.new_h) / 2.0 / info.net_h,
                  float(np.float32(info.new_w) / np.float32(info.net_w)),
                  float(np.float32(info.new_h) / np.float32(info.net_h)),
                  float(np.float32(info.net_w) / np.float32(info.new_w)),
                  float(np.float32(info.net_h) / np.float32(info.new_h)), info.img_w, info.img_h)
    return out


def geometry_table(infos: Sequence[LetterboxInfo], device) -> torch.Tensor:
    """:func:`geometry_rows` as a float64 tensor on ``device``."""
    return torch.from_numpy(geometry_rows(infos)).to(device)


def _check_boxes(boxes: torch.Tensor, what: str) -> None:
    if boxes.shape[-1] != 4:
        raise UsageError(f"{what}: expected (..., 4) boxes, got shape {tuple(boxes.shape)}")


def scale_to_photo_rows(rel: torch.Tensor, geom: torch.Tensor) -> torch.Tensor:
    """Photo-relative cx, cy, w, h rows in photo pixels (each row's photo size from its ``geom``
    row): the frame of Darknet's ``relative=0`` boxes, unclipped."""
    return rel * geom[:, [_IMG_W, _IMG_H, _IMG_W, _IMG_H]].to(rel.dtype)


def correct_boxes_rows(boxes: torch.Tensor, geom: torch.Tensor) -> torch.Tensor:
    """Darknet's ``correct_yolo_boxes`` with relative=1, one geometry row per box: boxes (K, 4) as
    cx, cy, w, h relative to the network input -> relative to the photo (``geom`` (K, 8)).

    Arithmetic as in the C: the centre in double (``(b.x - (netw - new_w)/2./netw) / ((float)new_w/netw)``,
    rounded back to the box dtype), the size in float32 (``b.w *= (float)netw/new_w``). The offset
    is a true division while the paste used integer division, so an odd padding shifts boxes by
    half a network pixel (70.5 vs 70): Darknet's half-pixel quirk, kept.
    """
    _check_boxes(boxes, "correct_boxes")
    dt = boxes.dtype
    x = (boxes[:, 0].double() - geom[:, _OFF_X]) / geom[:, _RATIO_X]
    y = (boxes[:, 1].double() - geom[:, _OFF_Y]) / geom[:, _RATIO_Y]
    return torch.stack((x.to(dt), y.to(dt), boxes[:, 2] * geom[:, _GROW_X].to(dt),
                        boxes[:, 3] * geom[:, _GROW_Y].to(dt)), dim=-1)


def to_photo_xyxy_rows(rel: torch.Tensor, geom: torch.Tensor) -> torch.Tensor:
    """Photo-relative cx, cy, w, h (K, 4) -> photo pixel corners x1, y1, x2, y2, clipped as Darknet
    draws them, one geometry row per box.

    ``draw_detections`` computes ``left = (b.x-b.w/2.)*im.w`` etc. (the ``/2.`` makes it double)
    and ``draw_box`` clamps every corner to ``[0, w-1]`` / ``[0, h-1]``; we keep the float values
    (Darknet truncates to int).
    """
    _check_boxes(rel, "to_photo_xyxy")
    cx, cy, w, h = rel.double().unbind(-1)
    img_w, img_h = geom[:, _IMG_W], geom[:, _IMG_H]
    zero = torch.zeros((), dtype=torch.float64, device=rel.device)
    x1 = torch.clamp((cx - w / 2.0) * img_w, zero, img_w - 1)
    x2 = torch.clamp((cx + w / 2.0) * img_w, zero, img_w - 1)
    y1 = torch.clamp((cy - h / 2.0) * img_h, zero, img_h - 1)
    y2 = torch.clamp((cy + h / 2.0) * img_h, zero, img_h - 1)
    return torch.stack((x1, y1, x2, y2), dim=-1).to(rel.dtype)


def _per_image(fn, boxes: torch.Tensor, info: LetterboxInfo) -> torch.Tensor:
    flat = boxes.reshape(-1, 4)
    geom = geometry_table([info], flat.device).expand(flat.shape[0], GEOMETRY_COLUMNS)
    return fn(flat, geom).reshape(boxes.shape)


def correct_boxes(boxes_cxcywh_rel: torch.Tensor, info: LetterboxInfo) -> torch.Tensor:
    """:func:`correct_boxes_rows` for boxes ``(..., 4)`` of one photo."""
    _check_boxes(boxes_cxcywh_rel, "correct_boxes")
    return _per_image(correct_boxes_rows, boxes_cxcywh_rel, info)


def to_photo_xyxy(boxes_cxcywh_rel_photo: torch.Tensor, info: LetterboxInfo) -> torch.Tensor:
    """:func:`to_photo_xyxy_rows` for boxes ``(..., 4)`` of one photo."""
    _check_boxes(boxes_cxcywh_rel_photo, "to_photo_xyxy")
    return _per_image(to_photo_xyxy_rows, boxes_cxcywh_rel_photo, info)


def unletterbox(boxes_cxcywh_rel_net: torch.Tensor, info: LetterboxInfo) -> torch.Tensor:
    """Inverse of :func:`letterbox` (and :func:`stretch`) for boxes: network-relative cx, cy, w, h ->
    clipped photo pixel corners x1, y1, x2, y2 (``correct_yolo_boxes``, then the drawing clip)."""
    return to_photo_xyxy(correct_boxes(boxes_cxcywh_rel_net, info), info)


def pixel_corners(rel: torch.Tensor, info: LetterboxInfo) -> torch.Tensor:
    """Photo-relative cx, cy, w, h -> unclipped pixel corners as ``detector valid`` writes them:
    ``get_network_boxes(relative=0)`` multiplies the box by the photo size in float32, then
    ``print_cocos`` computes ``x -/+ w/2.`` in double."""
    scale = torch.tensor([info.img_w, info.img_h, info.img_w, info.img_h], dtype=torch.float32, device=rel.device)
    x, y, w, h = (rel.float() * scale).double().unbind(-1)
    return torch.stack((x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0), -1)
