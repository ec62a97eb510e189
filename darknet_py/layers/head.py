"""What a detection head's spec provides, whatever its kind ([yolo], [region], [detection], ...).

``detect``, ``detector valid/map`` and the CLI never look at a head's kind: they decode each
head's output with the head's own decoder, apply Darknet's two strict thresholds
(``objectness > thresh``, ``objectness * p(class) > thresh``), correct the boxes to the photo and
run the NMS the last head names (darknet_py.postprocess). A kind states here how its photo is
prepared and which NMS Darknet runs after it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

Tensor = torch.Tensor
Decoded = tuple[Tensor, Tensor, Tensor]


class DetectionHead:
    """Mixin for the spec of a layer whose output is decoded into boxes.

    Subclasses are dataclasses with a ``classes`` field; they may override the class attributes
    below with dataclass fields, and implement :meth:`decoder` (a module, for heads whose decode
    can be traced and captured in a CUDA graph) or :meth:`decode` (plain code), one of the two.
    """

    classes: int
    # Darknet's test_detector letterboxes the photo for every head kind; YOLOv1's yolo.c stretched it.
    letterbox: bool = True
    # Overlap measure of the NMS after this head (darknet_py.boxes.NMS_KINDS) and its DIoU exponent.
    nms_kind: str = "default"
    beta_nms: float = 0.6
    # Whether a row must pass ``objectness > thresh`` before its class scores are looked at. Every
    # head but YOLOv1's: its class values may exceed 1 (softmax=0), so Darknet tests scale*p alone.
    gate_objectness: bool = True

    def decoder(self, h: int, w: int, net_w: int, net_h: int) -> nn.Module:
        """A module whose ``forward(out)`` decodes this head's output (an h x w grid) as
        :meth:`decode` does. By default it calls :meth:`decode`."""
        return _SpecDecoder(self, net_w, net_h)

    def decode(self, out: Tensor, net_w: int, net_h: int) -> Decoded:
        """The head's output ``(N, ...)`` -> boxes ``(N, R, 4)`` as cx, cy, w, h relative to the
        network input, objectness ``(N, R)`` and class probabilities ``(N, R, C)``, such that
        Darknet's score of (row, class) is ``objectness * p``. Rows in Darknet's detection order.
        By default through :meth:`decoder`."""
        return self.decoder(int(out.shape[-2]), int(out.shape[-1]), net_w, net_h).to(out.device)(out)


class _SpecDecoder(nn.Module):
    """A head whose decode is plain code (it builds tensors as it goes): not graph-capturable."""

    graph_safe = False

    def __init__(self, spec: DetectionHead, net_w: int, net_h: int):
        super().__init__()
        self.spec, self.net_w, self.net_h = spec, net_w, net_h

    def forward(self, out: Tensor) -> Decoded:
        return self.spec.decode(out, self.net_w, self.net_h)


def _concat(parts: Sequence[Decoded]) -> Decoded:
    # Darknet's get_network_boxes walks the heads in layer order: NMS then runs across scales
    boxes, obj, probs = (torch.cat(t, 1) for t in zip(*parts))
    return boxes, obj, probs


def decode_heads(outputs: Sequence[Tensor], head_specs: Sequence[DetectionHead], net_w: int, net_h: int) -> Decoded:
    """All heads' outputs, each decoded by its own kind, concatenated in layer order."""
    return _concat([spec.decode(o, net_w, net_h) for o, spec in zip(outputs, head_specs)])


class HeadsDecoder(nn.Module):
    """:func:`decode_heads` of one network as a module, its decoders built once: it moves with
    ``.to()``, and is traceable and graph-capturable when every head's decoder is (``graph_safe``)."""

    def __init__(self, netdef):
        super().__init__()
        net_w, net_h = netdef.net.width, netdef.net.height
        self.decoders = nn.ModuleList([spec.decoder(netdef.shapes[i][1], netdef.shapes[i][2], net_w, net_h)
                                       for spec, i in zip(netdef.head_specs, netdef.head_indices)])

    @property
    def graph_safe(self) -> bool:
        return all(getattr(d, "graph_safe", False) for d in self.decoders)

    def forward(self, outputs: list[Tensor]) -> Decoded:
        return _concat([d(o) for d, o in zip(self.decoders, outputs)])


__all__ = ["Decoded", "DetectionHead", "HeadsDecoder", "decode_heads"]
