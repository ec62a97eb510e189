"""darknet_py.evaluation's COCO side: the json it writes and pycocotools agree exactly; the records'
and annotations' format; c_float6 rounds as printf's %f."""
from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np

from darknet_py.evaluation import c_float6, coco_detections, coco_evaluate, coco_ground_truth, evaluate
from tests.helpers.evaluation import dets, gt, random_boxes


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
