"""Every export format in one table: how to write it, and how to run a written file again.

``export`` (the CLI), the conversion report and tools/bench_export.py all go through
:data:`BACKENDS`: a format's ``write(model, path, options)`` makes and checks the file (each
module does its own runtime check right after writing), and ``open_file(path, model, options)``
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

from ..errors import ExportError, UsageError
from ..postprocess import DEFAULT_NMS, DEFAULT_THRESH, postprocess_decoded
from ..transforms import prepare_batch


@dataclass
class Loaded:
    """A written file, loaded in its runtime: exactly one of ``runner`` / ``detector`` is set."""

    runtime: str
    runner: Callable | None = None     # NCHW float32 -> [raw head arrays]
    detector: Callable | None = None   # HxWx3 uint8 RGB -> (boxes, scores, classes), photo pixels


@dataclass(frozen=True)
class Backend:
    name: str
    label: str                   # as messages name it
    suffix: str                  # of the default output name
    extra: str | None            # the pip extra that installs its packages (None: always there)
    description: str
    write: Callable              # (model, path, ExportOptions) -> ExportReport; see write_file
    open_file: Callable          # (path, model, ExportOptions) -> Loaded
    precisions: tuple[str, ...] = ("fp32",)
    offers: frozenset = frozenset()  # the ExportOptions it takes besides precision and sample

    def check(self, opts: ExportOptions) -> None:
        """Refuse, by name, an option this format does not take (before any model is loaded)."""
        _refuse(self.label, opts, set(self.offers), self.precisions)

    def write_file(self, model, path, opts: ExportOptions):
        self.check(opts)
        return self.write(model, path, opts)


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


def _open_graph(model, run: Callable, runtime: str, opts: ExportOptions) -> Loaded:
    if opts.nms:
        return Loaded(runtime, detector=_e2e_detector(model, run, opts.letterbox))
    if opts.decode:
        det = _decoded_detector(model, lambda x: run(x)[0], DEFAULT_THRESH if opts.thresh is None else opts.thresh,
                                DEFAULT_NMS if opts.iou is None else opts.iou)
        return Loaded(runtime, detector=det)
    return Loaded(runtime, runner=run)


def open_onnx(path, model, opts: ExportOptions) -> Loaded:
    sess, ort = _onnx_session(os.fspath(path))
    name = sess.get_inputs()[0].name
    dtype = np.float16 if opts.precision == "fp16" else None

    def run(x: np.ndarray):
        feed = x.astype(dtype) if dtype is not None and x.dtype == np.float32 else x
        return [np.asarray(o) for o in sess.run(None, {name: feed})]
    return _open_graph(model, run, f"onnxruntime {ort.__version__} CPUExecutionProvider", opts)


def open_torchscript(path, model, opts: ExportOptions) -> Loaded:
    m = torch.jit.load(os.fspath(path), map_location="cpu").eval()
    half = opts.precision == "fp16"

    def run(x: np.ndarray):
        t = torch.from_numpy(x)
        if half and t.is_floating_point():
            t = t.half()
        with torch.no_grad():
            out = m(t)
        return [o.float().numpy() if o.is_floating_point() else o.numpy()
                for o in ([out] if isinstance(out, torch.Tensor) else out)]
    return _open_graph(model, run, f"torch.jit.load (torch {torch.__version__})", opts)


def open_checkpoint(path, model, opts: ExportOptions) -> Loaded:
    from ..checkpoint import load_checkpoint
    m = load_checkpoint(os.fspath(path)).eval()

    def run(x: np.ndarray):
        with torch.inference_mode():
            return [o.float().numpy() for o in m(torch.from_numpy(x))]
    return Loaded(f"torch.load (torch {torch.__version__})", runner=run)


@dataclass
class ExportOptions:
    """What a user can ask of an export; each format takes the options it offers and refuses the
    others by name, before anything is written."""

    precision: str = "fp32"          # fp32, fp16, bf16, int8
    batch: int = 1
    dynamic: bool = False
    decode: bool = False
    nms: bool = False
    letterbox: bool = False
    max_det: int | None = None
    thresh: float | None = None
    iou: float | None = None
    opset: int | None = None
    calibration: object = None       # int8: a .data path (or float32 NCHW batches)
    calib_images: int | None = None
    keep_float: tuple[int, ...] = ()  # int8: Darknet layer indices kept float besides the heads
    min_layer_db: float | None = None  # int8: the sensitivity pass's threshold (None: its default)
    sample: np.ndarray | None = None

    def given(self) -> set[str]:
        """The options set away from their defaults."""
        base = ExportOptions()
        out = {k for k in ("batch", "dynamic", "decode", "nms", "letterbox", "max_det", "thresh", "iou", "opset",
                           "calib_images", "keep_float", "min_layer_db") if getattr(self, k) != getattr(base, k)}
        return out | ({"calibration"} if self.calibration is not None else set())


def _refuse(name: str, opts: ExportOptions, offers: set[str], precisions: tuple[str, ...]) -> None:
    extra = sorted(opts.given() - offers)
    if extra:
        key = extra[0]
        value = getattr(opts, key)
        shown = value if isinstance(value, (bool, int, float)) else str(value)
        err = UsageError(f"the {name} export does not take {key}={shown!r} (it takes "
                         f"{', '.join(sorted(offers)) or 'no options but the sample photo'})")
        err.option = (key, str(shown))
        raise err
    if opts.precision not in precisions:
        err = UsageError(f"the {name} export offers precision {', '.join(precisions)}, not "
                         f"precision={opts.precision!r}")
        err.option = ("precision", opts.precision)
        raise err
    if opts.precision == "int8" and opts.calibration is None:
        raise UsageError(f"an int8 {name} export needs calibration= (a .data file whose photos set its ranges)")


_GRAPH = {"batch", "dynamic", "decode", "nms", "letterbox", "max_det", "thresh", "iou"}


def _write_onnx(model, path, opts: ExportOptions):
    from .onnx import export_onnx
    if opts.precision == "int8":
        return _write_onnx_int8(model, path, opts)
    if opts.given() & _INT8:
        raise UsageError("calibration=, calib_images=, keep_float= and min_layer_db= apply to precision='int8'")
    from .onnx import OPSET
    # dynamic: batch, height and width (any multiple of the stride)
    return export_onnx(model, path, batch=opts.batch, dynamic_size=opts.dynamic, decode=opts.decode,
                       half=opts.precision == "fp16", sample=opts.sample, nms=opts.nms, letterbox=opts.letterbox,
                       max_det=opts.max_det, thresh=opts.thresh, iou=opts.iou,
                       opset=OPSET if opts.opset is None else opts.opset)


def _write_onnx_int8(model, path, opts: ExportOptions):
    from .calibrate import DEFAULT_CALIB_IMAGES
    from .int8 import export_onnx_int8
    graph = sorted(opts.given() & (_GRAPH | {"opset"}))
    if graph:
        err = UsageError(f"the int8 ONNX export is of the raw heads at a fixed size: it does not take "
                         f"{graph[0]}={getattr(opts, graph[0])!r}")
        err.option = (graph[0], str(getattr(opts, graph[0])))
        raise err
    photos = None if opts.sample is None else [("the sample image", opts.sample)]
    return export_onnx_int8(model, path, opts.calibration, opts.calib_images or DEFAULT_CALIB_IMAGES, photos=photos,
                            keep_float=opts.keep_float, **_min_db(opts))


def _min_db(opts: ExportOptions) -> dict:
    return {} if opts.min_layer_db is None else {"min_layer_db": opts.min_layer_db}


def _write_tensorrt(model, path, opts: ExportOptions):
    from .calibrate import DEFAULT_CALIB_IMAGES
    from .tensorrt import export_tensorrt
    photos = None if opts.sample is None else [("the sample image", opts.sample)]
    return export_tensorrt(model, path, precision=opts.precision, data=opts.calibration,
                           calib_images=opts.calib_images or DEFAULT_CALIB_IMAGES, max_batch=opts.batch, photos=photos)


def open_tensorrt(path, model, opts: ExportOptions) -> Loaded:
    from .tensorrt import load_engine
    runner = load_engine(os.fspath(path))
    return Loaded(f"TensorRT {runner.trt.__version__} (CUDA)", runner=runner)


def _write_torchscript(model, path, opts: ExportOptions):
    from .torchscript import export_torchscript
    return export_torchscript(model, path, batch=opts.batch, dynamic_size=opts.dynamic, decode=opts.decode,
                              half=opts.precision == "fp16",
                              sample=opts.sample, nms=opts.nms, letterbox=opts.letterbox, max_det=opts.max_det,
                              thresh=opts.thresh, iou=opts.iou)


def _write_checkpoint(model, path, opts: ExportOptions):
    from .checkpoint import export_checkpoint
    return export_checkpoint(model, path, sample=opts.sample)


def _write_tflite(model, path, opts: ExportOptions):
    from .tflite import export_tflite
    return export_tflite(model, path, quantize=opts.precision, calibration=opts.calibration,
                         calib_images=opts.calib_images, float_layers=opts.keep_float, sample=opts.sample,
                         **_min_db(opts))


def open_tflite(path, model, opts: ExportOptions) -> Loaded:
    from .tflite import tflite_runner
    return Loaded("LiteRT interpreter (ai-edge-litert)", runner=tflite_runner(os.fspath(path)))


def _runtime_precision(opts: ExportOptions) -> tuple[str, bool]:
    """OpenVINO's and ncnn's (precision, half): fp16 is float16 weights computed in float32 (this
    module's fp16 everywhere); bf16 the runtime's bf16 arithmetic."""
    return ("bf16", False) if opts.precision == "bf16" else ("f32", opts.precision == "fp16")


def _write_openvino(model, path, opts: ExportOptions):
    from .openvino import export_openvino
    precision, half = _runtime_precision(opts)
    return export_openvino(model, path, precision=precision, half=half, sample=opts.sample)


def open_openvino(path, model, opts: ExportOptions) -> Loaded:
    from .openvino import _import_openvino, compile_ir, runner_of
    from .runtimes import weights_beside
    ov = _import_openvino()
    precision, _ = _runtime_precision(opts)
    xml = os.fspath(path)
    return Loaded(f"OpenVINO {ov.__version__.split('-')[0]} CPU ({precision})",
                  runner=runner_of(compile_ir(ov, xml, weights_beside(xml, ".xml"), precision)))


def _write_ncnn(model, path, opts: ExportOptions):
    from .ncnn import export_ncnn
    precision, half = _runtime_precision(opts)
    return export_ncnn(model, path, precision=precision, half=half, sample=opts.sample)


def open_ncnn(path, model, opts: ExportOptions) -> Loaded:
    from .ncnn import _import_ncnn, load_net, runner_of
    from .runtimes import weights_beside
    ncnn, _ = _import_ncnn()
    precision, _ = _runtime_precision(opts)
    param = os.fspath(path)
    net = load_net(ncnn, param, weights_beside(param, ".param"), precision)
    return Loaded(f"ncnn {getattr(ncnn, '__version__', '')} ({precision})".replace("  ", " "),
                  runner=runner_of(ncnn, net, len(model.heads)))


def companions(name: str, path: str) -> list[str]:
    """The files a format writes beside ``path`` (OpenVINO's and ncnn's weights: NAME.bin)."""
    from .runtimes import weights_beside
    graph = {"openvino": ".xml", "ncnn": ".param"}.get(name)
    return [weights_beside(path, graph)] if graph and path.endswith(graph) else []


_INT8 = frozenset({"calibration", "calib_images", "keep_float", "min_layer_db"})

BACKENDS: dict[str, Backend] = {
    "onnx": Backend("onnx", "ONNX", ".onnx", "export", "ONNX, run by onnxruntime", _write_onnx, open_onnx,
                    ("fp32", "fp16", "int8"), frozenset(_GRAPH | {"opset"} | _INT8)),
    "torchscript": Backend("torchscript", "TorchScript", ".torchscript.pt", None, "TorchScript, run by torch.jit.load",
                           _write_torchscript, open_torchscript, ("fp32", "fp16"), frozenset(_GRAPH)),
    "pt": Backend("pt", "checkpoint", ".pt", None, "a darknet-py checkpoint, loaded back by torch.load",
                  _write_checkpoint, open_checkpoint),
    "tflite": Backend("tflite", "TFLite", ".tflite", "tflite", "TFLite, written from the layer graph, run by LiteRT",
                      _write_tflite, open_tflite, ("fp32", "fp16", "int8"), _INT8),
    # distinct default names: both write NAME.bin beside their graph
    "openvino": Backend("openvino", "OpenVINO", ".openvino.xml", "openvino",
                        "OpenVINO IR (.xml + .bin), run by OpenVINO on the CPU", _write_openvino, open_openvino,
                        ("fp32", "fp16", "bf16")),
    "ncnn": Backend("ncnn", "ncnn", ".ncnn.param", "ncnn", "ncnn (.param + .bin), converted by pnnx, run by ncnn",
                    _write_ncnn, open_ncnn, ("fp32", "fp16", "bf16")),
    # an engine for the GPU it was built on; batch= is its largest batch
    "tensorrt": Backend("tensorrt", "TensorRT", ".engine", "tensorrt",
                        "TensorRT engine (fp16, int8) from the ONNX graph, on an NVIDIA GPU", _write_tensorrt,
                        open_tensorrt, ("fp16", "int8"), frozenset({"batch", "calibration", "calib_images"})),
}


def backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ExportError(f"unknown export format {name!r}: expected one of {', '.join(BACKENDS)}") from None


__all__ = ["BACKENDS", "Backend", "ExportOptions", "Loaded", "backend", "companions", "open_checkpoint", "open_onnx",
           "open_tflite", "open_torchscript"]
