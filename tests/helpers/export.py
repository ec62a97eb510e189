"""The single home of what the export tests (tests/export) share: their tolerances, the inputs they feed
an exported file, the expected values they compute without the exporter's code, and the checks of an
ONNX graph and of final detections.

Expected values come from code the exporter does not use: ``layers.head.decode_heads`` (boxes),
the per-image post-processing oracle (tests/helpers/reference.py) on PyTorch's raw outputs (final
detections), and Darknet's thresholds + correct_yolo_boxes + do_nms_sort on an export's decoded rows
(``detections_from_rows``).
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch

import darknet_py
from darknet_py.layers.head import decode_heads
from darknet_py.postprocess import darknet_nms
from darknet_py.random_weights import randomize
from darknet_py.transforms import correct_boxes, letterbox, to_photo_xyxy
from tests.helpers.numeric import rel_err
from tests.helpers.reference import Candidates, detections_of

RTOL = 1e-4          # max|export - PyTorch| / max|PyTorch|, per output (float32)
RTOL_FP16 = 5e-2     # float16 runtimes round at different places (see darknet_py/export/check.py)
THRESH, NMS = 0.25, 0.45
SMALL = 64
CALIB = 160  # calibration size for the small models
# Control flow or sequences would mean a Python loop leaked into the graph.
FORBIDDEN_OPS = {"Loop", "If", "Scan", "SequenceConstruct", "SequenceInsert", "SequenceAt", "SequenceEmpty",
                 "SequenceLength", "ConcatFromSequence", "SplitToSequence", "SequenceMap"}


# ------------------------------------------------------------------------------------ inputs and models

def photo_input(model, photo):
    """The photo letterboxed to the model's input: (1 x 3 x H x W tensor, LetterboxInfo)."""
    x, info = letterbox(photo, *model.input_size)
    return x[None], info


def photo_variants(photo):
    """Five different photos (flips, crops of other aspect ratios)."""
    h, w, _ = photo.shape
    return [photo, np.ascontiguousarray(photo[:, ::-1]), np.ascontiguousarray(photo[h // 4:, : w // 2]),
            np.ascontiguousarray(photo[::-1, w // 3:]), np.ascontiguousarray(255 - photo[: h // 2])]


def small_model(cfg, photo, seed, size=SMALL):
    """``cfg`` at size x size with calibrated random weights, calibrated on the photo at 160 px (the
    layers run at any multiple of 32). At 64 px the deepest layers are 2x2: BN statistics measured
    there amplify float32 rounding (and NHWC/NCHW kernel differences) to ~1e-4 of scale in the
    240 MB nets, as large as the tolerance; calibrated at 160 they stay near 1e-5."""
    model = darknet_py.load(cfg, width=size, height=size)
    return randomize(model, letterbox(photo, CALIB, CALIB)[0][None], seed=seed)


# ------------------------------------------------------------------------------------ expected values

def rel_diff_rows(got, ref) -> float:
    """Decoded rows: boxes, objectness and class scores each against their own scale."""
    return max(rel_err(np.asarray(got)[..., cols], np.asarray(ref)[..., cols])
               for cols in (slice(0, 4), slice(4, 5), slice(5, None)))


def expected_decoded(raw, model) -> torch.Tensor:
    """decode_heads() (independent of DecodedHeads) -> x1, y1, x2, y2 network pixels, obj, obj*sigma(cls)."""
    net_w, net_h = model.input_size
    boxes, obj, cls = decode_heads(raw, model.yolo_specs, net_w, net_h)
    cx, cy, w, h = boxes.double().unbind(-1)
    corners = torch.stack(((cx - w / 2) * net_w, (cy - h / 2) * net_h, (cx + w / 2) * net_w, (cy + h / 2) * net_h), -1)
    return torch.cat((corners, obj.double()[..., None], (obj[..., None] * cls).double()), -1)


def detections_from_rows(rows: torch.Tensor, info, net_w: int, net_h: int):
    """Darknet's thresholds + correct_yolo_boxes + do_nms_sort on one image's decoded rows."""
    rows = rows.float()
    x1, y1, x2, y2 = rows[:, :4].unbind(-1)
    boxes = torch.stack(((x1 + x2) / 2 / net_w, (y1 + y2) / 2 / net_h, (x2 - x1) / net_w, (y2 - y1) / net_h), -1)
    obj, probs = rows[:, 4], rows[:, 5:]
    keep = obj > THRESH
    p = probs[keep]
    cand = Candidates(boxes[keep], obj[keep], torch.where(p > THRESH, p, torch.zeros_like(p)))
    rel = correct_boxes(cand.boxes, info)
    return detections_of(cand.objectness, darknet_nms(rel, cand.probs, NMS), to_photo_xyxy(rel, info))


# ------------------------------------------------------------------------------------ checks

# A box's side is anchor * exp(t): a difference in t becomes a difference proportional to the side, so
# corners are held to an absolute part plus this fraction of the box's larger side. 1e-5 of it
# (4 thousandths of a pixel on a 400 px box) is above what two float32 runtimes give (measured 2.8e-6
# for yolov3-tiny, 7.8e-6 for yolov3) and far below any real decode error (a half-pixel offset, a wrong
# anchor or stride).
BOX_RTOL = 1e-5
SCORE_TOL = 1e-4


def assert_same_detections(got, ref, box_tol=1e-3, box_rtol=BOX_RTOL, thresh=THRESH):
    """One-to-one: every reference detection has its own counterpart of the same class, with box
    corners within ``box_tol`` photo pixels plus ``box_rtol`` of the box's larger side, and score within
    SCORE_TOL. The only detections allowed without a counterpart, on either side, are those within
    SCORE_TOL of ``thresh``: there the runtimes' last-bit differences may decide either way."""
    assert len(ref) > 0, "no detections: the comparison would prove nothing"
    side = (ref.boxes[:, 2:].double() - ref.boxes[:, :2].double()).amax(-1)
    ok = ((ref.classes[:, None] == got.classes[None, :])
          & ((ref.boxes[:, None, :].double() - got.boxes[None, :, :].double()).abs().amax(-1)
             <= box_tol + box_rtol * side[:, None])
          & ((ref.scores[:, None].double() - got.scores[None, :].double()).abs() <= SCORE_TOL)).numpy()
    used = np.zeros(len(got), bool)
    for i in range(len(ref)):
        match = np.flatnonzero(ok[i] & ~used)
        if not match.size and abs(float(ref.scores[i]) - thresh) <= SCORE_TOL:
            continue
        assert match.size, f"reference detection {i} (class {int(ref.classes[i])}, box {ref.boxes[i].tolist()}, " \
                           f"score {float(ref.scores[i])}) has no counterpart"
        used[match[0]] = True
    extra = [(int(got.classes[j]), got.boxes[j].tolist(), float(got.scores[j]))
             for j in np.flatnonzero(~used) if abs(float(got.scores[j]) - thresh) > SCORE_TOL]
    assert not extra, f"detections without a reference counterpart: {extra}"


def assert_plain_graph(proto, model, per_layer: int = 4, per_head: int = 25):
    """An ONNX graph of standard operators without control flow, whose size grows with the layers and
    heads only."""
    ops = Counter(n.op_type for n in proto.graph.node)
    assert not FORBIDDEN_OPS & set(ops), ops
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    # A conv layer is Conv + activation; route/shortcut/pool/upsample a handful; the decode a fixed
    # few per head. Anything unrolled per image or per cell would blow this bound. (Constant
    # nodes are data: the index vectors of the Slice/Reshape ops.)
    compute = sum(c for op, c in ops.items() if op != "Constant")
    assert compute <= per_layer * len(model.layers) + per_head * len(model.heads) + 10, ops
