"""The single home of the numeric comparisons the tests repeat: relative error against a reference's
scale, the IoU of two boxes given by their corners, and the two-way matching of a detection list
with a reference's."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def as_float64(v) -> np.ndarray:
    """A tensor (any device or dtype) or array-like as a float64 NumPy array."""
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().double().numpy()
    return np.asarray(v, np.float64)


def rel_err(got, ref) -> float:
    """max |got - ref| / max |ref|, in float64. The shapes must agree and the reference be finite;
    a reference of zeros counts as 1e-30 (identical zeros give 0, not nan)."""
    got, ref = as_float64(got), as_float64(ref)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert np.isfinite(ref).all()
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def outputs_rel_err(gots: Sequence, refs: Sequence) -> float:
    """The largest ``rel_err`` over the outputs of two runs (one output against its own reference's scale)."""
    assert len(gots) == len(refs)
    return max(rel_err(g, r) for g, r in zip(gots, refs))


# The parts of decoded [yolo] rows (OpenCV's layout), each compared against its own scale.
ROW_PARTS = (("x,y", slice(0, 2)), ("w,h", slice(2, 4)), ("objectness", slice(4, 5)), ("class scores", slice(5, None)))


def compare_rows(got: np.ndarray, ref: np.ndarray, tol: float, what: str) -> float:
    """Decoded rows (x, y, w, h relative, objectness, objectness*class) against a reference's: the
    ``rel_err`` of each part at most ``tol``; -> the worst."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    worst = 0.0
    for part, cols in ROW_PARTS:
        err = rel_err(got[:, cols], ref[:, cols])
        assert err <= tol, f"{what} {part}: relative difference {err:.2e} > {tol:.0e}"
        worst = max(worst, err)
    return worst


def corner_iou(a, b) -> float:
    """IoU of two (x1, y1, x2, y2) boxes; two boxes without area count as matching when identical."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else float(a == b)


def assert_detections_match(dets, ref: Sequence, thresh: float, margin: float, min_iou: float,
                            corner_tol: float | None = None) -> None:
    """darknet_py's Detections ``dets`` against a reference's [(class, score, [x1, y1, x2, y2])], both
    ways: every detection whose score is more than ``margin`` from ``thresh`` (a closer one may fall
    either side of it) has a counterpart of its class, score within ``margin`` and box IoU above
    ``min_iou``. With ``corner_tol``, boxes whose corners all agree within corner_tol times the largest
    corner match too (a box wholly outside the photo clips to no area, where IoU says nothing)."""
    mine = list(zip(dets.classes.tolist(), dets.scores.tolist(), dets.boxes.tolist()))
    ref = list(ref)
    pixels = None
    if corner_tol is not None and mine + ref:
        pixels = corner_tol * max(max(map(abs, d[2])) for d in mine + ref)

    def same_box(p, q):
        return corner_iou(p, q) > min_iou or (pixels is not None and max(abs(u - v) for u, v in zip(p, q)) <= pixels)

    def unmatched(a, b):
        return [d for d in a if abs(d[1] - thresh) > margin and not any(
            e[0] == d[0] and abs(e[1] - d[1]) < margin and same_box(e[2], d[2]) for e in b)]

    assert unmatched(mine, ref) == []
    assert unmatched(ref, mine) == []
