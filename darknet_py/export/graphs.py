"""What an export traces: the model's raw heads or its decoded rows, with folded convolutions.

What is traced is not the model's ConvBlocks (whose refold check reads ``data_ptr`` and
``_version``, which tracing and torch.export cannot follow) but the same network with each conv
block replaced by its :class:`~darknet_py.layers.convolutional.FoldedConv` (the one folded conv,
shared with darknet_py.fast): its folded tensors become the graph's initializers. Every export
is compared with the model itself (darknet_py.export.check).
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import torch
import torch.nn as nn

from ..boxes import cxcywh_to_xyxy
from ..device import model_device
from ..errors import CfgError, ExportError
from ..graph import DarknetModel
from ..layers.convolutional import ConvBlock, FoldedConv
from ..layers.head import HeadsDecoder
from ..layers.yolo import YoloSpec, size_of

INPUT_NAME = "images"
DECODED_NAME = "detections"


class DecodedHeads(nn.Module):
    """A DarknetModel followed by the YOLOv3 box decode, as plain tensor code.

    ``forward(x)`` -> (N, M, 5 + C): x1, y1, x2, y2 in network pixels, objectness,
    objectness * sigmoid(class), rows in :func:`darknet_py.layers.head.decode_heads`' order (heads
    in layer order, cell-major then anchor). The decode is each head's own
    (``layers.yolo.YoloDecode``: cx = (col + sigma(tx)) / w, w = pw * exp(tw) / net_w, ...), scaled
    to network pixels and turned into corners. Its grids and anchors are buffers (a trace holds them
    as constants); the loop over heads is over the cfg's fixed list, unrolled once per head, so a
    trace or ONNX graph holds no loop.

    ``any_size=True`` (a dynamic-size export): each head decodes with ``YoloDecode.any_size``, its
    grid and sizes and the network size taken from the tensors' shapes instead of the buffers, so
    the trace holds no size; the same arithmetic. ``guard``: a module run on the input first
    (darknet_py.export.dynamic.SizeGuard).
    """

    def __init__(self, model: DarknetModel, any_size: bool = False, guard: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.any_size = bool(any_size)
        self.guard = guard
        others = [s for s in model.head_specs if not isinstance(s, YoloSpec)]
        if others or not model.head_specs:
            what = (f"a {type(others[0]).__name__} head (layer {others[0].index}, cfg line {others[0].line})"
                    if others else "no detection head")
            raise CfgError(f"the decoded export covers [yolo] heads only; this network has {what}: export the raw "
                           "outputs instead", path=model.netdef.path)
        self.net_w, self.net_h = (int(v) for v in model.input_size)
        self.decoder = HeadsDecoder(model.netdef).to(model_device(model))
        self.train(model.training)  # a new Module starts in training mode; follow the model's

    @property
    def num_rows(self) -> int:
        return sum(d.a * d.h * d.w for d in self.decoder.decoders)

    def decode(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Head outputs (as ``model(x)`` returns them) -> (N, M, 5 + C)."""
        boxes, obj, probs = self.decoder(list(outputs))
        scale = torch.tensor([self.net_w, self.net_h, self.net_w, self.net_h], dtype=boxes.dtype, device=boxes.device)
        return self._rows(boxes, obj, probs, scale)

    @staticmethod
    def _rows(boxes: torch.Tensor, obj: torch.Tensor, probs: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        obj = obj[..., None]
        return torch.cat((cxcywh_to_xyxy(boxes * scale), obj, obj * probs), -1)

    def decode_any_size(self, outputs: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """:meth:`decode` with the network size read from the input ``x`` and each grid from its head."""
        net = size_of(x)  # (width, height)
        parts = [d.any_size(o, net) for d, o in zip(self.decoder.decoders, outputs)]
        boxes, obj, probs = (torch.cat(t, 1) for t in zip(*parts))  # heads in layer order, as decode_heads
        return self._rows(boxes, obj, probs, net.repeat(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.guard is not None:
            x = self.guard(x)
        if self.any_size:
            return self.decode_any_size(self.model(x), x)
        return self.decode(self.model(x))


class RawHeads(nn.Module):
    """The model with a tuple output (torch.jit.trace wants tuples, not lists); ``guard`` as in
    :class:`DecodedHeads`."""

    def __init__(self, model: DarknetModel, guard: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.guard = guard
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.guard is not None:
            x = self.guard(x)
        return tuple(self.model(x))


def check_model(model) -> None:
    if not isinstance(model, DarknetModel):
        raise ExportError(f"expected a darknet_py DarknetModel, got {type(model).__name__}")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise ExportError(f"expected a float32 model, got {', '.join(sorted(map(str, dtypes)))}; export the float32 "
                          "model (half=True makes the float16 file)")


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Inference semantics for the export and its reference runs; the caller's mode is restored."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def prepared(model: DarknetModel, half: bool) -> tuple[DarknetModel, DarknetModel]:
    """(reference, lean).

    reference: the model itself (float32; run as the user has it, NHWC or not) or, for ``half``, a
    float16 NCHW copy; lean: the same network with each ConvBlock replaced by a FoldedConv in
    contiguous NCHW (NHWC is a runtime choice of the eager model, not part of the exported graph).
    Nothing else is copied: the 240 MB of a yolov3 are not duplicated, and the model is left as it
    was (only its fold cache is refreshed).
    """
    ref = model
    if half:
        ref = copy.deepcopy(model).to_channels_last(False).half().eval()
    lean = copy.copy(ref)  # shares netdef and the routing tables; gets its own module table
    lean._modules = dict(ref._modules)
    with torch.no_grad():
        lean.layers = nn.ModuleList([FoldedConv(layer) if isinstance(layer, ConvBlock) else layer
                                     for layer in ref.layers])
    lean.channels_last = False
    lean.training = False
    return ref, lean


def target(m: DarknetModel, decode: bool, any_size: bool = False, guard: nn.Module | None = None) -> nn.Module:
    """What is traced (or run as the reference): raw heads or decoded rows; ``any_size`` and
    ``guard`` for a dynamic-size export (see :class:`DecodedHeads`)."""
    # eval() on the wrapper too: a new Module is in training mode, and the ONNX exporter restores
    # the wrapper's mode recursively after export (which would put the BN path back on).
    return (DecodedHeads(m, any_size, guard) if decode else RawHeads(m, guard)).eval()


def output_names(m: DarknetModel, decode: bool) -> list[str]:
    return [DECODED_NAME] if decode else [f"yolo_{i}" for i in m.heads]


__all__ = ["DECODED_NAME", "DecodedHeads", "INPUT_NAME", "RawHeads", "check_model", "eval_mode", "output_names",
           "prepared", "target"]
