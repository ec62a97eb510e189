"""``[yolo]`` outputs -> boxes, as the paper and Darknet's ``get_yolo_box`` define them.

For cell (row, col) of an h x w grid and anchor (pw, ph) in network pixels:
``bx = (col + sigma(tx)) / w``, ``by = (row + sigma(ty)) / h``, ``bw = pw * e^tw / net_w``,
``bh = ph * e^th / net_h``; the head already applied the logistic (it holds ``l.output``).
Rows come out cell-major then anchor (Darknet's ``get_yolo_detections`` order), and all heads
are concatenated in layer order, so NMS later runs across scales.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch

Tensor = torch.Tensor


def decode_head(out: Tensor, anchors: Sequence[Tuple[float, float]], classes: int, net_w: int, net_h: int
                ) -> Tuple[Tensor, Tensor, Tensor]:
    """One head: (N, A*(5+C), h, w) -> boxes (N, h*w*A, 4) CXCYWH relative to the network input,
    objectness (N, h*w*A), class probabilities sigma(cls) (N, h*w*A, C)."""
    n, _, h, w = out.shape
    a = len(anchors)
    p = out.view(n, a, 5 + classes, h, w).permute(0, 3, 4, 1, 2)  # (N, h, w, A, 5+C)
    col = torch.arange(w, device=out.device, dtype=out.dtype).view(1, 1, w, 1)
    row = torch.arange(h, device=out.device, dtype=out.dtype).view(1, h, 1, 1)
    anchor = torch.tensor(anchors, device=out.device, dtype=out.dtype)  # (A, 2)
    bx = (col + p[..., 0]) / w
    by = (row + p[..., 1]) / h
    bw = torch.exp(p[..., 2]) * anchor[:, 0] / net_w
    bh = torch.exp(p[..., 3]) * anchor[:, 1] / net_h
    boxes = torch.stack((bx, by, bw, bh), -1).reshape(n, h * w * a, 4)
    return boxes, p[..., 4].reshape(n, h * w * a), p[..., 5:].reshape(n, h * w * a, classes)


def decode(outputs: Sequence[Tensor], yolo_specs, net_w: int, net_h: int) -> Tuple[Tensor, Tensor, Tensor]:
    """All heads, concatenated in layer order (as Darknet's get_network_boxes)."""
    parts: List[Tuple[Tensor, Tensor, Tensor]] = [
        decode_head(o, spec.masked_anchors, spec.classes, net_w, net_h) for o, spec in zip(outputs, yolo_specs)]
    return tuple(torch.cat(t, 1) for t in zip(*parts))  # type: ignore[return-value]
