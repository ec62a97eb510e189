"""The YOLOv3 training loss, exactly as Darknet's ``[yolo]`` layer defines it.

Darknet does not compute a loss: ``forward_yolo_layer`` (pjreddie/darknet src/yolo_layer.c, with
``get_yolo_box``, ``delta_yolo_box``, ``delta_yolo_class`` and box.c's ``box_iou``) writes
``l.delta = target - output`` and back-propagates it unchanged, without the logistic's derivative.
This module computes the same delta, then builds a loss whose gradient with respect to the raw
head input is exactly ``-delta``:

* x, y: ``scale * BCE-with-logits(raw, t)`` (gradient ``scale * (sigma(raw) - t)``), scale = 2 - w*h;
* w, h: ``0.5 * scale * (raw - t)^2`` (gradient ``scale * (raw - t)``);
* objectness and classes: ``BCE-with-logits(raw, t)``, with weight 0 wherever the delta is 0.

The loss value is therefore Darknet's objective only up to a constant (the targets' entropy);
``cost`` is what Darknet reports (the sum of squared deltas). Everything is vectorised per head
on the tensors' device (pass 1 holds an (N, A, H, W, T) IoU tensor); the statistics need one host
transfer at the end.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..layers.yolo import YoloSpec

Tensor = torch.Tensor


@dataclass
class HeadStats:
    """Darknet's printed line per ``[yolo]`` layer ("Region %d Avg IOU: ..., count: %d")."""
    layer: int
    avg_iou: float
    cls: float
    obj: float
    no_obj: float
    recall50: float
    recall75: float
    count: int


@dataclass
class LossResult:
    loss: Tensor  # scalar, fp32 (fp64 for fp64 inputs), summed over the batch: the trainer divides by batch
    cost: float  # Darknet's reported cost: sum of squared deltas over all heads
    heads: list[HeadStats]


def _box_iou(ax, ay, aw, ah, bx, by, bw, bh) -> Tensor:
    """Broadcasting box_iou (src/box.c) with Darknet's operation order, so threshold decisions match."""
    ow = torch.minimum(ax + aw / 2, bx + bw / 2) - torch.maximum(ax - aw / 2, bx - bw / 2)
    oh = torch.minimum(ay + ah / 2, by + bh / 2) - torch.maximum(ay - ah / 2, by - bh / 2)
    inter = torch.where((ow < 0) | (oh < 0), torch.zeros_like(ow), ow * oh)
    iou = inter / (aw * ah + bw * bh - inter)
    # 0/0 (two empty boxes) is nan; Darknet's `iou > best_iou` is false for nan, as it is for 0
    return torch.nan_to_num(iou, nan=0.0)


def _head_targets(raw: Tensor, truths: Tensor, counts: Tensor, spec: YoloSpec, net_w: int, net_h: int):
    """Targets and weights (both (N, A, 5+C, H, W)) such that delta = weight * (target - output),
    plus the statistics as a tensor [iou_sum, cls_sum, obj_sum, anyobj_sum, r50, r75, count, n_pred]."""
    n, _, h, w = raw.shape
    a_n, c_n, dt, dev = len(spec.mask), spec.classes, raw.dtype, raw.device
    r = raw.detach().view(n, a_n, 5 + c_n, h, w)
    act = torch.sigmoid(r)
    act[:, :, 2:4] = r[:, :, 2:4]  # Darknet's l.output: logistic on all but w, h
    ncell = n * a_n * h * w
    masked = spec.masked_anchors
    boxes, _, _ = spec.decode(act.view(n, -1, h, w), net_w, net_h)  # get_yolo_box
    px, py, pw, ph = boxes.view(n, h, w, a_n, 4).permute(4, 0, 3, 1, 2)  # each (N, A, H, W)
    obj = act[:, :, 4]  # (N, A, H, W)
    cls_p = act[:, :, 5:].permute(0, 1, 3, 4, 2).reshape(ncell, c_n)

    tr = truths.to(device=dev, dtype=dt)
    if tr.shape[1] == 0:  # no truth rows at all: one padding row keeps the reductions well defined
        tr = tr.new_zeros(n, 1, 5)
    t_n = tr.shape[1]
    # Darknet ends each image's truth list at the first truth with x == 0; we use counts instead, so
    # a box centred exactly on the left edge is kept.
    valid = torch.arange(t_n, device=dev) < counts.to(dev).view(n, 1)  # (N, T)
    tx_, ty_, tw_, th_ = tr[..., 0], tr[..., 1], tr[..., 2], tr[..., 3]
    tcls = tr[..., 4].long()  # Darknet: int class = truth[4] (truncation)

    # ---- pass 1: every cell x mask anchor against every truth of its image --------------------
    def per_cell(t: Tensor) -> Tensor:  # (N, T) -> (N, 1, 1, 1, T), against (N, A, H, W, T)
        return t.view(n, 1, 1, 1, t_n)

    iou = _box_iou(px[..., None], py[..., None], pw[..., None], ph[..., None],
                   per_cell(tx_), per_cell(ty_), per_cell(tw_), per_cell(th_))
    iou = torch.where(per_cell(valid), iou, torch.zeros_like(iou))  # (N, A, H, W, T)
    best_iou = iou.amax(-1)  # Darknet starts best_iou at 0: invalid rows hold 0
    best_t = iou.argmax(-1).view(n, -1)  # the first maximum: Darknet's strict `iou > best_iou`
    pos1 = (best_iou > spec.truth_thresh).view(ncell)  # never with truth_thresh=1, as in every shipped cfg
    ignored = (best_iou > spec.ignore_thresh).view(ncell)

    def of_best(t: Tensor) -> Tensor:  # a truth field (N, T) -> each cell's best truth's value (ncell,)
        return t.gather(1, best_t).view(ncell)

    cell_col = torch.arange(w, device=dev, dtype=dt).expand(n, a_n, h, w).reshape(ncell)
    cell_row = torch.arange(h, device=dev, dtype=dt).view(h, 1).expand(n, a_n, h, w).reshape(ncell)
    cell_anc = torch.tensor(masked, device=dev, dtype=dt).view(1, a_n, 1, 1, 2).expand(n, a_n, h, w, 2)
    cell_anc = cell_anc.reshape(ncell, 2)
    b1w, b1h = of_best(tw_), of_best(th_)
    box1 = torch.stack((of_best(tx_) * w - cell_col, of_best(ty_) * h - cell_row,
                        torch.log(b1w * net_w / cell_anc[:, 0]), torch.log(b1h * net_h / cell_anc[:, 1]),
                        2 - b1w * b1h), -1)  # (ncell, 5): tx, ty, tw, th, scale (delta_yolo_box)
    box1 = torch.where(pos1[:, None], box1, torch.zeros_like(box1))  # keep log(0) etc. out of unused rows
    c1 = torch.where(pos1, of_best(tcls), torch.zeros_like(pos1, dtype=torch.long))

    # ---- pass 2: every truth picks one anchor among all `num`, by shape only ------------------
    # Darknet computes (int)(x * l.w) and would index out of bounds for x == 1.0: clamp to the last cell.
    ci = (tx_ * w).long().clamp(0, w - 1)
    ri = (ty_ * h).long().clamp(0, h - 1)
    all_anc = torch.tensor(spec.anchors, device=dev, dtype=dt)  # (num, 2)
    zero = torch.zeros((), device=dev, dtype=dt)
    shape_iou = _box_iou(zero, zero, (all_anc[:, 0] / net_w).view(1, 1, -1), (all_anc[:, 1] / net_h).view(1, 1, -1),
                         zero, zero, tw_[..., None], th_[..., None])  # (N, T, num)
    best_n = shape_iou.argmax(-1)  # first maximum: ties keep the lower anchor (strict >)
    lookup = torch.full((spec.num,), -1, dtype=torch.long)
    for i, m in reversed(list(enumerate(spec.mask))):  # int_index: the first position of best_n in mask
        lookup[m] = i
    mask_n = lookup.to(dev)[best_n]  # (N, T); -1: another layer trains this truth
    assigned = valid & (mask_n >= 0)
    bidx = torch.arange(n, device=dev).view(n, 1)
    key = ((bidx * a_n + mask_n.clamp(min=0)) * h + ri) * w + ci
    key = torch.where(assigned, key, torch.full_like(key, ncell)).view(-1)  # ncell: a dummy slot
    anc2 = all_anc[best_n]  # (N, T, 2)
    box2 = torch.stack((tx_ * w - ci, ty_ * h - ri, torch.log(tw_ * net_w / anc2[..., 0]),
                        torch.log(th_ * net_h / anc2[..., 1]), 2 - tw_ * th_), -1).view(-1, 5)
    box2 = torch.where(assigned.view(-1, 1), box2, torch.zeros_like(box2))
    cls2 = torch.where(assigned, tcls, torch.zeros_like(tcls)).view(-1)

    # Contributions per cell in Darknet's order: pass 1 first, then truths by row. A stable sort by
    # cell keeps the row order inside each cell (keys are image-major, so images never mix).
    key_s, perm = torch.sort(key, stable=True)
    cls_s, box_s = cls2[perm], box2[perm]
    pos = torch.arange(key_s.numel(), device=dev)
    first = torch.ones_like(key_s, dtype=torch.bool)
    first[1:] = key_s[1:] != key_s[:-1]

    def ext(t: Tensor, fill) -> Tensor:  # a per-cell tensor plus the dummy slot
        return torch.cat((t, t.new_full((1,), fill)))

    has_p1 = ext(pos1, False)[key_s]
    c1_s = ext(c1, 0)[key_s]
    p0 = ext(cls_p[:, 0], 0.5)[key_s]
    prev_cls = torch.where(first, c1_s, torch.cat((cls_s[:1], cls_s[:-1])))
    has_prev = ~first | has_p1
    # delta_yolo_class resets the whole class vector (onehot - p) only when the class-0 entry of the
    # delta is exactly 0: for the first contribution, and after that only if p0 saturated to 1 (then a
    # class-0 truth leaves 1 - p0 == 0) or to 0 (then a reset for another class leaves 0 - p0 == 0).
    z = (cls_s == 0).long()
    zc = torch.cumsum(z, 0) - z  # class-0 truths before each entry ...
    start = torch.cummax(torch.where(first, pos, torch.zeros_like(pos)), 0).values
    zeros_before = zc - zc[start] + (has_p1 & (c1_s == 0)).long()  # ... within its cell, pass 1 included
    reset = ~has_prev | ((p0 == 1) & (prev_cls == 0)) | ((p0 == 0) & (zeros_before == 0))
    last_reset = torch.full((ncell + 1,), -1, device=dev, dtype=torch.long).scatter_reduce(
        0, key_s, torch.where(reset, pos, torch.full_like(pos, -1)), "amax")
    include = pos >= last_reset[key_s]  # the classes set since the last reset form a multi-hot target
    cls_t = torch.zeros((ncell + 1) * c_n, device=dev, dtype=dt).scatter_reduce(
        0, key_s * c_n + cls_s, include.to(dt), "amax").view(ncell + 1, c_n)[:ncell]
    include_p1 = pos1 & (last_reset[:ncell] < 0)
    cls_t = torch.maximum(cls_t, F.one_hot(c1, c_n).to(dt) * include_p1[:, None])
    # A later truth in the same cell/anchor overwrites the box deltas: take the last one per cell.
    win = torch.full((ncell + 1,), -1, device=dev, dtype=torch.long).scatter_reduce(0, key_s, pos, "amax")[:ncell]
    has2 = win >= 0
    box_t = torch.where(has2[:, None], box_s[win.clamp(min=0)], box1)  # (ncell, 5)
    positive = has2 | pos1
    # objectness: 0 - p, zeroed above ignore_thresh, then 1 - p at every positive
    obj_w = (positive | ~ignored).to(dt)
    pf = positive.to(dt)

    target = torch.cat((box_t[:, :4], pf[:, None], cls_t), 1)  # (ncell, 5+C)
    weight = torch.cat((box_t[:, 4:5].expand(ncell, 4), obj_w[:, None], pf[:, None].expand(ncell, c_n)), 1)

    # ---- statistics, per assigned truth (Darknet counts every truth, overwritten or not) -------
    k = key.view(n, -1).clamp(max=ncell - 1)  # unassigned rows read any cell, then weigh 0

    def gp(t: Tensor) -> Tensor:
        return t.reshape(ncell)[k]

    tiou = _box_iou(gp(px), gp(py), gp(pw), gp(ph), tx_, ty_, tw_, th_)
    af = assigned.to(dt)
    stats = torch.stack(((tiou * af).sum(), (cls_p[k, tcls.clamp(0, c_n - 1)] * af).sum(), (gp(obj) * af).sum(),
                         obj.sum(), ((tiou > .5) & assigned).sum().to(dt), ((tiou > .75) & assigned).sum().to(dt),
                         af.sum(), torch.tensor(float(ncell), device=dev, dtype=dt)))

    def to_raw(t: Tensor) -> Tensor:  # (ncell, 5+C) -> (N, A, 5+C, H, W)
        return t.view(n, a_n, h, w, 5 + c_n).permute(0, 1, 4, 2, 3).contiguous()

    return to_raw(target), to_raw(weight), stats


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32  # fp16/bf16 are cast up first


def _check(raw_outputs, truths, counts, specs) -> None:
    if len(raw_outputs) != len(specs):
        raise UsageError(f"got {len(raw_outputs)} raw outputs for {len(specs)} [yolo] specs")
    if truths.dim() != 3 or truths.shape[2] != 5:
        raise UsageError(f"truths must be (N, T, 5) [cx, cy, w, h, class], got {tuple(truths.shape)}")
    for i, (r, s) in enumerate(zip(raw_outputs, specs)):
        want = len(s.mask) * (5 + s.classes)
        if r.dim() != 4 or r.shape[1] != want or r.shape[0] != truths.shape[0]:
            raise UsageError(f"raw output {i} must be (N={truths.shape[0]}, {want}, H, W), got {tuple(r.shape)}")
    if counts.shape != truths.shape[:1]:
        raise UsageError(f"counts must be ({truths.shape[0]},), got {tuple(counts.shape)}")


def _stats(layer: int, s: list[float]) -> HeadStats:
    iou, cls, obj, anyobj, r50, r75, count, npred = s
    c = count or 1.0  # Darknet divides by count = 0 and prints nan; we report 0
    return HeadStats(layer, iou / c, cls / c, obj / c, anyobj / npred, r50 / c, r75 / c, int(count))


def darknet_deltas(raw_outputs: Sequence[Tensor], truths: Tensor, counts: Tensor, specs: Sequence[YoloSpec],
                   net_w: int, net_h: int) -> tuple[list[Tensor], list[HeadStats]]:
    """Darknet's ``l.delta`` per head (target - output, raw's layout, fp32/fp64) and its statistics."""
    _check(raw_outputs, truths, counts, specs)
    deltas, stats = [], []
    for raw, spec in zip(raw_outputs, specs):
        r = raw.detach().to(_compute_dtype(raw))
        target, weight, st = _head_targets(r, truths, counts, spec, net_w, net_h)
        out = torch.sigmoid(r.view_as(target))
        out[:, :, 2:4] = r.view_as(target)[:, :, 2:4]
        deltas.append((weight * (target - out)).view_as(r))
        stats.append(st)
    host = torch.stack(stats).tolist() if stats else []
    return deltas, [_stats(s.index, x) for s, x in zip(specs, host)]


def yolo_loss(raw_outputs: Sequence[Tensor], truths: Tensor, counts: Tensor, specs: Sequence[YoloSpec],
              net_w: int, net_h: int) -> LossResult:
    """The loss over all heads (summed over the batch) whose gradient w.r.t. each raw output is
    ``-delta``; ``raw_outputs`` are ``model(x, raw=True)``, truths (N, T, 5) relative to the network
    input with ``counts`` valid rows per image. Class ids must lie in 0..classes-1."""
    _check(raw_outputs, truths, counts, specs)
    total, cost, stats = None, [], []
    for raw, spec in zip(raw_outputs, specs):
        r = raw.to(_compute_dtype(raw))
        target, weight, st = _head_targets(r, truths, counts, spec, net_w, net_h)
        r5 = r.view_as(target)  # (N, A, 5+C, H, W)
        wh = slice(2, 4)
        bce_w = weight.clone()
        bce_w[:, :, wh] = 0  # w, h are an L2 on the raw value, not a BCE
        bce_t = target.clone()
        bce_t[:, :, wh] = 0
        loss = (F.binary_cross_entropy_with_logits(r5, bce_t, weight=bce_w, reduction="sum")
                + 0.5 * (weight[:, :, wh] * (r5[:, :, wh] - target[:, :, wh]) ** 2).sum())
        total = loss if total is None else total + loss
        with torch.no_grad():
            out = torch.sigmoid(r5.detach())
            out[:, :, wh] = r5.detach()[:, :, wh]
            cost.append((weight * (target - out)).square().sum())
        stats.append(st)
    if total is None:
        raise UsageError("no [yolo] heads given")
    host = torch.cat((torch.stack(cost)[:, None], torch.stack(stats)), 1).tolist()  # the one host sync
    return LossResult(total, sum(h[0] for h in host), [_stats(s.index, h[1:]) for s, h in zip(specs, host)])
