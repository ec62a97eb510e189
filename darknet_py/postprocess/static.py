"""The post-processing of :mod:`darknet_py.postprocess.batch` with fixed shapes, for CUDA graphs.

The same contract (same thresholds, same NMS, same Detections, in the same order) for ``batch``
images of ``rows`` predictions and ``classes`` classes at a fixed threshold / NMS, with every
step a fixed-size tensor operation: capacities instead of ``nonzero``, and a bounded number of
NMS rounds on the dense (entry x entry) overlap matrix instead of the overlap graph. So it can be
captured in a CUDA graph (and runs anywhere). It reports in one small tensor whether its
capacities sufficed and its fixed point converged; when not, the caller falls back to
:func:`darknet_py.postprocess.postprocess_decoded` (exact, dynamic shapes).
"""
from __future__ import annotations

import torch

from ..boxes import overlap_matrix
from ..transforms import correct_boxes_rows, to_photo_xyxy_rows
from .detections import Detections
from .thresholds import candidate_mask, class_scores

Tensor = torch.Tensor


def _compact(mask: Tensor, capacity: int) -> tuple[Tensor, Tensor, Tensor]:
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
        """Decoded heads (B, R, ...) and the geometry table (B, GEOMETRY_COLUMNS); ``n_valid`` a 0-dim int64
        tensor: rows past it (padding of a partial batch) are ignored. Returns one packed float64
        tensor (see :meth:`unpack`)."""
        b, r, c, kc, ec = self.batch, self.rows, self.classes, self.kc, self.ec
        dev = boxes.device
        thresh = self.thresh
        img_of_row = torch.arange(b, device=dev).view(b, 1).expand(b, r)
        keep = candidate_mask(objectness, class_probs, thresh) & (img_of_row < n_valid)
        cidx, cvalid, ncand = _compact(keep.reshape(-1), kc)
        img = cidx // r
        obj = objectness.reshape(-1)[cidx]
        probs = class_scores(obj, class_probs.reshape(b * r, c)[cidx], thresh)
        probs = torch.where(cvalid[:, None], probs, torch.zeros_like(probs))
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
            # e beats f: higher score, ties to the earlier candidate (nms.suppress_on_pairs' order)
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

    def unpack(self, packed: Tensor, n: int, dtype: torch.dtype = torch.float32) -> list[Detections] | None:
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


__all__ = ["StaticPostprocess"]
