"""Darknet's per-class NMS (src/box.c ``do_nms_sort``) for a batch of images at once.

Per class, candidates are sorted by score; each one still non-zero zeroes the score of every
later candidate whose overlap with it is ``> nms`` (strict). Scores are zeroed rather than boxes
deleted, so one box can survive under several classes. AlexeyAB's ``[yolo] nms_kind`` swaps the
overlap measure and nothing else (``diounms_sort``; darknet_py.boxes.overlap_matrix). Rank within
a class is descending score with ties in candidate order (a stable sort; Darknet's qsort leaves
tie order unspecified).

The greedy loop is computed without a per-box Python loop, on the overlap graph (the pairs that
overlap beyond the threshold), so its cost follows the number of overlapping pairs, not
candidates squared: "kept = alive and not suppressed by a kept, higher-ranked box" has exactly
one solution, reached by repeating it until nothing changes (each round fixes at least the next
rank, and a stable round is that solution). Pairs are formed within an image only, so boxes of
different photos never suppress each other, and the solution on the union of the images' graphs
is the union of their solutions: a batch gives each image's own result.
"""
from __future__ import annotations

import numpy as np
import torch

from ..boxes import overlap_matrix, overlap_pairs

Tensor = torch.Tensor

# (overlapping pair, class) entries handled at once; more classes than that go in chunks.
_NMS_CHUNK_ENTRIES = 1 << 23
# Candidate pairs measured at once: bounds memory when candidates are many (low thresholds).
_PAIR_CHUNK = 1 << 22
# Rows of one image's overlap matrix measured at once (the CPU strategy, see _pairs_same_image).
_ROW_BLOCK = 2048


def suppress_on_pairs(probs: Tensor, first: Tensor, second: Tensor, chunk_entries: int = _NMS_CHUNK_ENTRIES) -> Tensor:
    """The greedy per-class suppression of ``do_nms_sort`` on a given overlap graph (pairs
    ``first[e] < second[e]`` that overlap beyond the threshold): ``probs`` with suppressed
    (box, class) scores set to 0. Rows with no score > 0 must have been left out by the caller.
    Written so that torch.jit.script compiles it (the end-to-end TorchScript export carries it)."""
    k, c = probs.shape[0], probs.shape[1]
    out = probs.clone()
    if first.numel() == 0:
        return out
    alive = probs > 0
    chunk = max(1, chunk_entries // first.numel())
    for c0 in range(0, c, chunk):
        c1 = min(c, c0 + chunk)
        pa, pb = probs[first, c0:c1], probs[second, c0:c1]                 # (E, classes in chunk)
        hits = torch.nonzero((pa > 0) & (pb > 0))
        edge, cls = hits[:, 0], hits[:, 1]
        if edge.numel() == 0:
            continue
        a_first = pa[edge, cls] >= pb[edge, cls]                          # ties: the earlier candidate
        src = torch.where(a_first, first[edge], second[edge])             # the higher-ranked box
        dst = torch.where(a_first, second[edge], first[edge])
        live = alive[:, c0:c1]
        kept = live
        for _ in range(k):  # at most k rounds; real detections settle in a handful
            hit = kept[src, cls]
            suppressed = torch.zeros_like(live)
            suppressed[dst[hit], cls[hit]] = True
            new = live & ~suppressed
            if torch.equal(new, kept):
                break
            kept = new
        out[:, c0:c1] = torch.where(kept, probs[:, c0:c1], torch.zeros_like(probs[:, c0:c1]))
    return out


def _pairs_in_blocks(boxes: Tensor, nms_thresh: float, kind: str, beta: float,
                     row_block: int = _ROW_BLOCK) -> tuple[Tensor, Tensor]:
    """One image's pairs (a, b), a < b, whose overlap is > nms_thresh, from its overlap matrix
    computed in row blocks. Written so that torch.jit.script compiles it (as suppress_on_pairs)."""
    k = boxes.shape[0]
    firsts: list[Tensor] = []
    seconds: list[Tensor] = []
    for r0 in range(0, k, row_block):
        r1 = min(k, r0 + row_block)
        hits = torch.nonzero(overlap_matrix(boxes[r0:r1], boxes[r0:], kind, beta) > nms_thresh)
        ii, jj = hits[:, 0] + r0, hits[:, 1] + r0
        upper = jj > ii
        firsts.append(ii[upper])
        seconds.append(jj[upper])
    if len(firsts) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
        return empty, empty
    return torch.cat(firsts), torch.cat(seconds)


def _pairs_same_image(boxes: Tensor, counts: list[int], nms_thresh: float, kind: str,
                      beta: float) -> tuple[Tensor, Tensor]:
    """Pairs (a, b), a < b, of the same image (candidates image-major, ``counts`` per image) whose
    overlap is > ``nms_thresh``.

    Two strategies give the same pairs. On the CPU, torch.pow's vectorised and scalar loops differ
    in the last bit, so a DIoU value would depend on its position in the tensor (and so on the
    other photos of the batch): there each image's own matrix is measured, block by block (the CPU
    has no synchronisation cost to avoid). Elsewhere all pairs of all images are listed from the
    counts and measured elementwise at once, a fixed number of host synchronisations per batch.
    """
    if boxes.device.type == "cpu" and kind != "default":
        parts, start = [], 0
        for c in counts:
            first, second = _pairs_in_blocks(boxes[start:start + c], nms_thresh, kind, beta)
            parts.append((first + start, second + start))
            start += c
        empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
        return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])) if parts else (empty, empty)
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
            keep = torch.nonzero(overlap_pairs(boxes[first], boxes[second], kind, beta) > nms_thresh).flatten()
            firsts.append(first[keep])
            seconds.append(second[keep])
        r0 = r1
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    return (torch.cat(firsts), torch.cat(seconds)) if firsts else (empty, empty)


def batched_nms(boxes: Tensor, probs: Tensor, img: Tensor, n_images: int, nms_thresh: float, kind: str = "default",
                beta: float = 0.6) -> Tensor:
    """``do_nms_sort`` of every image, on the image-major concatenation of their candidates
    (``boxes`` (K, 4) cxcywh, ``probs`` (K, C) scores, ``img`` (K,) the image of each row,
    non-decreasing); returns ``probs`` with suppressed (box, class) scores set to 0. Host syncs:
    two, plus one per NMS round (and per memory chunk)."""
    k, c = probs.shape
    if k == 0 or nms_thresh <= 0:
        return probs
    # A candidate whose every class score is 0 neither suppresses nor is reported: leave it out.
    live = (probs > 0).any(1)
    live_counts = torch.zeros(n_images, dtype=torch.int64, device=probs.device).index_add_(
        0, img, live.to(torch.int64)).tolist()
    if sum(live_counts) == k:
        return suppress_on_pairs(probs, *_pairs_same_image(boxes, live_counts, nms_thresh, kind, beta))
    live_rows = torch.nonzero(live).flatten()
    out = torch.zeros_like(probs)
    if live_rows.numel():
        out[live_rows] = suppress_on_pairs(probs[live_rows], *_pairs_same_image(boxes[live_rows], live_counts,
                                                                              nms_thresh, kind, beta))
    return out


def darknet_nms(boxes: Tensor, probs: Tensor, nms_thresh: float, kind: str = "default", beta: float = 0.6) -> Tensor:
    """``do_nms_sort`` of one image's candidates: ``probs`` with suppressed scores set to 0."""
    img = torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
    return batched_nms(boxes, probs, img, 1, nms_thresh, kind, beta)


__all__ = ["batched_nms", "darknet_nms", "suppress_on_pairs"]
