"""darknet_py.validate: detector valid / map / recall end to end on a generated dataset, with random weights.

The expected values come from other code paths: per-image ``detect`` for the detections,
pycocotools run directly on the files we write, and the generator's own COCO json for the truth.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_py.cli import main
from darknet_py.dataset import COCO_IDS
from darknet_py.detector import detect, load
from darknet_py.errors import DataError
from darknet_py.validate import detector_map, detector_recall, detector_valid
from tests.helpers.validate import make_eval_set, with_data_keys

_DARKNET_COCO_LINE = re.compile(r'\{"image_id":\d+, "category_id":\d+, "bbox":\[(-?\d+\.\d{6}, ){3}-?\d+\.\d{6}\], '
                                r'"score":\d\.\d{6}\}')


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_eval_set(tmp_path_factory.mktemp("shapes"))


def test_valid_writes_darknet_coco_results(shapes, tmp_path, capsys):
    ds, cfg, weights = shapes
    out = tmp_path / "res"
    assert main(["detector", "valid", str(ds.data), str(cfg), str(weights), "--results", str(out), "--batch", "5"]) == 0
    assert "16 images" in capsys.readouterr().out
    text = (out / "coco_results.json").read_text()
    lines = text.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and text.endswith("]\n")
    body = [ln.rstrip(",") for ln in lines[1:-1]]
    assert len(body) > 50, "random weights should give a fair number of detections at .005"
    assert all(_DARKNET_COCO_LINE.fullmatch(ln) for ln in body), body[:3]
    records = json.loads(text)
    assert {r["category_id"] for r in records} <= set(COCO_IDS[:6])
    gt = json.loads(ds.valid_json.read_text())
    assert {r["image_id"] for r in records} <= {im["id"] for im in gt["images"]}

    # pycocotools accepts it against the generator's own annotations
    from pycocotools.coco import COCO
    coco = COCO(str(ds.valid_json))
    assert len(coco.loadRes(str(out / "coco_results.json")).anns) == len(records)

    # Independent path: per-image detect() at Darknet's valid thresholds gives the same (class, score,
    # box) rows. detect() clips corners to [0, w-1] for drawing, the json to [0, w] as print_cocos.
    model = load(cfg, weights)
    by_image = {}
    for r in records:
        by_image.setdefault(r["image_id"], []).append(r)
    id_of = {Path(im["file_name"]).name: (im["id"], im["width"], im["height"]) for im in gt["images"]}
    checked = 0
    for rel in ds.valid_list.read_text().split():
        image_id, w, h = id_of[Path(rel).name]
        d = detect(model, str(ds.root / rel), thresh=0.005, nms=0.45)
        mine = sorted((r["category_id"], r["score"]) for r in by_image.get(image_id, []))
        want = sorted((COCO_IDS[c], s) for c, s in zip(d.classes.tolist(), d.scores.tolist()))
        assert [c for c, _ in mine] == [c for c, _ in want]
        np.testing.assert_allclose([s for _, s in mine], [s for _, s in want], atol=1e-5)  # %f rounding, batch 5 vs 1
        for r in by_image.get(image_id, []):
            x, y, bw, bh = r["bbox"]
            corners = np.clip([x, y, x + bw, y + bh], 0, [w - 1, h - 1, w - 1, h - 1])
            cls = COCO_IDS.index(r["category_id"])
            ok = (d.classes.numpy() == cls) & (np.abs(d.scores.numpy() - r["score"]) < 1e-5)
            assert np.abs(d.boxes.numpy()[ok] - corners).max(1).min() < 1e-2
            checked += 1
    assert checked == len(records)


def test_map_equals_pycocotools_on_written_json(shapes, tmp_path):
    ds, cfg, weights = shapes
    out = tmp_path / "res"
    start = time.perf_counter()
    run, written = detector_valid(ds.data, cfg, weights, results=out, batch=4)
    res = detector_map(ds.data, cfg, weights, batch=4)  # truth: the json the .data file names
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"valid + map took {elapsed:.1f} s"
    assert res.truth_source.startswith("COCO annotations")

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO(str(ds.valid_json))
    ev = COCOeval(gt, gt.loadRes(str(written[0])), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    ours = res.report.coco
    names = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")
    for name, value in zip(names, ev.stats[:6]):
        mine = getattr(ours, name)
        assert (np.isnan(mine) and value == -1) or mine == value, (name, mine, value)

    # The same truth read from the YOLO label files instead (no 'annotations' key): the labels hold
    # the same boxes to 6 decimals, so the numbers agree to well under a thousandth.
    res_labels = detector_map(with_data_keys(ds, tmp_path, annotations=None), cfg, weights, batch=4)
    assert res_labels.truth_source == "YOLO label files"
    assert res_labels.labels.boxes == len(gt.anns)
    for name in names:
        a, b = getattr(res_labels.report.coco, name), getattr(ours, name)
        assert (np.isnan(a) and np.isnan(b)) or abs(a - b) < 1e-3, name
    text = "\n".join(res.report.lines())
    for col in ("AP50", "AP75", "APS", "APM", "APL"):
        assert col in text


def test_voc_and_imagenet_result_files(shapes, tmp_path):
    ds, cfg, weights = shapes
    data = with_data_keys(ds, tmp_path, eval="voc")
    run, written = detector_valid(data, cfg, weights, results=tmp_path / "voc", batch=8)
    assert [p.name for p in written] == [f"comp4_det_test_{n}.txt" for n in ds.classes]
    rows = [ln.split() for p in written for ln in p.read_text().splitlines()]
    assert len(rows) == run.count()
    sizes = {im.listed.rsplit("/", 1)[-1].split(".")[0]: (im.width, im.height) for im in run.images}
    for ident, score, x1, y1, x2, y2 in rows:
        w, h = sizes[ident]  # basecfg: the file name up to its first '.'
        x1, y1, x2, y2 = map(float, (x1, y1, x2, y2))
        # print_detector_detections clips x1, y1 below at 1 and x2, y2 above at the photo size only:
        # a box lying wholly in the letterbox bar keeps x1 > x2 (Darknet writes it that way too).
        # the score is written with %f (6 decimals): one just above .005 reads 0.005000
        assert x1 >= 1 and y1 >= 1 and x2 <= w and y2 <= h and 0.005 <= float(score) <= 1
    # the strict threshold holds on the values themselves
    assert all((s > 0.005).all() for s in run.scores)
    # each VOC line is the json record plus one pixel, clipped at 1 and at the photo size
    flat = [(b, im) for im, bs in zip(run.images, run.boxes) for b in bs]
    first = [float(v) for v in rows[0][2:]] if rows else None
    assert first is None or any(np.allclose(np.clip(b + 1, 1, [im.width, im.height] * 2), first, atol=1e-5)
                                for b, im in flat)
    with pytest.raises(DataError, match="eval = imagenet .* classes=6"):
        detector_valid(with_data_keys(ds, tmp_path, eval="imagenet"), cfg, weights, results=tmp_path / "i")


def test_recall_counts(shapes, tmp_path):
    ds, cfg, weights = shapes
    data = with_data_keys(ds, tmp_path, annotations=None)
    gt = json.loads(ds.valid_json.read_text())
    res = detector_recall(data, cfg, weights)
    assert res.images == 16 and res.truths == len(gt["annotations"])
    assert 0 <= res.correct <= res.truths and res.proposals > 0 and 0 <= res.avg_iou <= 1
    none = detector_recall(data, cfg, weights, thresh=0.9999)  # no proposal survives
    assert none.proposals == 0 and none.correct == 0 and none.avg_iou == 0
    loose = detector_recall(data, cfg, weights, iou=0.0)  # any overlapping proposal counts
    assert loose.correct >= res.correct


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_valid_cuda_matches_cpu(shapes, tmp_path):
    ds, cfg, weights = shapes
    # TF32 convolutions (cuDNN's default on Ampere and later) round to 10 bits; compare full fp32.
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        cpu, _ = detector_valid(ds.data, cfg, weights, results=tmp_path / "cpu")
        gpu, _ = detector_valid(ds.data, cfg, weights, results=tmp_path / "gpu", device="cuda", batch=16)
    finally:
        torch.backends.cudnn.allow_tf32 = old
    # Rows near the .005 threshold or an NMS tie may differ between kernels; every clear detection
    # of one device must be on the other, same class, box and score.
    matched = total = 0
    for ba, bb, sa, sb, ca, cb in zip(cpu.boxes, gpu.boxes, cpu.scores, gpu.scores, cpu.classes, gpu.classes):
        for box, score, cls in zip(ba, sa, ca):
            if score < 0.02:
                continue
            total += 1
            same = (cb == cls) & (np.abs(sb - score) < 1e-4) & (np.abs(bb - box).max(1) < 1e-2)
            matched += bool(same.any())
    assert total > 100 and matched >= 0.99 * total, (matched, total)
