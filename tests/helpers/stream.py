"""The single home of what the streaming-detect tests (tests/stream) share: the shipped shapes model
(cfg/yolov3-tiny-shapes.cfg, trained), the `darknet-py detect` options they run it with, the record
the stream must write for a photo (computed from the independent per-photo path, darknet_py.detect)
and the JSON lines read back."""
from __future__ import annotations

import json

from darknet_py.detector import detect
from darknet_py.imageio import load_image
from tests.helpers.paths import ROOT

CFG = ROOT / "cfg" / "yolov3-tiny-shapes.cfg"
WEIGHTS = ROOT / "weights" / "yolov3-tiny-shapes.weights"
NAMES = ROOT / "cfg" / "shapes.names"
THRESH = 0.25
BASE = [str(CFG), str(WEIGHTS)]
OPTS = ["--names", str(NAMES), "--thresh", str(THRESH), "--no-progress"]


def expected_record(model, names, path_or_rgb, name, **extra) -> dict:
    """The record the stream must write, from the per-photo path: darknet_py.detect."""
    dets = detect(model, path_or_rgb, thresh=THRESH)
    h, w = (load_image(path_or_rgb)[0] if isinstance(path_or_rgb, str) else path_or_rgb).shape[:2]
    return {"image": name, **extra, "width": w, "height": h,
            "detections": [{"class_id": int(c), "name": names[int(c)], "score": float(s),
                            "box": [round(v, 2) for v in b]}
                           for c, s, b in zip(dets.classes.tolist(), dets.scores.tolist(), dets.boxes.tolist())]}


def all_records(text: str) -> list:
    """JSON lines -> records, failed inputs' ``{"image", "error"}`` included; each detection
    record's "seconds" (the timing, which differs between runs) checked and removed."""
    recs = [json.loads(line) for line in text.splitlines() if line.strip()]
    for r in recs:
        if "error" in r:
            assert set(r) <= {"image", "frame", "error"} and r["error"], r
        else:
            assert r.pop("seconds") >= 0
    return recs


def records(text: str) -> list:
    """The detection records of JSON lines (:func:`all_records` less the failed inputs' lines)."""
    return [r for r in all_records(text) if "error" not in r]
