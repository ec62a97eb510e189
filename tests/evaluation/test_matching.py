"""darknet_py.evaluation's matching of detections with truths and its precision-recall curves: truth fed
back as detections, the IoU threshold where geometry puts it, a PR curve and its APs computed by hand,
and a plain transcription of the VOC devkit loop."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from darknet_py import evaluation
from darknet_py.evaluation import (coco_detections, coco_evaluate, coco_ground_truth, evaluate, match_detections,
                                  pr_curve, voc_ap)
from tests.helpers.evaluation import dets, gt, random_boxes


# --------------------------------------------------------------------- truth fed back as detections

@pytest.mark.parametrize("random_scores", [False, True])
def test_ground_truth_as_detections_is_perfect(random_scores):
    rng = np.random.default_rng(1)
    truths, found = [], []
    for i in range(6):
        n = int(rng.integers(1, 12))
        b, c = random_boxes(rng, n), rng.integers(0, 4, n)
        truths.append(gt(10 + i, b, c))
        found.append(dets(10 + i, b, rng.random(n) if random_scores else np.ones(n), c))
    r = evaluate(truths, found, ["a", "b", "c", "d"], conf_thresh=0.0)
    for row in r.rows:
        if row.truths:
            assert row.ap == 1.0 and row.ap11 == 1.0
    assert r.map == r.map11 == r.global_ap == r.global_ap11 == r.per_image_ap == 1.0
    assert (r.precision, r.recall, r.fp, r.fn) == (1.0, 1.0, 0, 0)
    assert (r.coco.AP, r.coco.AP50, r.coco.AP75) == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)


# --------------------------------------------------------- the IoU threshold where geometry puts it

@pytest.mark.parametrize("w", [30.0, 90.0])
def test_shift_crosses_voc_threshold_at_w_over_3(w):
    # same-size boxes shifted by d: IoU = (w - d) h / ((w + d) h) = 0.5 exactly at d = w / 3
    truth = [gt(1, [100, 50, 100 + w, 70], [0])]
    for d, expect in [(w / 3 - 0.01, 1.0), (w / 3 + 0.01, 0.0), (0.0, 1.0)]:
        m = match_detections(truth, [dets(1, [100 + d, 50, 100 + w + d, 70], [0.9], [0])])
        assert m.iou[0] == pytest.approx((w - d) / (w + d))
        assert bool(m.tp[0]) == (expect == 1.0) and bool(m.fp[0]) == (expect == 0.0)
        c = pr_curve(m, 0)
        assert voc_ap(c.recall, c.precision) == expect
    # IoU exactly 0.5 (d = 10, w = 30: 400 / 800) is not > 0.5: strict as in VOC and AlexeyAB
    m = match_detections([gt(1, [0, 0, 30, 20], [0])], [dets(1, [10, 0, 40, 20], [0.9], [0])])
    assert m.iou[0] == 0.5 and m.fp[0] and not m.tp[0]


@pytest.mark.parametrize("u", [0.45, 0.52, 0.62, 0.77, 0.93, 0.97])
def test_coco_ap_counts_thresholds_below_iou(u):
    w, h = 100.0, 80.0
    d = w * (1 - u) / (1 + u)  # IoU (w - d) / (w + d) = u, away from every .05 step
    truths = [gt(3, [20, 30, 20 + w, 30 + h], [0])]
    found = [dets(3, [20 + d, 30, 20 + w + d, 30 + h], [0.8], [0])]
    stats = coco_evaluate(coco_ground_truth(truths, None, ["x"]), coco_detections(found))
    expected = sum(u >= t for t in np.arange(10) * 0.05 + 0.5) / 10
    assert stats.AP == pytest.approx(expected, abs=1e-12)
    assert (stats.AP50, stats.AP75) == pytest.approx((float(u >= 0.5), float(u >= 0.75)), abs=1e-12)


# ------------------------------------------------------------------------------- a PR curve by hand

def test_hand_computed_pr_curve():
    truths = [
        gt(1, [[0, 0, 10, 10], [50, 50, 70, 70], [100, 0, 120, 20]], [0, 0, 0], ignore=[0, 0, 1]),  # T1 T2 Tign
        gt(2, [[0, 0, 30, 30], [40, 40, 60, 80]], [0, 0]),                                          # T3 T4
        gt(3, [[10, 10, 40, 40]], [0]),                                                              # T5
    ]
    found = [
        dets(1, [[0, 0, 10, 10],       # .95 on T1                                   TP
                 [1, 0, 11, 10],       # .90 on T1 again, IoU 90/110                 FP (duplicate)
                 [100, 0, 120, 20],    # .80 on the ignored truth                    neither
                 [60, 50, 80, 70]],    # .50 T2 shifted by 10 of 20: IoU 10/30       FP
             [0.95, 0.90, 0.80, 0.50], [0, 0, 0, 0]),
        dets(2, [[0, 0, 30, 30], [40, 40, 60, 80]], [0.85, 0.60], [0, 0]),   # T3 TP, T4 TP
        dets(3, [[200, 200, 220, 220], [10, 10, 40, 40]], [0.70, 0.40], [0, 0]),  # background FP, T5 TP
    ]
    # counted ranking: TP FP TP FP TP FP TP, npos = 5 (the ignored truth does not count)
    # recall    1/5 1/5 2/5 2/5 3/5 3/5 4/5
    # precision 1   1/2 2/3 2/4 3/5 3/6 4/7
    m = match_detections(truths, found)
    assert m.npos.tolist() == [5] and int(m.tp.sum()) == 4 and int(m.fp.sum()) == 3
    c = pr_curve(m, 0)
    F = Fraction
    rec = [F(1, 5), F(1, 5), F(2, 5), F(2, 5), F(3, 5), F(3, 5), F(4, 5)]
    prec = [F(1), F(1, 2), F(2, 3), F(2, 4), F(3, 5), F(3, 6), F(4, 7)]
    np.testing.assert_allclose(c.recall, [float(x) for x in rec], atol=1e-12)
    np.testing.assert_allclose(c.precision, [float(x) for x in prec], atol=1e-12)
    # all-point: precision made non-increasing from the right: 1 on (0, .2], 2/3 on (.2, .4],
    # 3/5 on (.4, .6], 4/7 on (.6, .8], nothing above .8
    all_point = F(1, 5) * (1 + F(2, 3) + F(3, 5) + F(4, 7))
    assert all_point == F(298, 525)
    # 11-point: t = 0, .1, .2 -> 1; .3, .4 -> 2/3; .5, .6 -> 3/5; .7, .8 -> 4/7; .9, 1 -> 0
    eleven = (3 * 1 + 2 * F(2, 3) + 2 * F(3, 5) + 2 * F(4, 7)) / 11
    assert eleven == F(701, 1155)
    assert voc_ap(c.recall, c.precision, "all") == pytest.approx(float(all_point), abs=1e-6)
    assert voc_ap(c.recall, c.precision, "11point") == pytest.approx(float(eleven), abs=1e-6)
    r = evaluate(truths, found, ["only"], coco=False)
    assert r.rows[0].ap == pytest.approx(float(all_point), abs=1e-6)
    assert r.rows[0].ap11 == pytest.approx(float(eleven), abs=1e-6)
    # conf_thresh .75: counted detections .95 TP, .90 FP, .85 TP -> TP 2, FP 1, FN 3
    r = evaluate(truths, found, ["only"], conf_thresh=0.75, coco=False)
    assert (r.tp, r.fp, r.fn) == (2, 1, 3)
    assert (r.precision, r.recall) == pytest.approx((2 / 3, 2 / 5))
    assert r.f1 == pytest.approx(2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5))
    assert r.avg_iou == pytest.approx(2 / 3)  # AlexeyAB: sum of TP IoUs (1 + 1) over TP + FP


def test_equal_scores_keep_input_order():
    truths = [gt(1, [0, 0, 10, 10], [0]), gt(2, [0, 0, 10, 10], [0])]
    # both images' detections hit their truth twice with one score: the first listed one is the TP
    found = [dets(2, [[0, 0, 10, 10], [0, 0, 10, 10]], [0.5, 0.5], [0, 0]), dets(1, [[0, 0, 10, 10]], [0.5], [0])]
    m = match_detections(truths, found)
    assert m.image.tolist() == [1, 1, 0] and m.index.tolist() == [0, 1, 0]
    assert m.tp.tolist() == [True, False, True]
    # two identical truths: both detections take the first (np.argmax), the second one is FP, no fallback
    m = match_detections([gt(1, [[0, 0, 10, 10], [0, 0, 10, 10]], [0, 0])],
                         [dets(1, [[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8], [0, 0])])
    assert m.truth.tolist() == [0, 0] and m.tp.tolist() == [True, False] and m.fp.tolist() == [False, True]


def voc_reference(truths, found, iou, num_classes):
    """voc_eval.py's loop, per class, transcribed plainly (continuous boxes, no +1)."""
    tp_all, fp_all = {}, {}
    for c in range(num_classes):
        recs = {t.image_id: (t.boxes[t.classes == c], (np.zeros(len(t.classes), bool) if t.ignore is None
                                                        else t.ignore)[t.classes == c]) for t in truths}
        taken = {k: np.zeros(len(v[0]), bool) for k, v in recs.items()}
        rows = [(d.image_id, k, d.scores[k], d.boxes[k]) for d in found for k in range(len(d.scores))
                if d.classes[k] == c]
        rows = [rows[i] for i in np.argsort(-np.array([r[2] for r in rows]), kind="stable")] if rows else []
        for image_id, k, _, bb in rows:
            bbgt, difficult = recs[image_id]
            ovmax, jmax = -np.inf, -1
            if len(bbgt):
                ixmin, iymin = np.maximum(bbgt[:, 0], bb[0]), np.maximum(bbgt[:, 1], bb[1])
                ixmax, iymax = np.minimum(bbgt[:, 2], bb[2]), np.minimum(bbgt[:, 3], bb[3])
                inters = np.maximum(ixmax - ixmin, 0.0) * np.maximum(iymax - iymin, 0.0)
                uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (bbgt[:, 2] - bbgt[:, 0]) * (bbgt[:, 3] - bbgt[:, 1]) - inters
                overlaps = inters / uni
                ovmax, jmax = np.max(overlaps), np.argmax(overlaps)
            if ovmax > iou:
                if not difficult[jmax]:
                    if not taken[image_id][jmax]:
                        tp_all[(image_id, k)], taken[image_id][jmax] = True, True
                    else:
                        fp_all[(image_id, k)] = True
            else:
                fp_all[(image_id, k)] = True
    return tp_all, fp_all


@pytest.mark.parametrize("seed, chunk", [(0, None), (1, None), (2, None), (3, 5)])
def test_matching_equals_voc_devkit_loop(seed, chunk, monkeypatch):
    if chunk:  # the IoU pairs computed a few at a time give the same answer
        monkeypatch.setattr(evaluation, "_PAIR_CHUNK", chunk)
    rng = np.random.default_rng(seed)
    truths, found = [], []
    for i in range(12):
        n = int(rng.integers(0, 8))
        # crowded integer boxes: overlaps, competing detections and equal IoUs
        b = np.round(random_boxes(rng, n, 20, 60) * 0.3)
        c = rng.integers(0, 3, n)
        truths.append(gt(i, b, c, ignore=rng.random(n) < 0.2))
        k = int(rng.integers(0, 25))
        pick = rng.integers(0, n, k) if n else np.zeros(0, int)
        jitter = np.round(b[pick] + rng.normal(0, 1.5, (k, 4))) if n else np.round(random_boxes(rng, k) * 0.3)
        cls = np.where(rng.random(k) < 0.8, c[pick], rng.integers(0, 3, k)) if n else rng.integers(0, 3, k)
        found.append(dets(i, jitter, rng.integers(0, 5, k) / 4, cls))  # many score ties
    rng.shuffle(found)
    tp_ref, fp_ref = voc_reference(truths, found, 0.5, 3)
    m = match_detections(truths, found)
    # not degenerate: TPs, duplicate FPs and detections of ignored truths all occur
    assert m.tp.sum() > 5 and (m.fp & (m.iou > 0.5)).any() and (~m.tp & ~m.fp).any()
    ids = [t.image_id for t in truths]
    got_tp = {(ids[i], k) for i, k, t in zip(m.image, m.index, m.tp) if t}
    got_fp = {(ids[i], k) for i, k, f in zip(m.image, m.index, m.fp) if f}
    assert got_tp == set(tp_ref) and got_fp == set(fp_ref)
