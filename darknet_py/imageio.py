"""Strict image loading for darknet-py: file or array in, HxWx3 uint8 RGB out, or an ImageError.

Darknet (via stb_image) turns any readable image into 3-channel 8-bit RGB and substitutes a gray
image for anything it cannot read; OpenCV returns ``None`` or silently fills a truncated JPEG.
Here every such case is either converted explicitly (and recorded in ``ImageMeta.notes``) or
rejected with ``ImageError("path: reason")``.

Files are read with Python's ``open`` and decoded from memory with ``cv2.imdecode`` (``cv2.imread``
fails on non-ASCII paths on some platforms, and nothing is ever passed to a shell). The format is
sniffed from magic bytes, the dimensions are read from the header and checked against
``max_pixels`` before decoding, and JPEG, PNG and GIF files are walked segment by segment so
that a truncated file is refused instead of being decoded with a gray or black tail.

EXIF orientation is read from JPEG APP1 and PNG eXIf and applied here (OpenCV never applies it
with ``IMREAD_UNCHANGED``). Limitation: OpenCV's TIFF decoder applies the TIFF Orientation tag
itself for some pixel layouts, so for TIFF files it is neither reported nor controllable.
"""
from __future__ import annotations

import os
import re
import struct
import warnings
from dataclasses import dataclass
from typing import Union

import cv2
import numpy as np

from .errors import ImageError, OutputError
from .files import note_input, write_bytes
from .limits import check_regular_file, special_file_problem

PathLike = Union[str, "os.PathLike[str]"]

# 2**28 = 268 M pixels (about 16384 x 16384), 768 MiB as RGB uint8: far above any detector input,
# below OpenCV's own CV_IO_MAX_IMAGE_PIXELS (2**30), which raises cv2.error instead of a clear message.
DEFAULT_MAX_PIXELS = 2 ** 28

_SAVE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class ImageMeta:
    """Where an RGB array came from and which conversions produced it."""

    path: str | None          # None for arrays given through the API
    width: int                   # of the returned RGB array (after EXIF orientation)
    height: int
    source_channels: int         # 1 gray, 2 gray+alpha, 3 colour, 4 colour+alpha (or CMYK JPEG)
    source_dtype: str            # 'uint8', 'uint16', 'float32', ...
    exif_orientation: int        # the orientation applied; 1 if none or not applied
    notes: tuple[str, ...] = ()  # conversions done, e.g. ('alpha dropped', '16-bit scaled to 8-bit (/257)')


# ---------------------------------------------------------------------------------------- sniffing

def _sniff(head: bytes) -> str | None:
    """The format named by the first bytes of a file, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith(b"BM") and len(head) >= 18 and head[6:10] == b"\0\0\0\0" \
            and struct.unpack_from("<I", head, 14)[0] in (12, 16, 40, 52, 56, 64, 108, 124):
        return "bmp"  # "BM" alone is too weak: reserved bytes are zero and the DIB header size is known
    if re.match(rb"P[1-6]\s", head):
        return "pnm"
    return None


def is_image_file(path: PathLike) -> bool:
    """True if the file's content (not its name) starts like a JPEG, PNG, BMP, GIF, TIFF, WebP or PNM."""
    if special_file_problem(path):  # a FIFO would block the read forever
        return False
    try:
        with open(path, "rb") as f:
            return _sniff(f.read(32)) is not None
    except OSError:  # directories, broken symlinks, unreadable files: not images
        return False


# ---------------------------------------------------------------------------------- header parsing

def _tiff_ifd0(buf: bytes) -> dict[int, int]:
    """Single-valued SHORT/LONG tags of the first IFD of a TIFF structure (EXIF uses the same)."""
    try:
        e = {b"II": "<", b"MM": ">"}[bytes(buf[:2])]
        if struct.unpack_from(e + "H", buf, 2)[0] != 42:
            return {}
        off = struct.unpack_from(e + "I", buf, 4)[0]
        tags: dict[int, int] = {}
        for i in range(struct.unpack_from(e + "H", buf, off)[0]):
            tag, typ, count = struct.unpack_from(e + "HHI", buf, off + 2 + 12 * i)
            if count == 1 and typ in (3, 4):  # SHORT values sit left-aligned in the 4-byte field
                tags[tag] = struct.unpack_from(e + ("H" if typ == 3 else "I"), buf, off + 10 + 12 * i)[0]
        return tags
    except (KeyError, struct.error):
        return {}


@dataclass
class _Header:
    size: tuple[int, int] | None = None  # (width, height) as stored
    channels: int | None = None
    orientation: int = 1
    complete: bool = True
    frames_note: str | None = None


_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG and DAC share the range
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")     # not stuffing, RSTn or fill


def _jpeg_header(data: bytes) -> _Header:
    """Walk the JPEG segments; complete only if the EOI marker of the main image is reached."""
    h, pos, n = _Header(complete=False), 2, len(data)
    while pos + 2 <= n:
        if data[pos] != 0xFF or data[pos + 1] == 0xFF:  # fill bytes / garbage: resync as libjpeg does
            pos = data.find(b"\xff", pos + 1)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xD9:
            h.complete = True  # bytes after EOI (camera trailers, MPF images) are not our business
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if pos + 4 > n:
            break
        end = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if end > n:
            break
        if marker in _SOF and end - pos >= 10 and h.size is None:
            rows, cols, h.channels = struct.unpack_from(">HHB", data, pos + 5)
            h.size = (cols, rows) if rows else None  # height 0 = defined later by DNL: unknown here
        elif marker == 0xE1 and data.startswith(b"Exif\x00\x00", pos + 4) and h.orientation == 1:
            h.orientation = _tiff_ifd0(data[pos + 10:end]).get(0x0112, 1)
        pos = end
        if marker == 0xDA:  # entropy-coded data runs to the next real marker
            m = _JPEG_MARKER.search(data, pos)
            if m is None:
                break
            pos = m.start()
    return h


_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # palette (3): 3 or 4 (tRNS), as decoded


def _png_header(data: bytes) -> _Header:
    """Walk the PNG chunks; complete only if IEND is reached with every chunk whole."""
    h, pos, n = _Header(complete=False), 8, len(data)
    while pos + 8 <= n:
        length, ctype = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > n:
            break
        if ctype == b"IHDR" and length >= 13:
            w, hh, _depth, colour = struct.unpack_from(">IIBB", data, pos + 8)
            h.size, h.channels = (w, hh), _PNG_CHANNELS.get(colour)
        elif ctype == b"eXIf":
            h.orientation = _tiff_ifd0(data[pos + 8:end - 4]).get(0x0112, 1)
        elif ctype == b"acTL":
            h.frames_note = "first frame of an animated PNG"
        elif ctype == b"IEND":
            h.complete = True
            break
        pos = end
    return h


def _other_header(fmt: str, data: bytes) -> _Header:
    """Dimensions (only) of the formats that are not walked in full; any doubt leaves them unknown."""
    h = _Header()
    try:
        if fmt == "bmp":
            w, hh = struct.unpack_from("<ii" if struct.unpack_from("<I", data, 14)[0] >= 40 else "<hh", data, 18)
            h.size = (abs(w), abs(hh))  # negative height = rows stored top-down
        elif fmt == "webp":
            chunk = data[12:16]
            if chunk == b"VP8X":
                h.size = (1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little"))
            elif chunk == b"VP8 ":
                w, hh = struct.unpack_from("<HH", data, 26)
                h.size = (w & 0x3FFF, hh & 0x3FFF)
            elif chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                h.size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif fmt == "tiff":
            tags = _tiff_ifd0(data)
            if 256 in tags and 257 in tags:
                h.size = (tags[256], tags[257])
            e = "<" if data[:2] == b"II" else ">"
            ifd = struct.unpack_from(e + "I", data, 4)[0]
            if struct.unpack_from(e + "I", data, ifd + 2 + 12 * struct.unpack_from(e + "H", data, ifd)[0])[0]:
                h.frames_note = "first page of a multi-page TIFF"
        elif fmt == "pnm":
            tokens = re.sub(rb"#[^\n]*", b"", data[2:4096]).split()
            h.size = (int(tokens[0]), int(tokens[1]))
    except (struct.error, ValueError, IndexError):
        h.size = None
    return h


def _gif_header(data: bytes) -> _Header:
    """Walk the GIF blocks: counts frames; complete at the trailer or at a clean end after a frame."""
    h, n, frames = _Header(complete=False), len(data), 0
    try:
        w, hh, flags = struct.unpack_from("<HHB", data, 6)
        h.size, pos = (w, hh), 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
        while pos < n and data[pos] != 0x3B:
            if data[pos] == 0x21:        # extension: introducer, label, sub-blocks
                pos += 2
            elif data[pos] == 0x2C:      # image: descriptor, local colour table, LZW size, sub-blocks
                frames, flags = frames + 1, data[pos + 9]
                pos += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            else:
                return h
            while pos < n and data[pos]:
                pos += data[pos] + 1
            pos += 1
        h.complete = frames > 0 and pos <= n
    except (struct.error, IndexError):
        return h
    if frames > 1:
        h.frames_note = f"first frame of an animated GIF ({frames} frames)"
    return h


def _header(fmt: str, data: bytes) -> _Header:
    walkers = {"jpeg": _jpeg_header, "png": _png_header, "gif": _gif_header}
    return walkers[fmt](data) if fmt in walkers else _other_header(fmt, data)


# ----------------------------------------------------------------------------------- conversion

def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to the stored pixels to get what a viewer shows."""
    if orientation == 2:
        return a[:, ::-1]                        # mirrored horizontally
    if orientation == 3:
        return a[::-1, ::-1]                     # rotated 180
    if orientation == 4:
        return a[::-1]                           # mirrored vertically
    if orientation == 5:
        return a.swapaxes(0, 1)                  # transposed
    if orientation == 6:
        return np.rot90(a, -1)                   # rotated 90 clockwise
    if orientation == 7:
        return np.rot90(a, 2).swapaxes(0, 1)     # transversed
    if orientation == 8:
        return np.rot90(a, 1)                    # rotated 90 counter-clockwise
    return a


def _to_uint8(a: np.ndarray, shape: tuple, path: str | None) -> tuple[np.ndarray, list[str]]:
    if a.dtype == np.uint8:
        return a, []
    if a.dtype == np.uint16:
        # cv2's IMREAD_COLOR does x >> 8 (truncation: half a level darker on average); we round
        # x / 257 instead: 65535 -> 255 exactly, nearest level everywhere, and still the exact
        # inverse of the usual 8->16 bit scaling x * 257. Integer form of round(x / 257) (no ties).
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8), ["16-bit scaled to 8-bit (/257)"]
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ImageError(f"float image of shape {shape} contains NaN or Inf", path=path)
        if a.min() < 0.0 or a.max() > 1.0:
            raise ImageError(f"float image values must lie in [0, 1], found {float(a.min()):g}.."
                             f"{float(a.max()):g} (shape {shape})", path=path)
        return np.rint(a.astype(np.float64) * 255.0).astype(np.uint8), [f"{a.dtype} scaled to 8-bit (*255)"]
    raise ImageError(f"unsupported dtype {a.dtype} for image of shape {shape} "
                     "(expected uint8, uint16 or float in [0, 1])", path=path)


def _normalise(a: np.ndarray, *, bgr: bool, path: str | None) -> tuple[np.ndarray, int, list[str]]:
    """Any supported layout -> C-contiguous HxWx3 uint8 RGB, the source channel count, and notes."""
    shape = tuple(a.shape)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"unsupported image shape {shape} {a.dtype} "
                         "(expected HxW, HxWx1, HxWx2, HxWx3 or HxWx4 with H, W > 0)", path=path)
    channels, notes = a.shape[2], []
    if channels in (2, 4):
        a = a[:, :, :channels - 1]  # darknet/stb loads with 3 requested channels: alpha dropped, not composited
        notes.append("alpha dropped")
    a, dtype_notes = _to_uint8(a, shape, path)
    notes += dtype_notes
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)  # stb's gray -> RGB conversion copies Y into R, G and B
        notes.append("gray replicated to 3 channels")
    elif bgr:
        # OpenCV decodes BGR; the network is fed RGB as darknet does. B and R are swapped in place
        # (the array is the decoder's own), a strip of rows at a time: a second full-size copy
        # doubled the memory of a large photo. Strided channel copies, not a reversed view, which
        # numpy copies pixel by pixel, 7x slower.
        if not a.flags.writeable or not a.flags.c_contiguous:
            a = a.copy()
        for r in range(0, a.shape[0], 256):
            rows = a[r:r + 256]
            blue = rows[:, :, 0].copy()
            rows[:, :, 0] = rows[:, :, 2]
            rows[:, :, 2] = blue
        return a, channels, notes
    return np.ascontiguousarray(a), channels, notes


# --------------------------------------------------------------------------------------- public

def to_rgb_uint8(array: np.ndarray, *, path: str | None = None) -> tuple[np.ndarray, ImageMeta]:
    """An array given through the Python API (already RGB, not BGR) -> a new HxWx3 uint8 RGB array.

    Accepts HxW, HxWx1 (gray, replicated), HxWx3, HxWx2 / HxWx4 (alpha dropped); uint8 as is,
    uint16 scaled by /257 with rounding, float in [0, 1] scaled by 255 with rounding. Anything
    else (bool, other integer types, values outside [0, 1], other shapes) raises ImageError.
    """
    if not isinstance(array, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(array).__name__}", path=path)
    rgb, channels, notes = _normalise(array, bgr=False, path=path)
    if np.may_share_memory(rgb, array):
        rgb = rgb.copy()  # callers may draw on the result; never alias their array
    return rgb, ImageMeta(path, rgb.shape[1], rgb.shape[0], channels, str(array.dtype), 1, tuple(notes))


def load_image(path: PathLike, *, exif_orientation: bool = True,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, ImageMeta]:
    """Decode strictly into an HxWx3 uint8 RGB array (C-contiguous) and its ImageMeta.

    ``exif_orientation=False`` keeps pixels as stored, as a darknet built on stb_image sees them.
    ``max_pixels`` bounds width*height, checked from the header before decoding where possible.
    """
    name = os.fsdecode(path)
    check_regular_file(path, lambda reason, _: ImageError(reason, path=name))
    note_input(name, "photo")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # 8 bytes a pixel (16-bit RGBA, uncompressed) is the most a supported format stores: a
            # larger file cannot hold an image within max_pixels and is refused before it is read.
            if size > 8 * max_pixels + 2 ** 20:
                raise ImageError(f"file of {size} bytes is larger than any image of max_pixels={max_pixels} "
                                 "pixels", path=name)
            data = f.read()
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror or e}", path=name) from None
    if not data:
        raise ImageError("empty file", path=name)
    fmt = _sniff(data[:32])
    if fmt is None:  # darknet would substitute a gray image here
        raise ImageError(f"unrecognised image data (starts with {data[:8]!r})", path=name)
    header = _header(fmt, data)
    if header.size is not None and header.size[0] * header.size[1] > max_pixels:
        w, h = header.size
        raise ImageError(f"image is {w}x{h} = {w * h} pixels, above max_pixels={max_pixels}", path=name)
    if not header.complete:
        end = {"jpeg": "EOI marker", "png": "IEND chunk", "gif": "trailer"}[fmt]
        raise ImageError(f"truncated {fmt.upper()} file: no {end} in {len(data)} bytes", path=name)
    try:
        # IMREAD_UNCHANGED keeps alpha, 16-bit and float data (converted explicitly below) and
        # never applies EXIF orientation, which is done here so that it can be switched off.
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise ImageError(f"OpenCV cannot decode {fmt.upper()} data: {str(e).strip().splitlines()[-1]}",
                         path=name) from None
    if decoded is None:
        raise ImageError(f"corrupt or unsupported {fmt.upper()} data (OpenCV could not decode it)", path=name)
    if decoded.shape[0] * decoded.shape[1] > max_pixels:
        h, w = decoded.shape[:2]
        raise ImageError(f"image is {w}x{h} = {w * h} pixels, above max_pixels={max_pixels}", path=name)
    rgb, channels, notes = _normalise(decoded, bgr=True, path=name)
    if header.channels is not None:
        channels = header.channels  # OpenCV expands gray+alpha PNG to BGRA; CMYK JPEG to BGR
    if fmt == "jpeg" and channels == 4:
        notes.append("CMYK/YCCK converted to RGB by OpenCV")
    if header.frames_note:
        notes.append(header.frames_note)
        warnings.warn(f"{name}: {header.frames_note}; only that frame is used", stacklevel=2)
    orientation = header.orientation
    if orientation not in range(1, 9):
        notes.append(f"invalid EXIF orientation {orientation} ignored")
        orientation = 1
    elif orientation != 1 and not exif_orientation:  # matches a darknet built on stb_image
        notes.append(f"EXIF orientation {orientation} not applied")
        orientation = 1
    elif orientation != 1:
        rgb = np.ascontiguousarray(_orient(rgb, orientation))
        notes.append(f"EXIF orientation {orientation} applied")
    return rgb, ImageMeta(name, rgb.shape[1], rgb.shape[0], channels, str(decoded.dtype),
                          orientation, tuple(notes))


def save_image(path: PathLike, rgb: np.ndarray, *, jpeg_quality: int = 80) -> None:
    """Write an HxWx3 uint8 RGB image; the extension (.jpg/.jpeg/.png/.bmp) picks the format.

    JPEG quality defaults to 80, the value darknet's save_image passes to stbi_write_jpg.
    """
    name = os.fsdecode(path)
    ext = os.path.splitext(name)[1].lower()
    if ext not in _SAVE_EXTENSIONS:
        raise ImageError(f"cannot choose an image format from extension {ext or '(none)'!r}; "
                         f"use one of {', '.join(_SAVE_EXTENSIONS)}", path=name)
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            and rgb.shape[0] > 0 and rgb.shape[1] > 0):
        what = f"{tuple(rgb.shape)} {rgb.dtype}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ImageError(f"save_image needs an HxWx3 uint8 RGB array, got {what}", path=name)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in (".jpg", ".jpeg") else []
    try:
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    except cv2.error as e:
        raise ImageError(f"OpenCV cannot encode: {str(e).strip().splitlines()[-1]}", path=name) from None
    if not ok:
        raise ImageError("OpenCV could not encode the image", path=name)
    try:
        write_bytes(name, buf.tobytes())  # not cv2.imwrite: non-ASCII paths work everywhere; atomic
    except OSError as e:
        raise ImageError(f"cannot write: {e.strerror or e}", path=name) from None
    except OutputError as e:  # a folder, a device, an input of the run: refused before writing
        raise ImageError(f"cannot write: {e.reason}", path=name) from None
