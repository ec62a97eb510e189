"""Darknet ``.weights`` files: read and write, every byte accounted for.

Layout (pjreddie/darknet src/parser.c ``load_weights_upto`` / ``save_weights_upto``):
int32 major, int32 minor, int32 revision, then ``seen`` (images trained on) as 8 bytes when
``major*10 + minor >= 2`` (and both < 1000) else 4 bytes; then, layer by layer in cfg order,
the float32 little-endian tensors each layer kind lists in ``darknet_tensors()``.

Darknet checks no read: a short file silently leaves layers random and a long one is accepted.
Here both are errors that name the layer, its cfg line and the byte counts; loading a prefix
(a backbone made by ``darknet partial``) is the explicit ``upto=`` argument, never a guess.
The header read is kept on the model so that load -> save is byte-identical.
"""
from __future__ import annotations

import os
import struct
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

from .checks import check_count
from .errors import UsageError, WeightsError
from .files import note_input, write_bytes
from .limits import check_regular_file

FLOAT = np.dtype("<f4")  # Darknet's files are little-endian float32, whatever the host reading them
# More images than any training run has seen (yolov3.weights: 32,013,312): a garbled header.
ABSURD_SEEN = 10**12


@dataclass
class Header:
    major: int = 0
    minor: int = 2
    revision: int = 0
    seen: int = 0
    seen_bytes: int = 8

    @property
    def size(self) -> int:
        return 12 + self.seen_bytes

    def pack(self) -> bytes:
        fmt = "<iiiQ" if self.seen_bytes == 8 else "<iiiI"
        return struct.pack(fmt, self.major, self.minor, self.revision, self.seen)


def seen_width(major: int, minor: int) -> int:
    """Darknet's rule for the width of ``seen``: 8 bytes from version 0.2 on."""
    return 8 if (major * 10 + minor >= 2 and major < 1000 and minor < 1000) else 4


def is_torch_file_head(head: bytes) -> bool:
    """torch.save's zip archive, or a bare pickle (protocols 2-5), by its first bytes."""
    return head[:4] == b"PK\x03\x04" or head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


# The first field tags of an ONNX ModelProto after ir_version (protobuf writes fields in number
# order): producer_name, producer_version, domain, model_version, doc_string, graph, opset_import.
_ONNX_SECOND_TAGS = (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42)


def foreign_model(head: bytes, path: str | None = None) -> str | None:
    """What a model file that is neither Darknet's nor a darknet-py checkpoint is, by its contents:
    ``"a TorchScript module"`` (torch.jit.save's zip: ``constants.pkl`` and ``code/`` entries) or
    ``"an ONNX model"`` (a ModelProto: field 1, ir_version, first); else None. ``head``: the first
    bytes (16 are enough); ``path``: the file, for a zip's entry names."""
    if head[:4] == b"PK\x03\x04" and path is not None:
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (OSError, zipfile.BadZipFile, ValueError):
            return None
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "a TorchScript module"
        return None
    # A Darknet header starts with major 0 or 1 (bytes 00 or 01), never 08 then a small number.
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 64 and head[2] in _ONNX_SECOND_TAGS:
        return "an ONNX model"
    return None


def _sniff(data: bytes, path: str) -> None:
    head = data[:64]
    # A UTF-8 BOM hid "<!DOCTYPE"/LFS/text from the checks below, and its bytes then read as header
    # major 1019198447, reported as "transposed [connected] weights": look past it.
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    lower = head.lstrip().lower()
    if lower.startswith(b"version https://git-lfs"):
        raise WeightsError("this is a Git LFS pointer, not the weights (run 'git lfs pull' or download the file "
                           "itself)", path)
    if lower.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")):
        raise WeightsError("this is an HTML page, not a weights file (the download was redirected? download the "
                           "file itself)", path)
    kind = foreign_model(head, path)
    if kind:
        raise WeightsError(f"this is {kind}, not a Darknet .weights file: darknet-py reads Darknet .weights "
                           "files and its own checkpoints (the .pt of `darknet-py export --format pt`)", path)
    if is_torch_file_head(head):
        raise WeightsError("this is a PyTorch checkpoint (zip/pickle), not a Darknet .weights file; pass it to "
                           "darknet_py.load or darknet_py.checkpoint.load_checkpoint, which read it with "
                           "torch.load(path, weights_only=True) and load_state_dict(strict=True) semantics", path)
    # Text, UTF-8 included (non-ASCII text read as a header gave "transposed weights"); the 64-byte
    # window may cut a multi-byte character at its end.
    try:
        chars = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        chars = head[:exc.start].decode("utf-8") if exc.reason == "unexpected end of data" else ""
    if len(head) >= 16 and len(chars) >= 12 and all(c.isprintable() or c in "\t\r\n" for c in chars):
        raise WeightsError(f"this is a text file ({chars[:40]!r}...), not a Darknet .weights file", path)


def read_header(data: bytes, path: str, *, seen_bytes: int | None = None, force_header: bool = False) -> Header:
    if len(data) < 16:
        raise WeightsError(f"not a darknet weights file ({len(data)} bytes; the header alone takes 16 or 20)", path)
    major, minor, revision = struct.unpack_from("<iii", data, 0)
    if major >= 1000 or minor >= 1000:
        # "not supported": the wording every refusal of a known Darknet format uses (users grep for it)
        raise WeightsError(f"header {major}.{minor}.{revision} marks transposed [connected] weights: not "
                           "supported by darknet-py", path)
    width = seen_bytes if seen_bytes is not None else seen_width(major, minor)
    if width not in (4, 8):
        raise UsageError(f"seen_bytes must be 4 or 8, not {width}")
    if len(data) < 12 + width:
        raise WeightsError(f"not a darknet weights file ({len(data)} bytes; the header alone takes {12 + width})",
                           path)
    seen = struct.unpack_from("<Q" if width == 8 else "<I", data, 12)[0]
    header = Header(major, minor, revision, seen, width)
    problem = _implausible(header)
    if not force_header and problem:
        raise _implausible_error(problem, path)
    return header


def _implausible(h: Header) -> str | None:
    if min(h.major, h.minor, h.revision) < 0 or h.seen > ABSURD_SEEN:
        return (f"implausible header: major={h.major} minor={h.minor} revision={h.revision} seen={h.seen}; "
                "not a darknet weights file? (force_header=True reads it anyway)")
    return None


def _implausible_error(problem: str, path: str) -> WeightsError:
    err = WeightsError(problem, path)
    err.option = ("force_header", "True")  # the command line names its own flag
    return err


def layer_tensors(model, upto: int | None = None) -> list[tuple[int, list[tuple[str, torch.Tensor]]]]:
    """(layer index, [(name, tensor)]) in file order for layers [0, upto), skipping those without bytes."""
    n = len(model.layers) if upto is None else upto
    out = []
    for i, layer in enumerate(model.layers[:n]):
        tensors = layer.darknet_tensors() if hasattr(layer, "darknet_tensors") else []
        if tensors:
            out.append((i, tensors))
    return out


def count_floats(model, upto: int | None = None) -> int:
    return sum(t.numel() for _, ts in layer_tensors(model, upto) for _, t in ts)


def _layer_name(model, i: int) -> str:
    spec = model.netdef.specs[i]
    return f"layer {i} [{model.netdef.sections[i + 1].kind}] (cfg line {spec.line})"


def value_problems(model, i: int, name: str, values: np.ndarray) -> list[str]:
    """What is wrong with the values of tensor ``name`` of layer ``i``, whatever file they came from
    (.weights or checkpoint): NaN/Inf (the network then detects nothing, silently), negative
    variances (sqrt of them is NaN)."""
    problems = []
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        problems.append(f"{_layer_name(model, i)}: {name} has {bad} NaN/Inf values")
    if name.endswith("running_var"):
        neg = int(np.count_nonzero(values < 0))
        if neg:
            problems.append(f"{_layer_name(model, i)}: {name} has {neg} negative variances")
    return problems


def _check_upto(model, upto: int | None) -> None:
    check_count("upto", upto, 0, len(model.layers), what="the number of layers; 0: the header only")


def load_weights(model, path, upto: int | None = None, *, seen_bytes: int | None = None,
                 allow_trailing_bytes: bool = False, strict: bool = False, force_header: bool = False) -> Header:
    """Load a Darknet .weights file into ``model`` (layers [0, upto) when ``upto`` is given).

    Raises WeightsError when the file does not hold exactly what the cfg needs; with ``upto``
    the file may be longer (the rest is not read), as for Darknet's own partial loads.
    """
    spath = os.fspath(path)
    _check_upto(model, upto)
    plan = layer_tensors(model, upto)
    need = sum(t.numel() for _, ts in plan for _, t in ts)
    check_regular_file(spath, WeightsError)
    note_input(spath, "weights")
    try:
        with open(spath, "rb") as fh:
            # The size comes from stat and only what the cfg needs is read: a huge file (or one
            # longer than the cfg, refused below) is never read into memory.
            file_bytes = os.fstat(fh.fileno()).st_size
            data = bytearray(fh.read(min(file_bytes, 20 + 4 * need)))
    except OSError as exc:
        raise WeightsError(f"cannot read weights: {exc.strerror or exc}", spath) from None
    if not data:
        raise WeightsError("not a darknet weights file (empty file)", spath)
    _sniff(bytes(data[:64]), spath)
    # Plausibility is judged below, once the size is known: a 0.2 header followed by a 4-byte 'seen'
    # reads the first float into the high half of 'seen', which looks absurd; the size hint below
    # names the cause.
    header = read_header(bytes(data[:20]), spath, seen_bytes=seen_bytes, force_header=True)
    need_bytes = header.size + 4 * need
    payload = file_bytes - header.size
    avail = payload // 4
    total_layers = len(model.layers)

    mismatch = file_bytes != need_bytes and (upto is None or file_bytes < need_bytes)
    diff = file_bytes - need_bytes
    alt = 4 if header.seen_bytes == 8 else 8
    hint = ""
    if mismatch and seen_bytes is None and diff == alt - header.seen_bytes:
        # Off by exactly 4 bytes is the signature of a writer that disagreed with Darknet's
        # version rule for the width of 'seen' (PyTorch-YOLOv3#842, AlexeyAB#1601).
        hint = (f"; off by exactly 4 bytes: if the header's 'seen' field is {alt} bytes wide (not {header.seen_bytes} "
                f"as version {header.major}.{header.minor}.{header.revision} implies), pass seen_bytes={alt}")
    problem = _implausible(header)
    if problem and not force_header:
        raise _implausible_error(problem + hint, spath)

    if mismatch:
        if diff < 0:
            # Find where the file runs out: a clean layer boundary (a backbone file) or mid-tensor.
            offset = 0
            for i, tensors in plan:
                if offset == avail and payload % 4 == 0:
                    err = WeightsError(
                        f"file ends cleanly after the first {i} of {total_layers} layers ({file_bytes} bytes, the cfg "
                        f"needs {need_bytes}); pass upto={i} to load a backbone{hint}", spath)
                    err.option = ("upto", str(i))  # the command line names its own flag
                    raise err
                for name, t in tensors:
                    if offset + t.numel() > avail:
                        raise WeightsError(
                            f"{_layer_name(model, i)}: {name} needs {t.numel()} floats, {avail - offset} remain; "
                            f"file {file_bytes} bytes, cfg needs {need_bytes}{hint}", spath)
                    offset += t.numel()
        if diff > 0 and (hint or not allow_trailing_bytes):
            raise WeightsError(
                f"file is {file_bytes} bytes, the cfg needs {need_bytes}: {diff} bytes ({diff / 4:g} floats) left "
                f"after the last layer; cfg and weights do not match (classes/filters changed?){hint}", spath)
        if diff > 0:
            warnings.warn(f"{spath}: {diff} trailing bytes after the last layer ignored", stacklevel=2)

    floats = np.frombuffer(data, dtype=FLOAT, count=need, offset=header.size)
    offset = 0
    problems = []
    chunks = []
    for i, tensors in plan:
        for name, t in tensors:
            chunk = floats[offset:offset + t.numel()]
            offset += t.numel()
            chunks.append((t, chunk))
            problems += value_problems(model, i, name, chunk)
    # strict: refuse before copying anything, so a refused file leaves the model as it was
    # (checking while copying left it half-overwritten with the NaN values it refused).
    if strict and problems:
        raise WeightsError(problems[0], spath)
    with torch.no_grad():
        for t, chunk in chunks:
            t.copy_(torch.from_numpy(chunk).view_as(t))
    for problem in problems:
        warnings.warn(f"{spath}: {problem}", stacklevel=2)
    model.header = header
    return header


def layers_in_file(model, path, *, seen_bytes: int | None = None) -> int | None:
    """How many leading layers a weights file holds when it ends exactly at a layer boundary (a
    backbone such as darknet53.conv.74, which Darknet's ``train`` loads as far as it goes);
    None when it does not end on a boundary (then ``load_weights`` explains the mismatch)."""
    spath = os.fspath(path)
    check_regular_file(spath, WeightsError)
    try:
        with open(spath, "rb") as fh:
            head = fh.read(20)
        size = os.path.getsize(spath)
    except OSError as exc:
        raise WeightsError(f"cannot read weights: {exc.strerror or exc}", spath) from None
    _sniff(head[:64], spath)
    header = read_header(head, spath, seen_bytes=seen_bytes, force_header=True)
    avail = size - header.size
    if avail < 0 or avail % 4:
        return None
    floats = 0
    for i, tensors in layer_tensors(model):
        if 4 * floats == avail:
            return i
        floats += sum(t.numel() for _, t in tensors)
    return len(model.layers) if 4 * floats == avail else None


def weights_bytes(model, upto: int | None = None, header: Header | None = None) -> bytes:
    """The .weights file content for ``model`` (layers [0, upto))."""
    _check_upto(model, upto)
    header = header or getattr(model, "header", None) or Header()
    parts = [header.pack()]
    for _, tensors in layer_tensors(model, upto):
        for _, t in tensors:
            parts.append(t.detach().to("cpu", torch.float32).contiguous().numpy().astype(FLOAT, copy=False).tobytes())
    return b"".join(parts)


def save_weights(model, path, upto: int | None = None, header: Header | None = None) -> None:
    """Write Darknet's format atomically (darknet_py.files): a kill never leaves half a file."""
    spath = os.fspath(path)
    data = weights_bytes(model, upto, header)
    try:
        write_bytes(spath, data)
    except OSError as exc:
        raise WeightsError(f"cannot write weights: {exc.strerror or exc}", spath) from None


def weights_report(model, upto: int | None = None) -> list[dict]:
    """Per-layer statistics: a cfg that fits the file by size but not by meaning shows up here.
    ``upto``: only layers [0, upto), those a partial load read."""
    rows = []
    for i, tensors in layer_tensors(model, upto):
        row = {"layer": i, "kind": model.netdef.sections[i + 1].kind, "line": model.netdef.specs[i].line,
               "floats": sum(t.numel() for _, t in tensors)}
        for name, t in tensors:
            v = t.detach().double()
            row[name] = {"mean": float(v.mean()), "std": float(v.std()) if v.numel() > 1 else 0.0,
                         "min": float(v.min()), "max": float(v.max())}
        rows.append(row)
    return rows
