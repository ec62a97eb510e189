"""The proof every converted model gets: run it on photos and compare what a user sees.

A backend hands over a *runner*: a callable from a letterboxed float32 NCHW batch (NumPy, exactly
what ``model(x)`` takes) to the raw head outputs in the model's head order (what ``model(x)``
returns, as NumPy). The runner's heads then go through darknet_py's one decode and one
post-process (:func:`darknet_py.postprocess.postprocess`), exactly as PyTorch's heads do, so a
difference in detections is the converted file's and nothing else's.

:func:`match_detections` pairs two photos' detections (same class, IoU >= ``iou``, best score
first); :func:`verify_runner` gives, per photo and in total, the largest head difference and the
detections matched, missing (PyTorch has them, the backend not) and extra.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..detector import letterboxed
from ..device import model_device
from ..postprocess import DEFAULT_NMS, DEFAULT_THRESH, Detections, postprocess
from ..transforms import prepare_batch
from .check import compare

Runner = Callable[[np.ndarray], Sequence[np.ndarray]]

# "The same detection": same class and boxes that overlap this much (photo pixels).
MATCH_IOU = 0.99
# ... for an int8 file (ONNX, TFLite, TensorRT): IoU >= .9 (a 100-pixel box moved by 5 pixels). The
# float backends' .99 is not an int8 file's: on 100 shapes photos 94 % of the detections keep IoU >= .9,
# 1 % keep .99, while mAP@0.5 is unchanged.
INT8_MATCH_IOU = 0.9


def _iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, 4) x (B, 4) corner boxes -> (A, B) IoU, in float64."""
    a = a.astype(np.float64)[:, None]
    b = b.astype(np.float64)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), (inter == 0) & (area_a == area_b))


@dataclass
class Match:
    """How one photo's detections from a backend compare with PyTorch's."""

    matched: int = 0
    missing: int = 0       # PyTorch's detections the backend does not have
    extra: int = 0         # the backend's detections PyTorch does not have
    max_score_diff: float = 0.0  # over the matched pairs

    def __iadd__(self, other: Match) -> Match:
        self.matched += other.matched
        self.missing += other.missing
        self.extra += other.extra
        self.max_score_diff = max(self.max_score_diff, other.max_score_diff)
        return self

    @property
    def reference_count(self) -> int:
        return self.matched + self.missing

    @property
    def matched_fraction(self) -> float:
        """Share of PyTorch's detections the backend has; 1.0 when both have none."""
        n = self.reference_count
        return 1.0 if n == 0 and self.extra == 0 else (self.matched / n if n else 0.0)


def as_arrays(d: Detections | tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (D, 4) x1y1x2y2, scores (D,), classes (D,)) as NumPy from Detections or such a tuple."""
    if isinstance(d, Detections):
        d = (d.boxes, d.scores, d.classes)
    boxes, scores, classes = (t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t) for t in d)
    return boxes.reshape(-1, 4), scores.reshape(-1), classes.reshape(-1).astype(np.int64)


def match_detections(reference, got, iou: float = MATCH_IOU) -> Match:
    """Greedy one-to-one pairing, PyTorch's best score first: each reference detection takes the
    unpaired detection of the same class with the largest IoU, if that IoU is >= ``iou``."""
    rb, rs, rc = as_arrays(reference)
    gb, gs, gc = as_arrays(got)
    out = Match()
    if len(rb) == 0 or len(gb) == 0:
        out.missing, out.extra = len(rb), len(gb)
        return out
    overlaps = _iou_xyxy(rb, gb)
    overlaps[rc[:, None] != gc[None, :]] = -1.0
    taken = np.zeros(len(gb), dtype=bool)
    for i in np.argsort(-rs, kind="stable"):
        row = np.where(taken, -1.0, overlaps[i])
        j = int(np.argmax(row))
        if row[j] >= iou:
            taken[j] = True
            out.matched += 1
            out.max_score_diff = max(out.max_score_diff, abs(float(rs[i]) - float(gs[j])))
        else:
            out.missing += 1
    out.extra = int((~taken).sum())
    return out


@dataclass
class PhotoResult:
    name: str
    max_abs_diff: float
    max_rel_diff: float
    match: Match


@dataclass
class Verification:
    """A runner checked on photos against PyTorch (see :func:`verify_runner`)."""

    photos: list[PhotoResult] = field(default_factory=list)
    thresh: float = DEFAULT_THRESH
    nms: float = DEFAULT_NMS
    iou: float = MATCH_IOU           # "the same box": IoU at least this

    @property
    def total(self) -> Match:
        out = Match()
        for p in self.photos:
            out += p.match
        return out

    @property
    def max_abs_diff(self) -> float:
        """NaN when the heads were not compared (an end-to-end graph)."""
        return max((p.max_abs_diff for p in self.photos), default=0.0, key=_nan_first)

    @property
    def max_rel_diff(self) -> float:
        return max((p.max_rel_diff for p in self.photos), default=0.0, key=_nan_first)


def _nan_first(v: float) -> float:
    return math.inf if math.isnan(v) else v


def reference_heads(model, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [o.float() for o in model(x.to(model_device(model)))]


def verify_runner(model, runner: Runner, photos: Sequence[tuple[str, np.ndarray]], *, thresh: float = DEFAULT_THRESH,
                  nms: float = DEFAULT_NMS, iou: float = MATCH_IOU) -> Verification:
    """Run ``runner`` and the PyTorch ``model`` on each (name, HxWx3 uint8 RGB) photo, prepared as
    darknet_py prepares it (letterbox or stretch, darknet_py.detector.letterboxed), and compare
    the raw heads and the detections at ``thresh``/``nms`` (a classifier: its output only)."""
    out = Verification(thresh=thresh, nms=nms, iou=iou)
    net_w, net_h = model.input_size
    for name, rgb in photos:
        x, infos = prepare_batch([torch.as_tensor(np.ascontiguousarray(rgb))], net_w, net_h, device="cpu",
                                 letterboxed=letterboxed(model))
        ref = reference_heads(model, x)
        got = [np.asarray(g, dtype=np.float32) for g in runner(x.numpy())]
        names = [f"layer_{i}" for i in model.heads]
        max_abs, max_rel = compare(got, [r.cpu().numpy() for r in ref], names)
        if not model.head_specs:  # a classifier: its output compared; there are no detections
            out.photos.append(PhotoResult(name, max_abs, max_rel, Match()))
            continue
        dets_ref = postprocess(model, [r.cpu() for r in ref], infos, thresh, nms)[0]
        dets_got = postprocess(model, [torch.from_numpy(g) for g in got], infos, thresh, nms)[0]
        out.photos.append(PhotoResult(name, max_abs, max_rel, match_detections(dets_ref, dets_got, iou)))
    return out


PhotoDetector = Callable[[np.ndarray], tuple]


def verify_detector(model, detector: PhotoDetector, photos: Sequence[tuple[str, np.ndarray]], *,
                    thresh: float = DEFAULT_THRESH, nms: float = DEFAULT_NMS, iou: float = MATCH_IOU,
                    max_det: int | None = None) -> Verification:
    """As :func:`verify_runner` for a converted file that gives detections, not heads (an
    end-to-end graph): ``detector(rgb)`` -> (boxes x1 y1 x2 y2 in photo pixels, scores, classes),
    compared with ``darknet_py.detect``'s (its ``max_det`` best when the graph keeps that many);
    the head columns are NaN (not seen)."""
    from ..detector import detect
    out = Verification(thresh=thresh, nms=nms, iou=iou)
    for name, rgb in photos:
        boxes, scores, classes = as_arrays(detect(model, np.ascontiguousarray(rgb), thresh, nms))
        keep = slice(None) if max_det is None else slice(0, max_det)  # best first: what a graph of max_det keeps
        want = (boxes[keep], scores[keep], classes[keep])
        out.photos.append(PhotoResult(name, float("nan"), float("nan"),
                                      match_detections(want, detector(np.ascontiguousarray(rgb)), iou)))
    return out


__all__ = ["INT8_MATCH_IOU", "MATCH_IOU", "Match", "PhotoDetector", "PhotoResult", "Runner", "Verification",
           "as_arrays", "match_detections", "reference_heads", "verify_detector", "verify_runner"]
