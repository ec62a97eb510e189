"""Darknet's thresholds: the two comparisons (and every command's defaults, from darknet_py.defaults).

A cell/anchor is a candidate when ``objectness > thresh`` (src/yolo_layer.c
``get_yolo_detections``); its class scores are ``objectness * p(class)``, set to 0 when not
``> thresh``. Both comparisons are strict. YOLOv1's ``[detection]`` head has no objectness gate
(its class values may exceed 1): there a row is a candidate when any ``objectness * p > thresh``.
"""
from __future__ import annotations

import torch

# every command's defaults, defined in darknet_py.defaults
from ..defaults import (DEFAULT_HIER_THRESH, DEFAULT_NMS, DEFAULT_THRESH, MAP_CONF_THRESH, MAP_IOU, RECALL_IOU,
                        RECALL_NMS, RECALL_THRESH, VALID_NMS, VALID_THRESH)

Tensor = torch.Tensor


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
