"""Darknet's detection post-processing for a whole batch at once, bit-identical to the per-image path.

:func:`darknet_py.detector.postprocess` loops over the images of a batch; every image costs a
handful of host synchronisations (``nonzero``, the NMS fixed point, ...), which on a GPU is what
bounds throughput and batch-1 latency. Here the same steps run on all images together:

* thresholds: one ``nonzero`` over the (image, row) mask; candidates stay image-major, in each
  image's own row order, so everything "in candidate order" is unchanged;
* ``correct_yolo_boxes`` / the drawing clip: the per-image geometry becomes per-row parameters,
  with the exact mixed double/float32 operations of :mod:`darknet_py.transforms` (see
  :func:`correct_boxes_rows` for the one device-dependent detail);
* per-class NMS: the overlap graph of :func:`darknet_py.postprocess.darknet_nms` restricted to pairs
  of the *same* image (pairs across images are never formed, so boxes of different photos never
  suppress each other), then the same fixed point on the union of the graphs: the unique
  solution of a union of disjoint graphs is the union of their solutions;
* ``detections_from``: one ``nonzero``, a stable score sort and a stable image sort (so within an
  image: best first, ties in (box, class) order), split once by the per-image counts.

A constant number of host synchronisations per batch (plus one per NMS round and per memory
chunk), whatever the number of images.

:class:`StaticPostprocess` is the same computation with fixed shapes (capacities instead of
``nonzero``, a bounded number of NMS rounds), so that it can be captured in a CUDA graph; it
reports in one small tensor whether its capacities sufficed and its fixed point converged, and
the caller falls back to :func:`postprocess_decoded` otherwise.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .decode import decode
from .postprocess import Detections, overlap_matrix, suppress_on_pairs
from .transforms import LetterboxInfo, to_photo_xyxy

Tensor = torch.Tensor

# Candidate pairs measured at once: bounds memory when candidates are many (low thresholds).
_PAIR_CHUNK = 1 << 22
# Row block of darknet_py.postprocess.overlapping_pairs (mirrored where position matters, see _pairs_cpu).
_ROW_BLOCK = 2048

# Columns of the geometry table (float64, one row per image).
_OFF_X, _OFF_Y, _RATIO_X, _RATIO_Y, _INV_X, _INV_Y, _GROW_X, _GROW_Y, _IMG_W, _IMG_H = range(10)
GEOMETRY_COLUMNS = 10


def geometry_rows(infos: Sequence[LetterboxInfo]) -> np.ndarray:
    """Per image, the scalars :func:`darknet_py.transforms.correct_boxes` and ``to_photo_xyxy``
    use, as float64: the offsets (double, ``(netw-new_w)/2./netw``), the float32 ratios
    ``(float)new_w/netw`` and their double reciprocals, the float32 growth factors
    ``(float)netw/new_w`` and the photo size. Every value is exactly the double the per-image code
    computes (float32 values are exact in double)."""
    out = np.zeros((len(infos), GEOMETRY_COLUMNS), np.float64)
    for k, info in enumerate(infos):
        ratio_x = float(np.float32(info.new_w) / np.float32(info.net_w))
        ratio_y = float(np.float32(info.new_h) / np.float32(info.net_h))
        out[k] = ((info.net_w - info.new_w) / 2.0 / info.net_w, (info.net_h - info.new_h) / 2.0 / info.net_h,
                  ratio_x, ratio_y, 1.0 / ratio_x, 1.0 / ratio_y,
                  float(np.float32(info.net_w) / np.float32(info.new_w)),
                  float(np.float32(info.net_h) / np.float32(info.new_h)), info.img_w, info.img_h)
    return out


def geometry_table(infos: Sequence[LetterboxInfo], device) -> Tensor:
    """:func:`geometry_rows` as a float64 tensor on ``device``."""
    return torch.from_numpy(geometry_rows(infos)).to(device)


def correct_boxes_rows(boxes: Tensor, geom: Tensor) -> Tensor:
    """:func:`darknet_py.transforms.correct_boxes` with one geometry row per box (``geom`` (K, 10)).

    The per-image code divides by the Python float ``ratio``. On CPU that is a true division; a
    CUDA division by a *CPU scalar* is computed as a multiplication by its reciprocal (computed in
    double on the host: ``div_true_kernel_cuda``), so there the rows multiply by ``1.0/ratio``,
    which is the very same double operation (which one a device does is probed once, see
    :func:`_divides_by_reciprocal`). Everything else is device independent.
    """
    dt = boxes.dtype
    bx, by = boxes[:, 0].double() - geom[:, _OFF_X], boxes[:, 1].double() - geom[:, _OFF_Y]
    if _divides_by_reciprocal(boxes.device):
        x, y = bx * geom[:, _INV_X], by * geom[:, _INV_Y]
    else:
        x, y = bx / geom[:, _RATIO_X], by / geom[:, _RATIO_Y]
    return torch.stack((x.to(dt), y.to(dt), boxes[:, 2] * geom[:, _GROW_X].to(dt),
                        boxes[:, 3] * geom[:, _GROW_Y].to(dt)), dim=-1)


_RECIPROCAL: dict = {}


def _divides_by_reciprocal(device) -> bool:
    """Whether ``tensor / python_float`` multiplies by the reciprocal on this device (CUDA's
    ``div_true_kernel_cuda`` does, the CPU divides). Probed once per device type on values where
    the two differ, so the batched code follows whatever the per-image code does here."""
    key = torch.device(device).type
    if key not in _RECIPROCAL:
        gen = torch.Generator().manual_seed(0)
        a = torch.rand(4096, generator=gen, dtype=torch.float64).to(device)
        r = float(np.float32(301) / np.float32(416))
        by_scalar = a / r
        recip = torch.equal(by_scalar, a * (1.0 / r))
        true_div = torch.equal(by_scalar, a / torch.full_like(a, r))
        if recip == true_div:  # both or neither: the probe cannot tell; keep the documented behaviour
            recip = key == "cuda"
        _RECIPROCAL[key] = recip
    return _RECIPROCAL[key]


def to_photo_xyxy_rows(rel: Tensor, geom: Tensor) -> Tensor:
    """:func:`darknet_py.transforms.to_photo_xyxy` with one geometry row per box (same double
    arithmetic; ``w / 2.0`` is exact on every device)."""
    b = rel.double()
    cx, cy, w, h = b.unbind(-1)
    img_w, img_h = geom[:, _IMG_W], geom[:, _IMG_H]
    zero = torch.zeros((), dtype=b.dtype, device=b.device)
    x1 = torch.clamp((cx - w / 2.0) * img_w, zero, img_w - 1)
    x2 = torch.clamp((cx + w / 2.0) * img_w, zero, img_w - 1)
    y1 = torch.clamp((cy - h / 2.0) * img_h, zero, img_h - 1)
    y2 = torch.clamp((cy + h / 2.0) * img_h, zero, img_h - 1)
    return torch.stack((x1, y1, x2, y2), dim=-1).to(rel.dtype)


# --------------------------------------------------------------------------- NMS over a batch


def _pair_measure(a: Tensor, b: Tensor, kind: str, beta: float) -> Tensor:
    """``overlap_matrix(a[p], b[p])`` for each p: the same elementwise operations, paired. Equal to
    the matrix entries wherever an elementwise op's result does not depend on its position in the
    tensor: always on CUDA, and on the CPU for the plain IoU (see _pairs_cpu for DIoU there)."""
    return torch.vmap(lambda p, q: overlap_matrix(p[None], q[None], kind, beta)[0, 0])(a, b)


def _pairs_cpu(boxes: Tensor, counts: List[int], nms_thresh: float, kind: str, beta: float) -> Tuple[Tensor, Tensor]:
    # On the CPU, torch.pow's vectorised and scalar loops differ in the last bit, so a DIoU value
    # depends on its position in the tensor: mirror overlapping_pairs' blocks image by image to get
    # the very same values (the CPU has no synchronisation cost to avoid).
    firsts, seconds = [], []
    start = 0
    for c in counts:
        b = boxes[start:start + c]
        for r0 in range(0, c, _ROW_BLOCK):
            r1 = min(c, r0 + _ROW_BLOCK)
            ii, jj = torch.nonzero(overlap_matrix(b[r0:r1], b[r0:], kind, beta) > nms_thresh, as_tuple=True)
            ii, jj = ii + r0, jj + r0
            upper = jj > ii
            firsts.append(ii[upper] + start)
            seconds.append(jj[upper] + start)
        start += c
    empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
    return (torch.cat(firsts), torch.cat(seconds)) if firsts else (empty, empty)


def _pairs_same_image(boxes: Tensor, counts: List[int], nms_thresh: float, kind: str,
                      beta: float) -> Tuple[Tensor, Tensor]:
    """Pairs (a, b), a < b, of the same image (candidates image-major, ``counts`` per image) whose
    overlap is > ``nms_thresh``: the pairs ``overlapping_pairs`` finds in each image, offset."""
    if boxes.device.type == "cpu" and kind != "default":
        return _pairs_cpu(boxes, counts, nms_thresh, kind, beta)
    dev = boxes.device
    # Partners of candidate a: a+1 .. end of its image - 1. Known on the host from the counts.
    m = np.concatenate([np.arange(c - 1, -1, -1, dtype=np.int64) for c in counts if c]) if any(counts) \
        else np.zeros(0, np.int64)
    cum = np.concatenate(([0], np.cumsum(m)))
    total = int(cum[-1])
    firsts, seconds = [], []
    m_dev = torch.from_numpy(m).to(dev)
    cum_dev = torch.from_numpy(cum[:-1]).to(dev)
    r0 = 0
    k = len(m)
    while r0 < k and cum[r0] < total:
        # rows r0..r1-1 such that their pairs fit one chunk (a single row may exceed it: fine)
        r1 = int(np.searchsorted(cum, cum[r0] + _PAIR_CHUNK, side="right")) - 1
        r1 = min(k, max(r1, r0 + 1))
        n_pairs = int(cum[r1] - cum[r0])
        if n_pairs:
            rows = torch.arange(r0, r1, device=dev)
            first = torch.repeat_interleave(rows, m_dev[r0:r1], output_size=n_pairs)
            second = first + 1 + (torch.arange(n_pairs, device=dev) + int(cum[r0]) - cum_dev[first])
            keep = torch.nonzero(_pair_measure(boxes[first], boxes[second], kind, beta) > nms_thresh).flatten()
            firsts.append(first[keep])
            seconds.append(second[keep])
        r0 = r1
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    return (torch.cat(firsts), torch.cat(seconds)) if firsts else (empty, empty)


def batched_nms(boxes: Tensor, probs: Tensor, img: Tensor, n_images: int, nms_thresh: float, kind: str = "default",
                beta: float = 0.6) -> Tensor:
    """:func:`darknet_py.postprocess.darknet_nms` of every image, on the image-major concatenation
    of their candidates (``img``: the image of each row, non-decreasing); returns the
    probabilities with suppressed (box, class) scores set to 0, equal to the per-image results
    concatenated. Host syncs: two, plus one per NMS round (and per memory chunk)."""
    k, c = probs.shape
    if k == 0 or nms_thresh <= 0:
        return probs
    # as darknet_nms: rows without any score neither suppress nor are reported
    live = (probs > 0).any(1)
    live_counts = torch.zeros(n_images, dtype=torch.int64, device=probs.device).index_add_(
        0, img, live.to(torch.int64)).tolist()
    if sum(live_counts) < k:
        live_rows = torch.nonzero(live).flatten()
        out = torch.zeros_like(probs)
        if live_rows.numel():
            out[live_rows] = _nms_live(boxes[live_rows], probs[live_rows], live_counts, nms_thresh, kind, beta)
        return out
    return _nms_live(boxes, probs, live_counts, nms_thresh, kind, beta)


def _nms_live(boxes: Tensor, probs: Tensor, counts: List[int], nms_thresh: float, kind: str, beta: float) -> Tensor:
    # darknet_nms' suppression, on the union of the per-image overlap graphs
    first, second = _pairs_same_image(boxes, counts, nms_thresh, kind, beta)
    return suppress_on_pairs(probs, first, second)


# --------------------------------------------------------------------------- whole postprocess


@torch.no_grad()
def postprocess_decoded(boxes: Tensor, objectness: Tensor, class_probs: Tensor, infos: Sequence[LetterboxInfo],
                        thresh: float, nms: float, nms_kind: str = "default", beta_nms: float = 0.6,
                        photo_boxes: Optional[Callable[[Tensor, LetterboxInfo], Tensor]] = None,
                        gate: bool = True) -> List[Detections]:
    """Decoded heads of a batch (``boxes`` (N, R, 4) network-relative CXCYWH, ``objectness`` (N, R),
    ``class_probs`` (N, R, C)) -> one Detections per image of ``infos`` (the first ``len(infos)``
    rows are used), identical to :func:`darknet_py.detector.postprocess`'s.

    ``photo_boxes`` as in ``detector.postprocess`` (None: ``to_photo_xyxy``, computed batch-wide);
    ``gate=False``: no objectness comparison (YOLOv1's [detection], see ``postprocess.threshold``).
    """
    n = len(infos)
    if n == 0:
        return []
    dev = boxes.device
    boxes, objectness, class_probs = boxes[:n], objectness[:n], class_probs[:n]
    # threshold(): both comparisons strict; candidates image-major, each image's rows in order
    keep = objectness > thresh if gate else (objectness[..., None] * class_probs > thresh).any(-1)
    img, row = torch.nonzero(keep, as_tuple=True)
    obj = objectness[img, row]
    probs = obj[:, None] * class_probs[img, row]
    probs = torch.where(probs > thresh, probs, torch.zeros_like(probs))
    counts = keep.sum(1)
    geom = geometry_table(infos, dev)
    rel = correct_boxes_rows(boxes[img, row], geom[img])
    probs = batched_nms(rel, probs, img, n, nms, nms_kind, beta_nms)
    # detections_from(), batch-wide
    box_i, cls_i = torch.nonzero(probs > 0, as_tuple=True)
    scores = probs[box_i, cls_i]
    order = torch.sort(scores, descending=True, stable=True).indices
    order = order[torch.sort(img[box_i][order], stable=True).indices]
    box_i, cls_i, scores = box_i[order], cls_i[order], scores[order]
    d_img = img[box_i]
    starts = torch.cumsum(counts, 0) - counts
    if photo_boxes is None or photo_boxes is to_photo_xyxy:
        xyxy = to_photo_xyxy_rows(rel[box_i], geom[d_img])
    else:
        parts = torch.split(rel, counts.tolist())
        xyxy = torch.cat([photo_boxes(p, info) for p, info in zip(parts, infos)])[box_i]
    det_counts = torch.zeros(n, dtype=torch.int64, device=dev).index_add_(0, d_img, torch.ones_like(d_img)).tolist()
    fields = (xyxy, scores, cls_i, obj[box_i], box_i - starts[d_img])
    split = [torch.split(f, det_counts) for f in fields]
    return [Detections(*(s[k] for s in split)) for k in range(n)]


@torch.no_grad()
def postprocess_batch(model, outputs: Sequence[Tensor], infos: Sequence[LetterboxInfo], thresh: float = 0.5,
                      nms: float = 0.45, photo_boxes: Optional[Callable[[Tensor, LetterboxInfo], Tensor]] = None
                      ) -> List[Detections]:
    """Drop-in for :func:`darknet_py.detector.postprocess` (same arguments, same results)."""
    net_w, net_h = model.input_size
    boxes, obj, cls = decode(outputs, model.head_specs, net_w, net_h)
    last = model.head_specs[-1]
    return postprocess_decoded(boxes, obj, cls, infos, thresh, nms, last.nms_kind, last.beta_nms, photo_boxes,
                               gate=all(h.gate_objectness for h in model.head_specs))


# --------------------------------------------------------------------------- fixed shapes (CUDA graphs)


def _compact(mask: Tensor, capacity: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Indices of the True entries of a 1-D mask, in order, in a fixed-size tensor: (indices
    (capacity,) clamped into range, valid (capacity,) bool, count (0-dim)). No host sync, no
    data-dependent shape (a cumsum and a scatter, so it can be captured in a CUDA graph)."""
    n = mask.numel()
    flag = mask.to(torch.int64)
    pos = torch.cumsum(flag, 0) - 1
    count = pos[-1] + 1 if n else torch.zeros((), dtype=torch.int64, device=mask.device)
    slot = torch.where(mask & (pos < capacity), pos, torch.full_like(pos, capacity))  # overflow -> dump slot
    idx = torch.zeros(capacity + 1, dtype=torch.int64, device=mask.device)
    idx.scatter_(0, slot, torch.arange(n, device=mask.device))
    valid = torch.arange(capacity, device=mask.device) < count
    return torch.where(valid, idx[:capacity], torch.zeros_like(idx[:capacity])), valid, count


class StaticPostprocess:
    """:func:`postprocess_decoded` with fixed shapes, for ``batch`` images of ``rows`` predictions
    and ``classes`` classes, at a fixed threshold / NMS: every step is a fixed-size tensor op, so
    the call can be captured in a CUDA graph (and runs anywhere).

    Capacities: ``cand_cap`` candidates (objectness > thresh) per image and ``entry_cap``
    (candidate, class) scores > thresh per image, both summed over the batch; NMS runs ``rounds``
    rounds of the fixed point plus one that checks it is stable. :meth:`unpack` reads one small
    tensor (counts and an "ok" flag): ok is False when a capacity was exceeded or the fixed point
    had not settled, and the caller then runs :func:`postprocess_decoded` (exact, dynamic shapes).
    """

    def __init__(self, batch: int, rows: int, classes: int, thresh: float, nms: float, nms_kind: str = "default",
                 beta_nms: float = 0.6, cand_cap: int = 256, entry_cap: int = 256, rounds: int = 5):
        self.batch, self.rows, self.classes = int(batch), int(rows), int(classes)
        self.thresh, self.nms, self.kind, self.beta = float(thresh), float(nms), nms_kind, float(beta_nms)
        self.kc = max(1, int(cand_cap) * self.batch)
        self.ec = max(1, int(entry_cap) * self.batch)
        self.rounds = int(rounds)

    def __call__(self, boxes: Tensor, objectness: Tensor, class_probs: Tensor, geom: Tensor,
                 n_valid: Tensor) -> Tensor:
        """Decoded heads (B, R, ...) and the geometry table (B, 10); ``n_valid`` a 0-dim int64
        tensor: rows past it (padding of a partial batch) are ignored. Returns one packed float64
        tensor (see :meth:`unpack`)."""
        b, r, c, kc, ec = self.batch, self.rows, self.classes, self.kc, self.ec
        dev = boxes.device
        thresh = self.thresh
        img_of_row = torch.arange(b, device=dev).view(b, 1).expand(b, r)
        keep = (objectness > thresh) & (img_of_row < n_valid)
        cidx, cvalid, ncand = _compact(keep.reshape(-1), kc)
        img = cidx // r
        obj = objectness.reshape(-1)[cidx]
        probs = obj[:, None] * class_probs.reshape(b * r, c)[cidx]
        probs = torch.where((probs > thresh) & cvalid[:, None], probs, torch.zeros_like(probs))
        rel = correct_boxes_rows(boxes.reshape(b * r, 4)[cidx], geom[img])
        per_img = keep.sum(1)
        starts = torch.cumsum(per_img, 0) - per_img

        eidx, evalid, nent = _compact((probs > 0).reshape(-1), ec)
        ebox, ecls = eidx // c, eidx % c
        escore = probs.reshape(-1)[eidx]
        eimg = img[ebox]
        if self.nms > 0:
            ov = overlap_matrix(rel[ebox], rel[ebox], self.kind, self.beta) > self.nms
            pos = torch.arange(ec, device=dev)
            # e beats f: higher score, ties to the earlier candidate (darknet_nms' stable order)
            beats = (escore[:, None] > escore[None, :]) | ((escore[:, None] == escore[None, :])
                                                           & (ebox[:, None] < ebox[None, :]))
            m = ov & beats & (ecls[:, None] == ecls[None, :]) & (eimg[:, None] == eimg[None, :]) \
                & evalid[:, None] & evalid[None, :] & (pos[:, None] != pos[None, :])
            kept = evalid
            for _ in range(self.rounds):  # f survives when no kept e beats and overlaps it
                kept = evalid & ~(kept[:, None] & m).any(0)
            converged = (kept == (evalid & ~(kept[:, None] & m).any(0))).all()
        else:
            kept = evalid
            converged = torch.ones((), dtype=torch.bool, device=dev)
        # detections_from: kept entries, per image best first, ties in (box, class) order
        key = torch.where(kept, escore, torch.full_like(escore, -float("inf")))
        order = torch.sort(key, descending=True, stable=True).indices
        d_img = torch.where(kept, eimg, torch.full_like(eimg, b))[order]
        order = order[torch.sort(d_img, stable=True).indices]
        sb = ebox[order]
        simg = eimg[order]
        xyxy = to_photo_xyxy_rows(rel[sb], geom[simg])
        det_counts = torch.zeros(b + 1, dtype=torch.int64, device=dev).scatter_add_(
            0, torch.where(kept, eimg, torch.full_like(eimg, b)), torch.ones_like(eimg))[:b]
        ok = (ncand <= kc) & (nent <= ec) & converged
        head = torch.cat((ok.to(torch.int64).view(1), det_counts)).double()
        body = torch.cat((xyxy.double(), escore[order].double()[:, None], ecls[order].double()[:, None],
                          obj[sb].double()[:, None], (sb - starts[simg]).double()[:, None]), 1)
        # one tensor: [ok, counts...] then ec rows of (x1 y1 x2 y2 score class objectness box_index)
        return torch.cat((head, body.reshape(-1)))

    def unpack(self, packed: Tensor, n: int, dtype: torch.dtype = torch.float32) -> Optional[List[Detections]]:
        """One host read of the header; None when the caller must fall back (see the class doc).
        float32 boxes/scores round-trip exactly through the float64 packing."""
        b = self.batch
        head = packed[:b + 1].tolist()
        if not head[0]:
            return None
        counts = [int(v) for v in head[1:n + 1]]
        body = packed[b + 1:].view(self.ec, 8)
        out, start = [], 0
        for cnt in counts:
            rows = body[start:start + cnt]
            out.append(Detections(rows[:, :4].to(dtype), rows[:, 4].to(dtype), rows[:, 5].long(),
                                  rows[:, 6].to(dtype), rows[:, 7].long()))
            start += cnt
        return out


__all__ = ["GEOMETRY_COLUMNS", "StaticPostprocess", "batched_nms", "correct_boxes_rows", "geometry_rows",
           "geometry_table", "postprocess_batch", "postprocess_decoded", "to_photo_xyxy_rows"]
