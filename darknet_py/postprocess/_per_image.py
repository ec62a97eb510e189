"""Per-image pieces of the old post-processing, kept only while the test suite still imports them
(its per-image oracle moves to tests/helpers); nothing in the package uses them."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .detections import Detections

Tensor = torch.Tensor


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


def detections_from(cand: Candidates, probs: Tensor, boxes_xyxy: Tensor) -> Detections:
    """Flatten the surviving (box, class) scores, best first (ties: box order, then class)."""
    box_i, cls_i = torch.nonzero(probs > 0, as_tuple=True)
    scores = probs[box_i, cls_i]
    order = torch.sort(scores, descending=True, stable=True).indices
    box_i, cls_i, scores = box_i[order], cls_i[order], scores[order]
    return Detections(boxes_xyxy[box_i], scores, cls_i, cand.objectness[box_i], box_i)
