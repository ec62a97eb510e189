"""``[yolo]`` outputs -> boxes, as the paper and Darknet's ``get_yolo_box`` define them.

For cell (row, col) of an h x w grid and anchor (pw, ph) in network pixels:
``bx = (col + sigma(tx)) / w``, ``by = (row + sigma(ty)) / h``, ``bw = pw * e^tw / net_w``,
``bh = ph * e^th / net_h``; the head already applied the logistic (it holds ``l.output``).

AlexeyAB's ``scale_x_y=S`` needs nothing here: its ``forward_yolo_layer`` already stores
``S*sigma(t) - (S-1)/2`` in ``l.output`` (so does our head), and ``get_yolo_box`` reads that as is.
With ``new_coords=1`` the head holds no logistic (the convolution before it applied one) and
``get_yolo_box`` decodes ``bw = (x_w)^2 * 4 * pw / net_w`` (``bh`` likewise); the centre is as above.
Rows come out cell-major then anchor (Darknet's ``get_yolo_detections`` order), and all heads
are concatenated in layer order, so NMS later runs across scales.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch

Tensor = torch.Tensor


def decode_head(out: Tensor, anchors: Sequence[Tuple[float, float]], classes: int, net_w: int, net_h: int,
                new_coords: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    """One head: (N, A*(5+C), h, w) -> boxes (N, h*w*A, 4) CXCYWH relative to the network input,
    objectness (N, h*w*A), class probabilities sigma(cls) (N, h*w*A, C). ``new_coords``: the
    head's ``[yolo] new_coords=1`` (squared instead of exponential width/height)."""
    n, _, h, w = out.shape
    a = len(anchors)
    p = out.view(n, a, 5 + classes, h, w).permute(0, 3, 4, 1, 2)  # (N, h, w, A, 5+C)
    col = torch.arange(w, device=out.device, dtype=out.dtype).view(1, 1, w, 1)
    row = torch.arange(h, device=out.device, dtype=out.dtype).view(1, h, 1, 1)
    anchor = torch.tensor(anchors, device=out.device, dtype=out.dtype)  # (A, 2)
    bx = (col + p[..., 0]) / w
    by = (row + p[..., 1]) / h
    if new_coords:
        bw = p[..., 2] * p[..., 2] * 4 * anchor[:, 0] / net_w
        bh = p[..., 3] * p[..., 3] * 4 * anchor[:, 1] / net_h
    else:
        bw = torch.exp(p[..., 2]) * anchor[:, 0] / net_w
        bh = torch.exp(p[..., 3]) * anchor[:, 1] / net_h
    boxes = torch.stack((bx, by, bw, bh), -1).reshape(n, h * w * a, 4)
    return boxes, p[..., 4].reshape(n, h * w * a), p[..., 5:].reshape(n, h * w * a, classes)


def decode(outputs: Sequence[Tensor], head_specs, net_w: int, net_h: int) -> Tuple[Tensor, Tensor, Tensor]:
    """All heads, each decoded by its own kind (``DetectionHead.decode``), concatenated in layer
    order (as Darknet's get_network_boxes)."""
    parts: List[Tuple[Tensor, Tensor, Tensor]] = [spec.decode(o, net_w, net_h) for o, spec in zip(outputs, head_specs)]
    return tuple(torch.cat(t, 1) for t in zip(*parts))  # type: ignore[return-value]
