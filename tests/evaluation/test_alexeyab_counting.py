"""AlexeyAB's TP / FP at conf_thresh, against a transliteration of its C loops.

The reference below follows AlexeyAB's src/detector.c validate_detector_map and src/box.c
do_nms_sort statement by statement on a Python list of dets (list.sort is stable, as glibc's
qsort, a merge sort, is); darknet_py computes the same counts from its batched post-process
(Detections.array_rank) and evaluation.alexeyab_conf_counts.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.evaluation import GroundTruth, ImageDetections, evaluate
from darknet_py.postprocess import postprocess_decoded
from darknet_py.transforms import letterbox_info

SIDE = 100  # photo = network size: the letterbox is the identity, boxes in pixels are relative * SIDE
THRESH, NMS, IOU, CONF = .005, .45, .5, .25


def box_iou(a, b) -> float:
    """Darknet's box_iou on (x, y, w, h) centre boxes."""
    def overlap(x1, w1, x2, w2):
        return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
    w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    inter = 0.0 if w < 0 or h < 0 else w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def reference_counts(boxes, obj, probs, truths, classes):
    """get_yolo_detections + do_nms_sort + validate_detector_map's counting, as Darknet's C does them."""
    dets = []
    for i in range(len(obj)):
        if obj[i] > THRESH:
            p = [float(v) if v > THRESH else 0.0 for v in (obj[i] * probs[i]).astype(np.float32)]
            dets.append({"bbox": [float(v) for v in boxes[i]], "prob": p})
    for k in range(classes):
        dets.sort(key=lambda d: -d["prob"][k])
        for i in range(len(dets)):
            if dets[i]["prob"][k] == 0:
                continue
            for j in range(i + 1, len(dets)):
                if box_iou(dets[i]["bbox"], dets[j]["bbox"]) > NMS:
                    dets[j]["prob"][k] = 0
    tp, fp = [0] * classes, [0] * classes
    found_truths: list[int] = []  # unique_truth_index of the image's earlier detections
    for d in dets:
        for class_id in range(classes):
            prob = d["prob"][class_id]
            if prob > 0:
                truth_index, max_iou = -1, 0.0
                for j, (t_box, t_cls) in enumerate(truths):
                    cur = box_iou(d["bbox"], t_box)
                    if cur > IOU and class_id == t_cls and cur > max_iou:
                        max_iou, truth_index = cur, j
                if prob > CONF:
                    if truth_index > -1 and truth_index not in found_truths:
                        tp[class_id] += 1
                    else:
                        fp[class_id] += 1
                found_truths.append(truth_index)
    return tp, fp


def scene(seed: int, classes: int = 3):
    """A few truths and many jittered, multi-class candidate boxes around them (duplicates that
    survive NMS, scores on both sides of .25, boxes of one truth claimed by other classes)."""
    rng = np.random.default_rng(seed)
    truths = [((rng.uniform(.3, .7), rng.uniform(.3, .7), rng.uniform(.15, .3), rng.uniform(.15, .3)),
               int(rng.integers(classes))) for _ in range(3)]
    boxes = []
    for _ in range(40):
        (x, y, w, h), _ = truths[int(rng.integers(len(truths)))]
        boxes.append((x + rng.normal(0, .02), y + rng.normal(0, .02), w * rng.uniform(.7, 1.3),
                      h * rng.uniform(.7, 1.3)))
    boxes = np.array(boxes, np.float32)
    obj = rng.uniform(0, 1, len(boxes)).astype(np.float32)
    probs = rng.dirichlet(np.full(classes, .5), len(boxes)).astype(np.float32)
    return boxes, obj, probs, truths


def ours(boxes, obj, probs, truths, classes, counting):
    info = letterbox_info(SIDE, SIDE, SIDE, SIDE)
    d = postprocess_decoded(torch.from_numpy(boxes)[None], torch.from_numpy(obj)[None], torch.from_numpy(probs)[None],
                            [info], THRESH, NMS, array_order=True)[0]
    dets = ImageDetections(0, d.boxes.double().numpy(), d.scores.numpy(), d.classes.numpy(), d.array_rank.numpy())
    t_xyxy = np.array([[(x - w / 2) * SIDE, (y - h / 2) * SIDE, (x + w / 2) * SIDE, (y + h / 2) * SIDE]
                       for (x, y, w, h), _ in truths])
    gt = GroundTruth(0, "scene.jpg", SIDE, SIDE, t_xyxy, np.array([c for _, c in truths], np.int64))
    rep = evaluate([gt], [dets], [str(c) for c in range(classes)], iou=IOU, conf_thresh=CONF, coco=False,
                   counting=counting)
    return [r.tp_conf for r in rep.rows], [r.fp_conf for r in rep.rows], rep


@pytest.mark.parametrize("seed", range(12))
def test_alexeyab_counts_equal_its_c_loop(seed):
    boxes, obj, probs, truths = scene(seed)
    tp, fp, rep = ours(boxes, obj, probs, truths, 3, "alexeyab")
    assert (tp, fp) == reference_counts(boxes, obj, probs, truths, 3)
    assert rep.tp == sum(tp) and rep.fp == sum(fp) and rep.fn == len(truths) - sum(tp)


def test_the_rule_changes_counts_on_these_scenes():
    """The scenes are ones where the array order matters: on some, AlexeyAB's counts differ from
    counting in ranking order (else the test above could not tell the rules apart)."""
    differ = 0
    for seed in range(12):
        boxes, obj, probs, truths = scene(seed)
        a = ours(boxes, obj, probs, truths, 3, "alexeyab")[:2]
        r = ours(boxes, obj, probs, truths, 3, "ranking")[:2]
        differ += a != r
    assert differ >= 2


def test_counting_needs_the_array_order():
    from darknet_py.errors import UsageError
    gt = GroundTruth(0, "a.jpg", 10, 10, np.array([[0, 0, 5, 5.]]), np.array([0]))
    det = ImageDetections(0, np.array([[0, 0, 5, 5.]]), np.array([.9]), np.array([0]))
    with pytest.raises(UsageError, match="array order"):
        evaluate([gt], [det], ["a"], coco=False, counting="alexeyab")
    with pytest.raises(UsageError, match="counting"):
        evaluate([gt], [det], ["a"], coco=False, counting="voc")
