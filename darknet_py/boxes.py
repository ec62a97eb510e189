"""The one place box arithmetic lives.

Formats are named, never guessed from a slice:
- ``CXCYWH``: centre x, centre y, width, height (Darknet's ``box``), relative or in pixels;
- ``XYXY``: left, top, right, bottom corners.
"""
from __future__ import annotations

import enum

import torch

Tensor = torch.Tensor


class BoxFormat(enum.Enum):
    CXCYWH = "cxcywh"  # Darknet's box struct: x, y are the centre
    XYXY = "xyxy"      # corners, as drawn and as written to JSON


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def xyxy_to_cxcywh(b: Tensor) -> Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), -1)


def _overlap(c1: Tensor, w1: Tensor, c2: Tensor, w2: Tensor) -> Tensor:
    # Darknet's overlap(): min(right) - max(left) along one axis, from centre and width.
    left = torch.maximum(c1 - w1 / 2, c2 - w2 / 2)
    right = torch.minimum(c1 + w1 / 2, c2 + w2 / 2)
    return right - left


def iou_matrix_cxcywh(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU (len(a) x len(b)) with Darknet's box_iou arithmetic (src/box.c)."""
    ax, ay, aw, ah = (t[:, None] for t in a.unbind(-1))
    bx, by, bw, bh = (t[None, :] for t in b.unbind(-1))
    ow = _overlap(ax, aw, bx, bw)
    oh = _overlap(ay, ah, by, bh)
    # box_intersection returns 0 when either overlap is negative
    inter = torch.where((ow < 0) | (oh < 0), torch.zeros_like(ow), ow * oh)
    union = aw * ah + bw * bh - inter
    return inter / union


def diou_matrix_cxcywh(a: Tensor, b: Tensor, beta: float) -> Tensor:
    """AlexeyAB's ``box_diounms``: IoU minus ``(d^2 / c^2) ** beta`` (d: centre distance, c: the
    diagonal of the smallest box enclosing both); plain IoU where c is 0. ``nms_kind=greedynms``
    calls ``box_diou``, which is the same with beta fixed at 0.6."""
    iou = iou_matrix_cxcywh(a, b)
    ax, ay, aw, ah = (t[:, None] for t in a.unbind(-1))
    bx, by, bw, bh = (t[None, :] for t in b.unbind(-1))
    cw = torch.maximum(ax + aw / 2, bx + bw / 2) - torch.minimum(ax - aw / 2, bx - bw / 2)
    ch = torch.maximum(ay + ah / 2, by + bh / 2) - torch.minimum(ay - ah / 2, by - bh / 2)
    c = cw * cw + ch * ch
    d = (ax - bx) * (ax - bx) + (ay - by) * (ay - by)
    term = torch.pow(d / torch.where(c == 0, torch.ones_like(c), c), beta)
    return torch.where(c == 0, iou, iou - term)
