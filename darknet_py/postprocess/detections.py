"""What post-processing returns: one :class:`Detections` per image."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


@dataclass
class Detections:
    """Final detections of one image: one row per (box, class) that survived, best score first."""

    boxes: Tensor       # (D, 4) x1, y1, x2, y2 in photo pixels, clipped to the photo
    scores: Tensor      # (D,) objectness * class probability
    classes: Tensor     # (D,) class index (int64)
    objectness: Tensor  # (D,)
    box_index: Tensor   # (D,) which detected box (rows with the same index share a box)
    # (D,) the box's place in Darknet's dets array after do_nms_sort (AlexeyAB's map counts its TP/FP
    # at .25 in that order); only when postprocess is asked for it (array_order=True)
    array_rank: Tensor | None = None

    def __len__(self) -> int:
        return int(self.scores.numel())

    def to(self, device) -> Detections:
        return Detections(self.boxes.to(device), self.scores.to(device), self.classes.to(device),
                          self.objectness.to(device), self.box_index.to(device),
                          None if self.array_rank is None else self.array_rank.to(device))


_FIELDS = ("boxes", "scores", "classes", "objectness", "box_index")


def detections_to(dets: Sequence[Detections], device) -> list[Detections]:
    """Many images' Detections moved together: one copy per field, 5 in all, instead of 5 per
    image (each a host synchronisation when leaving a GPU). Values and dtypes as ``d.to(device)``."""
    dets = list(dets)
    device = torch.device(device)
    if not dets or all(d.scores.device == device for d in dets):
        return dets
    # (an array_rank rides along only in the one-at-a-time path)
    same = all(d.array_rank is None for d in dets) and all(
        getattr(d, f).device == getattr(dets[0], f).device and getattr(d, f).dtype == getattr(dets[0], f).dtype
        for d in dets for f in _FIELDS)
    if not same:  # torch.cat would move or promote: one at a time
        return [d.to(device) for d in dets]
    return _moved_together(dets, device)


def _moved_together(dets: list[Detections], device: torch.device) -> list[Detections]:
    counts = [len(d) for d in dets]
    fields = [torch.split(torch.cat([getattr(d, f) for d in dets]).to(device), counts) for f in _FIELDS]
    return [Detections(*(part[k] for part in fields)) for k in range(len(dets))]


def split_by_image(fields: Sequence[Tensor], counts: list[int]) -> list[Detections]:
    """Image-major rows of (boxes, scores, classes, objectness, box_index[, array_rank]) -> one
    Detections per image."""
    parts = [torch.split(f, counts) for f in fields]
    return [Detections(*(p[k] for p in parts)) for k in range(len(counts))]


__all__ = ["Detections", "detections_to", "split_by_image"]
