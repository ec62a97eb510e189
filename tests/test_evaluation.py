"""darknet_py.evaluation: every expected value comes from geometry, a hand computation written out
here, a plain transcription of the VOC devkit loop, or pycocotools itself."""
from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import time
from fractions import Fraction

import numpy as np
import pytest

from darknet_py import evaluation
from darknet_py.errors import DataError
from darknet_py.evaluation import (
    COCO_STAT_NAMES,
    GroundTruth,
    ImageDetections,
    c_float6,
    coco_detections,
    coco_evaluate,
    coco_ground_truth,
    evaluate,
    match_detections,
    per_image_ap,
    plot_pr_curves,
    pr_curve,
    voc_ap,
)


def gt(image_id, boxes, classes, ignore=None, areas=None, size=(640, 480)):
    return GroundTruth(image_id, f"{image_id:06d}.jpg", size[0], size[1], np.asarray(boxes, np.float64).reshape(-1, 4),
                       np.asarray(classes, np.int64).reshape(-1),
                       None if areas is None else np.asarray(areas, np.float64),
                       None if ignore is None else np.asarray(ignore, bool))


def dets(image_id, boxes, scores, classes):
    return ImageDetections(image_id, np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64),
                           np.asarray(classes, np.int64).reshape(-1))


def random_boxes(rng, n, lo=8.0, hi=120.0):
    xy = rng.uniform(0, 500, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(lo, hi, (n, 2))], axis=1)


def pycocotools_stats(gt_path, dt_path, image_ids):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO(str(gt_path))
        ev = COCOeval(cg, cg.loadRes(str(dt_path)), "bbox")
        ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float("nan") if v == -1 else float(v) for v in ev.stats]


def same(a, b):
    a, b = list(a), list(b)
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b))


# 1. truth fed back as detections --------------------------------------------------------------

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


# 2. the IoU threshold where geometry puts it ----------------------------------------------------

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


# 3. a PR curve by hand ----------------------------------------------------------------------

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


# 4. COCO: our json and pycocotools agree exactly ----------------------------------------------

def test_coco_evaluate_equals_pycocotools_on_written_json(tmp_path):
    rng = np.random.default_rng(7)
    cat_ids = [1, 3, 18]
    truths, found = [], []
    for i in range(30):
        n = int(rng.integers(0, 9))
        b = random_boxes(rng, n, 4, 200)
        area = None if i % 2 else (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) * rng.uniform(0.5, 1, n)
        truths.append(gt(100 + i, b, rng.integers(0, 3, n), ignore=rng.random(n) < 0.1, areas=area))
        k = int(rng.integers(0, 15))
        pick = b[rng.integers(0, n, k)] + rng.normal(0, 5, (k, 4)) if n else random_boxes(rng, k)
        found.append(dets(100 + i, pick, rng.random(k), rng.integers(0, 3, k)))
    evaluated = truths[:20]  # the json also holds 10 images that were not run
    gt_dict = coco_ground_truth(truths, cat_ids, ["a", "b", "c"])
    records = coco_detections(found[:20], cat_ids)
    gt_path, dt_path = tmp_path / "instances.json", tmp_path / "coco_results.json"
    gt_path.write_text(json.dumps(gt_dict))
    dt_path.write_text(json.dumps(records))
    assert json.loads(dt_path.read_text()) == records  # %f-rounded floats survive the file unchanged
    ids = [t.image_id for t in evaluated]
    want = pycocotools_stats(gt_path, dt_path, ids)
    from_files = coco_evaluate(gt_path, dt_path, ids)
    in_memory = coco_evaluate(gt_dict, records, ids)
    assert same(from_files.values(), want) and same(in_memory.values(), want)
    assert "Average Precision" in in_memory.summary
    # the restriction matters: over every image, the 10 unrun images' truths become misses
    assert same(coco_evaluate(gt_dict, records).values(), pycocotools_stats(gt_path, dt_path, gt_dict_ids(gt_dict)))
    assert coco_evaluate(gt_dict, records).AR100 < from_files.AR100
    r = evaluate(evaluated, found[:20], ["a", "b", "c"], category_ids=cat_ids)
    assert same(r.coco.values(), want)


def gt_dict_ids(d):
    return [im["id"] for im in d["images"]]


def test_coco_records_and_annotations_format():
    t = gt(5, [[1.5, 2.25, 11.5, 22.25]], [1], ignore=[True])
    d = coco_ground_truth([t], [7, 9], ["p", "q"])
    assert d["images"] == [{"id": 5, "file_name": "000005.jpg", "width": 640, "height": 480}]
    assert d["annotations"] == [{"id": 1, "image_id": 5, "category_id": 9, "bbox": [1.5, 2.25, 10.0, 20.0],
                                 "area": 200.0, "iscrowd": 1}]
    assert d["categories"] == [{"id": 7, "name": "p"}, {"id": 9, "name": "q"}]
    rec = coco_detections([dets(5, [[0.1234567, 1, 2.0000004, 3]], [0.87654321], [0])], [7, 9])
    assert rec == [{"image_id": 5, "category_id": 7, "bbox": [0.123457, 1.0, 1.876544, 2.0], "score": 0.876543}]


def test_c_float6_is_printf_f():
    rng = np.random.default_rng(5)
    k = rng.integers(-10**9, 10**9, 20000)
    ties = (k + 0.5) / 1e6  # next to (or exactly on) a rounding boundary of the sixth decimal
    v = np.concatenate([rng.uniform(-700, 700, 20000), ties, np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf),
                        np.arange(-3000, 3000) / 128, [0.0, -0.0, 5e-7, -5e-7, 1e300, 2.0**53, np.inf, np.nan]])
    got = c_float6(v)
    want = np.array([float(f"{x:f}") for x in v])
    assert np.array_equal(got, want, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(want))


# 5. the rebuttal's metrics --------------------------------------------------------------------

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


# 6. edge cases --------------------------------------------------------------------------------

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
        voc_ap([0.5], [1.0], "101point")
    assert voc_ap([], [], "all") == 0.0 and voc_ap([], [], "11point") == 0.0
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


# 7. speed sanity ------------------------------------------------------------------------------

def test_match_detections_speed():
    rng = np.random.default_rng(3)
    truths = [gt(i, random_boxes(rng, 7), rng.integers(0, 20, 7)) for i in range(1000)]
    found = [dets(i, random_boxes(rng, 200), rng.random(200), rng.integers(0, 20, 200)) for i in range(1000)]
    t0 = time.perf_counter()
    m = match_detections(truths, found)
    assert time.perf_counter() - t0 < 5.0
    assert len(m.scores) == 200_000 and int(m.tp.sum() + m.fp.sum()) == 200_000
