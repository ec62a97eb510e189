"""[Gaussian_yolo] against a plain-Python port of AlexeyAB's src/gaussian_yolo_layer.c
(forward_gaussian_yolo_layer, get_gaussian_yolo_box, get_gaussian_yolo_detections,
correct_gaussian_yolo_boxes) and src/box.c (do_nms_sort, diounms_sort). OpenCV has no
Gaussian_yolo importer, so the references are NumPy/float64 written from the C. (The reference folder
holds no Gaussian YOLOv3 cfg: the network here is a small generated one with two heads.)"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.detector import detect
from darknet_py.graph import parse_network
from darknet_py.postprocess import postprocess
from darknet_py.random_weights import randomize
from darknet_py.transforms import letterbox, letterbox_info
from tests.helpers.cfgs import cfg, conv, head_conv, route
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.models import random_model
from tests.helpers.reference import do_nms_sort, reported

NET_W, NET_H = 96, 64
ANCHORS = [(5, 7), (9, 6), (14, 20), (25, 18), (30, 40), (60, 45)]
CLASSES = 3
F32 = np.float32


def gaussian_cfg(head1="", head2="", classes=CLASSES, filters=None):
    """Two [Gaussian_yolo] heads (on an 8x12 and a 4x6 grid); head1 / head2: more key lines for each."""
    filters = filters or 3 * (9 + classes)
    anchors = ", ".join(f"{w},{h}" for w, h in ANCHORS)

    def head(mask, extra):
        return (f"[Gaussian_yolo]\nmask={mask}\nanchors={anchors}\nclasses={classes}\nnum=6\njitter=.3\n"
                "ignore_thresh=.5\ntruth_thresh=1\niou_thresh=0.213\nuc_normalizer=1.0\niou_normalizer=0.5\n"
                f"cls_normalizer=1.0\niou_loss=giou\nrandom=1\n{extra}")
    return cfg(conv(8, stride=2), conv(8, stride=2), conv(8, stride=2), head_conv(filters), head("3,4,5", head1),
               route("2"), conv(8, stride=2), head_conv(3 * (9 + classes)), head("0,1,2", head2),
               width=NET_W, height=NET_H)


# ------------------------------------------------------------------------------ the C, in Python

def logistic(v):
    return (1.0 / (1.0 + np.exp(-v.astype(np.float64)))).astype(F32)  # logistic_activate: 1./(1. + exp(-x))


def forward_gaussian(raw, n_anchors, classes, scale_x_y):
    """forward_gaussian_yolo_layer (CPU, inference) on one image's (A*(9+C), h, w) float32 input."""
    out = raw.astype(F32).copy().reshape(n_anchors, 9 + classes, *raw.shape[1:])
    alpha, beta = F32(scale_x_y), F32(-0.5 * (scale_x_y - 1))
    for n in range(n_anchors):
        out[n, 0:2] = logistic(out[n, 0:2])             # x and its sigma
        out[n, 0] = out[n, 0] * alpha + beta            # scal_add_cpu on x only
        out[n, 2:4] = logistic(out[n, 2:4])
        out[n, 2] = out[n, 2] * alpha + beta
        out[n, 5] = logistic(out[n, 5])                 # sigma w
        out[n, 7] = logistic(out[n, 7])                 # sigma h
        out[n, 8:] = logistic(out[n, 8:])               # objectness and classes
    return out.reshape(raw.shape)


def get_gaussian_detections(out, anchors, classes, netw, neth, thresh, yolo_point, img_w, img_h):
    """get_gaussian_yolo_detections + correct_gaussian_yolo_boxes (letter=1, relative=1)."""
    n_anchors = len(anchors)
    _, lh, lw = out.shape
    p = out.reshape(n_anchors, 9 + classes, lh, lw)
    dets = []
    for i in range(lw * lh):
        row, col = i // lw, i % lw
        for n in range(n_anchors):
            e = p[n, :, row, col]
            objectness = e[8]
            if objectness <= thresh:
                continue
            bw = F32(math.exp(float(e[4])) * anchors[n][0] / netw)  # exp() in double, stored float
            bh = F32(math.exp(float(e[6])) * anchors[n][1] / neth)
            bx = F32(F32(col + e[0]) / F32(lw))
            by = F32(F32(row + e[2]) / F32(lh))
            if yolo_point == "left_top":
                bx, by = F32(bx + bw / F32(2)), F32(by + bh / F32(2))
            elif yolo_point == "right_bottom":
                bx, by = F32(bx - bw / F32(2)), F32(by - bh / F32(2))
            uc_aver = F32(float(F32(F32(F32(e[1] + e[3]) + e[5]) + e[7])) / 4.0)
            probs = []
            for j in range(classes):
                prob = F32(float(F32(objectness * e[9 + j])) * (1.0 - float(uc_aver)))
                probs.append(prob if prob > thresh else F32(0))
            dets.append({"bbox": [bx, by, bw, bh], "objectness": objectness, "prob": probs})
    # correct_gaussian_yolo_boxes, letterboxed
    if F32(netw) / F32(img_w) < F32(neth) / F32(img_h):
        new_w, new_h = netw, (img_h * netw) // img_w
    else:
        new_w, new_h = (img_w * neth) // img_h, neth
    for d in dets:
        x, y, w, h = d["bbox"]
        x = F32((float(x) - (netw - new_w) / 2. / netw) / float(F32(new_w) / F32(netw)))
        y = F32((float(y) - (neth - new_h) / 2. / neth) / float(F32(new_h) / F32(neth)))
        d["bbox"] = [x, y, F32(w * (F32(netw) / F32(new_w))), F32(h * (F32(neth) / F32(new_h)))]
    return dets


def darknet_rows(dets, nms, img_w, img_h, kind="default", beta=0.6):
    """do_nms_sort / diounms_sort in float32 (as the C) on get_gaussian_yolo_detections' boxes, then
    (class, score, x1, y1, x2, y2 in photo pixels clipped as draw_detections) per surviving score."""
    dets = [d for d in dets if d["objectness"] != 0]  # do_nms_sort leaves objectness 0 out first
    boxes, probs = [d["bbox"] for d in dets], [d["prob"] for d in dets]
    do_nms_sort(boxes, probs, nms, kind, beta, dtype=F32)
    rows = [[k, float(p), *corners] for k, p, corners in reported(boxes, probs, img_w, img_h)]
    return np.array(sorted(rows, key=lambda r: (r[0], -r[1]))).reshape(-1, 6)


def our_rows(det):
    rows = np.concatenate([det.classes[:, None].double().numpy(), det.scores[:, None].double().numpy(),
                           det.boxes.double().numpy()], 1)
    return np.array(sorted(rows.tolist(), key=lambda r: (r[0], -r[1]))).reshape(-1, 6)


def compare_detections(ours, ref):
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    np.testing.assert_array_equal(ours[:, 0], ref[:, 0])
    # Darknet multiplies (objectness*p) in float and (1 - uc) in double: a few float32 ulps apart
    np.testing.assert_allclose(ours[:, 1], ref[:, 1], rtol=4e-7, atol=0)
    np.testing.assert_allclose(ours[:, 2:], ref[:, 2:], rtol=0, atol=2e-3)  # pixels
    return float(np.abs(ours[:, 1] - ref[:, 1]).max() / ref[:, 1].max()) if len(ref) else 0.0


def random_raw(shape, seed):
    """Head inputs with useful spread: centres/sizes near the anchors, some confident boxes, and
    uncertainties both small and large (so (1 - mean uncertainty) matters)."""
    g = np.random.default_rng(seed)
    a, ch, h, w = shape
    raw = g.normal(0, 1, (a, ch, h, w)).astype(F32)
    raw[:, [4, 6]] *= 0.5
    raw[:, [1, 3, 5, 7]] = g.normal(-1.5, 1.5, (a, 4, h, w))
    raw[:, 8] = g.normal(0, 2, (a, h, w))
    raw[:, 9:] = g.normal(0, 2, (a, ch - 9, h, w))
    return raw.reshape(a * ch, h, w)


# ------------------------------------------------------------------------------------------ tests

def test_parses_and_shapes():
    nd = parse_network(gaussian_cfg().encode())
    assert nd.head_indices == [4, 8]
    spec = nd.specs[4]
    assert spec.classes == 3 and spec.mask == [3, 4, 5] and spec.masked_anchors == ANCHORS[3:]
    assert spec.jitter == 0.3 and spec.random == 1.0 and spec.uc_normalizer == 1.0 and spec.nms_kind == "default"
    assert nd.shapes[4] == (36, 8, 12) and nd.shapes[8] == (36, 4, 6)


@pytest.mark.parametrize("scale_x_y", [1.0, 1.2])
def test_head_output_is_forward_gaussian_yolo_layer(scale_x_y):
    model = darknet_py.build_model(gaussian_cfg(f"scale_x_y={scale_x_y}\n").encode()).eval()
    raw = random_raw((3, 12, 8, 12), seed=1)
    with torch.no_grad():
        ours = model.layers[4](torch.from_numpy(np.stack([raw, raw * 0.5])))
    for i, r in enumerate((raw, raw * 0.5)):
        ref = forward_gaussian(r, 3, CLASSES, scale_x_y)
        np.testing.assert_allclose(ours[i].numpy(), ref, rtol=0, atol=1e-6)
    o = ours[0].numpy().reshape(3, 12, 8, 12)
    np.testing.assert_array_equal(o[:, [4, 6]], raw.reshape(3, 12, 8, 12)[:, [4, 6]])  # w, h raw


@pytest.mark.parametrize("nms_kind, beta, yolo_point, thresh", [
    ("default", 0.6, "center", 0.25), ("greedynms", 0.6, "center", 0.3), ("diounms", 0.8, "left_top", 0.2),
    ("cornersnms", 0.6, "right_bottom", 0.25), ("default", 0.6, "center", 0.01)])
def test_detections_are_get_gaussian_yolo_detections(nms_kind, beta, yolo_point, thresh):
    keys = f"yolo_point={yolo_point}\nnms_kind={nms_kind}\nbeta_nms={beta}\n"
    model = darknet_py.build_model(gaussian_cfg(keys, keys).encode()).eval()
    img_w, img_h = 300, 170
    info = letterbox_info(img_w, img_h, NET_W, NET_H)
    outs = [forward_gaussian(random_raw((3, 12, 8, 12), seed=2), 3, CLASSES, 1.0),
            forward_gaussian(random_raw((3, 12, 4, 6), seed=3), 3, CLASSES, 1.0)]
    ours = postprocess(model, [torch.from_numpy(o)[None] for o in outs], [info], thresh=thresh, nms=0.45)[0]
    dets = []
    for o, head in zip(outs, model.head_specs):
        dets += get_gaussian_detections(o, head.masked_anchors, CLASSES, NET_W, NET_H, thresh, yolo_point,
                                        img_w, img_h)
    # the strict comparisons are not decided by rounding here (Darknet's and ours differ by ulps)
    scores = np.array([float(p) for d in dets for p in d["prob"] if p > 0])
    assert len(scores) and np.abs(scores / thresh - 1).min() > 1e-5
    kind = "default" if nms_kind == "cornersnms" else nms_kind  # CORNERS_NMS's branch: box_iou > nms
    ref = darknet_rows(dets, 0.45, img_w, img_h, kind, beta)
    suppressed = len(scores) - len(ref)
    assert suppressed > 0  # the NMS had work to do
    compare_detections(our_rows(ours), ref)


def test_decode_folds_the_uncertainty_into_the_class_probability():
    spec = parse_network(gaussian_cfg().encode()).specs[8]
    out = forward_gaussian(random_raw((3, 12, 4, 6), seed=4), 3, CLASSES, 1.0)
    boxes, obj, probs = spec.decode(torch.from_numpy(out)[None], NET_W, NET_H)
    p = out.reshape(3, 12, 4, 6).transpose(2, 3, 0, 1).reshape(-1, 12).astype(np.float64)  # rows: cell, then anchor
    uc = p[:, [1, 3, 5, 7]].mean(1)
    np.testing.assert_array_equal(obj[0].numpy(), p[:, 8].astype(F32))
    np.testing.assert_allclose((obj[0, :, None] * probs[0]).numpy(), p[:, 8:9] * p[:, 9:] * (1 - uc[:, None]),
                               rtol=5e-7, atol=0)
    a = np.array(ANCHORS[:3] * 24, dtype=np.float64)
    col, row = np.tile(np.repeat(np.arange(6), 3), 4), np.repeat(np.arange(4), 18)
    ref = np.stack([(col + p[:, 0]) / 6, (row + p[:, 2]) / 4, np.exp(p[:, 4]) * a[:, 0] / NET_W,
                    np.exp(p[:, 6]) * a[:, 1] / NET_H], 1)
    np.testing.assert_allclose(boxes[0].numpy(), ref, rtol=1e-6, atol=1e-7)


def test_detect_end_to_end(photo_rgb):
    # pjreddie's photo preparation (letterbox), which the reference's box correction assumes; the
    # tree's own choice, AlexeyAB's stretch, is checked in tests/test_numerics.py
    model = darknet_py.build_model(gaussian_cfg().encode(), darknet="pjreddie")
    x, _ = letterbox(photo_rgb, NET_W, NET_H)
    randomize(model, x[None], seed=5)
    model.eval()
    ours = detect(model, photo_rgb, thresh=0.3)
    with torch.no_grad():
        outs = [o[0].numpy() for o in model(x[None])]
    img_h, img_w = photo_rgb.shape[:2]
    dets = []
    for o, head in zip(outs, model.head_specs):
        dets += get_gaussian_detections(o, head.masked_anchors, CLASSES, NET_W, NET_H, 0.3, "center", img_w, img_h)
    ref = darknet_rows(dets, 0.45, img_w, img_h)
    assert len(ref) > 0
    compare_detections(our_rows(ours), ref)


def test_weights_round_trip_has_no_head_bytes(tmp_path):
    model = random_model(gaussian_cfg(), seed=6)
    path = tmp_path / "g.weights"
    model.save_weights(path)
    n_conv = sum(t.numel() for layer in model.layers if hasattr(layer, "darknet_tensors")
                 for _, t in layer.darknet_tensors())
    assert path.stat().st_size == 20 + 4 * n_conv
    again = tmp_path / "again.weights"
    darknet_py.build_model(gaussian_cfg().encode()).load_weights(path).save_weights(again)
    assert again.read_bytes() == path.read_bytes()


def test_filters_mismatch_names_both_layers():
    text = gaussian_cfg(filters=30)  # 3*(5+3)+6: a [yolo]-sized conv
    err = expect_cfg_error(text, line_of(text, "[Gaussian_yolo]"), "layer 3",
                           f"cfg line {line_of(text, '[convolutional]', 4)}", "30 channels", "len(mask)*(classes+9)",
                           "3*(3+9) = 36", "filters=36")
    assert err.index == 4


@pytest.mark.parametrize("key, needles", [
    ("yolo_point=top", ["yolo_point=top", "center, left_top, right_bottom"]),
    ("nms_kind=softnms", ["nms_kind=softnms is not supported", "cornersnms"]),
    ("scale_x_y=0", ["scale_x_y=0", "positive"]),
    ("uc_normaliser=1", ["unknown key 'uc_normaliser'", "did you mean 'uc_normalizer'"]),
    ("beta_nms=x", ["beta_nms=x", "expected a number"]),
])
def test_bad_keys_name_the_line(key, needles):
    text = gaussian_cfg(key + "\n")
    expect_cfg_error(text, line_of(text, key), *needles)


@pytest.mark.parametrize("old, new, at, needles", [
    ("mask=3,4,5", "mask=3,4,6", "mask=3,4,6", ["mask index 6 out of range"]),
    ("num=6", "num=5", "anchors", ["num=5 but anchors holds 6 pairs"]),
    (f"classes={CLASSES}", "classes=0", "classes=0", ["classes=0", ">= 1"]),
    ("mask=3,4,5", "", "[Gaussian_yolo]", ["missing required key 'mask'"]),
])
def test_bad_values_name_the_line(old, new, at, needles):
    text = gaussian_cfg().replace(old, new, 1)
    want = next(i + 1 for i, line in enumerate(text.splitlines()) if line.strip() == at or line.startswith(at + "="))
    expect_cfg_error(text, want, *needles)


def test_section_name_is_case_sensitive():
    text = gaussian_cfg().replace("[Gaussian_yolo]", "[gaussian_yolo]", 1)
    expect_cfg_error(text, None, "did you mean [Gaussian_yolo]")
