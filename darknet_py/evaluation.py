"""Detection metrics for ``darknet-py detector map``: pure numpy, plus pycocotools for COCO.

Inputs are per-image ground truth and detections in photo pixels (x1, y1, x2, y2). Computed:

- VOC-style AP per class, matched as the VOC devkit (``voc_eval.py``) and AlexeyAB's
  ``validate_detector_map`` do: detections in descending score order; each takes the truth of its
  image and class with the largest IoU; IoU must be ``> iou`` (strict); a truth already taken makes
  the detection a false positive (no fallback to the next-best truth); a "difficult" (ignored) truth
  makes it neither. Boxes are continuous (no VOC "+1" pixel). AP in three conventions: ``11point``
  (VOC2007, and AlexeyAB's ``-points 11``), ``101point`` (AlexeyAB's ``-points 101``, MS COCO's
  recall points) and ``all`` (VOC2010+ area under the interpolated curve, AlexeyAB's default since
  2019).
- precision / recall / F1 / TP / FP / FN / average IoU for detections with score >= conf_thresh, the
  line AlexeyAB's map prints "for conf_thresh = 0.25" (his average IoU divides by TP + FP).
- COCO AP@[.5:.95] etc. by pycocotools itself. Note it matches differently: IoU ``>=`` t, and a
  detection falls back to the best *unmatched* truth; crowd truths absorb any number of detections.
- The two metrics the YOLOv3 paper's rebuttal proposes: a "global AP" pooling every class into one
  PR curve (no per-class averaging), and a per-image AP averaged over images.
"""
from __future__ import annotations

import contextlib
import gc
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .defaults import MAP_CONF_THRESH, MAP_IOU
from .errors import DataError, UsageError
from .files import atomic_output

# Pair budget per chunk of the vectorised detection x truth IoU computation (memory bound only).
_PAIR_CHUNK = 1 << 22
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                   "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


@dataclass
class GroundTruth:
    """One image's truth. ``ignore`` = VOC "difficult" / COCO iscrowd: never TP, FP or FN."""

    image_id: int
    file_name: str
    width: int
    height: int
    boxes: np.ndarray                     # (N, 4) float64 x1, y1, x2, y2 photo pixels
    classes: np.ndarray                   # (N,) int64
    areas: np.ndarray | None = None       # (N,) COCO "area" (e.g. segmentation area); None -> box area
    ignore: np.ndarray | None = None      # (N,) bool VOC "difficult" / COCO iscrowd; None -> all False


@dataclass
class ImageDetections:
    """One image's detections (one row per box and class, as Darknet writes them)."""

    image_id: int
    boxes: np.ndarray    # (D, 4) float64 x1, y1, x2, y2 photo pixels
    scores: np.ndarray   # (D,)
    classes: np.ndarray  # (D,) int64
    # (D,) each row's box's place in Darknet's dets array (darknet_py.postprocess.darknet_array_rank);
    # needed only for AlexeyAB's counting at conf_thresh (counting="alexeyab")
    rank: np.ndarray | None = None


@dataclass
class MatchResult:
    """Every detection, in ranking order (descending score, ties in input order)."""

    image: np.ndarray        # (D,) int64 index into ``truths`` of the detection's image
    index: np.ndarray        # (D,) int64 row in that image's ImageDetections arrays
    classes: np.ndarray      # (D,) int64
    scores: np.ndarray       # (D,) float64
    tp: np.ndarray           # (D,) bool
    fp: np.ndarray           # (D,) bool (neither tp nor fp: matched an ignored truth)
    iou: np.ndarray          # (D,) float64 IoU with the best truth of its image and class (0 if none)
    truth: np.ndarray        # (D,) int64 row of that truth in its GroundTruth arrays, -1 if none
    npos: np.ndarray         # (C,) int64 non-ignored truths per class
    image_npos: np.ndarray   # (images,) int64 non-ignored truths per image
    iou_thresh: float = MAP_IOU

    @property
    def num_classes(self) -> int:
        return len(self.npos)


@dataclass
class PRCurve:
    """One point per counted (TP or FP) detection, in ranking order."""

    recall: np.ndarray     # 0 everywhere when npos == 0 (AP undefined: see ``curve_ap``)
    precision: np.ndarray
    scores: np.ndarray
    tp: np.ndarray         # cumulative counts
    fp: np.ndarray
    npos: int


@dataclass
class CocoStats:
    """pycocotools' 12 summary numbers. Its -1 ("no truth in this area range") is NaN here."""

    AP: float = 0.0
    AP50: float = 0.0
    AP75: float = 0.0
    AP_small: float = 0.0
    AP_medium: float = 0.0
    AP_large: float = 0.0
    AR1: float = 0.0
    AR10: float = 0.0
    AR100: float = 0.0
    AR_small: float = 0.0
    AR_medium: float = 0.0
    AR_large: float = 0.0
    summary: str = ""
    note: str = ""

    def values(self) -> tuple[float, ...]:
        return tuple(getattr(self, n) for n in COCO_STAT_NAMES)


@dataclass
class ClassRow:
    class_id: int
    name: str
    truths: int          # non-ignored
    detections: int
    tp: int              # over all detections, at the IoU threshold
    fp: int
    tp_conf: int         # over detections with score >= conf_thresh (AlexeyAB's per-class TP/FP)
    fp_conf: int
    ap: float            # all-point; NaN when the class has no truth
    ap11: float


@dataclass
class EvaluationReport:
    names: list[str]
    iou: float
    conf_thresh: float
    rows: list[ClassRow]
    map: float                # all-point mAP over classes with truth
    map11: float
    global_ap: float          # all-point AP of the pooled curve
    global_ap11: float
    per_image_ap: float
    images_used: int
    images_without_truth: int
    precision: float          # the conf_thresh line
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    avg_iou: float
    num_images: int
    num_detections: int
    coco: CocoStats | None = None
    map101: float = float("nan")   # 101 recall points (AlexeyAB's -points 101)
    counting: str = "ranking"      # how the conf_thresh counts were made (COUNTING_RULES)
    curves: list[PRCurve] = field(default_factory=list, repr=False)   # per class
    global_curve: PRCurve | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        def pct(v: float) -> str:
            return "    -" if math.isnan(v) else f"{100 * v:5.1f}"

        c = f"@{self.conf_thresh:g}"
        head = (f"{'id':>4}  {'name':<20} {'truths':>7} {'dets':>8} {'TP':>7} {'FP':>8} "
                f"{'TP' + c:>8} {'FP' + c:>8} {'AP%':>6} {'AP11%':>6}")
        out = [head] + [f"{r.class_id:>4}  {r.name[:20]:<20} {r.truths:>7} {r.detections:>8} {r.tp:>7} {r.fp:>8} "
                        f"{r.tp_conf:>8} {r.fp_conf:>8}  {pct(r.ap)}  {pct(r.ap11)}" for r in self.rows]
        n = sum(not math.isnan(r.ap) for r in self.rows)
        at = f"@{self.iou:g}"
        out.append(f"mAP{at} (all-point, VOC2010+) = {pct(self.map).strip()} %  over {n} classes")
        out.append(f"mAP{at} (11-point, VOC2007)   = {pct(self.map11).strip()} %")
        if not math.isnan(self.map101):
            out.append(f"mAP{at} (101-point, COCO-style as AlexeyAB's -points 101) = {pct(self.map101).strip()} %")
        out.append(f"global AP{at} (classes pooled) = {pct(self.global_ap).strip()} % all-point, "
                   f"{pct(self.global_ap11).strip()} % 11-point")
        out.append(f"per-image AP{at} = {pct(self.per_image_ap).strip()} %  over {self.images_used} images "
                   f"({self.images_without_truth} without truth not averaged)")
        rule = " (AlexeyAB's counting, Darknet's detection order)" if self.counting == "alexeyab" else ""
        out.append(f"for conf_thresh = {self.conf_thresh:g}{rule}: precision = {self.precision:.2f}, "
                   f"recall = {self.recall:.2f}, F1-score = {self.f1:.2f}, TP = {self.tp}, FP = {self.fp}, "
                   f"FN = {self.fn}, average IoU = {100 * self.avg_iou:.2f} %")
        if self.coco is not None:
            out += ["COCO (pycocotools)   AP  AP50  AP75   APS   APM   APL",
                    "                  " + " ".join(pct(v) for v in self.coco.values()[:6])]
        out += [f"note: {s}" for s in self.notes + ([self.coco.note] if self.coco and self.coco.note else [])]
        return out

    def as_dict(self, curves: bool = False) -> dict:
        d = asdict(self)
        d.pop("curves"), d.pop("global_curve")
        if curves:
            d["curves"] = [asdict(c) for c in self.curves]
            d["global_curve"] = asdict(self.global_curve) if self.global_curve else None
        return _jsonable(d)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    return x


def voc_ap(recall, precision, convention: str = "all") -> float:
    """AP of one PR curve (recall ascending, as the ranking produces it)."""
    rec, prec = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if convention in ("11point", "101point"):
        # N recall points i/(N-1) (AlexeyAB's -points 11 as VOC2007, -points 101 as MS COCO); i/10,
        # not py-faster-rcnn's np.arange(0, 1.1, 0.1) whose 0.30000000000000004 rejects recall 0.3
        n = 11 if convention == "11point" else 101
        return float(sum(prec[rec >= t].max() if (rec >= t).any() else 0.0 for t in np.arange(n) / (n - 1)) / n)
    if convention == "all":
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.maximum.accumulate(np.concatenate(([0.0], prec, [0.0]))[::-1])[::-1]
        i = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    raise UsageError(f"unknown AP convention {convention!r}: expected '11point', '101point' or 'all'")


def _boxes(a) -> np.ndarray:
    return np.asarray(a, np.float64).reshape(-1, 4)


def _pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_detections(truths: Sequence[GroundTruth], detections: Sequence[ImageDetections], iou: float = MAP_IOU,
                     num_classes: int | None = None) -> MatchResult:
    """VOC / AlexeyAB matching (see the module docstring). Detections find their image by image_id."""
    where = {}
    for i, t in enumerate(truths):
        if t.image_id in where:
            raise UsageError(f"image_id {t.image_id} appears twice in the ground truth")
        where[t.image_id] = i
    t_cls, t_ign, t_box = [], [], []
    for t in truths:
        t_cls.append(np.asarray(t.classes, np.int64).reshape(-1))
        t_box.append(_boxes(t.boxes))
        t_ign.append(np.zeros(len(t_cls[-1]), bool) if t.ignore is None else np.asarray(t.ignore, bool).reshape(-1))
        if not len(t_cls[-1]) == len(t_box[-1]) == len(t_ign[-1]):
            raise UsageError(f"ground truth of image_id {t.image_id}: boxes, classes and ignore differ in length")
    d_img, d_idx, d_cls, d_sc, d_box = [], [], [], [], []
    for d in detections:
        if d.image_id not in where:
            raise UsageError(f"detections for image_id {d.image_id}, which has no ground truth entry")
        d_cls.append(np.asarray(d.classes, np.int64).reshape(-1))
        d_sc.append(np.asarray(d.scores, np.float64).reshape(-1))
        d_box.append(_boxes(d.boxes))
        if not len(d_cls[-1]) == len(d_sc[-1]) == len(d_box[-1]):
            raise UsageError(f"detections of image_id {d.image_id}: boxes, scores and classes differ in length")
        d_img.append(np.full(len(d_sc[-1]), where[d.image_id], np.int64))
        d_idx.append(np.arange(len(d_sc[-1]), dtype=np.int64))

    def cat(parts, dtype, shape=(0,)):
        return np.concatenate(parts) if parts else np.zeros(shape, dtype)

    img, idx, cls, sc = (cat(d_img, np.int64), cat(d_idx, np.int64), cat(d_cls, np.int64), cat(d_sc, np.float64))
    box = cat(d_box, np.float64, (0, 4))
    tcls, tign, tbox = cat(t_cls, np.int64), cat(t_ign, bool), cat(t_box, np.float64, (0, 4))
    timg = np.repeat(np.arange(len(truths), dtype=np.int64), [len(c) for c in t_cls])
    trow = cat([np.arange(len(c), dtype=np.int64) for c in t_cls], np.int64)
    top = int(max(cls.max(initial=-1), tcls.max(initial=-1))) + 1
    nc = top if num_classes is None else int(num_classes)
    if min(cls.min(initial=0), tcls.min(initial=0)) < 0 or top > nc:
        raise UsageError(f"class index outside 0..{nc - 1}")

    order = np.argsort(-sc, kind="stable")  # ranking; stable keeps input order for equal scores
    img, idx, cls, sc, box = img[order], idx[order], cls[order], sc[order], box[order]

    # Truths sorted by (image, class), file order kept: a detection's candidates are one slice.
    key = timg * max(nc, 1) + tcls
    tord = np.argsort(key, kind="stable")
    key, tbox = key[tord], tbox[tord]
    dkey = img * max(nc, 1) + cls
    start = np.searchsorted(key, dkey, "left")
    count = np.searchsorted(key, dkey, "right") - start

    best_iou = np.zeros(len(sc))
    best = np.full(len(sc), -1, np.int64)   # position in the sorted truths
    cum = np.cumsum(count)
    bounds = [0, *np.searchsorted(cum, np.arange(_PAIR_CHUNK, cum[-1] if len(cum) else 0, _PAIR_CHUNK)), len(sc)]
    for k in range(len(bounds) - 1):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        c = count[lo:hi]
        n = int(c.sum())
        if n == 0:
            continue
        det = np.repeat(np.arange(lo, hi), c)
        tru = start[det] + np.arange(n) - np.repeat(np.cumsum(c) - c, c)
        ov = _pair_iou(box[det], tbox[tru])
        has = np.flatnonzero(c)
        mx = np.maximum.reduceat(ov, (np.cumsum(c) - c)[has])
        # first truth (file order) reaching the maximum, like np.argmax in voc_eval
        at_max = np.flatnonzero(ov == mx[np.searchsorted(has, det - lo)])
        d_first, pos = np.unique(det[at_max], return_index=True)
        best_iou[d_first] = mx
        best[d_first] = tru[at_max[pos]]

    hit = (best >= 0) & (best_iou > iou)
    ign = np.zeros(len(sc), bool)
    ign[hit] = tign[tord][best[hit]]
    # No fallback: a truth's status depends only on earlier hits on the same truth, so "first hit in
    # ranking order" is the whole greedy loop.
    first = np.zeros(len(sc), bool)
    hits = np.flatnonzero(hit)
    first[hits[np.unique(best[hits], return_index=True)[1]]] = True
    tp = hit & first & ~ign
    fp = ~hit | (~first & ~ign)
    truth_row = np.full(len(sc), -1, np.int64)
    truth_row[best >= 0] = trow[tord][best[best >= 0]]
    counted = ~tign
    return MatchResult(image=img, index=idx, classes=cls, scores=sc, tp=tp, fp=fp, iou=best_iou, truth=truth_row,
                       npos=np.bincount(tcls[counted], minlength=nc).astype(np.int64),
                       image_npos=np.bincount(timg[counted], minlength=len(truths)).astype(np.int64),
                       iou_thresh=float(iou))


def pr_curve(match: MatchResult, class_id: int | None = None) -> PRCurve:
    """One class's curve, or with ``class_id=None`` every class pooled into one (the rebuttal's global AP)."""
    keep = match.tp | match.fp  # detections of ignored truths would only repeat a point
    if class_id is not None:
        keep &= match.classes == class_id
    npos = int(match.npos.sum() if class_id is None else match.npos[class_id])
    return _curve(match.tp[keep], match.fp[keep], match.scores[keep], npos)


def _curve(tp: np.ndarray, fp: np.ndarray, scores: np.ndarray, npos: int) -> PRCurve:
    ctp, cfp = np.cumsum(tp, dtype=np.int64), np.cumsum(fp, dtype=np.int64)
    recall = ctp / npos if npos else np.zeros(len(ctp))
    precision = ctp / np.maximum(ctp + cfp, 1)
    return PRCurve(recall=recall, precision=precision, scores=scores, tp=ctp, fp=cfp, npos=npos)


def curve_ap(curve: PRCurve, convention: str = "all") -> float:
    """``voc_ap`` of a curve; NaN when it has no truth (AP undefined, not 0)."""
    return voc_ap(curve.recall, curve.precision, convention) if curve.npos else float("nan")


def _per_image_ap(match: MatchResult) -> tuple[float, int, int]:
    keep = match.tp | match.fp
    img = match.image[keep]
    o = np.argsort(img, kind="stable")   # per image, still in ranking order
    img, tp = img[o], match.tp[keep][o]   # every kept detection is TP or FP
    bounds = np.searchsorted(img, np.arange(len(match.image_npos) + 1))
    aps = [voc_ap(np.cumsum(tp[a:b]) / n, np.cumsum(tp[a:b]) / np.arange(1, b - a + 1))
           for a, b, n in zip(bounds[:-1], bounds[1:], match.image_npos) if n > 0]
    return (float(np.mean(aps)) if aps else float("nan"), len(aps), int(np.sum(match.image_npos == 0)))


def per_image_ap(truths: Sequence[GroundTruth], detections: Sequence[ImageDetections],
                 iou: float = MAP_IOU) -> tuple[float, int, int]:
    """(mean all-point AP over images with truth, images averaged, images without truth)."""
    return _per_image_ap(match_detections(truths, detections, iou))


def _category_ids(category_ids, n: int) -> list[int]:
    return [c + 1 for c in range(n)] if category_ids is None else [int(c) for c in category_ids]


def coco_ground_truth(truths: Sequence[GroundTruth], category_ids: Sequence[int] | None,
                      names: Sequence[str]) -> dict:
    """A COCO instances dict; ``category_ids`` None -> class + 1."""
    cats = _category_ids(category_ids, len(names))
    images, anns = [], []
    for t in truths:
        images.append({"id": int(t.image_id), "file_name": t.file_name, "width": int(t.width), "height": int(t.height)})
        b, c = _boxes(t.boxes), np.asarray(t.classes, np.int64).reshape(-1)
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        area = w * h if t.areas is None else np.asarray(t.areas, np.float64).reshape(-1)
        crowd = np.zeros(len(c), bool) if t.ignore is None else np.asarray(t.ignore, bool).reshape(-1)
        for i in range(len(c)):
            anns.append({"id": len(anns) + 1, "image_id": int(t.image_id), "category_id": cats[c[i]],
                         "bbox": [float(b[i, 0]), float(b[i, 1]), float(w[i]), float(h[i])],
                         "area": float(area[i]), "iscrowd": int(crowd[i])})
    return {"images": images, "annotations": anns,
            "categories": [{"id": cats[i], "name": str(n)} for i, n in enumerate(names)]}


@contextlib.contextmanager
def _gc_paused():
    # Building ~10^6 small dicts and lists (ours and pycocotools') triggers the cyclic collector over and
    # over while nothing cyclic is made: pausing it makes these steps 3-4x faster.
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def c_float6(values) -> np.ndarray:
    """``float(f"{v:f}")`` elementwise: the value C's ``%f`` prints (six decimals, correctly rounded), read back."""
    a = np.asarray(values, np.float64)
    x = a * 1e6
    out = np.rint(x) / 1e6  # k / 1e6 is the double nearest k * 10**-6, as float("<k with six decimals>") is
    # x carries the product's rounding error: next to a .5 boundary only the exact expansion can decide
    with np.errstate(invalid="ignore"):
        slow = ~np.isfinite(x) | (np.abs(x) > 2.0**52) | (np.abs(x - np.floor(x) - 0.5) <= 4 * np.abs(np.spacing(x)))
    out[slow] = [float(f"{v:f}") for v in a[slow]]
    return out


def coco_detections(detections: Sequence[ImageDetections], category_ids: Sequence[int] | None = None) -> list[dict]:
    """Darknet's coco_results.json records, floats as its ``%f`` wrote them; category_ids None -> class + 1."""
    if not detections:
        return []
    boxes = np.concatenate([_boxes(d.boxes) for d in detections])
    scores = np.concatenate([np.asarray(d.scores, np.float64).reshape(-1) for d in detections])
    classes = np.concatenate([np.asarray(d.classes, np.int64).reshape(-1) for d in detections])
    ids = np.repeat([int(d.image_id) for d in detections], [len(np.ravel(d.scores)) for d in detections])
    if not len(boxes) == len(scores) == len(classes):
        raise UsageError("detections: boxes, scores and classes differ in length")
    cats = classes + 1 if category_ids is None else np.asarray(category_ids, np.int64)[classes]
    vals = c_float6(np.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1],
                              scores], axis=1))
    with _gc_paused():
        return [{"image_id": i, "category_id": c, "bbox": v[:4], "score": v[4]}
                for i, c, v in zip(ids.tolist(), cats.tolist(), vals.tolist())]


def coco_evaluate(ground_truth, results, image_ids: Sequence[int] | None = None) -> CocoStats:
    """pycocotools bbox evaluation on ``image_ids`` (default: every image of the ground truth).

    ``ground_truth``: COCO dict, json path or ``pycocotools.coco.COCO``; ``results``: records or json path.
    pycocotools' printing is captured; its summary is kept in ``summary``.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise DataError("pycocotools is needed for COCO metrics: pip install pycocotools") from None
    log = io.StringIO()
    with contextlib.redirect_stdout(log), _gc_paused():
        if isinstance(ground_truth, COCO):
            gt = ground_truth
        else:
            data = ground_truth
            if isinstance(data, (str, os.PathLike)):
                with open(data) as f:
                    data = json.load(f)
            # COCOeval writes an "ignore" key into every truth it sees: leave the caller's dicts alone
            gt = COCO()
            gt.dataset = {**data, "annotations": [dict(a) for a in data.get("annotations", [])]}
            gt.createIndex()
        if isinstance(results, (str, os.PathLike)):
            with open(results) as f:
                results = json.load(f)
        ids = sorted(gt.getImgIds()) if image_ids is None else sorted({int(i) for i in image_ids})
        unknown = set(ids) - set(gt.getImgIds())
        if unknown:
            raise UsageError(f"{len(unknown)} image ids are not in the COCO ground truth, e.g. {min(unknown)}")
        wanted = set(ids)
        # loadRes adds keys to each record; it also rejects records of images the truth lacks
        recs = [dict(r, bbox=list(r["bbox"])) for r in results if r["image_id"] in wanted]
        if not recs:
            return CocoStats(summary="", note="no detections: COCO stats are 0 (pycocotools cannot load [])")
        ev = COCOeval(gt, gt.loadRes(recs), "bbox")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        ev.summarize()
    return CocoStats(*[float("nan") if v == -1 else float(v) for v in ev.stats], summary=summary.getvalue())


# How the TP / FP / FN line at conf_thresh is counted:
# - "ranking": the detections above conf_thresh, matched in ranking order (as the AP is);
# - "alexeyab": AlexeyAB's validate_detector_map: detections with score > conf_thresh, each image's
#   in Darknet's dets-array order (ImageDetections.rank), classes in index order within a box; a
#   detection is a TP when its best truth (same class, IoU > iou) was not the best truth of any
#   earlier detection of the image in that order, whatever that one's score: a duplicate scoring
#   below conf_thresh that comes first makes the confident one an FP.
COUNTING_RULES = ("ranking", "alexeyab")


def alexeyab_conf_counts(truths: Sequence[GroundTruth], detections: Sequence[ImageDetections], iou: float,
                         conf_thresh: float, num_classes: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-class TP and FP at ``conf_thresh`` by AlexeyAB's rule (COUNTING_RULES), and the sum of
    the TPs' IoUs. Ignored ("difficult") truths are never a detection's truth."""
    tp = np.zeros(num_classes, np.int64)
    fp = np.zeros(num_classes, np.int64)
    iou_sum = 0.0
    by_id = {t.image_id: t for t in truths}
    for d in detections:
        if len(d.scores) == 0:
            continue
        if d.rank is None:
            raise UsageError(f"detections of image_id {d.image_id} carry no Darknet array order (rank); "
                             "run them with array_order=True")
        t = by_id[d.image_id]
        t_cls = np.asarray(t.classes, np.int64).reshape(-1)
        t_box = _boxes(t.boxes)
        if t.ignore is not None:
            keep = ~np.asarray(t.ignore, bool).reshape(-1)
            t_cls, t_box = t_cls[keep], t_box[keep]
        cls = np.asarray(d.classes, np.int64).reshape(-1)
        sc = np.asarray(d.scores, np.float64).reshape(-1)
        box = _boxes(d.boxes)
        order = np.lexsort((cls, np.asarray(d.rank).reshape(-1)))
        seen: set[int] = set()
        for i in order:
            best, best_iou = -1, 0.0
            same = np.flatnonzero(t_cls == cls[i])
            if len(same):
                ov = _pair_iou(np.repeat(box[i:i + 1], len(same), 0), t_box[same])
                j = int(np.argmax(ov))  # first truth reaching the maximum (Darknet's strict >)
                if ov[j] > iou:
                    best, best_iou = int(same[j]), float(ov[j])
            if sc[i] > conf_thresh:  # Darknet: prob > thresh_calc_avg_iou
                if best >= 0 and best not in seen:
                    tp[cls[i]] += 1
                    iou_sum += best_iou
                else:
                    fp[cls[i]] += 1
            if best >= 0:
                seen.add(best)
    return tp, fp, iou_sum


def evaluate(truths: Sequence[GroundTruth], detections: Sequence[ImageDetections], names: Sequence[str],
             category_ids: Sequence[int] | None = None, iou: float = MAP_IOU, conf_thresh: float = MAP_CONF_THRESH,
             coco: bool = True, counting: str = "ranking") -> EvaluationReport:
    """Every metric of the module at once (see the module docstring; ``counting``: COUNTING_RULES)."""
    if counting not in COUNTING_RULES:
        raise UsageError(f"counting={counting!r}: expected one of {', '.join(COUNTING_RULES)}")
    names = [str(n) for n in names]
    m = match_detections(truths, detections, iou, num_classes=len(names))
    notes: list[str] = []
    rows, curves = [], []
    above = m.scores >= conf_thresh
    nc = len(names)
    count = [np.bincount(m.classes[w], minlength=nc).tolist()
             for w in (slice(None), m.tp, m.fp, m.tp & above, m.fp & above)]
    if counting == "alexeyab":
        tp_c, fp_c, iou_sum = alexeyab_conf_counts(truths, detections, iou, conf_thresh, nc)
        count[3], count[4] = tp_c.tolist(), fp_c.tolist()
    for c, name in enumerate(names):
        cur = pr_curve(m, c)
        rows.append(ClassRow(c, name, int(m.npos[c]), *(k[c] for k in count),
                             curve_ap(cur, "all"), curve_ap(cur, "11point")))
        curves.append(cur)
    missing = [r.name for r in rows if r.truths == 0]
    if missing:
        notes.append(f"{len(missing)} class(es) without ground truth, AP undefined and left out of mAP: "
                     + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))

    def mean(v):
        v = [x for x in v if not math.isnan(x)]
        return float(np.mean(v)) if v else float("nan")

    g = pr_curve(m)
    pi_ap, used, without = _per_image_ap(m)
    tp, fp = sum(count[3]), sum(count[4])
    fn = int(m.npos.sum()) - tp
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    if counting == "ranking":
        iou_sum = float(m.iou[above & m.tp].sum())
    avg_iou = float(iou_sum / (tp + fp)) if tp + fp else 0.0
    stats = None
    if coco:
        stats = coco_evaluate(coco_ground_truth(truths, category_ids, names), coco_detections(
            detections, _category_ids(category_ids, len(names))), [t.image_id for t in truths])
    return EvaluationReport(
        names=names, iou=float(iou), conf_thresh=float(conf_thresh), rows=rows,
        map=mean(r.ap for r in rows), map11=mean(r.ap11 for r in rows),
        global_ap=curve_ap(g, "all"), global_ap11=curve_ap(g, "11point"),
        per_image_ap=pi_ap, images_used=used, images_without_truth=without,
        precision=prec, recall=rec, f1=f1, tp=tp, fp=fp, fn=fn, avg_iou=avg_iou,
        num_images=len(truths), num_detections=len(m.scores), coco=stats, curves=curves, global_curve=g, notes=notes,
        map101=mean(curve_ap(c, "101point") for c in curves), counting=counting)


def plot_pr_curves(report: EvaluationReport, path: str | os.PathLike) -> None:
    """PNG of every class's PR curve (thin) and the pooled global curve (thick black)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DataError("matplotlib is needed to plot the precision-recall curves: pip install "
                        "'darknet-py[plot]'") from None
    # Figure + Agg canvas directly: no pyplot global state, no backend switch in the caller's process
    fig = Figure(figsize=(8, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for row, cur in zip(report.rows, report.curves):
        if cur.npos:
            ax.plot(cur.recall, cur.precision, lw=0.8, alpha=0.7,
                    label=f"{row.name} {100 * row.ap:.1f}")
    if report.global_curve is not None and report.global_curve.npos:
        ax.plot(report.global_curve.recall, report.global_curve.precision, "k", lw=2.5,
                label=f"global {100 * report.global_ap:.1f}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"PR curves @IoU {report.iou:g}: mAP {100 * report.map:.1f}, global AP {100 * report.global_ap:.1f}")
    ax.grid(alpha=0.3)
    if len(report.rows) <= 25:
        ax.legend(fontsize=7, loc="lower left")
    with atomic_output(path) as fh:
        fig.savefig(fh, format="png")

