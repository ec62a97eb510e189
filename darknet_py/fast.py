"""Fast inference paths: reduced precision, channels_last, CUDA graphs, batched photo preparation.

:class:`FastDetector` wraps a loaded :class:`~darknet_py.graph.DarknetModel` (its parameters are
left untouched) and gives the results of :func:`darknet_py.detector.detect_batch` faster:

* the network runs from a snapshot of its folded kernels (:class:`FastNet` of
  ``layers.convolutional.FoldedConv``): BN is folded in float64 from the float32 parameters by
  ``ConvBlock.fuse`` and only then cast to fp16/bf16.
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
  the network and the decode of its ``[yolo]`` heads (``layers.yolo.YoloDecode``), and for small
  batches also the whole post-processing (:class:`~darknet_py.postprocess.StaticPostprocess`): a
  batch-1 detection is then
  two graph replays and one host synchronisation; partial batches are padded;
* photos are prepared on the device: uint8 uploaded (pinned, non-blocking), converted and
  resized with Darknet's two-pass bilinear batch-wide (:func:`darknet_py.transforms.letterbox_u8`,
  bit-identical to :func:`darknet_py.transforms.letterbox`), grouped by photo size;
* post-processing is :mod:`darknet_py.postprocess`, the exact path's own;
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
from collections.abc import Sequence
from functools import partial
from typing import Union

import numpy as np
import torch
import torch.nn as nn

from .detector import DEFAULT_NMS, DEFAULT_THRESH, as_rgb, check_detector, letterboxed
from .device import model_device
from .errors import UsageError
from .graph import DarknetModel
from .layers.convolutional import ConvBlock, FoldedConv
from .layers.head import HeadsDecoder
from .layers.shortcut import Shortcut
from .postprocess import Detections, StaticPostprocess, nms_policy, postprocess_decoded
from .transforms import LetterboxInfo, fit, geometry_rows, letterbox_info, letterbox_u8, u8_to_float

Tensor = torch.Tensor
ImageInput = Union[str, os.PathLike, np.ndarray, Tensor]

# Elements per temporary in the batched letterbox (a batch of large photos is split).
_LETTERBOX_CHUNK = {"cuda": 1 << 27, "cpu": 1 << 24}


# --------------------------------------------------------------------------- network


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
        self.inputs: list[list[int]] = [list(ins) for ins in model.inputs]
        self.heads: list[int] = list(model.heads)
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
                folded = FoldedConv(layer, dtype, fmt)
                if cpu_fusion:
                    folded.pack_for_cpu(in_shape)
                layers.append(folded)
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

    def forward(self, x: Tensor) -> list[Tensor]:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        cache: list[Tensor | None] = [None] * len(self.layers)
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


# --------------------------------------------------------------------------- photos


# Staging copies at least this large use a few threads (host memcpy bounds the uint8 pipeline).
_PARALLEL_COPY_BYTES = 32 << 20
_POOL: list = []


def _copy_pool():
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor
        _POOL.append(ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 2) // 2))))
    return _POOL[0]


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
                 cuda_graph: bool = False, compile: bool | str = False, max_batch: int = 64,
                 cpu_fusion: bool = True, static_post_max_batch: int = 8, cand_cap: int = 256,
                 entry_cap: int = 256, cudnn_benchmark: bool = True):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise UsageError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        check_detector(model)
        params = list(model.parameters())
        if any(p.dtype in (torch.float16, torch.bfloat16) for p in params):
            raise UsageError("FastDetector folds batch norm in float32 and casts afterwards: pass the float32 "
                             "model (not model.half()) and choose dtype= here")
        if max_batch < 1:
            raise UsageError(f"max_batch must be >= 1, got {max_batch}")
        self.model = model.eval()
        self.device = model_device(model)
        self.dtype = dtype
        self.channels_last = channels_last
        self.max_batch = int(max_batch)
        self.net_w, self.net_h = model.input_size
        self.letterboxed = letterboxed(model)
        self.head_specs = model.head_specs
        self.nms_kind, self.beta_nms, self.gate = nms_policy(self.head_specs)
        self.is_cuda = self.device.type == "cuda"
        self.cuda_graph = bool(cuda_graph) and self.is_cuda
        if self.is_cuda and cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        self.net = FastNet(model, dtype, channels_last, cpu_fusion)
        self.compiled = bool(compile)
        self._compile_mode = None if compile is True or not compile else str(compile)
        self.static_post_max_batch = int(static_post_max_batch) if self.cuda_graph else 0
        self.cand_cap, self.entry_cap = int(cand_cap), int(entry_cap)
        # every head decoded by its own decoder module; in the graph when all of them can be
        self._decoder = HeadsDecoder(model.netdef).to(self.device)
        self._in_graph_decode = self._decoder.graph_safe
        # network + graph-safe decode: the unit a CUDA graph captures and torch.compile compiles
        # (inductor then also fuses the heads' and the decode's elementwise operations)
        self._net_decode = self._net_decode_eager
        if self.compiled:
            self._net_decode = torch.compile(self._net_decode_eager, mode=self._compile_mode, dynamic=False)
        self._net_graphs: dict[int, _Captured] = {}
        self._post_graphs: dict[tuple, tuple[_Captured, StaticPostprocess]] = {}
        self._pinned: Tensor | None = None
        self._upload_done = None
        self.graph_errors: list[str] = []  # captures that failed (the eager path ran instead)
        # the streaming command's runner protocol (darknet_py.stream.Runner): on the CPU its workers
        # prepare photos with the same per-photo code, and detect_prepared takes them
        self.accepts_tensors = True
        self.host_prepare = None if self.is_cuda else partial(fit, net_w=self.net_w, net_h=self.net_h,
                                                              letterboxed=self.letterboxed)

    # -- description ----------------------------------------------------------------------
    def describe(self) -> str:
        parts = [str(self.dtype).replace("torch.", ""), "channels_last" if self.channels_last else "NCHW",
                 self.device.type]
        if self.compiled:
            parts.append("compiled" + (f" ({self._compile_mode})" if self._compile_mode else ""))
        if self.cuda_graph:
            parts.append("cuda graph" + (" + in-graph decode" if self._in_graph_decode else "")
                         + (f" + in-graph postprocess (batch <= {self.static_post_max_batch})"
                            if self._static_post_ok() else ""))
        if any(getattr(m, "packed", None) is not None for m in self.net.layers):
            parts.append("oneDNN fused convs")
        return ", ".join(parts)

    # -- network --------------------------------------------------------------------------
    def _net_decode_eager(self, x: Tensor):
        outs = self.net(x)
        return outs, (self._decoder(outs) if self._in_graph_decode else None)

    def _decode(self, outs: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        return self._decoder(list(outs))

    def _bucket(self, n: int) -> int:
        b = 1
        while b < n:
            b *= 2
        return min(b, self.max_batch)

    def _net_graph(self, batch: int) -> _Captured | None:
        g = self._net_graphs.get(batch)
        if g is None and batch not in self._net_graphs:
            x = torch.zeros((batch, 3, self.net_h, self.net_w), dtype=self.dtype, device=self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)

            try:
                g = _Captured(self._net_decode, (x,))
            except Exception as e:  # noqa: BLE001 - any capture failure: run eagerly, say why
                self.graph_errors.append(f"network, batch {batch}: {type(e).__name__}: {e}")
                warnings.warn(f"CUDA graph capture failed ({self.graph_errors[-1]}); running eagerly", stacklevel=2)
                torch.cuda.synchronize()
                g = None
            self._net_graphs[batch] = g
        return g

    def _static_post_ok(self) -> bool:
        return self.cuda_graph and self._in_graph_decode and self.static_post_max_batch > 0

    def _post_graph(self, batch: int, thresh: float, nms: float, net: _Captured):
        key = (batch, float(thresh), float(nms))
        if key not in self._post_graphs:
            boxes, obj, cls = net.outputs[1]
            post = StaticPostprocess(batch, boxes.shape[1], cls.shape[2], thresh, nms, self.nms_kind, self.beta_nms,
                                     self.cand_cap, self.entry_cap)
            # any finite geometry for rows never filled
            geom = torch.from_numpy(geometry_rows([letterbox_info(1, 1, 1, 1)] * batch)).to(self.device)
            n_valid = torch.zeros((), dtype=torch.int64, device=self.device)
            fn = post.__call__
            if self.compiled:  # ~190 small kernels fused into a few dozen: the batch-1 latency
                fn = torch.compile(fn, mode=self._compile_mode, dynamic=False)
            try:
                g = _Captured(lambda gm, nv: fn(boxes, obj, cls, gm, nv), (geom, n_valid))
                self._post_graphs[key] = (g, post, {"infos": None})
            except Exception as e:  # noqa: BLE001
                self.graph_errors.append(f"postprocess, batch {batch}: {type(e).__name__}: {e}")
                warnings.warn(f"CUDA graph capture failed ({self.graph_errors[-1]}); post-processing eagerly",
                              stacklevel=2)
                torch.cuda.synchronize()
                self._post_graphs[key] = None
        return self._post_graphs[key]

    def _prepare_input(self, x: Tensor) -> Tensor:
        if not torch.is_tensor(x):
            raise UsageError(f"expected a tensor batch, got {type(x).__name__}")
        if x.dim() == 3:
            x = x[None]
        if x.dtype == torch.uint8:
            if x.shape[-1] == 3 and x.shape[1] != 3:  # NHWC frames
                x = x.permute(0, 3, 1, 2)
            x = u8_to_float(x.to(self.device, non_blocking=True))
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (self.net_h, self.net_w):
            raise UsageError(f"expected a (N, 3, {self.net_h}, {self.net_w}) batch, got {tuple(x.shape)}")
        return x.to(self.device)

    @torch.no_grad()
    def _run(self, x: Tensor) -> tuple[list[Tensor], tuple | None, _Captured | None]:
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
    def forward(self, x: Tensor) -> list[Tensor]:
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
                      nms: float = DEFAULT_NMS) -> list[Detections]:
        """A prepared batch (letterboxed float, or uint8 (N,3,H,W)/(N,H,W,3) at network size) and
        one :class:`LetterboxInfo` per row -> one Detections per row, as
        ``detector.postprocess(model, model(x), infos, thresh, nms)``."""
        x = self._prepare_input(x)
        if x.shape[0] != len(infos):
            raise UsageError(f"{x.shape[0]} images but {len(infos)} infos")
        out: list[Detections] = []
        for s in range(0, x.shape[0], self.max_batch):
            out += self._detect_chunk(x[s:s + self.max_batch], infos[s:s + self.max_batch], thresh, nms)
        return out

    def _detect_chunk(self, x: Tensor, infos: Sequence[LetterboxInfo], thresh: float, nms: float) -> list[Detections]:
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
                     nms: float = DEFAULT_NMS) -> list[Detections]:
        """Photos (HxWx3 uint8 RGB arrays, or paths decoded strictly) -> one Detections each, as
        :func:`darknet_py.detector.detect_batch` (batches of at most ``max_batch``)."""
        out: list[Detections] = []
        images = list(images)
        for s in range(0, len(images), self.max_batch):
            rgbs = [as_rgb(im) for im in images[s:s + self.max_batch]]
            x, infos = self.prepare(rgbs)
            out += self._detect_chunk(x, infos, thresh, nms)
        return out

    detect_prepared = detect_tensor

    def detect(self, image: ImageInput, thresh: float = DEFAULT_THRESH, nms: float = DEFAULT_NMS) -> Detections:
        return self.detect_batch([image], thresh, nms)[0]

    # -- photo preparation ----------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, rgbs: Sequence[np.ndarray]) -> tuple[Tensor, list[LetterboxInfo]]:
        """HxWx3 uint8 RGB arrays -> (N, 3, net_h, net_w) float32 on the device and their infos,
        equal to ``darknet_py.transforms.prepare_batch`` (letterbox or stretch as the model's
        last head says). Photos of the same size are uploaded as uint8 and resized together."""
        n = len(rgbs)
        x = torch.empty((n, 3, self.net_h, self.net_w), dtype=torch.float32, device=self.device)
        infos: list[LetterboxInfo | None] = [None] * n
        groups: dict[tuple, list[int]] = {}
        for k, im in enumerate(rgbs):
            ok = im.dtype == np.uint8 if isinstance(im, np.ndarray) else torch.is_tensor(im) and im.dtype == torch.uint8
            if not ok or im.ndim != 3 or im.shape[2] != 3 or im.shape[0] == 0 or im.shape[1] == 0:
                raise UsageError("prepare: expected HxWx3 uint8 RGB arrays (numpy, or torch tensors)")
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

    def _upload(self, batches: list[list[np.ndarray]]) -> list[Tensor]:
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


__all__ = ["FastDetector", "FastNet", "FoldedConv", "letterbox_u8"]
