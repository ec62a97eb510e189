"""The single home of the independent references the tests hold darknet_py to: Darknet's C ported to
plain Python / NumPy (src/box.c ``box_iou`` and ``do_nms_sort``, AlexeyAB's DIoU and ``diounms_sort``,
``correct_yolo_boxes``, ``get_yolo_detections``, what ``draw_detections`` reports, ``forward_local_layer``,
``read_cfg``), written from the C and never from darknet_py's code; and the per-image post-processing
oracle that the batched and fast paths are compared with.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np
import torch

from darknet_py.layers.head import decode_heads
from darknet_py.postprocess import Detections, candidate_mask, class_scores, darknet_nms
from darknet_py.transforms import correct_boxes, to_photo_xyxy


# ------------------------------------------------------------------------------------ src/box.c

def overlap(x1, w1, x2, w2, two=2.0):
    """box.c overlap: the length shared by two intervals given by centre and width (negative if apart)."""
    left = max(x1 - w1 / two, x2 - w2 / two)
    right = min(x1 + w1 / two, x2 + w2 / two)
    return right - left


def box_iou(a, b, dtype=float):
    """box.c box_iou of two (x, y, w, h) boxes (centre and size), in ``dtype`` arithmetic: float (Python's
    float64) or np.float32 (the C's float, for references that round as Darknet does). box_intersection
    is 0 when either overlap is negative."""
    two = dtype(2)
    w = overlap(a[0], a[2], b[0], b[2], two)
    h = overlap(a[1], a[3], b[1], b[3], two)
    inter = dtype(0) if w < 0 or h < 0 else w * h
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def box_diou(a, b, beta=0.6, dtype=float):
    """AlexeyAB's box_diou (beta 0.6) / box_diounms (beta_nms): IoU - (d / c)^beta, d the squared distance
    of the centres, c the squared diagonal of the smallest box enclosing both; the IoU alone when c is 0.
    The products as the C writes them, pow in double."""
    two = dtype(2)
    left, right = min(a[0] - a[2] / two, b[0] - b[2] / two), max(a[0] + a[2] / two, b[0] + b[2] / two)
    top, bot = min(a[1] - a[3] / two, b[1] - b[3] / two), max(a[1] + a[3] / two, b[1] + b[3] / two)
    w, h = right - left, bot - top
    c = w * w + h * h
    iou = box_iou(a, b, dtype)
    if c == 0:
        return iou
    d = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])
    return iou - dtype(float(d / c) ** beta)


def nms_overlap(a, b, kind="default", beta=0.6, dtype=float):
    """The overlap an NMS of that kind compares with its threshold: box_iou (default; also AlexeyAB's
    cornersnms branch), box_diou (greedynms), box_diounms with beta_nms (diounms)."""
    if kind == "default":
        return box_iou(a, b, dtype)
    return box_diou(a, b, 0.6 if kind == "greedynms" else beta, dtype)


def do_nms_sort(boxes: Sequence, probs: list[list], nms: float, kind="default", beta=0.6, dtype=float) -> list[list]:
    """do_nms_sort's loop over the classes (AlexeyAB's diounms_sort for greedynms / diounms), on candidates
    that passed the objectness filter: per class, the boxes by decreasing prob (ties in candidate order, as
    darknet_py's stable sort; Darknet's qsort leaves them open), each non-zero prob zeroing that class's
    prob of every later box it overlaps by more than ``nms``. ``probs`` (a list a box) is changed in place
    and returned."""
    zero = dtype(0)
    for k in range(len(probs[0]) if probs else 0):
        order = sorted(range(len(boxes)), key=lambda i: -probs[i][k])
        for pos, i in enumerate(order):
            if probs[i][k] == 0:
                continue
            for j in order[pos + 1:]:
                # (zeroing an already-zero prob changes nothing: its overlap is not computed)
                if probs[j][k] != 0 and nms_overlap(boxes[i], boxes[j], kind, beta, dtype) > nms:
                    probs[j][k] = zero
    return probs


# ------------------------------------------------------------------------------------ detections

def correct_box(box, info) -> tuple[float, float, float, float]:
    """correct_yolo_boxes / correct_region_boxes (relative=1) of a letterboxed photo, float64: an
    (x, y, w, h) box of the network's frame -> the same box relative to the photo."""
    bx, by, bw, bh = box
    return ((bx - (info.net_w - info.new_w) / 2.0 / info.net_w) / (info.new_w / info.net_w),
            (by - (info.net_h - info.new_h) / 2.0 / info.net_h) / (info.new_h / info.net_h),
            bw * info.net_w / info.new_w, bh * info.net_h / info.new_h)


def drawn_box(box, img_w: int, img_h: int) -> list[float]:
    """The corners draw_detections reports for a photo-relative (x, y, w, h) box: left, top, right,
    bottom in photo pixels, clamped to [0, size - 1], not truncated."""
    x, y, w, h = (float(v) for v in box)
    return [max(0.0, min(img_w - 1.0, (x - w / 2) * img_w)), max(0.0, min(img_h - 1.0, (y - h / 2) * img_h)),
            max(0.0, min(img_w - 1.0, (x + w / 2) * img_w)), max(0.0, min(img_h - 1.0, (y + h / 2) * img_h))]


def reported(boxes: Sequence, probs: Sequence, img_w: int, img_h: int) -> list[tuple]:
    """What draw_detections reports after the NMS: (class, prob, [left, top, right, bottom]) for every
    non-zero prob, in candidate order."""
    out = []
    for box, box_probs in zip(boxes, probs):
        corners = drawn_box(box, img_w, img_h)
        out += [(k, p, corners) for k, p in enumerate(box_probs) if p > 0]
    return out


def yolo_detections(rows: np.ndarray, info, thresh: float, nms: float, kind="default", beta=0.6) -> list[tuple]:
    """get_yolo_detections + correct_yolo_boxes + do_nms_sort (diounms_sort for greedynms / diounms) in
    plain float64 Python, on decoded rows (x, y, w, h relative, objectness, objectness*class: OpenCV's
    [yolo] rows) -> [(class, prob, [left, top, right, bottom] in photo pixels)]."""
    boxes, probs = [], []
    for r in rows.astype(np.float64):
        if r[4] <= thresh:
            continue
        probs.append([p if p > thresh else 0.0 for p in r[5:]])
        boxes.append(correct_box(r[:4], info))
    do_nms_sort(boxes, probs, nms, kind, beta)
    return reported(boxes, probs, info.img_w, info.img_h)


@dataclass
class Candidates:
    """One image's rows that pass Darknet's thresholds."""

    boxes: torch.Tensor       # (K, 4)
    objectness: torch.Tensor  # (K,)
    probs: torch.Tensor       # (K, C) objectness * class probability, 0 where not > thresh


def candidates(boxes, objectness, class_probs, thresh: float, gate: bool = True) -> Candidates:
    """One image through the package's two comparisons (darknet_py.postprocess.thresholds):
    the candidate rows and their class scores."""
    keep = candidate_mask(objectness, class_probs, thresh, gate)
    return Candidates(boxes[keep], objectness[keep], class_scores(objectness[keep], class_probs[keep], thresh))


def detections_of(objectness, probs, boxes_xyxy) -> Detections:
    """The surviving (box, class) scores, best first (ties: box order, then class)."""
    box_i, cls_i = torch.nonzero(probs > 0, as_tuple=True)
    scores = probs[box_i, cls_i]
    order = torch.sort(scores, descending=True, stable=True).indices
    box_i, cls_i, scores = box_i[order], cls_i[order], scores[order]
    return Detections(boxes_xyxy[box_i], scores, cls_i, objectness[box_i], box_i)


def postprocess_per_image(model, outputs, infos, thresh: float, nms: float, photo_boxes=None):
    """Head outputs of a batch -> one Detections per image, one image at a time: decode, Darknet's
    thresholds, the boxes corrected to the photo, Darknet's NMS, the reported boxes (``photo_boxes``,
    by default clipped as Darknet draws them). The loop the package ran before its batch-wide
    post-process (darknet_py.postprocess): the oracle the batched and fast paths are held to, bit for bit."""
    photo_boxes = to_photo_xyxy if photo_boxes is None else photo_boxes
    net_w, net_h = model.input_size
    boxes, obj, cls = decode_heads(outputs, model.head_specs, net_w, net_h)
    last = model.head_specs[-1]
    gate = all(h.gate_objectness for h in model.head_specs)
    results = []
    for i, info in enumerate(infos):
        cand = candidates(boxes[i], obj[i], cls[i], thresh, gate)
        # Darknet corrects boxes to the photo before its NMS, so the IoUs are the photo's.
        rel = correct_boxes(cand.boxes, info)
        probs = darknet_nms(rel, cand.probs, nms, last.nms_kind, last.beta_nms)
        results.append(detections_of(cand.objectness, probs, photo_boxes(rel, info)))
    return results


# ------------------------------------------------------------------------------------ layers and cfgs

ACT64 = {  # activate_array in float64, for the layer references
    "linear": lambda v: v,
    "leaky": lambda v: np.where(v > 0, v, 0.1 * v),
    "logistic": lambda v: 1 / (1 + np.exp(-v)),
    "tanh": np.tanh,
    "elu": lambda v: np.where(v >= 0, v, np.expm1(v)),
    "relu": lambda v: np.maximum(v, 0),
}


def local_reference(x: np.ndarray, floats: np.ndarray, n: int, size: int, stride: int, pad: int,
                    activation: str) -> np.ndarray:
    """forward_local_layer for one image (c, h, w), float64, from the file's floats (biases then weights)."""
    c, h, w = x.shape
    out_h = (h - size if not pad else h - 1) // stride + 1  # local_out_height
    out_w = (w - size if not pad else w - 1) // stride + 1
    locations, k = out_h * out_w, c * size * size
    biases, weights = floats[:n * locations], floats[n * locations:]
    assert weights.size == k * n * locations
    # im2col_cpu: row cc = (channel, ky, kx), column = out_y*out_w + out_x, zero outside the image
    col = np.zeros((k, locations))
    for cc in range(k):
        kx, ky, ch = cc % size, (cc // size) % size, cc // size // size
        for oy in range(out_h):
            for ox in range(out_w):
                iy, ix = ky + oy * stride - pad, kx + ox * stride - pad
                if 0 <= iy < h and 0 <= ix < w:
                    col[cc, oy * out_w + ox] = x[ch, iy, ix]
    out = biases.astype(np.float64).copy()
    for j in range(locations):  # gemm(0,0,n,1,k, weights + j*k*n, col + j, ldb=locations, out + j, ldc=locations)
        a = weights[j * k * n:(j + 1) * k * n].astype(np.float64).reshape(n, k)
        out[j::locations] += a @ col[:, j]
    return ACT64[activation](out).reshape(n, out_h, out_w)


def cfg_sections(text: str) -> list[tuple[str, dict[str, str], int]]:
    """read_cfg: [(kind, {key: value}, 1-based line of the header)], whitespace removed everywhere,
    '#' / ';' lines skipped, the first of a repeated key kept."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = "".join(raw.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            out.append((line[1:line.index("]")], {}, lineno))
        else:
            key, value = line.split("=", 1)
            out[-1][1].setdefault(key, value)
    return out
