"""What a detection head's spec provides, whatever its kind ([yolo], [region], [detection], ...).

``detect``, ``detector valid/map`` and the CLI never look at a head's kind: they call
:meth:`DetectionHead.decode` on each head's output, apply Darknet's two strict thresholds
(``objectness > thresh``, ``objectness * p(class) > thresh``), correct the boxes to the photo and
run the NMS the last head names. A kind states here how its photo is prepared and which NMS
Darknet runs after it.
"""
from __future__ import annotations

from typing import Tuple

import torch

Tensor = torch.Tensor


class DetectionHead:
    """Mixin for the spec of a layer whose output is decoded into boxes.

    Subclasses are dataclasses with a ``classes`` field; they may override the class attributes
    below with dataclass fields.
    """

    classes: int
    # Darknet's test_detector letterboxes the photo for every head kind; YOLOv1's yolo.c stretched it.
    letterbox: bool = True
    # Overlap measure of the NMS after this head (darknet_py.postprocess.NMS_KINDS) and its DIoU exponent.
    nms_kind: str = "default"
    beta_nms: float = 0.6
    # Whether a row must pass ``objectness > thresh`` before its class scores are looked at. Every
    # head but YOLOv1's: its class values may exceed 1 (softmax=0), so Darknet tests scale*p alone.
    gate_objectness: bool = True

    def decode(self, out: Tensor, net_w: int, net_h: int) -> Tuple[Tensor, Tensor, Tensor]:
        """The head's output ``(N, ...)`` -> boxes ``(N, R, 4)`` as cx, cy, w, h relative to the
        network input, objectness ``(N, R)`` and class probabilities ``(N, R, C)``, such that
        Darknet's score of (row, class) is ``objectness * p``. Rows in Darknet's detection order."""
        raise NotImplementedError
