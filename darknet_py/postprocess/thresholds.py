"""Darknet's thresholds: the default values of every command, and the two comparisons.

A cell/anchor is a candidate when ``objectness > thresh`` (src/yolo_layer.c
``get_yolo_detections``); its class scores are ``objectness * p(class)``, set to 0 when not
``> thresh``. Both comparisons are strict. YOLOv1's ``[detection]`` head has no objectness gate
(its class values may exceed 1): there a row is a candidate when any ``objectness * p > thresh``.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor

# `darknet detect` / `detector test` (examples/darknet.c, test_detector): thresh .5, nms .45.
DEFAULT_THRESH = 0.5
DEFAULT_NMS = 0.45
# `detector valid` / `map` (validate_detector): objectness .005, nms .45.
VALID_THRESH = 0.005
VALID_NMS = 0.45
# `detector recall` (validate_detector_recall): thresh .001, objectness NMS .4, a truth found at IoU > .5.
RECALL_THRESH = 0.001
RECALL_NMS = 0.4
RECALL_IOU = 0.5
# `detector map`: a detection counts at IoU .5; AlexeyAB's precision/recall line at conf_thresh .25.
MAP_IOU = 0.5
MAP_CONF_THRESH = 0.25
# YOLO9000's hierarchy threshold (Darknet's -hier, default .5).
DEFAULT_HIER_THRESH = 0.5


def candidate_mask(objectness: Tensor, class_probs: Tensor, thresh: float, gate: bool = True) -> Tensor:
    """(..., R) bool: the rows Darknet looks at (``objectness > thresh``; ungated: any score > thresh)."""
    if gate:
        return objectness > thresh
    return (objectness[..., None] * class_probs > thresh).any(-1)


def class_scores(objectness: Tensor, class_probs: Tensor, thresh: float) -> Tensor:
    """(..., R, C): ``objectness * p``, 0 where not ``> thresh``."""
    probs = objectness[..., None] * class_probs
    return torch.where(probs > thresh, probs, torch.zeros_like(probs))


__all__ = ["DEFAULT_HIER_THRESH", "DEFAULT_NMS", "DEFAULT_THRESH", "MAP_CONF_THRESH", "MAP_IOU", "RECALL_IOU",
           "RECALL_NMS", "RECALL_THRESH", "VALID_NMS", "VALID_THRESH", "candidate_mask", "class_scores"]
