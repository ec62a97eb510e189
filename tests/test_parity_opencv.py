"""Parity with an independent implementation: OpenCV 4.x's Darknet importer (cv2.dnn).

Both get the same letterboxed tensor (JPEG decoders differ) and the same weights file, which
our writer produced from calibrated random weights (darknet_py.random_weights). We compare
every [yolo] output and the final detections; the detections on OpenCV's side go through a
plain-Python port of Darknet's thresholds and do_nms_sort written here, not our code.
"""
from __future__ import annotations


import cv2
import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.decode import decode
from darknet_py.detector import postprocess
from darknet_py.random_weights import randomize
from darknet_py.transforms import letterbox
from tests.helpers.paths import ref_path, sized_cfg_text

SIZE = 416
THRESH = 0.25
NMS = 0.45

# Tolerances, as the largest |ours - OpenCV| over the largest |OpenCV| of each output component.
# - BN epsilon placement: pjreddie sqrt(var)+1e-6, OpenCV sqrt(var+1e-6); < 1e-6 with var ~ 1.
# - float32 summation order: OpenCV's own drift against a float64 run of the same weights grows
#   to ~1.6e-4 of scale by yolov3's layer 81 (ours: ~3.5e-5), so the deep nets get 3e-4.
# - Winograd convolution in OpenCV adds ~1e-4 more: it is switched off.
TOLERANCE = {"yolov3-tiny": 1e-4, "yolov3": 3e-4, "yolov3-spp": 3e-4}


def _opencv_rows(cfg_text: str, weights, x: torch.Tensor, tmp_path) -> np.ndarray:
    cv_cfg = tmp_path / "opencv.cfg"
    # OpenCV zeroes class scores below its [yolo] `thresh` (.2 by default): 0 keeps them raw.
    cv_cfg.write_text(cfg_text.replace("[yolo]", "[yolo]\nthresh=0"))
    net = cv2.dnn.readNetFromDarknet(str(cv_cfg), str(weights))
    net.enableWinograd(False)
    net.setInput(x.numpy())
    outs = net.forward(net.getUnconnectedOutLayersNames())
    # OpenCV returns one (h*w*A, 5+C) array per [yolo]: x, y, w, h relative, objectness,
    # objectness*sigmoid(class); rows cell-major then anchor, heads in layer order.
    return np.concatenate([o.reshape(-1, o.shape[-1]) for o in outs])


def _reference_detections(rows: np.ndarray, info, thresh: float, nms: float, nms_kind: str = "default",
                          beta: float = 0.6):
    """Darknet's get_yolo_detections + correct_yolo_boxes + do_nms_sort, in plain float64 Python;
    ``nms_kind`` greedynms / diounms: AlexeyAB's diounms_sort with box_diou / box_diounms(beta)."""
    dets = []
    for r in rows.astype(np.float64):
        if r[4] <= thresh:
            continue
        probs = [p if p > thresh else 0.0 for p in r[5:]]
        # correct_yolo_boxes, relative=1
        bx = (r[0] - (info.net_w - info.new_w) / 2.0 / info.net_w) / (info.new_w / info.net_w)
        by = (r[1] - (info.net_h - info.new_h) / 2.0 / info.net_h) / (info.new_h / info.net_h)
        bw = r[2] * info.net_w / info.new_w
        bh = r[3] * info.net_h / info.new_h
        dets.append([(bx, by, bw, bh), probs])

    def iou(a, b):
        def overlap(x1, w1, x2, w2):
            return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
        w = overlap(a[0], a[2], b[0], b[2])
        h = overlap(a[1], a[3], b[1], b[3])
        inter = 0.0 if w < 0 or h < 0 else w * h
        value = inter / (a[2] * a[3] + b[2] * b[3] - inter)
        if nms_kind != "default":  # box_diou(nms): IoU - (centre distance^2 / enclosing diagonal^2)^(0.6 or beta)
            cw = max(a[0] + a[2] / 2, b[0] + b[2] / 2) - min(a[0] - a[2] / 2, b[0] - b[2] / 2)
            ch = max(a[1] + a[3] / 2, b[1] + b[3] / 2) - min(a[1] - a[3] / 2, b[1] - b[3] / 2)
            c = cw * cw + ch * ch
            if c > 0:
                value -= (((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / c) ** (0.6 if nms_kind == "greedynms" else beta)
        return value

    classes = len(rows[0]) - 5
    for k in range(classes):
        order = sorted(range(len(dets)), key=lambda i: -dets[i][1][k])
        for a_pos, i in enumerate(order):
            if dets[i][1][k] == 0:
                continue
            for j in order[a_pos + 1:]:
                if iou(dets[i][0], dets[j][0]) > nms:
                    dets[j][1][k] = 0.0
    out = []
    for (bx, by, bw, bh), probs in dets:
        box = [max(0.0, min(info.img_w - 1.0, (bx - bw / 2) * info.img_w)),
               max(0.0, min(info.img_h - 1.0, (by - bh / 2) * info.img_h)),
               max(0.0, min(info.img_w - 1.0, (bx + bw / 2) * info.img_w)),
               max(0.0, min(info.img_h - 1.0, (by + bh / 2) * info.img_h))]
        out += [(k, p, box) for k, p in enumerate(probs) if p > 0]
    return out


def _box_iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else float(a == b)


@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov3", "yolov3-spp"])
def test_yolo_outputs_and_detections_match_opencv(name, photo_rgb, tmp_path):
    cfg_text = sized_cfg_text(ref_path("pjreddie", "cfg", f"{name}.cfg"), SIZE)
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(cfg_text)
    x, info = letterbox(photo_rgb, SIZE, SIZE)
    x = x[None]
    model = darknet_py.build_model(cfg)
    randomize(model, x, seed=1)
    weights = tmp_path / f"{name}.weights"
    model.save_weights(weights)
    ours_model = darknet_py.load(cfg, weights)  # what a user gets: cfg + file through our reader

    with torch.no_grad():
        outputs = ours_model(x)
    boxes, obj, cls = decode(outputs, ours_model.yolo_specs, SIZE, SIZE)
    ours = torch.cat([boxes[0], obj[0, :, None], obj[0, :, None] * cls[0]], 1).numpy()
    theirs = _opencv_rows(cfg_text, weights, x, tmp_path)
    assert theirs.shape == ours.shape

    # "Sane" is checked, not assumed: logits neither saturated nor constant, boxes pass 0.25.
    raw_obj = torch.logit(obj.clamp(1e-7, 1 - 1e-7))
    assert 0.3 < float(raw_obj.std()) < 5 and float(raw_obj.abs().max()) < 15
    passing = int((obj > THRESH).sum())
    assert 5 <= passing <= 200, passing
    if name != "yolov3-tiny":
        assert passing >= 24  # a few dozen boxes for the 10,647 predictions of yolov3 at 416

    tol = TOLERANCE[name]
    for part, cols in (("x,y", slice(0, 2)), ("w,h", slice(2, 4)), ("objectness", slice(4, 5)),
                       ("class scores", slice(5, None))):
        err = np.abs(ours[:, cols] - theirs[:, cols]).max() / np.abs(theirs[:, cols]).max()
        assert err <= tol, f"{name} {part}: relative difference {err:.2e} > {tol:.0e}"

    # Final detections: ours against the plain-Python Darknet port applied to OpenCV's outputs.
    dets = postprocess(ours_model, outputs, [info], THRESH, NMS)[0]
    mine = list(zip(dets.classes.tolist(), dets.scores.tolist(), dets.boxes.tolist()))
    ref = _reference_detections(theirs, info, THRESH, NMS)
    assert len(mine) >= 5
    margin = 5 * tol  # a score this close to the threshold may fall either side of it

    def unmatched(a, b):
        return [d for d in a if abs(d[1] - THRESH) > margin and not any(
            e[0] == d[0] and abs(e[1] - d[1]) < margin and _box_iou(e[2], d[2]) > 0.999 for e in b)]

    assert unmatched(mine, ref) == []
    assert unmatched(ref, mine) == []


def test_float32_matches_float64_run(photo_rgb, tmp_path):
    """Our float32 path against the same graph in float64 (a precision check for deep nets)."""
    cfg = tmp_path / "yolov3.cfg"
    cfg.write_text(sized_cfg_text(ref_path("pjreddie", "cfg", "yolov3.cfg"), SIZE))
    x = letterbox(photo_rgb, SIZE, SIZE)[0][None]
    model = randomize(darknet_py.build_model(cfg), x, seed=2)
    model64 = darknet_py.build_model(cfg)
    model64.load_state_dict(model.state_dict())
    model64 = model64.double().eval()
    with torch.no_grad():
        a = model(x)
        b = model64(x.double())
    for o32, o64 in zip(a, b):
        assert float((o32.double() - o64).abs().max() / o64.abs().max()) < 1e-4


def test_batch_rows_identical(photo_rgb):
    """OpenCV's pattern: the same image twice in a batch gives identical rows."""
    cfg = ref_path("pjreddie", "cfg", "yolov3-tiny.cfg")
    x = letterbox(photo_rgb, SIZE, SIZE)[0][None]
    model = randomize(darknet_py.build_model(cfg), x)
    with torch.no_grad():
        outs = model(torch.cat([x, x]))
    for o in outs:
        assert torch.equal(o[0], o[1])
