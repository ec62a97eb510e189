"""ncnn export (``.param`` + ``.bin``), converted by pnnx from a TorchScript trace, run by ncnn's
Python runtime right after conversion and checked on photos (darknet_py.export.verify).

The graph is darknet_py's raw-heads graph (folded convolutions, darknet_py.export.graphs) with
the layers whose PyTorch form has no ncnn counterpart rewritten in ops that have one, each with
the same arithmetic:

- ``[yolo]``: ``where(mask, sigmoid(x), x)`` becomes ``x * keep + sigmoid(x) * (1 - keep)``
  with 0/1 per-channel constants (exact: a product with 1 or 0 and a sum with 0 round nothing);
  scale_x_y as ``x * a + b`` per channel (a = 1, b = 0 off the x, y channels).
- ``[upsample]``: ``repeat_interleave`` becomes nearest ``interpolate`` (ncnn Interp), the same
  copies.
- ``[maxpool]``'s padding: Darknet skips out-of-range taps (-inf padding), and ncnn's Padding
  cannot hold -inf in its .param; edge replication gives the same maximum, since every window
  that reaches past the border also holds the border pixel it replicates.

Layers ncnn cannot run faithfully are refused before anything is written (:func:`check_ncnn`).
ncnn has no batch dimension: the input is ``in0``, 3 x H x W (one photo, float RGB in [0, 1],
letterboxed), the outputs ``out0``, ``out1``, ... the heads in ``model.heads`` order.

Precision: ncnn's defaults store activations in float16 (``use_fp16_storage``,
``use_fp16_packed``) and compute in float16 (``use_fp16_arithmetic``) wherever the CPU has it (on
x86: storage with F16C); ``precision`` picks what the check runs at and the report says it:
"f32" (all off, the default), "f16" (ncnn's defaults), "bf16" (``use_bf16_storage``). The files do
not carry it: set the same ``net.opt`` flags before ``load_param`` when deploying
(:func:`net_options`). ``half=True`` stores the weights in float16 (pnnx ``fp16=1``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ExportError
from ..graph import DarknetModel
from ..layers.activations import Activation
from ..layers.convolutional import ConvBlock, FoldedConv
from ..layers.avgpool import Avgpool
from ..layers.maxpool import Maxpool
from ..layers.region import RegionHead
from ..layers.route import Route
from ..layers.shortcut import Shortcut
from ..layers.softmax import Softmax
from ..layers.upsample import Upsample
from ..layers.yolo import YoloHead
from ..postprocess import DEFAULT_NMS, DEFAULT_THRESH
from .check import RTOL_FP16, RTOL_FP32, sample_input
from .graphs import check_model, eval_mode, prepared
from .runtimes import (RuntimeReport, StagedOutputs, check_photos, import_extra, layer_where, verify_files,
                       weights_beside)

EXTRA = "ncnn"
PRECISIONS = ("f32", "f16", "bf16")
# Largest relative head difference accepted. f32: ncnn's default convolutions (Winograd F(6,3),
# F(4,3), im2col + sgemm) sum in other orders than oneDNN: yolov4 at 64 px with random weights
# measured 2.1e-4 (8.3e-5 with both switched off), yolov3 2.4e-5, the COCO yolov3-tiny 7e-6; 5e-4
# keeps that margin over what users run, and a wrong graph is off by O(1). f16 as every float16
# export (check.RTOL_FP16); bf16 (8 significant bits) as OpenVINO's bf16 (measured 4.8e-2).
TOLERANCES = {"f32": 5 * RTOL_FP32, "f16": RTOL_FP16, "bf16": 0.25}


def tolerance(precision: str, half: bool) -> float:
    return max(TOLERANCES[precision], RTOL_FP16 if half else 0.0)


def _import_ncnn():
    ncnn, pnnx = import_extra(["ncnn", "pnnx"], EXTRA, "ncnn export")
    return ncnn, pnnx


def net_options(opt, precision: str = "f32", threads: int | None = None) -> None:
    """Set ncnn's ``net.opt`` for ``precision`` (before ``load_param``): what the check ran at."""
    f16 = precision == "f16"
    opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = f16
    opt.use_bf16_storage = opt.use_bf16_packed = precision == "bf16"
    opt.use_vulkan_compute = False
    opt.num_threads = int(threads or max(1, torch.get_num_threads()))


# ----------------------------------------------------------------------------- the graph ncnn runs

class NcnnYoloHead(nn.Module):
    """:class:`~darknet_py.layers.yolo.YoloHead` in ops ncnn has (see the module docstring)."""

    keep: torch.Tensor    # 1 on the channels that stay raw (w, h), else 0
    squash: torch.Tensor  # 1 - keep: the channels that get the logistic
    a: torch.Tensor       # scale_x_y on x, y; 1 elsewhere
    b: torch.Tensor       # -(scale_x_y - 1) / 2 on x, y; 0 elsewhere

    def __init__(self, head: YoloHead):
        super().__init__()
        self.logistic = not head.new_coords
        logistic = head.logistic_mask.float()
        self.register_buffer("keep", 1.0 - logistic)
        self.register_buffer("squash", logistic)
        s = head.scale_x_y
        self.scaled = s != 1.0
        xy = head.xy_mask.float()
        self.register_buffer("a", 1.0 + xy * (s - 1.0))
        self.register_buffer("b", xy * (-0.5 * (s - 1.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.logistic:
            x = x * self.keep + torch.sigmoid(x) * self.squash
        if self.scaled:
            x = x * self.a + self.b
        return x


class NcnnUpsample(nn.Module):
    def __init__(self, up: Upsample):
        super().__init__()
        self.stride, self.scale = up.stride, up.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(x, scale_factor=float(self.stride), mode="nearest")
        return y if self.scale == 1.0 else y * self.scale


class NcnnMaxpool(nn.Module):
    """:class:`~darknet_py.layers.maxpool.Maxpool` with edge-replicating padding (exact, see the
    module docstring) and a crop by slicing where Darknet's size leaves input unread."""

    def __init__(self, pool: Maxpool):
        super().__init__()
        self.size, self.padding, self.stride, self.blur = pool.size, pool.padding, pool.stride, pool.blur

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        (sy, sx), size, before = self.stride, self.size, self.padding // 2
        out_h = (h + self.padding - size) // sy + 1
        out_w = (w + self.padding - size) // sx + 1
        after_w, after_h = (out_w - 1) * sx + size - w - before, (out_h - 1) * sy + size - h - before
        if after_w < 0 or after_h < 0:  # the last rows/columns no window reads
            x = x[..., :h + min(after_h, 0), :w + min(after_w, 0)]
        pad = (before, max(after_w, 0), before, max(after_h, 0))
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        y = F.max_pool2d(x, size, (sy, sx))
        return y if self.blur is None else self.blur(y)


class NcnnHeads(nn.Module):
    """The raw heads as a tuple (pnnx numbers the outputs in this order)."""

    def __init__(self, model: DarknetModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model(x))


# Activations ncnn runs as PyTorch computes them: measured through pnnx + ncnn, each on its own head
# (tests/export/test_ncnn.py), all within 4e-6 of PyTorch. The others (elu, selu, relie, plse,
# lhtan, hard_mish, stair: Darknet's piecewise formulas) become comparisons and torch.where, which
# ncnn has no layer for.
NCNN_ACTIVATIONS = frozenset({"linear", "leaky", "revleaky", "relu", "relu6", "logistic", "loggy", "tanh", "hardtan",
                              "ramp", "gelu", "mish", "swish", "normalize_channels", "normalize_channels_softmax",
                              "normalize_channels_softmax_maxval"})


def _refuse(model, index: int, why: str) -> ExportError:
    return ExportError(f"{layer_where(model, index)}: ncnn cannot run {why} faithfully; nothing was written "
                       "(export ONNX or OpenVINO instead)")


# The layer kinds ncnn runs (measured: every reference cfg made of them converts and matches PyTorch,
# tests/export/test_ncnn.py and the every-cfg count in the module's report). [reorg]'s 6-D reshape
# and [shortcut]'s strided resampling (pjreddie's resnet50) leave ops ncnn has no layer for.
NCNN_LAYERS = (ConvBlock, FoldedConv, Maxpool, Route, Shortcut, Upsample, YoloHead, RegionHead, Avgpool, Softmax)


def check_ncnn(model: DarknetModel) -> None:
    """Refuse, naming the layer and its cfg line, what the ncnn graph cannot hold as Darknet runs it."""
    shapes = model.netdef.shapes
    for i, layer in enumerate(model.layers):
        if not isinstance(layer, NCNN_LAYERS):
            raise _refuse(model, i, f"a [{spec_kind(model, i)}] layer")
        if isinstance(layer, Upsample) and layer.stride < 0:
            raise _refuse(model, i, f"[upsample]'s reverse mode (stride={layer.stride})")
        if isinstance(layer, Maxpool) and layer.padding // 2 >= layer.size:
            raise _refuse(model, i, "a [maxpool] whose padding holds whole windows (Darknet's -FLT_MAX there)")
        if isinstance(layer, Shortcut):
            sizes = {tuple(model.netdef.input_shape[1:] if j < 0 else shapes[j][1:]) for j in model.inputs[i]}
            if len(sizes) > 1:
                raise _refuse(model, i, "a [shortcut] between layers of different sizes (strided resampling)")
        act = getattr(layer, "act", None)
        if isinstance(act, Activation) and act.name not in NCNN_ACTIVATIONS:
            raise _refuse(model, i, f"activation={act.name}")


def spec_kind(model, index: int) -> str:
    return next((s.kind for s in model.netdef.sections if s.index == index), type(model.netdef.specs[index]).__name__)


def ncnn_graph(model: DarknetModel) -> nn.Module:
    """The module traced for pnnx: the lean raw-heads graph with the rewrites above."""
    _, lean = prepared(model, False)
    swap = {YoloHead: NcnnYoloHead, Upsample: NcnnUpsample, Maxpool: NcnnMaxpool}
    lean.layers = nn.ModuleList([swap[type(m)](m) if type(m) in swap else m for m in lean.layers])
    return NcnnHeads(lean).eval()


# ----------------------------------------------------------------------------- conversion and check

def ncnn_layer_types(param_text: str) -> list[tuple[str, str]]:
    """(type, name) of every layer of an ncnn .param text."""
    lines = [ln.split() for ln in param_text.splitlines()[2:] if ln.strip()]
    return [(p[0], p[1]) for p in lines]


def _convert(pnnx, model, scratch: str, half: bool) -> tuple[str, str]:
    graph = ncnn_graph(model)
    c, h, w = model.netdef.input_shape
    x = torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(0))
    pt = os.path.join(scratch, "model.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # sizes are fixed, as in every export
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit.trace: what pnnx reads
        with torch.no_grad():
            torch.jit.trace(graph, (x,)).save(pt)
    del graph
    cmd = [pnnx.EXEC_PATH, pt, f"inputshape=[1,{c},{h},{w}]f32", f"fp16={int(half)}", "device=cpu"]
    r = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True)
    param, bin_path = os.path.join(scratch, "model.ncnn.param"), os.path.join(scratch, "model.ncnn.bin")
    if r.returncode != 0 or not (os.path.exists(param) and os.path.exists(bin_path)):
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise ExportError(f"pnnx cannot convert the model (exit {r.returncode}: {' | '.join(tail)}); nothing was "
                          "written")
    return param, bin_path


def load_net(ncnn, param: str, bin_path: str, precision: str = "f32", threads: int | None = None):
    net = ncnn.Net()
    net_options(net.opt, precision, threads)
    if net.load_param(param) != 0 or net.load_model(bin_path) != 0:
        raise ExportError(f"{param}: ncnn cannot load the converted model; nothing was written")
    return net


def runner_of(ncnn, net, n_outputs: int):
    """A verify.Runner: NCHW float32 batch -> the heads, one photo at a time (ncnn has no batch)."""
    def run(x: np.ndarray):
        outs: list[list[np.ndarray]] = [[] for _ in range(n_outputs)]
        for img in np.asarray(x, dtype=np.float32):
            ex = net.create_extractor()
            ex.input("in0", ncnn.Mat(np.ascontiguousarray(img)))
            for i in range(n_outputs):
                ret, out = ex.extract(f"out{i}")
                if ret != 0:
                    raise ExportError(f"ncnn failed on output out{i} (error {ret})")
                outs[i].append(np.array(out))
        return [np.stack(o) for o in outs]
    return run


def check_in_effect(ncnn, net, param: str, bin_path: str, precision: str, model, rgb: np.ndarray) -> None:
    """ncnn silently computes in float32 where the CPU (or the build) has no kernel for the reduced
    precision (this x86 wheel: f16 storage has no effect, bf16 has): then the check would not be at
    the precision stated, so it is refused. Seen as outputs identical to float32's on the sample."""
    x = sample_input(model, rgb).numpy()
    n = len(model.heads)
    reduced = runner_of(ncnn, net, n)(x)
    full = runner_of(ncnn, load_net(ncnn, param, bin_path, "f32"), n)(x)
    if all(np.array_equal(a, b) for a, b in zip(reduced, full)):
        raise ExportError(f"precision={precision!r}: ncnn {getattr(ncnn, '__version__', '')} computes in float32 on "
                          f"this CPU with the {precision} options (its outputs equal float32's), so the check cannot "
                          "run at it; check at f32 (or another precision this CPU has), the files are the same")


def export_ncnn(model: DarknetModel, path, *, precision: str = "f32", half: bool = False,
                sample: np.ndarray | None = None, photos=(), thresh: float = DEFAULT_THRESH,
                nms: float = DEFAULT_NMS) -> RuntimeReport:
    """Write ``model`` for ncnn: ``path`` (must end in ``.param``) and its weights beside it (same
    name, ``.bin``), then run it in ncnn's Python runtime at ``precision`` ("f32", "f16", "bf16"; see
    the module docstring) on ``sample`` (None: a synthetic picture) and ``photos`` (paths or (name,
    RGB array) pairs) against PyTorch: raw heads within :func:`tolerance`, detections at
    ``thresh``/``nms`` matched and reported. ``half``: float16 weights in the ``.bin``. Layers
    ncnn cannot run are refused first (:func:`check_ncnn`); both files appear only when the check
    passes."""
    ncnn, pnnx = _import_ncnn()
    check_model(model)
    if precision not in PRECISIONS:
        raise ExportError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    param = os.fspath(path)
    if not param.endswith(".param"):
        raise ExportError(f"{param}: an ncnn model is named NAME.param (its weights go to NAME.bin)")
    check_ncnn(model)
    shots = check_photos(sample, photos)
    with eval_mode(model):
        return _export(ncnn, pnnx, model, param, weights_beside(param, ".param"), precision, bool(half), shots,
                       thresh, nms)


def _export(ncnn, pnnx, model, param, bin_path, precision, half, shots, thresh, nms) -> RuntimeReport:
    with StagedOutputs([param, bin_path]) as staged, tempfile.TemporaryDirectory(prefix="darknet-py-ncnn-") as scratch:
        tmp_param, tmp_bin = staged.paths
        conv_param, conv_bin = _convert(pnnx, model, scratch, half)
        with open(conv_param, encoding="utf-8") as fh:
            text = fh.read()
        unknown = sorted({t for t, _ in ncnn_layer_types(text) if ncnn.layer_to_index(t) < 0})
        if unknown:  # check_ncnn should have refused this model: say which op slipped through
            raise ExportError(f"pnnx left operators ncnn has no layer for ({', '.join(unknown)}); nothing was "
                              "written")
        shutil.copyfile(conv_param, tmp_param)  # the scratch folder may be on another file system
        shutil.copyfile(conv_bin, tmp_bin)
        net = load_net(ncnn, tmp_param, tmp_bin, precision)
        version = getattr(ncnn, "__version__", "")
        if precision != "f32":
            check_in_effect(ncnn, net, tmp_param, tmp_bin, precision, model, shots[0][1])
        what = f"{param} (ncnn {version}, CPU, {precision})"
        v = verify_files(model, runner_of(ncnn, net, len(model.heads)), shots, what=what,
                         tolerance=tolerance(precision, half), thresh=thresh, nms=nms)
        del net
        c, h, w = model.netdef.input_shape
        outputs = [(f"out{k}", list(model.netdef.shapes[i])) for k, i in enumerate(model.heads)]
        report = RuntimeReport(
            param, "ncnn", None, [("in0", [c, h, w])], outputs,
            os.path.getsize(tmp_param) + os.path.getsize(tmp_bin), v.max_abs_diff, v.max_rel_diff,
            "float16" if half else "float32", [1], f"ncnn {version} CPU (Python)", "PyTorch (float32)",
            tolerance(precision, half), files=[param, bin_path], precision=precision, verification=v,
            format_name="ncnn", sample_name=shots[0][0])
        report.notes.append(f"outputs out0.. are the heads {', '.join(f'yolo_{i}' for i in model.heads)}; deploy with "
                            f"net.opt set for {precision} (darknet_py.export.ncnn.net_options) before load_param")
        staged.commit()
    return report


__all__ = ["NCNN_ACTIVATIONS", "NCNN_LAYERS", "PRECISIONS", "TOLERANCES", "check_ncnn", "export_ncnn", "load_net",
           "ncnn_graph", "net_options", "runner_of", "tolerance"]
