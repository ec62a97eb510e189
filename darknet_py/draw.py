"""Drawing detections the way Darknet's ``draw_detections`` does (src/image.c).

Colours come from Darknet's six-colour ramp indexed by ``class*123457 % classes``, boxes are
``im.h * .006`` pixels wide, and the label lists every class of the box above the threshold.
Darknet renders labels from its bundled glyph images; we use OpenCV's font instead.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .postprocess import Detections

_RAMP = ((1, 0, 1), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 1, 0), (1, 0, 0))


def _ramp(channel: int, x: int, top: int) -> float:
    ratio = (x / top) * 5
    i, j = int(np.floor(ratio)), int(np.ceil(ratio))
    ratio -= i
    return (1 - ratio) * _RAMP[i][channel] + ratio * _RAMP[j][channel]


def class_color(cls: int, classes: int) -> tuple[int, int, int]:
    """Darknet's colour of a class, as RGB 0..255."""
    offset = cls * 123457 % max(classes, 1)
    return tuple(int(round(255 * _ramp(ch, offset, max(classes, 1)))) for ch in (2, 1, 0))  # type: ignore


def group_by_box(dets: Detections) -> list[tuple[int, list[int]]]:
    """(box index, detection rows) per box, boxes in order of their best score. Within a box the
    rows go in class-index order, as Darknet prints them and builds the label (its colour is the
    first class's)."""
    groups: dict = {}
    classes = dets.classes.tolist()
    for row, box in enumerate(dets.box_index.tolist()):
        groups.setdefault(box, []).append(row)
    return [(box, sorted(rows, key=lambda r: classes[r])) for box, rows in groups.items()]


def _font_scale(height: int) -> float:
    return max(0.4, height / 1000)


def label_rect(label: str, x1: int, y1: int, shape: Sequence[int]) -> tuple[int, int, int, int]:
    """The filled box behind a label, (left, top, right, bottom) inclusive, for a detection whose
    top-left corner is (x1, y1) in an image of ``shape`` (height, width, ...).

    Above the box where there is room, else at the image's top (pjreddie's ``draw_label`` likewise
    moves a label that would leave the top). A label longer than the room right of x1 is shifted
    left to end at the image's right edge: neither Darknet does this (pjreddie's clips the glyphs,
    AlexeyAB's ``draw_detections_cv_v3`` draws past the edge), and a cut label cannot be read.
    A label wider than the whole image starts at its left edge."""
    height, width = int(shape[0]), int(shape[1])
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, _font_scale(height), 1)
    box_w, box_h = tw + 2, th + base + 2
    top = max(0, y1 - box_h)
    left = max(0, min(x1, width - 1 - box_w))
    return left, top, left + box_w, top + box_h


def draw_detections(rgb: np.ndarray, dets: Detections, names: Sequence[str], classes: int) -> np.ndarray:
    """A copy of ``rgb`` with boxes and labels drawn."""
    out = np.ascontiguousarray(rgb.copy())
    h = out.shape[0]
    width = max(1, int(h * .006))
    boxes = dets.boxes.detach().cpu().numpy()
    cls = dets.classes.tolist()
    scale = _font_scale(h)
    for _, rows in group_by_box(dets):
        first = rows[0]
        color = class_color(cls[first], classes)
        x1, y1, x2, y2 = (int(v) for v in boxes[first])  # Darknet truncates the corners to int
        cv2.rectangle(out, (x1, y1), (x2, y2), color, width)
        label = ", ".join(names[cls[r]] for r in rows)
        left, top, right, bottom = label_rect(label, x1, y1, out.shape)
        (_, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(out, (left, top), (right, bottom), color, -1)
        cv2.putText(out, label, (left + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out
