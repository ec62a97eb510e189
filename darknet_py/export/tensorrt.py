"""TensorRT engines (fp16, int8) from darknet_py's ONNX graph, run on CUDA through torch tensors.

Written against the TensorRT 10 Python API (named I/O tensors, ``execute_async_v3``,
``build_serialized_network``): the graph is darknet_py's float32 ONNX export with a dynamic batch,
constant-folded and with Darknet's -inf maxpool padding folded into the MaxPool
(darknet_py.export.int8.lean_onnx), parsed by ``trt.OnnxParser``.

- ``precision="fp16"``: ``BuilderFlag.FP16``.
- ``precision="int8"``: ``BuilderFlag.INT8`` (and FP16 for what stays out of int8), calibrated by an
  ``IInt8EntropyCalibrator2`` fed with photos of a ``.data`` file (darknet_py.export.calibrate,
  prepared as detection prepares them) from CUDA torch tensors -- no pycuda.

In both, every layer of a head (the conv feeding a [yolo] layer and the [yolo] layer's own
sigmoid and selection) is constrained to ``head_precision`` (float32 by default) with
``OBEY_PRECISION_CONSTRAINTS``: 8-bit or 11-bit objectness would move scores across the
threshold. The engine is then run on photos and checked with darknet_py.export.verify (detections
matched against PyTorch's); only a checked engine is written (darknet_py.files.write_bytes).

An engine is specific to the GPU, TensorRT version and batch range it was built for.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checks import check_count, check_range
from ..defaults import DEFAULT_NMS, DEFAULT_THRESH
from ..errors import DataError, ExportError
from ..files import write_bytes
from ..graph import DarknetModel
from .calibrate import DEFAULT_CALIB_IMAGES, calibration_batches, listed_photos, load_photos
from .check import ExportReport, synthetic_image, writing
from .graphs import INPUT_NAME, check_model, eval_mode
from .int8 import INT8_MATCH_IOU, check_output, head_nodes, layer_of, lean_onnx
from .onnx import OPSET
from .verify import MATCH_IOU, Verification, verify_runner

NEEDS = "TensorRT needs an NVIDIA GPU with CUDA and the tensorrt package: pip install darknet-py-yolov3[tensorrt]"
PRECISIONS = ("fp16", "int8")
DEFAULT_CALIB_BATCH = 8
DEFAULT_WORKSPACE_GIB = 4.0
# An engine that keeps fewer of PyTorch's detections than this is refused.
DEFAULT_MIN_MATCHED = 0.5


def _require_tensorrt():
    """(tensorrt module): CUDA and the package, or the one ExportError saying what is needed,
    before any work."""
    if not torch.cuda.is_available():
        raise ExportError(f"{NEEDS} (torch sees no CUDA device)")
    try:
        import tensorrt as trt
    except ImportError as e:
        raise ExportError(f"{NEEDS} ({e})") from e
    if int(str(trt.__version__).split(".")[0]) < 10:
        raise ExportError(f"{NEEDS}>=10 (found tensorrt {trt.__version__}; the engine is built with TensorRT 10's API)")
    return trt


_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "INT8": torch.int8, "INT32": torch.int32,
                 "INT64": torch.int64, "BOOL": torch.bool}


def _torch_dtype(trt_dtype) -> torch.dtype:
    name = str(trt_dtype).rsplit(".", 1)[-1].upper()
    if name not in _TORCH_DTYPES:
        raise ExportError(f"TensorRT I/O tensor type {trt_dtype} has no torch equivalent here")
    return _TORCH_DTYPES[name]


class TensorRTRunner:
    """A deserialised engine as a darknet_py.export.verify runner: NCHW float32 NumPy (or a CUDA
    tensor) in, the raw heads out (NumPy float32, in the engine's output order: the ONNX outputs',
    which are the model's head order)."""

    def __init__(self, engine_bytes: bytes, device: int | str | torch.device | None = None):
        trt = _require_tensorrt()
        self.trt = trt
        self.device = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(self.logger)
            self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise ExportError("TensorRT cannot deserialise the engine (built for another GPU or TensorRT version?)")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if self.inputs != [INPUT_NAME]:
            raise ExportError(f"expected one engine input '{INPUT_NAME}', got {self.inputs}")

    def run_torch(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) tensor -> the heads as CUDA tensors (the engine's output types)."""
        dtype = _torch_dtype(self.engine.get_tensor_dtype(INPUT_NAME))
        x = x.to(self.device, dtype=dtype, non_blocking=True).contiguous()
        with torch.cuda.device(self.device):
            if not self.context.set_input_shape(INPUT_NAME, tuple(x.shape)):
                raise ExportError(f"the engine does not take input shape {tuple(x.shape)} (its batch range is fixed "
                                  "when it is built: max_batch=)")
            self.context.set_tensor_address(INPUT_NAME, x.data_ptr())
            outs = []
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                out = torch.empty(shape, dtype=_torch_dtype(self.engine.get_tensor_dtype(name)), device=self.device)
                self.context.set_tensor_address(name, out.data_ptr())
                outs.append(out)
            stream = torch.cuda.current_stream(self.device)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise ExportError("TensorRT failed to run the engine (execute_async_v3 returned False)")
            stream.synchronize()
        return outs

    def __call__(self, x) -> list[np.ndarray]:
        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return [o.float().cpu().numpy() for o in self.run_torch(t)]


def load_engine(path, device=None) -> TensorRTRunner:
    """A written engine file as a runner."""
    _require_tensorrt()
    with open(os.fspath(path), "rb") as f:
        return TensorRTRunner(f.read(), device)


def _calibrator_class(trt):
    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined]
        """Feeds prepared photo batches from CUDA torch tensors; the cache stays in memory."""

        def __init__(self, batches: Sequence[np.ndarray], device: torch.device):
            trt.IInt8EntropyCalibrator2.__init__(self)  # the bindings need the base constructed explicitly
            self.batches = list(batches)
            self.device = device
            self.i = 0
            self.current: torch.Tensor | None = None  # kept alive while TensorRT reads it
            self.cache: bytes | None = None

        def get_batch_size(self) -> int:
            return int(self.batches[0].shape[0])

        def get_batch(self, names):
            if self.i >= len(self.batches):
                return None
            self.current = torch.from_numpy(self.batches[self.i]).to(self.device).contiguous()
            self.i += 1
            torch.cuda.current_stream(self.device).synchronize()
            return [int(self.current.data_ptr())]

        def read_calibration_cache(self):
            return self.cache

        def write_calibration_cache(self, cache) -> None:
            self.cache = bytes(cache)

    return EntropyCalibrator


@dataclass
class TensorRTReport(ExportReport):
    precision: str = "fp16"
    head_precision: str = "fp32"
    head_layers: list[int] = field(default_factory=list)
    constrained_layers: int = 0        # TensorRT layers pinned to head_precision
    calib_images: int = 0
    max_batch: int = 1
    verification: Verification | None = None
    matched: int = 0
    missing: int = 0
    extra: int = 0
    match_iou: float = MATCH_IOU
    trt_version: str = ""
    gpu: str = ""

    @property
    def matched_fraction(self) -> float:
        n = self.matched + self.missing
        return 1.0 if n == 0 and self.extra == 0 else (self.matched / n if n else 0.0)

    def lines(self) -> list[str]:
        out = [f"wrote {self.path} (TensorRT {self.trt_version} engine, {self.precision}, {self.file_bytes / 1e6:.1f} "
               f"MB, for {self.gpu}, batch 1..{self.max_batch})"]
        for kind, items in (("input ", self.inputs), ("output", self.outputs)):
            for name, shape in items:
                out.append(f"  {kind} {name}: {' x '.join(str(d) for d in shape)}")
        out.append(f"  heads (layers {', '.join(map(str, self.head_layers))}) in {self.head_precision}: "
                   f"{self.constrained_layers} TensorRT layers constrained")
        if self.precision == "int8":
            out.append(f"  int8 calibrated (entropy 2) on {self.calib_images} photos")
        n = len(self.verification.photos) if self.verification else 0
        out.append(f"  on {n} photos: {self.matched} of {self.matched + self.missing} PyTorch detections matched "
                   f"({100 * self.matched_fraction:.1f} %, IoU >= {self.match_iou:g}), {self.extra} extra; largest "
                   f"head difference {self.max_abs_diff:.3g} ({self.max_rel_diff:.3g} relative)")
        out += [f"  {note}" for note in self.notes]
        return out


def _verify_photos(data, photos, n: int):
    if photos is not None:
        return [p if isinstance(p, tuple) else load_photos([p])[0] for p in photos]
    if data is None:
        return [("the synthetic sample", synthetic_image())]
    try:
        return load_photos(listed_photos(data, "valid", n))
    except DataError:  # no valid list: the train list's photos
        return load_photos(listed_photos(data, None, n))


def export_tensorrt(model: DarknetModel, path, *, precision: str = "fp16", data=None,
                    calib_images: int = DEFAULT_CALIB_IMAGES, calib_batch: int = DEFAULT_CALIB_BATCH,
                    max_batch: int = 1, head_precision: str = "fp32", workspace_gib: float = DEFAULT_WORKSPACE_GIB,
                    photos=None, verify_images: int = 8, thresh: float = DEFAULT_THRESH, nms: float = DEFAULT_NMS,
                    match_iou: float | None = None, min_matched: float = DEFAULT_MIN_MATCHED,
                    opset: int = OPSET) -> TensorRTReport:
    """Build a TensorRT engine of ``model`` at ``path`` and check it; see the module docstring.

    ``precision``: 'fp16' or 'int8' (``data``, a Darknet ``.data`` file, then required:
    ``calib_images`` photos of its train list, else valid, ``calib_batch`` at a time).
    ``max_batch``: the largest batch the engine takes (1..max_batch). ``head_precision``: 'fp32'
    or 'fp16' for the heads. ``photos``: what the engine is verified on (paths or (name, RGB));
    default ``verify_images`` of ``data``'s valid list, else the synthetic sample. ``match_iou``:
    default .99 (fp16) or darknet_py.export.int8.INT8_MATCH_IOU (int8); ``min_matched``: the share
    of PyTorch's detections the engine must keep, else ExportError and nothing written.
    """
    trt = _require_tensorrt()
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if head_precision not in ("fp32", "fp16"):
        raise ExportError(f"head_precision must be 'fp32' or 'fp16', got {head_precision!r}")
    if precision == "int8" and data is None:
        raise ExportError("an int8 engine needs calibration photos: data= a Darknet .data file")
    check_model(model)
    check_count("max_batch", max_batch, 1)
    check_count("calib_images", calib_images, 1)
    check_count("calib_batch", calib_batch, 1)
    check_count("verify_images", verify_images, 1)
    check_range("min_matched", min_matched, 0.0, 1.0)
    if match_iou is None:
        match_iou = INT8_MATCH_IOU if precision == "int8" else MATCH_IOU
    check_range("match_iou", match_iou, 0.0, 1.0)
    try:
        import onnx
        import onnxruntime.quantization as quantization
    except ImportError as e:
        raise ExportError(f"{NEEDS} (and onnx, onnxruntime: {e})") from e
    path = os.fspath(path)
    check_output(path)
    with eval_mode(model):
        batches = []
        if precision == "int8":
            batch = min(calib_batch, calib_images)
            batches = [b for b in calibration_batches(model, data, calib_images, batch) if len(b) == batch]
        verify_on = _verify_photos(data, photos, verify_images)
        with tempfile.TemporaryDirectory(prefix="darknet-py-trt.") as tmp:
            lean, base, _ = lean_onnx(onnx, quantization, model, tmp, opset)
            proto = onnx.load(lean)
            head_layers = sorted({i for i in map(layer_of, head_nodes(proto)) if i is not None})
            with open(lean, "rb") as f:
                graph = f.read()
            device = torch.device("cuda", torch.cuda.current_device())
            engine, constrained = _build(trt, graph, model, precision, head_precision, head_layers, max_batch,
                                         workspace_gib, batches, device)
            runner = TensorRTRunner(engine, device)
            verification = verify_runner(model, runner, verify_on, thresh=thresh, nms=nms, iou=match_iou)
            total = verification.total
            shape_in: list = ["batch", *model.netdef.input_shape]
            report = TensorRTReport(
                path, "tensorrt", base.opset, [(INPUT_NAME, shape_in)], base.outputs, len(engine),
                verification.max_abs_diff, verification.max_rel_diff, precision, [1],
                f"TensorRT {trt.__version__}", "PyTorch (float32)", float("nan"),
                precision=precision, head_precision=head_precision, head_layers=head_layers,
                constrained_layers=constrained, calib_images=sum(len(b) for b in batches),
                max_batch=max_batch, verification=verification, matched=total.matched,
                missing=total.missing, extra=total.extra, match_iou=match_iou,
                trt_version=str(trt.__version__), gpu=torch.cuda.get_device_name(device))
            if report.matched_fraction < min_matched:
                raise ExportError(f"{path}: the {precision} engine keeps {100 * report.matched_fraction:.1f} % of "
                                  f"PyTorch's detections on {len(verify_on)} photos (at least {100 * min_matched:g} "
                                  "% asked); nothing was written")
            with writing(path):
                write_bytes(path, engine)
    return report


def _build(trt, graph: bytes, model, precision, head_precision, head_layers, max_batch, workspace_gib, batches,
           device) -> tuple[bytes, int]:
    logger = trt.Logger(trt.Logger.WARNING)
    with torch.cuda.device(device):
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(graph):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT's ONNX parser rejects darknet_py's graph: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        config.set_flag(trt.BuilderFlag.FP16)
        shape = tuple(int(d) for d in model.netdef.input_shape)
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (1, *shape), (max_batch, *shape), (max_batch, *shape))
        config.add_optimization_profile(profile)
        calibrator = None
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            calib = builder.create_optimization_profile()  # calibration runs at the calibration batch
            b = int(batches[0].shape[0])
            calib.set_shape(INPUT_NAME, (b, *shape), (b, *shape), (b, *shape))
            config.set_calibration_profile(calib)
            calibrator = _calibrator_class(trt)(batches, device)
            config.int8_calibrator = calibrator
        dtype = trt.float32 if head_precision == "fp32" else trt.float16
        constrained = _constrain_heads(trt, network, head_layers, dtype)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ExportError(f"TensorRT could not build the {precision} engine (see its log above)")
        return bytes(serialized), constrained


def _constrain_heads(trt, network, head_layers: Sequence[int], dtype) -> int:
    """Pin every floating-point layer of the heads (named after darknet_py's ONNX nodes,
    '/model/layers.15/Conv', so by Darknet layer index) to ``dtype``; returns how many."""
    floats = (trt.float32, trt.float16)
    n = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer_of(layer.name) not in head_layers:
            continue
        outs = [layer.get_output(k) for k in range(layer.num_outputs)]
        if not outs or any(o.dtype not in floats for o in outs):
            continue  # shape and index arithmetic: no precision to choose
        layer.precision = dtype
        for k in range(layer.num_outputs):
            layer.set_output_type(k, dtype)
        n += 1
    if n == 0:
        raise ExportError("no TensorRT layer of the heads was found to keep in float (layer names changed?)")
    return n


__all__ = ["DEFAULT_CALIB_BATCH", "NEEDS", "PRECISIONS", "TensorRTReport", "TensorRTRunner", "export_tensorrt",
           "load_engine"]
