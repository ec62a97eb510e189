"""Export a DarknetModel to ONNX or TorchScript, and check the file against PyTorch.

Two graphs can be written:

- raw (default): one output per ``[yolo]`` layer, ``yolo_<layer index>``, N x A*(5+C) x h x w,
  exactly what ``model(x)`` returns (Darknet's ``l.output``: logistic on x, y, objectness and
  classes; w, h raw);
- decoded (``decode=True``): one output ``detections``, N x M x (5+C), rows in
  ``darknet_py.decode.decode``'s order (heads in layer order, cell-major then anchor), columns
  x1, y1, x2, y2 in network-input pixels, objectness, objectness * sigmoid(class) (Darknet's
  ``prob``, the value a consumer thresholds). See :class:`DecodedHeads`.

The input is ``images``: N x 3 x H x W float RGB in [0, 1], letterboxed to the network size
(``darknet_py.transforms.letterbox``); float16 for ``half=True``. Thresholds, NMS and the
letterbox inversion are not in the graph (Darknet's per-class NMS is data-dependent).

What is traced is not the model's ConvBlocks (whose refold check reads ``data_ptr`` and
``_version``, which tracing and torch.export cannot follow) but the same network with each conv
block replaced by its folded conv + activation (:class:`_FusedConv`); every export is compared
with the model itself. ONNX goes through the legacy TorchScript-based exporter (``dynamo=False``),
the reliable path here: it writes opset 17 as asked. The dynamo exporter also handles this lean
graph (checked on yolov3-tiny with torch 2.13) but writes opset 18 at least.

TorchScript files hold the trace's constants on the device the model was on; load them elsewhere
with ``torch.jit.load(path, map_location=...)`` (checked both ways between CPU and CUDA).

Right after writing, the file is run (onnxruntime on the CPU or, when available and the model is
on CUDA, onnxruntime's CUDA provider; ``torch.jit.load`` for TorchScript) on a letterboxed
sample image and compared with the PyTorch model; a difference above the tolerance raises
:class:`ExportError` (the file is left in place for inspection).
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CfgError, DarknetPyError
from .graph import DarknetModel
from .layers.convolutional import ConvBlock, binarize_input
from .layers.yolo import YoloSpec

OPSET = 17

# Largest accepted max|export - PyTorch| / max|PyTorch| per output.
# float32: measured 5e-5 on yolov3-416 with calibrated random weights (onnxruntime's conv
# kernels sum in another order than oneDNN's); 1e-4 keeps that margin and catches any real bug.
RTOL_FP32 = 1e-4
# float16: the reference is the PyTorch model in float16 on the same device. Both runtimes round
# every intermediate tensor to 11 significant bits but at different places (fused kernels,
# accumulation order), and a 100-layer net amplifies that: yolov3-416 with random weights measured
# 2.7e-2 between onnxruntime-fp16 and torch-fp16 (and 8e-2 between either and float32). A wrong
# graph is off by O(1), so 5e-2 still separates a faithful export from a broken one.
RTOL_FP16 = 5e-2

INPUT_NAME = "images"
DECODED_NAME = "detections"


class ExportError(DarknetPyError):
    """Export impossible (missing package, unsupported precision) or its check failed."""


# --------------------------------------------------------------------------- decoded graph


class DecodedHeads(nn.Module):
    """A DarknetModel followed by the YOLOv3 box decode, as plain tensor code.

    ``forward(x)`` -> (N, M, 5 + C): x1, y1, x2, y2 in network pixels, objectness,
    objectness * sigmoid(class). For cell (row, col) of an h x w head and anchor (pw, ph)::

        cx = (col + sigma(tx)) * net_w / w     cy = (row + sigma(ty)) * net_h / h
        bw = pw * exp(tw)                      bh = ph * exp(th)
        x1, y1, x2, y2 = cx - bw/2, cy - bh/2, cx + bw/2, cy + bh/2

    The head outputs already hold sigma(tx), sigma(ty), sigma(obj), sigma(cls), with AlexeyAB's
    ``scale_x_y`` already applied to x, y (as Darknet's ``l.output``); a ``new_coords=1`` head
    decodes ``bw = 4 * pw * tw^2`` (``bh`` likewise) instead of the exponential. Grids, strides
    and anchors are non-persistent buffers in the model's dtype and device (they follow
    ``.to()``/``.half()``; a trace holds them as constants); the loop over heads is over the
    cfg's fixed list, unrolled once per head, so a trace or ONNX graph holds no loop.
    """

    def __init__(self, model: DarknetModel):
        super().__init__()
        self.model = model
        others = [s for s in model.head_specs if not isinstance(s, YoloSpec)]
        if others or not model.head_specs:
            what = (f"a {type(others[0]).__name__} head (layer {others[0].index}, cfg line {others[0].line})"
                    if others else "no detection head")
            raise CfgError(f"--decode exports [yolo] heads only; this network has {what}: export the raw outputs "
                           "(without --decode)", path=model.netdef.path)
        net_w, net_h = model.input_size
        self.net_w, self.net_h = int(net_w), int(net_h)
        self.dims: List[Tuple[int, int, int, int]] = []  # (A, C, h, w) per head
        self.new_coords: List[bool] = []  # per head: [yolo] new_coords=1
        ref = next(iter(model.parameters()), None)  # buffers in the model's dtype (float16 stays float16)
        like = dict(dtype=ref.dtype, device=ref.device) if ref is not None else dict(dtype=torch.float32)
        for k, (spec, idx) in enumerate(zip(model.yolo_specs, model.heads)):
            _, h, w = model.netdef.shapes[idx]
            a = len(spec.mask)
            self.dims.append((a, spec.classes, h, w))
            self.new_coords.append(bool(getattr(spec, "new_coords", False)))
            col = torch.arange(w, dtype=torch.float32).view(1, 1, w, 1).expand(1, h, w, 1)
            row = torch.arange(h, dtype=torch.float32).view(1, h, 1, 1).expand(1, h, w, 1)
            grid = torch.stack((col, row), -1)  # (1, h, w, 1, 2): col, row
            stride = torch.tensor([net_w / w, net_h / h], dtype=torch.float32)
            anchors = torch.tensor(spec.masked_anchors, dtype=torch.float32).view(1, 1, 1, a, 2)
            self.register_buffer(f"grid{k}", grid.contiguous().to(**like), persistent=False)
            self.register_buffer(f"stride{k}", stride.to(**like), persistent=False)
            self.register_buffer(f"anchors{k}", anchors.to(**like), persistent=False)
        self.train(model.training)  # a new Module starts in training mode; follow the model's

    @property
    def num_rows(self) -> int:
        return sum(a * h * w for a, _, h, w in self.dims)

    def decode(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Head outputs (as ``model(x)`` returns them) -> (N, M, 5 + C)."""
        parts = []
        for k, out in enumerate(outputs):
            a, c, h, w = self.dims[k]
            # (N, A*(5+C), h, w) -> (N, h, w, A, 5+C): rows cell-major then anchor, as decode()
            p = out.reshape(-1, a, 5 + c, h, w).permute(0, 3, 4, 1, 2)
            xy = (p[..., 0:2] + getattr(self, f"grid{k}")) * getattr(self, f"stride{k}")
            twh = p[..., 2:4]
            if self.new_coords[k]:  # AlexeyAB's get_yolo_box: w = x_w^2 * 4 * anchor_w
                half_wh = twh * twh * getattr(self, f"anchors{k}") * 2.0
            else:
                half_wh = torch.exp(twh) * getattr(self, f"anchors{k}") * 0.5
            obj = p[..., 4:5]
            rows = torch.cat((xy - half_wh, xy + half_wh, obj, obj * p[..., 5:]), -1)
            parts.append(rows.reshape(-1, h * w * a, 5 + c))
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.model(x))


class _RawHeads(nn.Module):
    """The model with a tuple output (torch.jit.trace wants tuples, not lists)."""

    def __init__(self, model: DarknetModel):
        super().__init__()
        self.model = model
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.model(x))


# --------------------------------------------------------------------------- report


Shape = List[Union[int, str]]


@dataclass
class ExportReport:
    path: str
    format: str                      # "onnx" or "torchscript"
    opset: Optional[int]             # None for TorchScript
    inputs: List[Tuple[str, Shape]]  # (name, shape with 'batch' for a dynamic batch)
    outputs: List[Tuple[str, Shape]]
    file_bytes: int
    max_abs_diff: float              # against PyTorch on the sample image, all outputs and checked batches
    max_rel_diff: float              # max|diff| / max|reference| per output (decoded: per column group), largest
    dtype: str                       # "float32" or "float16"
    checked_batches: List[int] = field(default_factory=list)
    runtime: str = ""                # what ran the file for the check
    reference: str = ""              # what it was compared with
    tolerance: float = 0.0           # the relative tolerance that applied
    fp32_rel_diff: Optional[float] = None  # half only: largest relative difference to the float32 model

    def lines(self) -> List[str]:
        fmt = "ONNX" if self.format == "onnx" else "TorchScript"
        head = f"wrote {self.path} ({fmt}"
        if self.opset is not None:
            head += f", opset {self.opset}"
        head += f", {self.dtype}, {self.file_bytes / 1e6:.1f} MB)"
        out = [head]
        for kind, items in (("input ", self.inputs), ("output", self.outputs)):
            for name, shape in items:
                out.append(f"  {kind} {name}: {' x '.join(str(d) for d in shape)}")
        batches = ", ".join(str(b) for b in self.checked_batches)
        out.append(f"  largest difference from {self.reference or 'PyTorch'} on the sample image "
                   f"({self.runtime}, batch {batches}): {self.max_abs_diff:.3g} absolute, "
                   f"{self.max_rel_diff:.3g} relative (tolerance {self.tolerance:g})")
        if self.fp32_rel_diff is not None:
            out.append(f"  largest relative difference from the float32 PyTorch model: {self.fp32_rel_diff:.3g}")
        return out


# --------------------------------------------------------------------------- helpers


def synthetic_image(width: int = 640, height: int = 480) -> np.ndarray:
    """A deterministic HxWx3 uint8 RGB test picture: gradients, rectangles and a disc."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), (xx * 3 + yy * 5) % 256],
                   -1).astype(np.uint8)
    rng = np.random.default_rng(1234)
    for _ in range(10):
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        w, h = int(rng.integers(width // 16, width // 4)), int(rng.integers(height // 16, height // 4))
        img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
    disc = (xx - width * 0.6) ** 2 + (yy - height * 0.4) ** 2 < (min(width, height) * 0.15) ** 2
    img[disc] = (240, 200, 30)
    return img


def sample_input(model: DarknetModel, sample: Optional[np.ndarray] = None) -> torch.Tensor:
    """(1, C, H, W) float32: the sample (or the synthetic picture) letterboxed to the network."""
    from .transforms import letterbox

    img = synthetic_image() if sample is None else np.asarray(sample)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ExportError(f"sample must be an HxWx3 uint8 RGB array, got {img.dtype} {tuple(img.shape)}")
    net_w, net_h = model.input_size
    x, _ = letterbox(img, net_w, net_h, device="cpu")
    channels = model.netdef.net.channels
    if channels != 3:  # not an RGB network: the grey picture on every channel
        x = x.mean(0, keepdim=True).expand(channels, -1, -1)
    return x[None].contiguous()


def _batch_of(x: torch.Tensor, n: int) -> torch.Tensor:
    """n different images from one (flips and inversions), so batch-mixing bugs show."""
    variants = [x, torch.flip(x, [3]), 1.0 - x, torch.flip(x, [2]), torch.flip(1.0 - x, [2, 3])]
    return torch.cat([variants[i % len(variants)] for i in range(n)], 0)


def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


class _FusedConv(nn.Module):
    """ConvBlock's inference path (folded conv + activation) with the folded tensors as parameters.

    ConvBlock keeps them in non-persistent buffers, which tracing inlines as graph constants
    (slow to export, and ONNX tools expect initializers) while the unfused conv/BN tensors would
    ride along in a TorchScript file. Built from a fused ConvBlock, sharing its tensors; every
    export is compared against the ConvBlock path itself.
    """

    def __init__(self, block: ConvBlock):
        super().__init__()
        self.weight = nn.Parameter(block.fused_weight.detach().contiguous(), requires_grad=False)
        self.bias = nn.Parameter(block.fused_bias.detach(), requires_grad=False)
        conv = block.conv
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.binarize_input, self.blur = block.binarize_input, block.blur  # xnor=1; antialiasing's stride blur
        self.act = block.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.binarize_input:
            x = binarize_input(x)
        y = self.act(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups))
        return y if self.blur is None else self.blur(y)


def _prepared(model: DarknetModel, half: bool) -> Tuple[DarknetModel, DarknetModel]:
    """(reference, lean).

    reference: the model itself (float32; run as the user has it, NHWC or not) or, for
    ``half``, a float16 NCHW copy; lean: the same network with each ConvBlock replaced by a
    :class:`_FusedConv` holding its folded tensors in contiguous NCHW (NHWC is a runtime choice
    of the eager model, not part of the exported graph). Nothing else is copied: the 240 MB of a
    yolov3 are not duplicated, and the model is left as it was (only its fold cache is refreshed).
    """
    ref = model
    if half:
        ref = copy.deepcopy(model).to_channels_last(False).half().eval()
    with torch.no_grad():
        for mod in ref.modules():
            if isinstance(mod, ConvBlock):
                mod.fuse()  # what the eager forward does whenever the weights changed
    lean = copy.copy(ref)  # shares netdef and the routing tables; gets its own module table
    lean._modules = dict(ref._modules)
    lean.layers = nn.ModuleList([_FusedConv(layer) if isinstance(layer, ConvBlock) else layer for layer in ref.layers])
    lean.channels_last = False
    lean.training = False
    return ref, lean


def _check_model(model) -> None:
    if not isinstance(model, DarknetModel):
        raise ExportError(f"expected a darknet_py DarknetModel, got {type(model).__name__}")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise ExportError(f"expected a float32 model, got {', '.join(sorted(map(str, dtypes)))}; export the float32 "
                          "model (half=True makes the float16 file)")


@contextlib.contextmanager
def _writing(path: str):
    try:
        yield
    except (OSError, RuntimeError) as e:  # torch.jit.save reports a missing folder as a RuntimeError
        raise ExportError(f"{path}: cannot write the export: {e}") from e


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Inference semantics for the export and its reference runs; the caller's mode is restored."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _target(m: DarknetModel, decode: bool) -> nn.Module:
    # eval() on the wrapper too: a new Module is in training mode, and the ONNX exporter restores
    # the wrapper's mode recursively after export (which would put the BN path back on).
    return (DecodedHeads(m) if decode else _RawHeads(m)).eval()


def _output_names(m: DarknetModel, decode: bool) -> List[str]:
    return [DECODED_NAME] if decode else [f"yolo_{i}" for i in m.heads]


def _check_batch(batch: int) -> int:
    if int(batch) != batch or batch < 1:
        raise ExportError(f"batch must be a positive integer, got {batch!r}")
    return int(batch)


@contextlib.contextmanager
def _half_on_cpu_errors(x: torch.Tensor):
    """Older CPU builds of PyTorch have no float16 convolution: say so, and what to do."""
    try:
        yield
    except RuntimeError as e:
        if x.dtype == torch.float16 and x.device.type == "cpu":
            raise ExportError(f"PyTorch cannot run this model in float16 on the CPU ({e}); export with "
                              "half=True from a CUDA model (load(..., device='cuda'))") from e
        raise


def _reference(target: nn.Module, x: torch.Tensor) -> List[np.ndarray]:
    with torch.no_grad(), _half_on_cpu_errors(x):
        out = target(x)
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    return [o.detach().float().cpu().numpy() for o in outs]


def _column_groups(name: str, array: np.ndarray):
    """What is compared at one scale: the decoded rows' boxes (pixels), objectness and class
    scores each on their own (one relative error over all columns would let a wrong score hide
    under pixel coordinates in the hundreds); a raw head as a whole."""
    if name == DECODED_NAME:
        return [(f"{name}[x1..y2]", array[..., :4]), (f"{name}[objectness]", array[..., 4:5]),
                (f"{name}[class scores]", array[..., 5:])]
    return [(name, array)]


def _compare(got: Sequence[np.ndarray], ref: Sequence[np.ndarray], names: Sequence[str]) -> Tuple[float, float]:
    if len(got) != len(ref):
        raise ExportError(f"the export returned {len(got)} outputs, PyTorch {len(ref)}")
    max_abs = max_rel = 0.0
    pairs = []
    for g, r, name in zip(got, ref, names):
        g = np.asarray(g, dtype=np.float32)
        if g.shape != r.shape:
            raise ExportError(f"output {name}: the export gives shape {g.shape}, PyTorch {r.shape}")
        pairs += [(part, gp, rp) for (part, gp), (_, rp) in zip(_column_groups(name, g), _column_groups(name, r))]
    for name, g, r in pairs:
        both = np.isfinite(g) & np.isfinite(r)
        if (~both & ~(g == r)).any():  # a NaN, or an infinity on one side only (same infinities are equal)
            diff = math.inf
        else:
            diff = float(np.abs(g[both] - r[both]).max()) if both.any() else 0.0
        scale = float(np.abs(r[both]).max()) if both.any() else 0.0
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf))
    return max_abs, max_rel


def _check_tolerance(report: ExportReport) -> ExportReport:
    if not report.max_rel_diff <= report.tolerance:
        raise ExportError(f"{report.path}: the export differs from PyTorch by {report.max_rel_diff:.3g} relative "
                          f"({report.max_abs_diff:.3g} absolute) on the sample image, above the tolerance "
                          f"{report.tolerance:g}; the file was left in place for inspection")
    return report


def _dtype_name(half: bool) -> str:
    return "float16" if half else "float32"


def _fp32_rel(model: DarknetModel, x: torch.Tensor, decode: bool, got: Sequence[np.ndarray]) -> float:
    m, _ = _prepared(model, half=False)
    ref = _reference(_target(m, decode), x.float())
    names = [DECODED_NAME] if decode else [str(i) for i in range(len(ref))]
    return _compare(got, ref, names)[1]


# --------------------------------------------------------------------------- ONNX


def _import_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ExportError(f"ONNX export needs the onnx and onnxruntime packages ({e}); "
                          "pip install onnx onnxruntime") from e
    return onnx, onnxruntime


def _onnx_shapes(values) -> List[Tuple[str, Shape]]:
    out = []
    for v in values:
        dims = [d.dim_param if d.dim_param else int(d.dim_value) for d in v.type.tensor_type.shape.dim]
        out.append((v.name, dims))
    return out


def _output_shapes(m: DarknetModel, target: nn.Module, decode: bool, lead: Union[int, str]) -> List[Shape]:
    if decode:
        n_cols = 5 + (m.yolo_specs[0].classes if m.yolo_specs else 0)
        return [[lead, target.num_rows, n_cols]]
    return [[lead, *m.netdef.shapes[i]] for i in m.heads]


def _set_output_shapes(proto, shapes: Sequence[Shape]) -> None:
    for value, shape in zip(proto.graph.output, shapes):
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for d in shape:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = int(d)


def _ort_session(ort, path: str, device: torch.device):
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(path, opts, providers=providers), providers[0]
    except Exception as e:  # onnxruntime raises its own exception types
        raise ExportError(f"{path}: onnxruntime cannot load the export: {e}") from e


_SYMBOLICS_REGISTERED = False


def _register_symbolics() -> None:
    """ONNX has no expm1 (Darknet's elu/selu use it here); export it as Exp(x) - 1, which is the
    formula of Darknet's C (``exp(x)-1``). Registered once, for opset 15+ (CastLike)."""
    global _SYMBOLICS_REGISTERED
    if _SYMBOLICS_REGISTERED:
        return

    def expm1(g, x):
        one = g.op("CastLike", g.op("Constant", value_t=torch.tensor(1.0)), x)
        return g.op("Sub", g.op("Exp", x), one)

    torch.onnx.register_custom_op_symbolic("aten::expm1", expm1, 15)
    _SYMBOLICS_REGISTERED = True


def export_onnx(model: DarknetModel, path, *, batch: int = 1, dynamic: bool = False, decode: bool = False,
                half: bool = False, opset: int = OPSET, sample: Optional[np.ndarray] = None) -> ExportReport:
    """Write ``model`` as ONNX at ``path`` and check it with onnxruntime; see the module docstring.

    ``batch``: the batch size of the traced input (the fixed batch unless ``dynamic``);
    ``dynamic``: a symbolic ``batch`` dimension on the input and every output (checked at
    ``batch`` and at 3); ``decode``: one ``detections`` output (:class:`DecodedHeads`) instead of
    the raw heads; ``half``: float16 weights, input and outputs; ``sample``: an HxWx3 uint8 RGB
    photo for the check (None: a synthetic picture).
    """
    onnx, ort = _import_onnx()
    _check_model(model)
    batch = _check_batch(batch)
    if opset < 15:
        raise ExportError(f"opset {opset} is not supported: use 15 or later (default {OPSET})")
    with _eval_mode(model):
        return _export_onnx(onnx, ort, model, os.fspath(path), batch, dynamic, decode, half, int(opset), sample)


def _plan(model, decode: bool, half: bool, sample):
    """What both exporters need: the prepared model, the reference module (darknet_py's own
    inference path), the module traced (the same arithmetic with folded tensors as parameters),
    output names, the letterboxed sample, device and dtype."""
    m, lean = _prepared(model, half)
    return (m, _target(m, decode), _target(lean, decode), _output_names(m, decode), sample_input(model, sample),
            _model_device(m), torch.float16 if half else torch.float32)


def _export_onnx(onnx, ort, model, path, batch, dynamic, decode, half, opset, sample) -> ExportReport:
    m, target, exported, names, x1, device, dtype = _plan(model, decode, half, sample)
    x = _batch_of(x1, batch).to(device=device, dtype=dtype)
    dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None
    if dynamic:
        dynamic_axes = {n: {0: "batch"} for n in [INPUT_NAME] + names}
    _register_symbolics()
    buf = io.BytesIO()  # all in memory: one serialisation instead of write, read, write (240 MB for yolov3)
    with warnings.catch_warnings():
        # The trace freezes spatial sizes (Maxpool reads x.shape): intended, the input size is fixed.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*[Cc]onstant folding.*")
        with torch.no_grad():
            # Legacy exporter on purpose (see the module docstring).
            torch.onnx.export(exported, (x,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    model_bytes = buf.getvalue()
    del buf
    proto = onnx.load_from_string(model_bytes)
    # After a padded [maxpool] the legacy exporter's shape inference loses the head sizes (its pads
    # come from a reversed Slice that is not constant-folded) and names them 'Whereyolo_16_dim_0'
    # and the like; the shapes are known, so state them. The full check below runs ONNX shape
    # inference against them, so a wrong one would be rejected.
    lead: Union[int, str] = "batch" if dynamic else batch
    expected = _output_shapes(m, target, decode, lead)
    if [shape for _, shape in _onnx_shapes(proto.graph.output)] != expected:
        _set_output_shapes(proto, expected)
        model_bytes = proto.SerializeToString()
    inputs, outputs = _onnx_shapes(proto.graph.input), _onnx_shapes(proto.graph.output)
    del proto
    try:
        onnx.checker.check_model(model_bytes, full_check=True)
    except Exception as e:
        raise ExportError(f"{path}: onnx.checker rejects the export: {e}") from e
    with _writing(path), open(path, "wb") as f:
        f.write(model_bytes)

    del model_bytes
    sess, provider = _ort_session(ort, path, device)  # from the file: what a consumer will load
    batches = [batch] + ([3] if dynamic and batch != 3 else [])
    max_abs = max_rel = 0.0
    got_first: List[np.ndarray] = []
    for b in batches:
        xb = x if b == batch else _batch_of(x1, b).to(device=device, dtype=dtype)
        try:
            got = sess.run(names, {INPUT_NAME: xb.cpu().numpy()})
        except Exception as e:
            msg = str(e)
            if half and ("NOT_IMPLEMENTED" in msg or "Could not find an implementation" in msg):
                raise ExportError(f"{path}: this onnxruntime ({ort.__version__}, {provider}) has no float16 kernel "
                                  f"for an operator of the graph ({msg.splitlines()[0]}); run float16 exports "
                                  "with onnxruntime-gpu on CUDA, or export in float32") from e
            raise ExportError(f"{path}: onnxruntime failed on the export: {msg}") from e
        ref = _reference(target, xb)
        a, r = _compare(got, ref, names)
        max_abs, max_rel = max(max_abs, a), max(max_rel, r)
        if b == batch:
            got_first = got
    report = ExportReport(path, "onnx", int(opset), inputs, outputs, os.path.getsize(path), max_abs, max_rel,
                          _dtype_name(half), batches, f"onnxruntime {ort.__version__} {provider}",
                          f"PyTorch ({_dtype_name(half)})", RTOL_FP16 if half else RTOL_FP32)
    if half:
        report.fp32_rel_diff = _fp32_rel(model, x, decode, got_first)
    return _check_tolerance(report)


# --------------------------------------------------------------------------- TorchScript


def export_torchscript(model: DarknetModel, path, *, batch: int = 1, decode: bool = False, half: bool = False,
                       sample: Optional[np.ndarray] = None) -> ExportReport:
    """Write ``model`` as a traced TorchScript archive (``torch.jit.load`` needs no darknet_py).

    The trace is checked by torch.jit (a second trace at batch 3 must give the same graph: the
    batch is free, the input size fixed); the saved file is then loaded back and compared with
    the PyTorch model at ``batch`` and at 3. Raw: a tuple of head tensors; decoded: one tensor.
    """
    _check_model(model)
    batch = _check_batch(batch)
    with _eval_mode(model):
        return _export_torchscript(model, os.fspath(path), batch, decode, half, sample)


def _export_torchscript(model, path, batch, decode, half, sample) -> ExportReport:
    m, target, exported, names, x1, device, dtype = _plan(model, decode, half, sample)
    x = _batch_of(x1, batch).to(device=device, dtype=dtype)
    other = 3 if batch != 3 else 1
    x_other = _batch_of(x1, other).to(device=device, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.no_grad(), _half_on_cpu_errors(x):
            try:
                traced = torch.jit.trace(exported, (x,), check_trace=True, check_inputs=[(x_other,)],
                                         check_tolerance=RTOL_FP16 if half else RTOL_FP32)
            except torch.jit.TracingCheckError as e:
                raise ExportError(f"torch.jit.trace does not reproduce the model: {e}") from e
    with _writing(path):
        torch.jit.save(traced, path)
    del traced

    loaded = torch.jit.load(path, map_location=device)
    loaded.eval()
    max_abs = max_rel = 0.0
    batches = [batch, other]
    for xb in (x, x_other):
        with torch.no_grad():
            out = loaded(xb)
        got = [o.float().cpu().numpy() for o in ([out] if isinstance(out, torch.Tensor) else out)]
        a, r = _compare(got, _reference(target, xb), names)
        max_abs, max_rel = max(max_abs, a), max(max_rel, r)
        if xb is x:
            got_first = got
    c, h, w = model.netdef.input_shape
    inputs = [(INPUT_NAME, ["batch", c, h, w])]
    outputs = list(zip(names, _output_shapes(m, target, decode, "batch")))
    report = ExportReport(path, "torchscript", None, inputs, outputs, os.path.getsize(path), max_abs, max_rel,
                          _dtype_name(half), batches, f"torch.jit.load (torch {torch.__version__}, {device})",
                          f"PyTorch ({_dtype_name(half)})", RTOL_FP16 if half else RTOL_FP32)
    if half:
        report.fp32_rel_diff = _fp32_rel(model, x, decode, got_first)
    return _check_tolerance(report)


__all__ = ["DECODED_NAME", "DecodedHeads", "ExportError", "ExportReport", "INPUT_NAME", "OPSET", "RTOL_FP16",
           "RTOL_FP32", "export_onnx", "export_torchscript", "sample_input", "synthetic_image"]
