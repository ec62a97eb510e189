"""The single home of the builders the darknet_py.evaluation tests (tests/evaluation) share: one image's
ground truth and detections from plain lists, and random boxes."""
from __future__ import annotations

import numpy as np

from darknet_py.evaluation import GroundTruth, ImageDetections


def gt(image_id, boxes, classes, ignore=None, areas=None, size=(640, 480)):
    """GroundTruth of image ``image_id`` (file NNNNNN.jpg, ``size`` pixels): (x1, y1, x2, y2) boxes, classes,
    optional COCO areas and ignore (crowd / difficult) flags."""
    return GroundTruth(image_id, f"{image_id:06d}.jpg", size[0], size[1], np.asarray(boxes, np.float64).reshape(-1, 4),
                       np.asarray(classes, np.int64).reshape(-1),
                       None if areas is None else np.asarray(areas, np.float64),
                       None if ignore is None else np.asarray(ignore, bool))


def dets(image_id, boxes, scores, classes):
    """ImageDetections of image ``image_id``: (x1, y1, x2, y2) boxes, scores, classes."""
    return ImageDetections(image_id, np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64),
                           np.asarray(classes, np.int64).reshape(-1))


def random_boxes(rng, n, lo=8.0, hi=120.0):
    """n (x1, y1, x2, y2) boxes, corners in [0, 500), sides in [lo, hi)."""
    xy = rng.uniform(0, 500, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(lo, hi, (n, 2))], axis=1)
