"""darknet_py.evaluation's reports: the metrics the YOLOv3 paper's rebuttal proposes (global AP, per-image
AP), edge cases (no detections, classes without truth, nothing at all, bad input), the PR plot, and the
matching's speed."""
from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
import pytest

from darknet_py.errors import DataError
from darknet_py.evaluation import COCO_STAT_NAMES, evaluate, match_detections, per_image_ap, plot_pr_curves, voc_ap
from tests.helpers.evaluation import dets, gt, random_boxes


# ----------------------------------------------- the rebuttal's metrics: global AP and per-image AP

def test_global_ap_pools_classes():
    truths = [gt(1, [0, 0, 10, 10], [0]), gt(2, [0, 0, 10, 10], [1]), gt(3, np.zeros((0, 4)), [])]
    found = [dets(1, [0, 0, 10, 10], [0.9], [0]),
             dets(2, [[50, 50, 60, 60], [0, 0, 10, 10]], [0.8, 0.3], [1, 1]),
             dets(3, [0, 0, 5, 5], [0.1], [0])]
    # class 0: TP(.9) FP(.1) -> AP 1. class 1: FP(.8) TP(.3), precision 1/2 at recall 1 -> AP 1/2 (11-point too)
    # pooled, npos 2: TP FP TP FP -> recall 1/2 1/2 1 1, precision 1 1/2 2/3 1/2
    #   all-point: 1/2 * 1 + 1/2 * 2/3 = 5/6;  11-point: (6 * 1 + 5 * 2/3) / 11 = 28/33
    r = evaluate(truths, found, ["a", "b"], coco=False)
    assert [row.ap for row in r.rows] == pytest.approx([1.0, 0.5])
    assert (r.map, r.map11) == pytest.approx((0.75, 0.75))
    assert r.global_ap == pytest.approx(5 / 6) and r.global_ap11 == pytest.approx(28 / 33)
    # per image: image 1 AP 1, image 2 AP 1/2, image 3 has no truth
    assert (r.per_image_ap, r.images_used, r.images_without_truth) == (pytest.approx(0.75), 2, 1)


def test_per_image_ap_by_hand():
    truths = [gt(1, [0, 0, 10, 10], [0]),
              gt(2, [[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1]),
              gt(3, np.zeros((0, 4)), []),
              gt(4, [0, 0, 10, 10], [0]),
              gt(5, [0, 0, 10, 10], [0], ignore=[True])]
    found = [dets(1, [0, 0, 10, 10], [0.9], [0]),                               # AP 1
             dets(2, [[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.5], [0, 1]),     # wrong class FP, TP: 1/2 * 1/2
             dets(3, [0, 0, 10, 10], [0.7], [0]),                               # no truth: not averaged
             dets(5, [0, 0, 10, 10], [0.7], [0])]                               # only an ignored truth: same
    # image 4 has truth and no detection: AP 0.  mean (1 + 1/4 + 0) / 3 = 5/12
    ap, used, without = per_image_ap(truths, found)
    assert ap == pytest.approx(5 / 12) and (used, without) == (3, 2)


# --------------------------------------------------------------------------------------- edge cases

def test_no_detections_at_all():
    truths = [gt(1, [0, 0, 10, 10], [0]), gt(2, [[5, 5, 50, 50]], [1])]
    r = evaluate(truths, [], ["a", "b"])
    assert [row.ap for row in r.rows] == [0.0, 0.0] and r.map == r.global_ap == r.per_image_ap == 0.0
    assert r.coco.values() == (0.0,) * 12 and "no detections" in r.coco.note
    assert (r.tp, r.fp, r.fn, r.precision, r.recall, r.f1) == (0, 0, 2, 0.0, 0.0, 0.0)
    assert any("no detections" in line for line in r.lines())


def test_class_without_truth_is_nan_and_excluded():
    truths = [gt(1, [[0, 0, 10, 10], [20, 0, 30, 10]], [0, 1]), gt(2, np.zeros((0, 4)), [])]
    found = [dets(1, [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], [0.9, 0.3, 0.6], [0, 0, 2]),
             dets(2, np.zeros((0, 4)), [], [])]
    # class 0: TP then FP -> 1; class 1: no detection -> 0; class 2: no truth -> NaN, mAP = (1 + 0) / 2
    r = evaluate(truths, found, ["a", "b", "c"])
    assert r.rows[0].ap == 1.0 and r.rows[1].ap == 0.0 and math.isnan(r.rows[2].ap) and math.isnan(r.rows[2].ap11)
    assert r.map == 0.5 and any("c" in n and "without ground truth" in n for n in r.notes)
    assert r.rows[2].detections == 1 and r.rows[2].fp == 1
    d = r.as_dict()
    assert d["rows"][2]["ap"] is None
    json.dumps(d, allow_nan=False)
    json.dumps(r.as_dict(curves=True), allow_nan=False)
    text = "\n".join(r.lines())
    assert "AP  AP50  AP75   APS   APM   APL" in text and "mAP@0.5" in text


def test_empty_everything():
    truths = [gt(1, np.zeros((0, 4)), [])]
    r = evaluate(truths, [dets(1, np.zeros((0, 4)), [], [])], ["a"])
    assert math.isnan(r.map) and math.isnan(r.global_ap) and math.isnan(r.per_image_ap)
    assert r.images_without_truth == 1 and r.lines()


def test_voc_ap_conventions():
    with pytest.raises(ValueError):
        voc_ap([0.5], [1.0], "12point")
    assert voc_ap([], [], "all") == 0.0 and voc_ap([], [], "11point") == 0.0 and voc_ap([], [], "101point") == 0.0
    # AlexeyAB's -points 101: t = 0, .01 .. .5 reach recall 1/2 -> 51/101
    assert voc_ap([0.5], [1.0], "101point") == pytest.approx(51 / 101)
    # precision 1 to recall .25, then 1/2 to recall 1 (AlexeyAB's loop: the best precision at recall >= t):
    # t <= .25 -> 1 (26 points), t > .25 -> 1/2 (75 points)
    assert voc_ap([0.25, 1.0], [1.0, 0.5], "101point") == pytest.approx((26 + 75 / 2) / 101)
    # one point (recall 1/2, precision 1): all-point 1/2; 11-point t = 0 .. .5 -> 6/11
    assert voc_ap([0.5], [1.0], "all") == 0.5 and voc_ap([0.5], [1.0], "11point") == pytest.approx(6 / 11)
    # recall 0.3 = 3/10 reaches t = 0.3 (py-faster-rcnn's np.arange(0, 1.1, .1) would give .30000000000000004)
    assert voc_ap([0.3], [1.0], "11point") == pytest.approx(4 / 11)


def test_unknown_image_and_bad_class_rejected():
    with pytest.raises(ValueError, match="image_id 9"):
        match_detections([gt(1, [0, 0, 1, 1], [0])], [dets(9, [0, 0, 1, 1], [1.0], [0])])
    with pytest.raises(ValueError, match="differ in length"):
        match_detections([gt(1, [0, 0, 1, 1], [0])], [dets(1, [0, 0, 1, 1], [1.0, 0.5], [0])])
    with pytest.raises(ValueError, match="class index"):
        evaluate([gt(1, [0, 0, 1, 1], [3])], [], ["a"], coco=False)


def test_plot_pr_curves(tmp_path, monkeypatch):
    truths = [gt(1, [[0, 0, 10, 10], [20, 0, 30, 10]], [0, 1])]
    r = evaluate(truths, [dets(1, [[0, 0, 10, 10], [20, 0, 30, 9]], [0.9, 0.4], [0, 1])], ["a", "b"], coco=False)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="matplotlib"):
            plot_pr_curves(r, tmp_path / "pr.png")
        return
    plot_pr_curves(r, tmp_path / "pr.png")
    assert (tmp_path / "pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if matplotlib were not installed
    with pytest.raises(DataError, match="pip install"):
        plot_pr_curves(r, tmp_path / "missing.png")


def test_coco_stat_names_order():
    assert COCO_STAT_NAMES[:6] == ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")


# ------------------------------------------------------------------------------------- speed sanity

def test_match_detections_speed():
    rng = np.random.default_rng(3)
    truths = [gt(i, random_boxes(rng, 7), rng.integers(0, 20, 7)) for i in range(1000)]
    found = [dets(i, random_boxes(rng, 200), rng.random(200), rng.integers(0, 20, 200)) for i in range(1000)]
    t0 = time.perf_counter()
    m = match_detections(truths, found)
    assert time.perf_counter() - t0 < 5.0
    assert len(m.scores) == 200_000 and int(m.tp.sum() + m.fp.sum()) == 200_000
