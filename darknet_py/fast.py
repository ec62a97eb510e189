"""Fast inference paths: reduced precision, channels_last, CUDA graphs, batched photo preparation.

:class:`FastDetector` wraps a loaded :class:`~darknet_py.graph.DarknetModel` (its parameters are
left untouched) and gives the results of :func:`darknet_py.detector.detect_batch` faster:

* the network runs from a snapshot of its folded kernels (:class:`FastNet`): BN is folded in
  float64 from the float32 parameters by ``ConvBlock.fuse`` and only then cast to fp16/bf16.
  Casting the model first (``model.half()``) would fold from fp16-rounded BN statistics, where
  ``beta - mean*scale`` loses digits to cancellation and small variances lose their bits;
* detection heads and everything after them run in float32, whatever the trunk's dtype: the
  head input is cast up before the head's logistic, so scores compare with thresholds as the
  float32 path's do;
* on the CPU in float32, each conv with a linear / leaky / relu activation is one oneDNN
  primitive with the activation fused and the kernel pre-packed (not re-laid out per call);
  the arithmetic is the same up to summation order (see the tests for the measured difference);
  ``cpu_fusion=False`` gives bit-identical outputs to the model's own forward;
* a residual ``[shortcut]`` adds in place into the conv output it follows when nothing else
  reads that output;
* on CUDA, ``cuda_graph=True`` captures, per batch bucket (powers of two up to ``max_batch``),
  the network and the decode of its ``[yolo]`` heads, and for small batches also the whole
  post-processing (:class:`~darknet_py.batched.StaticPostprocess`): a batch-1 detection is then
  two graph replays and one host synchronisation; partial batches are padded;
* photos are prepared on the device: uint8 uploaded (pinned, non-blocking), converted and
  resized with Darknet's two-pass bilinear batch-wide (:func:`letterbox_u8`, bit-identical to
  :func:`darknet_py.transforms.letterbox`), grouped by photo size;
* post-processing is batch-wide (:mod:`darknet_py.batched`), identical to the per-image path;
* ``compile=True`` hands network + decode (and, with CUDA graphs, the in-graph post-processing)
  to ``torch.compile`` (convolutions stay cuDNN/oneDNN calls; inductor fuses the elementwise
  tails). Fused elementwise code rounds differently from eager (measured on the CPU: decoded
  boxes differ in the last bit; on CUDA, Triton may contract a*b+c into an FMA), so compiled
  results are close, not bit-identical.

The weights are a snapshot: after changing the model's weights, build a new FastDetector.
"""
from __future__ import annotations

import copy
import os
import warnings
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .batched import StaticPostprocess, _divides_by_reciprocal, geometry_rows, postprocess_decoded
from .detector import DEFAULT_NMS, DEFAULT_THRESH, check_detector, letterboxed
from .graph import DarknetModel
from .imageio import load_image, to_rgb_uint8
from .layers.convolutional import ConvBlock
from .layers.shortcut import Shortcut
from .layers.yolo import YoloSpec
from .postprocess import Detections
from .transforms import (LETTERBOX_FILL, LetterboxInfo, _axis_taps, letterbox, letterbox_info, stretch, stretch_info,
                         u8_to_float)

Tensor = torch.Tensor
ImageInput = Union[str, os.PathLike, np.ndarray]

# Activations oneDNN applies inside the convolution with exactly Darknet's formula
# (leaky: x > 0 ? x : 0.1x). Others (logistic, mish, ...) run as separate torch ops.
_MKLDNN_UNARY = {"linear": ("none", []), "leaky": ("leaky_relu", [0.1]), "relu": ("relu", [])}
# Elements per temporary in the batched letterbox (a batch of large photos is split).
_LETTERBOX_CHUNK = {"cuda": 1 << 27, "cpu": 1 << 24}


# --------------------------------------------------------------------------- network


class FoldedConv(nn.Module):
    """A ``ConvBlock`` for inference: its folded kernel in the target dtype and memory format,
    then its activation (fused into a pre-packed oneDNN primitive on the CPU when possible)."""

    def __init__(self, block: ConvBlock, dtype: torch.dtype, memory_format: torch.memory_format,
                 in_shape: Tuple[int, int, int], cpu_fusion: bool):
        super().__init__()
        with torch.no_grad():
            # the block's own fold (float64 from the float32 parameters, cast to float32), reused
            # when its cache is current (ConvBlock's key: storage and version of each source tensor)
            key = getattr(block, "_source_key", None)
            if block.fused_weight is None or key is None or getattr(block, "_fuse_key", None) != key():
                block.fuse()
            w = block.fused_weight.to(dtype=dtype).contiguous(memory_format=memory_format)
            b = block.fused_bias.to(dtype=dtype)
        self.register_buffer("weight", w, persistent=False)
        self.register_buffer("bias", b, persistent=False)
        conv = block.conv
        self.stride, self.padding, self.groups = tuple(conv.stride), tuple(conv.padding), conv.groups
        self.act = block.act
        self.packed: Optional[Tensor] = None
        self.unary: Optional[Tuple[str, list]] = None
        if cpu_fusion and w.device.type == "cpu" and dtype == torch.float32 and block.act.name in _MKLDNN_UNARY \
                and torch.backends.mkldnn.is_available():
            try:
                self.packed = torch.ops.mkldnn._reorder_convolution_weight(
                    w, list(self.padding), list(self.stride), [1, 1], self.groups, [1, *in_shape])
                self.unary = _MKLDNN_UNARY[block.act.name]
            except (RuntimeError, AttributeError):  # a build without these ops: plain conv below
                self.packed = None

    def forward(self, x: Tensor) -> Tensor:
        if self.packed is not None:
            attr, scalars = self.unary
            return torch.ops.mkldnn._convolution_pointwise(x, self.packed, self.bias, list(self.padding),
                                                           list(self.stride), [1, 1], self.groups, attr, scalars, "")
        return self.act(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups))


def _float_state_not_in(module: nn.Module, dtype: torch.dtype) -> bool:
    return any(t.is_floating_point() and t.dtype != dtype for t in list(module.parameters()) + list(module.buffers()))


class FastNet(nn.Module):
    """The model's graph with folded convolutions in ``dtype``; returns the heads' outputs in
    float32 (NCHW, as ``DarknetModel.forward``). Layers without float state are shared with the
    model; layers with float state in another dtype are copied and cast; head layers run the
    model's own modules on float32 input."""

    def __init__(self, model: DarknetModel, dtype: torch.dtype = torch.float32, channels_last: bool = True,
                 cpu_fusion: bool = True):
        super().__init__()
        nd = model.netdef
        self.dtype = dtype
        self.channels_last = channels_last
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.inputs: List[List[int]] = [list(ins) for ins in model.inputs]
        self.heads: List[int] = list(model.heads)
        keep = set(model.keep)
        self.keep = keep
        head_set = set(nd.head_indices)
        self.head_set = head_set
        layers = []
        for i, layer in enumerate(model.layers):
            in_shape = nd.input_shape if not self.inputs[i] or self.inputs[i][0] < 0 else nd.shapes[self.inputs[i][0]]
            if i in head_set:
                layers.append(layer)
            elif isinstance(layer, ConvBlock):
                layers.append(FoldedConv(layer, dtype, fmt, in_shape, cpu_fusion))
            elif _float_state_not_in(layer, dtype):
                layers.append(copy.deepcopy(layer).to(dtype))
            else:
                layers.append(layer)
        self.layers = nn.ModuleList(layers)
        # a non-head layer reading a head's (float32) output gets it back in the trunk's dtype
        self.reads_head = [i not in head_set and any(j in head_set for j in self.inputs[i]) for i in range(len(layers))]
        # [shortcut] straight after a conv whose output nothing else reads: add in place into it
        self.add_inplace = [False] * len(layers)
        for i, layer in enumerate(model.layers):
            ins = self.inputs[i]
            if type(layer) is Shortcut and i > 0 and len(ins) == 2 and ins[0] == i - 1 and i - 1 not in keep \
                    and isinstance(layers[i - 1], FoldedConv) and ins[1] >= 0 \
                    and nd.shapes[i - 1] == nd.shapes[ins[1]]:
                self.add_inplace[i] = True

    def forward(self, x: Tensor) -> List[Tensor]:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        cache: List[Optional[Tensor]] = [None] * len(self.layers)
        inp = x
        for i, layer in enumerate(self.layers):
            args = [x if j == i - 1 else (inp if j < 0 else cache[j]) for j in self.inputs[i]]
            if i in self.head_set:
                x = layer(*[a.float() for a in args])
            elif self.add_inplace[i]:
                x = layer.act(args[0].add_(args[1]))
            elif self.reads_head[i]:
                x = layer(*[a.to(self.dtype) for a in args])
            else:
                x = layer(*args)
            if i in self.keep:
                cache[i] = x
        return [cache[i] for i in self.heads]


class _YoloDecode:
    """``decode_head`` of one ``[yolo]`` head with its grid and anchors made once on the device,
    so that it can be captured in a CUDA graph (``decode_head`` builds its anchor tensor from a
    Python list, a host-to-device copy that a capture forbids). Same operations, same values;
    FastDetector checks the equality on the device before using it."""

    def __init__(self, spec: YoloSpec, h: int, w: int, net_w: int, net_h: int, device):
        self.a, self.classes, self.h, self.w = len(spec.mask), spec.classes, h, w
        self.net_w, self.net_h, self.new_coords = net_w, net_h, spec.new_coords
        self.col = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w, 1)
        self.row = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1, 1)
        self.anchor = torch.tensor(spec.masked_anchors, device=device, dtype=torch.float32)

    def __call__(self, out: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        n, a, c, h, w = out.shape[0], self.a, self.classes, self.h, self.w
        p = out.view(n, a, 5 + c, h, w).permute(0, 3, 4, 1, 2)
        anchor = self.anchor
        bx = (self.col + p[..., 0]) / w
        by = (self.row + p[..., 1]) / h
        if self.new_coords:
            bw = p[..., 2] * p[..., 2] * 4 * anchor[:, 0] / self.net_w
            bh = p[..., 3] * p[..., 3] * 4 * anchor[:, 1] / self.net_h
        else:
            bw = torch.exp(p[..., 2]) * anchor[:, 0] / self.net_w
            bh = torch.exp(p[..., 3]) * anchor[:, 1] / self.net_h
        boxes = torch.stack((bx, by, bw, bh), -1).reshape(n, h * w * a, 4)
        return boxes, p[..., 4].reshape(n, h * w * a), p[..., 5:].reshape(n, h * w * a, c)


# --------------------------------------------------------------------------- photos


# Staging copies at least this large use a few threads (host memcpy bounds the uint8 pipeline).
_PARALLEL_COPY_BYTES = 32 << 20
_POOL: list = []


def _copy_pool():
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor
        _POOL.append(ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2) // 2))))
    return _POOL[0]


_TAPS: Dict[tuple, tuple] = {}


def _taps(in_n: int, out_n: int, device) -> tuple:
    # cached per device: a host-to-device copy per call would synchronise the stream each time
    key = (in_n, out_n, str(device))
    taps = _TAPS.get(key)
    if taps is None:
        if len(_TAPS) > 256:
            _TAPS.clear()
        taps = _TAPS[key] = tuple(t.to(device) for t in _axis_taps(in_n, out_n, torch.float32))
    return taps


def letterbox_u8(batch: Tensor, net_w: int, net_h: int, *, letterboxed: bool = True,
                 out: Optional[Tensor] = None) -> Tuple[Tensor, LetterboxInfo]:
    """Darknet's ``letterbox_image`` (or the stretch resize) of N photos of the same size at once.

    ``batch``: (N, H, W, 3) uint8 RGB on any device. Returns (N, 3, net_h, net_w) float32 (written
    into ``out`` when given) and the photos' shared :class:`LetterboxInfo`. Bit-identical to
    :func:`darknet_py.transforms.letterbox` / ``stretch`` per photo: the same taps
    (``_axis_taps``) and the same elementwise float32 operations in the same order; the columns
    are gathered from the uint8 pixels before the ``(float)u8/255.`` table (which commutes with a
    gather), so the full-size float photo is never made.
    """
    if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[3] != 3:
        raise ValueError(f"letterbox_u8: expected (N, H, W, 3) uint8, got {tuple(batch.shape)} {batch.dtype}")
    n, in_h, in_w = int(batch.shape[0]), int(batch.shape[1]), int(batch.shape[2])
    net_w, net_h = int(net_w), int(net_h)
    info = (letterbox_info if letterboxed else stretch_info)(in_w, in_h, net_w, net_h)
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


def _as_rgb(image: ImageInput):
    # detector.detect_batch's conversion: arrays through to_rgb_uint8, paths decoded strictly;
    # uint8 HxWx3 tensors (the streaming command's pinned frames) pass as they are
    if torch.is_tensor(image):
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 RGB tensor, got {tuple(image.shape)} {image.dtype}")
        return image
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.shape[0] and image.shape[1]:
            return image  # what to_rgb_uint8 returns, less its copy (the upload copies anyway)
        return to_rgb_uint8(image)[0]
    return load_image(image)[0]


def host_prepare(rgb: np.ndarray, net_w: int, net_h: int, letterboxed: bool) -> Tuple[Tensor, LetterboxInfo]:
    """One photo as ``prepare_batch`` makes each row (picklable through functools.partial, for
    data-loader workers)."""
    return (letterbox if letterboxed else stretch)(rgb, net_w, net_h)


# --------------------------------------------------------------------------- CUDA graphs


class _Captured:
    """One CUDA graph of ``fn(*static_inputs)``, warmed up on a side stream first (cuDNN
    autotuning, lazy initialisation and torch.compile must not happen during the capture)."""

    def __init__(self, fn, static_inputs: tuple, warmup: int = 2):
        self.inputs = static_inputs
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(warmup):
                fn(*static_inputs)
        torch.cuda.current_stream().wait_stream(s)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = fn(*static_inputs)

    def replay(self):
        self.graph.replay()
        return self.outputs


# --------------------------------------------------------------------------- detector


class FastDetector:
    """Fast detection with :func:`darknet_py.detector.detect_batch`'s semantics.

    ``dtype``: float32, float16 or bfloat16 for the trunk (heads, decode and thresholds stay
    float32). ``channels_last``: NHWC activations. ``cuda_graph``: replay captured CUDA graphs
    (CUDA only; ignored elsewhere). ``compile``: ``torch.compile`` the network (True: default
    mode, or a mode string such as ``"max-autotune-no-cudagraphs"``); each new batch shape
    compiles once. ``max_batch``: the largest batch one forward pass runs (bigger inputs are
    split). ``cpu_fusion``: fuse activations into pre-packed oneDNN convs on the CPU (float32).
    ``static_post_max_batch``: batches up to this size post-process inside the CUDA graph
    (capacities ``cand_cap`` candidates and ``entry_cap`` (box, class) scores per image; a batch
    that exceeds them is post-processed exactly outside the graph). ``cudnn_benchmark``: set
    ``torch.backends.cudnn.benchmark`` (a process-wide setting) so cuDNN picks its fastest kernels.
    """

    def __init__(self, model: DarknetModel, *, dtype: torch.dtype = torch.float32, channels_last: bool = True,
                 cuda_graph: bool = False, compile: Union[bool, str] = False, max_batch: int = 64,
                 cpu_fusion: bool = True, static_post_max_batch: int = 8, cand_cap: int = 256,
                 entry_cap: int = 256, cudnn_benchmark: bool = True):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        check_detector(model)
        params = list(model.parameters())
        if any(p.dtype in (torch.float16, torch.bfloat16) for p in params):
            raise ValueError("FastDetector folds batch norm in float32 and casts afterwards: pass the float32 "
                             "model (not model.half()) and choose dtype= here")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model.eval()
        self.device = params[0].device if params else torch.device("cpu")
        self.dtype = dtype
        self.channels_last = channels_last
        self.max_batch = int(max_batch)
        self.net_w, self.net_h = model.input_size
        self.letterboxed = letterboxed(model)
        self.head_specs = model.head_specs
        last = self.head_specs[-1]
        self.nms_kind, self.beta_nms = last.nms_kind, last.beta_nms
        self.gate = all(h.gate_objectness for h in self.head_specs)
        self.is_cuda = self.device.type == "cuda"
        self.cuda_graph = bool(cuda_graph) and self.is_cuda
        if self.is_cuda and cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        self.net = FastNet(model, dtype, channels_last, cpu_fusion)
        self.compiled = bool(compile)
        self._compile_mode = None if compile is True or not compile else str(compile)
        self.static_post_max_batch = int(static_post_max_batch) if self.cuda_graph else 0
        self.cand_cap, self.entry_cap = int(cand_cap), int(entry_cap)
        self._yolo_decoders = self._make_decoders()
        _divides_by_reciprocal(self.device)  # probed (with host syncs) here, never inside a capture
        # network + graph-safe decode: the unit a CUDA graph captures and torch.compile compiles
        # (inductor then also fuses the heads' and the decode's elementwise operations)
        self._net_decode = self._net_decode_eager
        if self.compiled:
            self._net_decode = torch.compile(self._net_decode_eager, mode=self._compile_mode, dynamic=False)
        self._net_graphs: Dict[int, _Captured] = {}
        self._post_graphs: Dict[tuple, Tuple[_Captured, StaticPostprocess]] = {}
        self._pinned: Optional[Tensor] = None
        self._upload_done = None
        self.graph_errors: List[str] = []  # captures that failed (the eager path ran instead)
        # the streaming command's runner protocol (darknet_py.stream): uint8 tensors are welcome;
        # on the CPU its workers may letterbox (the same per-photo code) and call detect_prepared
        self.accepts_tensors = True
        self.host_prepare = None if self.is_cuda else partial(host_prepare, net_w=self.net_w, net_h=self.net_h,
                                                              letterboxed=self.letterboxed)

    # -- description ----------------------------------------------------------------------
    def describe(self) -> str:
        parts = [str(self.dtype).replace("torch.", ""), "channels_last" if self.channels_last else "NCHW",
                 self.device.type]
        if self.compiled:
            parts.append("compiled" + (f" ({self._compile_mode})" if self._compile_mode else ""))
        if self.cuda_graph:
            parts.append("cuda graph" + (" + in-graph decode" if self._yolo_decoders else "")
                         + (f" + in-graph postprocess (batch <= {self.static_post_max_batch})"
                            if self._static_post_ok() else ""))
        if any(getattr(m, "packed", None) is not None for m in self.net.layers):
            parts.append("oneDNN fused convs")
        return ", ".join(parts)

    # -- network --------------------------------------------------------------------------
    def _make_decoders(self) -> Optional[List[_YoloDecode]]:
        """Graph-safe decoders when every head is a plain [yolo] (checked bit for bit against the
        head's own decode on this device); None otherwise (heads then decode themselves)."""
        nd = self.model.netdef
        decs = []
        for idx, spec in zip(nd.head_indices, self.head_specs):
            if not isinstance(spec, YoloSpec) or type(spec).decode is not YoloSpec.decode:
                return None
            c, h, w = nd.shapes[idx]
            decs.append(_YoloDecode(spec, h, w, self.net_w, self.net_h, self.device))
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for idx, spec, dec in zip(nd.head_indices, self.head_specs, decs):
                c, h, w = nd.shapes[idx]
                out = torch.rand((2, c, h, w), generator=gen).mul_(4).sub_(2).to(self.device)
                if not all(torch.equal(a, b) for a, b in zip(dec(out), spec.decode(out, self.net_w, self.net_h))):
                    return None
        return decs

    def _net_decode_eager(self, x: Tensor):
        outs = self.net(x)
        return outs, (self._decode(outs) if self._yolo_decoders is not None else None)

    def _decode(self, outs: Sequence[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        if self._yolo_decoders is not None:
            parts = [dec(o) for dec, o in zip(self._yolo_decoders, outs)]
        else:
            parts = [spec.decode(o, self.net_w, self.net_h) for o, spec in zip(outs, self.head_specs)]
        return tuple(torch.cat(t, 1) for t in zip(*parts))  # type: ignore[return-value]

    def _bucket(self, n: int) -> int:
        b = 1
        while b < n:
            b *= 2
        return min(b, self.max_batch)

    def _net_graph(self, batch: int) -> Optional[_Captured]:
        g = self._net_graphs.get(batch)
        if g is None and batch not in self._net_graphs:
            x = torch.zeros((batch, 3, self.net_h, self.net_w), dtype=self.dtype, device=self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)

            try:
                g = _Captured(self._net_decode, (x,))
            except Exception as e:  # noqa: BLE001 - any capture failure: run eagerly, say why
                self.graph_errors.append(f"network, batch {batch}: {type(e).__name__}: {e}")
                warnings.warn(f"CUDA graph capture failed ({self.graph_errors[-1]}); running eagerly")
                torch.cuda.synchronize()
                g = None
            self._net_graphs[batch] = g
        return g

    def _static_post_ok(self) -> bool:
        return self.cuda_graph and self._yolo_decoders is not None and self.static_post_max_batch > 0

    def _post_graph(self, batch: int, thresh: float, nms: float, net: _Captured):
        key = (batch, float(thresh), float(nms))
        if key not in self._post_graphs:
            boxes, obj, cls = net.outputs[1]
            post = StaticPostprocess(batch, boxes.shape[1], cls.shape[2], thresh, nms, self.nms_kind, self.beta_nms,
                                     self.cand_cap, self.entry_cap)
            geom = torch.zeros((batch, 10), dtype=torch.float64, device=self.device)
            geom[:, 6:] = 1.0  # any finite geometry for rows never filled
            n_valid = torch.zeros((), dtype=torch.int64, device=self.device)
            fn = post.__call__
            if self.compiled:  # ~190 small kernels fused into a few dozen: the batch-1 latency
                fn = torch.compile(fn, mode=self._compile_mode, dynamic=False)
            try:
                g = _Captured(lambda gm, nv: fn(boxes, obj, cls, gm, nv), (geom, n_valid))
                self._post_graphs[key] = (g, post, {"infos": None})
            except Exception as e:  # noqa: BLE001
                self.graph_errors.append(f"postprocess, batch {batch}: {type(e).__name__}: {e}")
                warnings.warn(f"CUDA graph capture failed ({self.graph_errors[-1]}); post-processing eagerly")
                torch.cuda.synchronize()
                self._post_graphs[key] = None
        return self._post_graphs[key]

    def _prepare_input(self, x: Tensor) -> Tensor:
        if not torch.is_tensor(x):
            raise TypeError(f"expected a tensor batch, got {type(x).__name__}")
        if x.dim() == 3:
            x = x[None]
        if x.dtype == torch.uint8:
            if x.shape[-1] == 3 and x.shape[1] != 3:  # NHWC frames
                x = x.permute(0, 3, 1, 2)
            x = u8_to_float(x.to(self.device, non_blocking=True))
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (self.net_h, self.net_w):
            raise ValueError(f"expected a (N, 3, {self.net_h}, {self.net_w}) batch, got {tuple(x.shape)}")
        return x.to(self.device)

    @torch.no_grad()
    def _run(self, x: Tensor) -> Tuple[List[Tensor], Optional[tuple], Optional[_Captured]]:
        """Network (+ decode of [yolo] heads) on at most max_batch rows: (head outputs float32,
        decoded (boxes, objectness, classes) or None, the graph replayed or None). A graph's
        decoded tensors cover its whole bucket: slice them to the rows."""
        n = x.shape[0]
        if self.cuda_graph:
            g = self._net_graph(self._bucket(n))
            if g is not None:
                g.inputs[0][:n].copy_(x)
                outs, decoded = g.replay()
                return [o[:n] for o in outs], decoded, g
        outs, decoded = self._net_decode(x)
        return outs, decoded, None

    @torch.no_grad()
    def forward(self, x: Tensor) -> List[Tensor]:
        """Letterboxed float batch (N, 3, net_h, net_w) (or uint8, converted by Darknet's
        ``u8/255.``) -> the heads' outputs, float32 NCHW, as ``model(x)`` returns them (copies:
        a graph's own outputs are overwritten by its next replay)."""
        x = self._prepare_input(x)
        chunks = []
        for s in range(0, x.shape[0], self.max_batch):
            outs, _, g = self._run(x[s:s + self.max_batch])
            chunks.append([o.clone() for o in outs] if g is not None else outs)
        if len(chunks) == 1:
            return chunks[0]
        return [torch.cat(parts) for parts in zip(*chunks)]

    __call__ = forward

    # -- detection ------------------------------------------------------------------------
    @torch.no_grad()
    def detect_tensor(self, x: Tensor, infos: Sequence[LetterboxInfo], thresh: float = DEFAULT_THRESH,
                      nms: float = DEFAULT_NMS) -> List[Detections]:
        """A prepared batch (letterboxed float, or uint8 (N,3,H,W)/(N,H,W,3) at network size) and
        one :class:`LetterboxInfo` per row -> one Detections per row, as
        ``detector.postprocess(model, model(x), infos, thresh, nms)``."""
        x = self._prepare_input(x)
        if x.shape[0] != len(infos):
            raise ValueError(f"{x.shape[0]} images but {len(infos)} infos")
        out: List[Detections] = []
        for s in range(0, x.shape[0], self.max_batch):
            out += self._detect_chunk(x[s:s + self.max_batch], infos[s:s + self.max_batch], thresh, nms)
        return out

    def _detect_chunk(self, x: Tensor, infos: Sequence[LetterboxInfo], thresh: float, nms: float) -> List[Detections]:
        n = x.shape[0]
        if n == 0:
            return []
        outs, decoded, g = self._run(x)
        if g is not None and decoded is not None:
            if n <= self.static_post_max_batch and self._static_post_ok():
                entry = self._post_graph(g.inputs[0].shape[0], thresh, nms, g)
                if entry is not None:
                    pg, post, state = entry
                    geom, n_valid = pg.inputs
                    key = tuple(infos)
                    if state["infos"] != key:
                        rows = torch.from_numpy(geometry_rows(infos))
                        geom[:n].copy_(rows.pin_memory() if self.is_cuda else rows, non_blocking=True)
                        state["infos"] = key
                    n_valid.fill_(n)
                    dets = post.unpack(pg.replay(), n)
                    if dets is not None:
                        return dets
        boxes, obj, cls = decoded if decoded is not None else self._decode(outs)
        return postprocess_decoded(boxes[:n], obj[:n], cls[:n], infos, thresh, nms, self.nms_kind, self.beta_nms,
                                   gate=self.gate)

    @torch.no_grad()
    def detect_batch(self, images: Sequence[ImageInput], thresh: float = DEFAULT_THRESH,
                     nms: float = DEFAULT_NMS) -> List[Detections]:
        """Photos (HxWx3 uint8 RGB arrays, or paths decoded strictly) -> one Detections each, as
        :func:`darknet_py.detector.detect_batch` (batches of at most ``max_batch``)."""
        out: List[Detections] = []
        images = list(images)
        for s in range(0, len(images), self.max_batch):
            rgbs = [_as_rgb(im) for im in images[s:s + self.max_batch]]
            x, infos = self.prepare(rgbs)
            out += self._detect_chunk(x, infos, thresh, nms)
        return out

    detect_prepared = detect_tensor

    def detect(self, image: ImageInput, thresh: float = DEFAULT_THRESH, nms: float = DEFAULT_NMS) -> Detections:
        return self.detect_batch([image], thresh, nms)[0]

    # -- photo preparation ----------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, rgbs: Sequence[np.ndarray]) -> Tuple[Tensor, List[LetterboxInfo]]:
        """HxWx3 uint8 RGB arrays -> (N, 3, net_h, net_w) float32 on the device and their infos,
        equal to ``darknet_py.transforms.prepare_batch`` (letterbox or stretch as the model's
        last head says). Photos of the same size are uploaded as uint8 and resized together."""
        n = len(rgbs)
        x = torch.empty((n, 3, self.net_h, self.net_w), dtype=torch.float32, device=self.device)
        infos: List[Optional[LetterboxInfo]] = [None] * n
        groups: Dict[tuple, List[int]] = {}
        for k, im in enumerate(rgbs):
            ok = im.dtype == np.uint8 if isinstance(im, np.ndarray) else torch.is_tensor(im) and im.dtype == torch.uint8
            if not ok or im.ndim != 3 or im.shape[2] != 3 or im.shape[0] == 0 or im.shape[1] == 0:
                raise ValueError("prepare: expected HxWx3 uint8 RGB arrays (numpy, or torch tensors)")
            groups.setdefault(tuple(im.shape[:2]), []).append(k)
        budget = _LETTERBOX_CHUNK["cuda" if self.is_cuda else "cpu"]
        batches = []
        for (h, w), idx in groups.items():
            per = max(1, budget // (3 * h * max(w, self.net_w)))
            batches += [idx[s:s + per] for s in range(0, len(idx), per)]
        uploads = self._upload([[rgbs[k] for k in sub] for sub in batches])
        for sub, u8 in zip(batches, uploads):
            if sub == list(range(sub[0], sub[0] + len(sub))):  # consecutive photos: write in place
                _, info = letterbox_u8(u8, self.net_w, self.net_h, letterboxed=self.letterboxed,
                                       out=x[sub[0]:sub[0] + len(sub)])
            else:
                lb, info = letterbox_u8(u8, self.net_w, self.net_h, letterboxed=self.letterboxed)
                for j, k in enumerate(sub):
                    x[k].copy_(lb[j])
            for k in sub:
                infos[k] = info
        return x, infos  # type: ignore[return-value]

    def _upload(self, batches: List[List[np.ndarray]]) -> List[Tensor]:
        """Each list of same-size uint8 photos -> one (n, H, W, 3) tensor on the device; on CUDA
        through one pinned staging buffer and a single non-blocking copy (tensors: their own copy,
        non-blocking when the caller pinned them)."""
        if any(torch.is_tensor(a) for arrs in batches for a in arrs):
            return [torch.stack([torch.as_tensor(a).to(self.device, non_blocking=True) for a in arrs])
                    for arrs in batches]
        if not self.is_cuda:
            return [torch.from_numpy(np.stack(arrs)) for arrs in batches]
        sizes = [sum(a.nbytes for a in arrs) for arrs in batches]
        total = sum(sizes)
        if self._upload_done is not None:
            self._upload_done.synchronize()  # the previous copy out of the staging buffer is done
        if self._pinned is None or self._pinned.numel() < total:
            self._pinned = torch.empty(max(total * 5 // 4, 1 << 20), dtype=torch.uint8, pin_memory=True)
        host = self._pinned.numpy()
        jobs, off = [], 0
        for arrs, size in zip(batches, sizes):
            h, w = arrs[0].shape[:2]
            view = host[off:off + size].reshape(len(arrs), h, w, 3)
            jobs += [(view[j], a) for j, a in enumerate(arrs)]
            off += size
        if total >= _PARALLEL_COPY_BYTES and len(jobs) > 1:
            # numpy copies without the GIL: a batch of large photos fills the staging buffer in parallel
            list(_copy_pool().map(lambda job: np.copyto(job[0], job[1]), jobs))
        else:
            for dst, src in jobs:
                np.copyto(dst, src)
        dev = torch.empty(total, dtype=torch.uint8, device=self.device)
        dev.copy_(self._pinned[:total], non_blocking=True)
        self._upload_done = torch.cuda.Event()
        self._upload_done.record()
        out, off = [], 0
        for arrs, size in zip(batches, sizes):
            h, w = arrs[0].shape[:2]
            out.append(dev[off:off + size].view(len(arrs), h, w, 3))
            off += size
        return out


__all__ = ["FastDetector", "FastNet", "FoldedConv", "host_prepare", "letterbox_u8"]
