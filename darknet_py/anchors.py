"""``detector calc_anchors``: k-means anchors under the 1 - IoU distance (AlexeyAB's src/detector.c).

Every training box becomes its (w * width, h * height) in network pixels; boxes are compared by
shape only (both centred at the origin), so the IoU of (w1, h1) and (w2, h2) is
``min(w1, w2) * min(h1, h2) / (w1 h1 + w2 h2 - min(w1, w2) * min(h1, h2))``. K-means with the
distance 1 - IoU (k-means++ seeding, Lloyd iterations that move each centroid to the mean (w, h)
of its members, as AlexeyAB does) finds k anchors; the best of a few seeded restarts is kept.
The anchors are printed sorted by area and rounded to integers, as a cfg's ``anchors =`` line
needs them, and the reported mean IoU is measured with those rounded anchors.

Pure numpy (no torch). Identical boxes are clustered once with a weight, so label sets with many
repeated sizes cost little, and the Lloyd passes skip boxes that provably keep their cluster
(Hamerly's bounds; 1 - IoU of origin-centred boxes is a metric), with the same assignments as
plain passes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .checks import check_count
from .errors import DataError, UsageError

__all__ = ["AnchorResult", "shape_iou", "kmeans_anchors", "dataset_boxes", "calc_anchors", "round_anchors"]


@dataclass
class AnchorResult:
    anchors: np.ndarray  # (k, 2) float64 width, height in network pixels, sorted by area (w*h) ascending
    mean_iou: float      # mean over boxes of the max IoU with the rounded anchors (as the cfg will use them)
    counts: np.ndarray   # (k,) boxes whose best rounded anchor is this one
    iterations: int      # Lloyd iterations of the kept restart
    boxes: int           # number of boxes clustered

    @property
    def rounded(self) -> np.ndarray:
        """The anchors as the cfg gets them: integers (half rounds up), at least 1."""
        return round_anchors(self.anchors)

    def cfg_line(self) -> str:
        return "anchors = " + ", ".join(f"{int(w)},{int(h)}" for w, h in self.rounded)

    def lines(self) -> list[str]:
        k = len(self.anchors)
        out = [self.cfg_line(),
               f"avg IoU = {100.0 * self.mean_iou:.2f} %",
               f"{self.boxes} boxes, {k} clusters, {self.iterations} iterations"]
        for i, ((w, h), (rw, rh), n) in enumerate(zip(self.anchors, self.rounded, self.counts)):
            out.append(f"anchor {i}: {int(rw)} x {int(rh)} ({w:.2f} x {h:.2f}), {int(n)} boxes")
        return out


def round_anchors(anchors: np.ndarray) -> np.ndarray:
    """Integers as written in a cfg (half rounds up), never below 1, as float64."""
    return np.maximum(np.floor(np.asarray(anchors, np.float64) + 0.5), 1.0)


def shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(N, k) IoU of boxes (N, 2) with anchors (k, 2), every box centred at the origin."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0])
    inter *= np.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = (wh[:, 0] * wh[:, 1])[:, None] + (anchors[:, 0] * anchors[:, 1])[None, :]
    union -= inter
    return inter / union


def _positive_int(name: str, value, minimum: int = 1) -> int:
    return check_count(name, value, minimum)


def _check_wh(wh) -> np.ndarray:
    arr = np.asarray(wh, np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise UsageError(f"boxes must be an (N, 2) array of width, height; got shape {arr.shape}")
    if len(arr) == 0:
        raise UsageError("no boxes to cluster")
    bad = ~(np.isfinite(arr).all(1) & (arr > 0).all(1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UsageError(f"{int(bad.sum())} boxes with a width or height that is not a positive finite number "
                         f"(first: row {i}: {arr[i, 0]!r}, {arr[i, 1]!r})")
    return arr


def _init_pp(wh: np.ndarray, weight: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding under d = 1 - IoU: each next centroid is a box drawn with probability ~ weight * d^2."""
    first = rng.choice(len(wh), p=weight / weight.sum())
    chosen = [first]
    d = 1.0 - shape_iou(wh, wh[first:first + 1])[:, 0]
    for _ in range(1, k):
        p = weight * np.square(np.maximum(d, 0.0))
        p[chosen] = 0.0  # distinct rows, but rounding could leave d of a chosen one a hair above 0
        total = p.sum()
        if total > 0:
            nxt = rng.choice(len(wh), p=p / total)
        else:  # cannot happen with k <= distinct boxes, except by rounding: take any unchosen box
            nxt = rng.choice(np.setdiff1d(np.arange(len(wh)), chosen))
        chosen.append(nxt)
        d = np.minimum(d, 1.0 - shape_iou(wh, wh[nxt:nxt + 1])[:, 0])
    return wh[chosen].copy()


# The k-means below works on separate width and height vectors and (k, N) arrays: gathers of 1-D
# arrays and long contiguous rows are several times faster in numpy than (N, 2) fancy indexing and
# (N, k) arrays with short rows.

def _pair_distance(w: np.ndarray, h: np.ndarray, cw: np.ndarray, ch: np.ndarray) -> np.ndarray:
    """1 - IoU of box i (w[i], h[i]) with centroid i (cw[i], ch[i]), elementwise."""
    inter = np.minimum(w, cw) * np.minimum(h, ch)
    return 1.0 - inter / (w * h + cw * ch - inter)


def _nearest(w: np.ndarray, h: np.ndarray, cw: np.ndarray, ch: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each box: the highest-IoU centroid (the first on ties, like ``shape_iou(...).argmax(1)``, with
    the same arithmetic), its distance 1 - IoU, and the distance to the second nearest (2 when k = 1)."""
    inter = np.minimum(w[None, :], cw[:, None])
    tmp = np.minimum(h[None, :], ch[:, None])
    inter *= tmp
    np.add((w * h)[None, :], (cw * ch)[:, None], out=tmp)
    tmp -= inter
    inter /= tmp
    a = inter.argmax(0)
    cols = np.arange(len(w))
    best = inter[a, cols]
    inter[a, cols] = -1.0
    return a, 1.0 - best, 1.0 - inter.max(0)


_SLACK = 1e-9  # a box is skipped only when its bounds clear this margin, so rounding never decides


def _lloyd(wh: np.ndarray, weight: np.ndarray, cent: np.ndarray, max_iter: int) -> tuple[np.ndarray, int]:
    """Lloyd's k-means under d = 1 - IoU: assign each box to its highest-IoU centroid, move each centroid
    to the weighted mean (w, h) of its members, until no assignment changes. Returns the centroids and
    the number of assignment passes.

    1 - IoU of origin-centred boxes is the Jaccard distance of two sets, a metric, so Hamerly's bounds
    skip boxes that provably keep their cluster: ``u`` bounds each box's distance to its centroid from
    above (loosened by how far that centroid moves), ``low`` its distance to every other centroid from
    below (loosened by the largest move). A box with ``u`` below ``max(low, half the distance from its
    centroid to the nearest other one)`` is not looked at; late passes, where few boxes are near a
    boundary, cost little. The assignments are the ones plain Lloyd passes produce.
    """
    k = len(cent)
    w, h = np.ascontiguousarray(wh[:, 0]), np.ascontiguousarray(wh[:, 1])
    cw, ch = (np.array(cent[:, c], np.float64) for c in range(2))
    assign, u, low = _nearest(w, h, cw, ch)
    values = (weight, weight * w, weight * h)

    def totals(idx, clusters: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(clusters, weights=v if idx is None else v.take(idx), minlength=k)
                         for v in values])

    sums = totals(None, assign)  # per cluster: weight, weighted sum of w, of h
    size = np.bincount(assign, minlength=k)
    it, changed = 1, True
    while True:
        if not size.all():
            _fill_empty(w, h, cw, ch, assign, size)
            sums, size = totals(None, assign), np.bincount(assign, minlength=k)
            u[:], low[:] = np.inf, 0.0  # look at every box in the next pass
            changed = True
        if not changed:
            break
        ow, oh = cw, ch
        cw, ch = sums[1] / sums[0], sums[2] / sums[0]
        if it >= max_iter:
            break
        it += 1
        changed = False
        if k == 1:
            continue
        moved = _pair_distance(ow, oh, cw, ch)
        u += moved.take(assign)
        low -= moved.max()
        gap = 1.0 - shape_iou(np.stack([cw, ch], 1), np.stack([cw, ch], 1))
        np.fill_diagonal(gap, np.inf)
        bound = np.maximum((0.5 * gap.min(1)).take(assign), low)
        bound -= _SLACK
        cand = np.flatnonzero(u > bound)
        if not cand.size:
            continue
        ca, wc, hc = assign.take(cand), w.take(cand), h.take(cand)
        uc = _pair_distance(wc, hc, cw.take(ca), ch.take(ca))
        u[cand] = uc
        keep = uc > bound.take(cand)
        if not keep.any():
            continue
        cand, ca, wc, hc = cand[keep], ca[keep], wc[keep], hc[keep]
        na, u[cand], low[cand] = _nearest(wc, hc, cw, ch)
        moving = na != ca
        if moving.any():
            changed = True
            idx, was, now = cand[moving], ca[moving], na[moving]
            sums += totals(idx, now) - totals(idx, was)
            size += np.bincount(now, minlength=k) - np.bincount(was, minlength=k)
            assign[idx] = now
    # exact means of the final assignment (the running sums may carry rounding)
    sums = totals(None, assign)
    return np.stack([sums[1] / sums[0], sums[2] / sums[0]], 1), it


def _fill_empty(w, h, cw, ch, assign: np.ndarray, size: np.ndarray) -> None:
    """Re-seed each empty cluster with the box farthest from its centroid, taken from a cluster that
    keeps other members; the mean step that follows moves the centroid onto it."""
    size = size.copy()
    far = np.argsort(-_pair_distance(w, h, cw.take(assign), ch.take(assign)), kind="stable")
    pos = 0
    for j in np.flatnonzero(size == 0):
        while size[assign[far[pos]]] <= 1:
            pos += 1
        i = far[pos]
        size[assign[i]] -= 1
        assign[i], size[j] = j, 1
        pos += 1


def _score(wh: np.ndarray, weight: np.ndarray, anchors: np.ndarray) -> tuple[float, np.ndarray]:
    iou = shape_iou(wh, round_anchors(anchors))
    best = iou.argmax(1)
    mean = float(np.dot(weight, iou[np.arange(len(wh)), best]) / weight.sum())
    return mean, np.bincount(best, weights=weight, minlength=len(anchors)).astype(np.int64)


def kmeans_anchors(wh: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 1000, restarts: int = 5) -> AnchorResult:
    """Cluster (N, 2) box sizes into k anchors; the restart with the best mean IoU (rounded anchors) wins."""
    k = _positive_int("k", k)
    max_iter = _positive_int("max_iter", max_iter)
    restarts = _positive_int("restarts", restarts)
    arr = _check_wh(wh)
    uniq, counts = np.unique(arr, axis=0, return_counts=True)
    if k > len(uniq):
        raise UsageError(f"k={k} clusters but only {len(uniq)} distinct box sizes "
                         f"({len(arr)} boxes): use at most {len(uniq)} clusters")
    weight = counts.astype(np.float64)
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        cent, its = _lloyd(uniq, weight, _init_pp(uniq, weight, k, rng), max_iter)
        order = np.argsort(cent[:, 0] * cent[:, 1], kind="stable")
        cent = cent[order]
        mean, cnt = _score(uniq, weight, cent)
        if best is None or mean > best.mean_iou:
            best = AnchorResult(cent, mean, cnt, its, len(arr))
    return best


def dataset_boxes(data_path, width: int, height: int, on_bad: str = "error") -> np.ndarray:
    """(N, 2) w * width, h * height of every box in the ``.data`` file's ``train`` list."""
    from .config.data import read_data_config
    from .config.lists import read_image_list
    from .dataset import scan_labels

    width = _positive_int("width", width)
    height = _positive_int("height", height)
    cfg = read_data_config(data_path)
    lst = cfg.require("train", "the training images")
    images = read_image_list(lst)
    classes = cfg.classes
    labels, _report = scan_labels(images, classes if classes is not None else 10 ** 9, on_bad)
    parts = [lab.boxes[:, 2:4] for lab in labels if len(lab.boxes)]
    if not parts:
        raise DataError("no boxes in the training labels", os.fspath(data_path))
    wh = np.concatenate(parts).astype(np.float64)
    return wh * np.array([width, height], np.float64)


def calc_anchors(data_path, k: int, width: int, height: int, *, seed: int = 0, on_bad: str = "error") -> AnchorResult:
    """Darknet's ``detector calc_anchors DATA -num_of_clusters k -width W -height H``."""
    k = _positive_int("k", k)  # before any file is read
    _positive_int("width", width)
    _positive_int("height", height)
    wh = dataset_boxes(data_path, width, height, on_bad)
    distinct = len(np.unique(wh, axis=0))
    if k > distinct:
        raise DataError(f"{k} clusters but the training labels hold only {distinct} distinct box sizes "
                        f"({len(wh)} boxes): use at most {distinct} clusters", os.fspath(data_path))
    return kmeans_anchors(wh, k, seed=seed)
