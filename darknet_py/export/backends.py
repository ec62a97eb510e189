"""Every export format in one table: how to write it, and how to run a written file again.

``export`` (the CLI), the conversion report and tools/bench_export.py all go through
:data:`BACKENDS`: a format's ``write(model, path, **options)`` makes and checks the file (each
module does its own runtime check right after writing), and ``open_file(path, model, **options)``
loads that file in its runtime and returns a :class:`Loaded`: a ``runner`` (letterboxed float32
NCHW -> raw heads, darknet_py.export.verify.Runner) for graphs of raw heads, or a ``detector``
(photo -> boxes, scores, classes in photo pixels) for end-to-end graphs. Both feed
darknet_py.export.verify, so every backend is judged by darknet_py's one decode and post-process.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ExportError
from ..postprocess import DEFAULT_NMS, DEFAULT_THRESH, postprocess_decoded
from ..transforms import prepare_batch
from .graphs import INPUT_NAME


@dataclass
class Loaded:
    """A written file, loaded in its runtime: exactly one of ``runner`` / ``detector`` is set."""

    runtime: str
    runner: Callable | None = None     # NCHW float32 -> [raw head arrays]
    detector: Callable | None = None   # HxWx3 uint8 RGB -> (boxes, scores, classes), photo pixels


@dataclass(frozen=True)
class Backend:
    name: str
    suffix: str                  # of the default output name
    extra: str | None            # the pip extra that installs its packages (None: always there)
    description: str
    write: Callable              # (model, path, **options) -> ExportReport
    open_file: Callable          # (path, model, **options) -> Loaded
    precisions: tuple[str, ...] = ("fp32",)


def _threads() -> int:
    return max(1, torch.get_num_threads())


# --------------------------------------------------------------------------- ONNX and TorchScript


def _onnx_session(path: str):
    from .onnx import _import_onnx
    _, ort = _import_onnx()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _threads()
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]), ort


def _decoded_detector(model, rows_of: Callable, thresh: float, nms: float) -> Callable:
    """A detector from a graph of decoded rows (x1 y1 x2 y2 network pixels, objectness,
    objectness * class): back to darknet_py's post-process on the same rows."""
    from ..detector import letterboxed
    from ..postprocess.batch import nms_policy
    net_w, net_h = model.input_size

    def detect(rgb: np.ndarray):
        x, infos = prepare_batch([torch.from_numpy(rgb)], net_w, net_h, device="cpu", letterboxed=letterboxed(model))
        rows = torch.from_numpy(np.asarray(rows_of(x.numpy()), dtype=np.float32))
        scale = torch.tensor([net_w, net_h], dtype=torch.float32)
        xy1, xy2 = rows[..., 0:2] / scale, rows[..., 2:4] / scale
        boxes = torch.cat(((xy1 + xy2) / 2, xy2 - xy1), -1)
        obj = rows[..., 4]
        probs = torch.where(obj[..., None] > 0, rows[..., 5:] / obj[..., None].clamp_min(1e-30),
                            torch.zeros_like(rows[..., 5:]))
        kind, beta, gate = nms_policy(model.head_specs)
        d = postprocess_decoded(boxes, obj, probs, infos, thresh, nms, kind, beta, gate=gate)[0]
        return d.boxes, d.scores, d.classes
    return detect


def _e2e_detector(model, run: Callable, letterbox: bool) -> Callable:
    """A detector from an end-to-end graph (num_dets, det_boxes, det_scores, det_classes)."""
    from ..detector import letterboxed
    from .e2e import net_boxes_to_photo
    net_w, net_h = model.input_size

    def detect(rgb: np.ndarray):
        if letterbox:
            num, boxes, scores, classes = run(np.ascontiguousarray(rgb[None]))
            n = int(num[0, 0])
            return boxes[0, :n], scores[0, :n], classes[0, :n]
        x, infos = prepare_batch([torch.from_numpy(rgb)], net_w, net_h, device="cpu", letterboxed=letterboxed(model))
        num, boxes, scores, classes = run(x.numpy())
        n = int(num[0, 0])
        return net_boxes_to_photo(boxes[0, :n], infos[0]), scores[0, :n], classes[0, :n]
    return detect


def _open_graph(model, run: Callable, runtime: str, *, decode=False, nms=False, letterbox=False, thresh=None,
                iou=None, **_) -> Loaded:
    if nms:
        return Loaded(runtime, detector=_e2e_detector(model, run, letterbox))
    if decode:
        det = _decoded_detector(model, lambda x: run(x)[0], DEFAULT_THRESH if thresh is None else thresh,
                                DEFAULT_NMS if iou is None else iou)
        return Loaded(runtime, detector=det)
    return Loaded(runtime, runner=run)


def open_onnx(path, model, *, half: bool = False, **options) -> Loaded:
    sess, ort = _onnx_session(os.fspath(path))
    name = sess.get_inputs()[0].name
    dtype = np.float16 if half else None

    def run(x: np.ndarray):
        feed = x.astype(dtype) if dtype is not None and x.dtype == np.float32 else x
        return [np.asarray(o) for o in sess.run(None, {name: feed})]
    return _open_graph(model, run, f"onnxruntime {ort.__version__} CPUExecutionProvider", **options)


def open_torchscript(path, model, *, half: bool = False, **options) -> Loaded:
    m = torch.jit.load(os.fspath(path), map_location="cpu").eval()

    def run(x: np.ndarray):
        t = torch.from_numpy(x)
        if half and t.is_floating_point():
            t = t.half()
        with torch.no_grad():
            out = m(t)
        return [o.float().numpy() if o.is_floating_point() else o.numpy()
                for o in ([out] if isinstance(out, torch.Tensor) else out)]
    return _open_graph(model, run, f"torch.jit.load (torch {torch.__version__})", **options)


def open_checkpoint(path, model, **_) -> Loaded:
    from ..checkpoint import load_checkpoint
    m = load_checkpoint(os.fspath(path)).eval()

    def run(x: np.ndarray):
        with torch.inference_mode():
            return [o.float().numpy() for o in m(torch.from_numpy(x))]
    return Loaded(f"torch.load (torch {torch.__version__})", runner=run)


def _write_onnx(model, path, **options):
    from .onnx import export_onnx
    return export_onnx(model, path, **options)


def _write_torchscript(model, path, **options):
    from .torchscript import export_torchscript
    return export_torchscript(model, path, **options)


def _write_checkpoint(model, path, *, sample=None, **_):
    from .checkpoint import export_checkpoint
    return export_checkpoint(model, path, sample=sample)


BACKENDS: dict[str, Backend] = {
    "onnx": Backend("onnx", ".onnx", "export", "ONNX, run by onnxruntime", _write_onnx, open_onnx, ("fp32", "fp16")),
    "torchscript": Backend("torchscript", ".torchscript.pt", None, "TorchScript, run by torch.jit.load",
                           _write_torchscript, open_torchscript, ("fp32", "fp16")),
    "pt": Backend("pt", ".pt", None, "a darknet-py checkpoint, loaded back by torch.load", _write_checkpoint,
                  open_checkpoint),
}


def backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ExportError(f"unknown export format {name!r}: expected one of {', '.join(BACKENDS)}") from None


__all__ = ["BACKENDS", "Backend", "INPUT_NAME", "Loaded", "backend", "open_checkpoint", "open_onnx",
           "open_torchscript"]
