"""Thresholds and Darknet's per-class NMS, as tensor code on the tensors' device.

Darknet (src/yolo_layer.c ``get_yolo_detections``, src/box.c ``do_nms_sort``):
- a cell/anchor is a candidate when ``objectness > thresh``;
- its class scores are ``objectness * sigma(class)``, set to 0 when not ``> thresh``;
- per class, candidates are sorted by that score; each one still non-zero zeroes the score of
  every later candidate whose IoU with it is ``> nms`` (strict). Scores are zeroed rather than
  boxes deleted, so one box can survive under several classes.

The greedy loop is computed without a per-box Python loop: "kept = alive and not suppressed by
a kept, higher-ranked box" has exactly one solution, reached by repeating it until nothing
changes (each round fixes at least the next rank, and a stable round is that solution).

AlexeyAB's ``[yolo] nms_kind`` swaps the overlap measure and nothing else (``diounms_sort``):
``greedynms`` compares ``box_diou`` (DIoU with exponent 0.6), ``diounms`` DIoU with ``beta_nms``;
both measures are symmetric, so the same fixed point applies.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch

from .boxes import diou_matrix_cxcywh, iou_matrix_cxcywh

Tensor = torch.Tensor

# (overlapping pair, class) entries handled at once; more classes than that go in chunks.
_NMS_CHUNK_ENTRIES = 1 << 23


@dataclass
class Candidates:
    """Boxes of one image that passed the objectness threshold (network-relative CXCYWH)."""

    boxes: Tensor       # (K, 4)
    objectness: Tensor  # (K,)
    probs: Tensor       # (K, C) objectness * class probability, 0 where not > thresh


def threshold(boxes: Tensor, objectness: Tensor, class_probs: Tensor, thresh: float, gate: bool = True) -> Candidates:
    """One image: Darknet's two comparisons, both strict. ``gate=False`` (YOLOv1's [detection])
    skips the objectness comparison: a row is a candidate when any objectness * p > thresh."""
    probs_all = objectness[:, None] * class_probs
    keep = objectness > thresh if gate else (probs_all > thresh).any(1)
    obj = objectness[keep]
    probs = probs_all[keep]
    probs = torch.where(probs > thresh, probs, torch.zeros_like(probs))
    return Candidates(boxes[keep], obj, probs)


NMS_KINDS = ("default", "greedynms", "diounms")


def overlap_matrix(a: Tensor, b: Tensor, kind: str = "default", beta: float = 0.6) -> Tensor:
    """The pairwise measure an NMS kind compares with its threshold."""
    if kind == "default":
        return iou_matrix_cxcywh(a, b)
    if kind == "greedynms":
        return diou_matrix_cxcywh(a, b, 0.6)  # box_diou hard-codes the exponent 0.6
    if kind == "diounms":
        return diou_matrix_cxcywh(a, b, beta)
    raise ValueError(f"unknown nms kind {kind!r}; expected one of {', '.join(NMS_KINDS)}")


def overlapping_pairs(boxes: Tensor, nms_thresh: float, block: int = 2048, kind: str = "default",
                      beta: float = 0.6) -> Tuple[Tensor, Tensor]:
    """All candidate pairs (a, b), a < b, whose overlap is > nms_thresh (computed in row blocks)."""
    k = boxes.shape[0]
    firsts, seconds = [], []
    for r0 in range(0, k, block):
        r1 = min(k, r0 + block)
        ii, jj = torch.nonzero(overlap_matrix(boxes[r0:r1], boxes[r0:], kind, beta) > nms_thresh, as_tuple=True)
        ii, jj = ii + r0, jj + r0
        upper = jj > ii
        firsts.append(ii[upper])
        seconds.append(jj[upper])
    return torch.cat(firsts), torch.cat(seconds)


def darknet_nms(boxes: Tensor, probs: Tensor, nms_thresh: float, kind: str = "default", beta: float = 0.6) -> Tensor:
    """``do_nms_sort``: returns ``probs`` with suppressed (box, class) scores set to 0.

    Works on the overlap graph (pairs with IoU > nms), so its cost follows the number of
    overlapping pairs, not candidates squared. Rank within a class is descending score with
    ties in candidate order (a stable sort; Darknet's qsort leaves tie order unspecified).
    """
    k, c = probs.shape
    if k == 0 or nms_thresh <= 0:
        return probs
    # A candidate whose every class score is 0 neither suppresses nor is reported: leave it out.
    live_rows = torch.nonzero((probs > 0).any(1)).flatten()
    if live_rows.numel() < k:
        out = torch.zeros_like(probs)
        out[live_rows] = darknet_nms(boxes[live_rows], probs[live_rows], nms_thresh, kind, beta)
        return out
    first, second = overlapping_pairs(boxes, nms_thresh, kind=kind, beta=beta)
    return suppress_on_pairs(probs, first, second)


def suppress_on_pairs(probs: Tensor, first: Tensor, second: Tensor) -> Tensor:
    """The greedy per-class suppression of ``do_nms_sort`` on a given overlap graph (pairs
    ``first[e] < second[e]`` that overlap beyond the threshold): ``probs`` with suppressed
    (box, class) scores set to 0. Rows with no score > 0 must have been left out by the caller."""
    k, c = probs.shape
    out = probs.clone()
    if first.numel() == 0:
        return out
    alive = probs > 0
    chunk = max(1, _NMS_CHUNK_ENTRIES // first.numel())
    for c0 in range(0, c, chunk):
        cols = slice(c0, min(c, c0 + chunk))
        pa, pb = probs[first, cols], probs[second, cols]                 # (E, classes in chunk)
        edge, cls = torch.nonzero((pa > 0) & (pb > 0), as_tuple=True)
        if edge.numel() == 0:
            continue
        a_first = pa[edge, cls] >= pb[edge, cls]
        src = torch.where(a_first, first[edge], second[edge])             # the higher-ranked box
        dst = torch.where(a_first, second[edge], first[edge])
        live = alive[:, cols]
        kept = live
        for _ in range(k):  # at most k rounds; real detections settle in a handful
            hit = kept[src, cls]
            suppressed = torch.zeros_like(live)
            suppressed[dst[hit], cls[hit]] = True
            new = live & ~suppressed
            if torch.equal(new, kept):
                break
            kept = new
        out[:, cols] = torch.where(kept, probs[:, cols], torch.zeros_like(probs[:, cols]))
    return out


@dataclass
class Detections:
    """Final detections of one image: one row per (box, class) that survived, best score first."""

    boxes: Tensor       # (D, 4) XYXY in photo pixels, clipped to the photo
    scores: Tensor      # (D,) objectness * class probability
    classes: Tensor     # (D,) class index (int64)
    objectness: Tensor  # (D,)
    box_index: Tensor   # (D,) which detected box (rows with the same index share a box)

    def __len__(self) -> int:
        return int(self.scores.numel())

    def to(self, device) -> "Detections":
        return Detections(*(t.to(device) for t in (self.boxes, self.scores, self.classes, self.objectness,
                                                    self.box_index)))


_FIELDS = ("boxes", "scores", "classes", "objectness", "box_index")


def detections_to(dets: Sequence[Detections], device) -> List[Detections]:
    """Many images' Detections moved together: one copy per field, 5 in all, instead of 5 per
    image (each a host synchronisation when leaving a GPU). Values and dtypes as ``d.to(device)``."""
    dets = list(dets)
    device = torch.device(device)
    if not dets or all(d.scores.device == device for d in dets):
        return dets
    same = all(getattr(d, f).device == getattr(dets[0], f).device and getattr(d, f).dtype == getattr(dets[0], f).dtype
               for d in dets for f in _FIELDS)
    if not same:  # torch.cat would move or promote: one at a time
        return [d.to(device) for d in dets]
    return _moved_together(dets, device)


def _moved_together(dets: List[Detections], device: torch.device) -> List[Detections]:
    counts = [len(d) for d in dets]
    fields = [torch.split(torch.cat([getattr(d, f) for d in dets]).to(device), counts) for f in _FIELDS]
    return [Detections(*(part[k] for part in fields)) for k in range(len(dets))]


def detections_from(cand: Candidates, probs: Tensor, boxes_xyxy: Tensor) -> Detections:
    """Flatten the surviving (box, class) scores, best first (ties: box order, then class)."""
    box_i, cls_i = torch.nonzero(probs > 0, as_tuple=True)
    scores = probs[box_i, cls_i]
    order = torch.sort(scores, descending=True, stable=True).indices
    box_i, cls_i, scores = box_i[order], cls_i[order], scores[order]
    return Detections(boxes_xyxy[box_i], scores, cls_i, cand.objectness[box_i], box_i)
