"""The one place box arithmetic lives: conversions, and the overlap measures NMS compares.

Formats are named in every function, never guessed from a slice:
- ``cxcywh``: centre x, centre y, width, height (Darknet's ``box`` struct), relative or in pixels;
- ``xyxy``: left, top, right, bottom corners (as drawn and as written to JSON).
"""
from __future__ import annotations

import torch

from .errors import UsageError

Tensor = torch.Tensor

# The overlap an NMS compares with its threshold ([yolo] nms_kind in AlexeyAB's cfgs): Darknet's
# IoU, or AlexeyAB's DIoU (greedynms: box_diou with its fixed exponent 0.6; diounms: beta_nms).
NMS_KINDS = ("default", "greedynms", "diounms")
# box_diou's hard-coded exponent (greedynms)
GREEDY_DIOU_BETA = 0.6


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    xy, wh = b[..., 0:2], b[..., 2:4]
    return torch.cat((xy - wh / 2, xy + wh / 2), -1)


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


def overlap_matrix(a: Tensor, b: Tensor, kind: str = "default", beta: float = 0.6) -> Tensor:
    """Pairwise overlap (len(a) x len(b)) of cxcywh boxes as an NMS of ``kind`` measures it."""
    if kind == "default":
        return iou_matrix_cxcywh(a, b)
    if kind == "greedynms":
        return diou_matrix_cxcywh(a, b, 0.6)  # GREEDY_DIOU_BETA, written out: torch.jit.script reads no globals
    if kind == "diounms":
        return diou_matrix_cxcywh(a, b, beta)
    # no f-string: torch.jit.script compiles this function (the end-to-end TorchScript export)
    raise UsageError("unknown nms kind '" + kind + "'; expected one of default, greedynms, diounms")


def overlap_pairs(a: Tensor, b: Tensor, kind: str = "default", beta: float = 0.6) -> Tensor:
    """``overlap_matrix(a[p:p+1], b[p:p+1])`` for each p: the same elementwise operations, paired
    (``a`` and ``b`` have the same length)."""
    return torch.vmap(lambda p, q: overlap_matrix(p[None], q[None], kind, beta)[0, 0])(a, b)
