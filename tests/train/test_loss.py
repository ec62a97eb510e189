"""The YOLOv3 loss against an independent float64 transcription of Darknet's forward_yolo_layer.

``reference`` below is written from the rules (plain loops per image, cell, anchor and truth, in the
order Darknet runs them) and never calls darknet_py.train.loss. The loss is right when its gradient
with respect to every raw head input is minus the reference's delta.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from darknet_py.graph import build_model
from darknet_py.layers.yolo import YoloSpec
from darknet_py.train.loss import darknet_deltas, yolo_loss
from tests.helpers.cfgs import fixture_cfg_text
from tests.helpers.reference import box_iou  # float64, Darknet's operation order

NET = 128
ANCHORS = [(6, 8), (12, 16), (20, 12), (28, 36), (48, 30), (70, 70)]  # yolov3-tiny-like, network pixels
C = 3
GRIDS = (4, 8)  # coarse head takes the large anchors, as in yolov3-tiny


def specs(ignore=0.7, truth_thresh=1.0):
    return [YoloSpec(16, 0, [3, 4, 5], ANCHORS, C, 6, ignore_thresh=ignore, truth_thresh=truth_thresh),
            YoloSpec(23, 0, [0, 1, 2], ANCHORS, C, 6, ignore_thresh=ignore, truth_thresh=truth_thresh)]


# ---------------------------------------------------------------------------------------------
# The reference: Darknet's forward_yolo_layer, one value at a time, in float64.

def _sig(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def reference(raws, truths, counts, head_specs):
    """-> (deltas in raw layout, stats dicts, cost)."""
    deltas, stats, cost = [], [], 0.0
    for raw, spec in zip(raws, head_specs):
        d, st = _reference_head(raw, spec, truths, counts)
        stats.append(st)
        cost += float((d ** 2).sum())
        deltas.append(d.reshape(raw.shape))
    return deltas, stats, cost


def _reference_head(raw, spec, truths, counts):
    """One head of ``reference``: -> (deltas (n, anchors, 5 + C, h, w), stats dict)."""
    x = raw.detach().double().cpu().numpy()
    n, _, hh, ww = x.shape
    na = len(spec.mask)
    x = x.reshape(n, na, 5 + C, hh, ww)
    out = _sig(x)
    out[:, :, 2:4] = x[:, :, 2:4]
    d = np.zeros_like(x)
    st = dict(iou=0.0, cls=0.0, obj=0.0, anyobj=0.0, r50=0, r75=0, count=0)

    def box_delta(truth, anchor, b, a, j, i):
        aw, ah = ANCHORS[anchor]
        pred = ((i + out[b, a, 0, j, i]) / ww, (j + out[b, a, 1, j, i]) / hh,
                math.exp(x[b, a, 2, j, i]) * aw / NET, math.exp(x[b, a, 3, j, i]) * ah / NET)
        scale = 2 - truth[2] * truth[3]
        d[b, a, 0, j, i] = scale * (truth[0] * ww - i - out[b, a, 0, j, i])
        d[b, a, 1, j, i] = scale * (truth[1] * hh - j - out[b, a, 1, j, i])
        d[b, a, 2, j, i] = scale * (math.log(truth[2] * NET / aw) - x[b, a, 2, j, i])
        d[b, a, 3, j, i] = scale * (math.log(truth[3] * NET / ah) - x[b, a, 3, j, i])
        return box_iou(pred, truth)

    def class_delta(cls, b, a, j, i):
        p = out[b, a, 5:, j, i]
        if d[b, a, 5, j, i] != 0:  # Darknet tests the class-0 entry of the delta
            d[b, a, 5 + cls, j, i] = 1 - p[cls]
        else:
            for k in range(C):
                d[b, a, 5 + k, j, i] = (1.0 if k == cls else 0.0) - p[k]
        return p[cls]

    for b in range(n):
        tl = [truths[b, t].tolist() for t in range(int(counts[b]))]
        for j in range(hh):
            for i in range(ww):
                for a in range(na):
                    aw, ah = ANCHORS[spec.mask[a]]
                    pred = ((i + out[b, a, 0, j, i]) / ww, (j + out[b, a, 1, j, i]) / hh,
                            math.exp(x[b, a, 2, j, i]) * aw / NET, math.exp(x[b, a, 3, j, i]) * ah / NET)
                    best, best_t = 0.0, 0
                    for t, tr in enumerate(tl):
                        v = box_iou(pred, tr)
                        if v > best:
                            best, best_t = v, t
                    st["anyobj"] += out[b, a, 4, j, i]
                    d[b, a, 4, j, i] = 0 - out[b, a, 4, j, i]
                    if best > spec.ignore_thresh:
                        d[b, a, 4, j, i] = 0
                    if best > spec.truth_thresh:
                        d[b, a, 4, j, i] = 1 - out[b, a, 4, j, i]
                        class_delta(int(tl[best_t][4]), b, a, j, i)
                        box_delta(tl[best_t], spec.mask[a], b, a, j, i)
        for tr in tl:
            i, j = min(int(tr[0] * ww), ww - 1), min(int(tr[1] * hh), hh - 1)
            best, best_n = 0.0, 0
            for k, (aw, ah) in enumerate(ANCHORS):
                v = box_iou((0, 0, aw / NET, ah / NET), (0, 0, tr[2], tr[3]))
                if v > best:
                    best, best_n = v, k
            if best_n not in spec.mask:
                continue
            a = spec.mask.index(best_n)
            v = box_delta(tr, best_n, b, a, j, i)
            st["obj"] += out[b, a, 4, j, i]
            d[b, a, 4, j, i] = 1 - out[b, a, 4, j, i]
            st["cls"] += class_delta(int(tr[4]), b, a, j, i)
            st["count"] += 1
            st["r50"] += v > .5
            st["r75"] += v > .75
            st["iou"] += v
    c = st["count"] or 1
    return d, dict(layer=spec.index, avg_iou=st["iou"] / c, cls=st["cls"] / c, obj=st["obj"] / c,
                   no_obj=st["anyobj"] / (n * na * hh * ww), recall50=st["r50"] / c, recall75=st["r75"] / c,
                   count=st["count"])


# ---------------------------------------------------------------------------------------------
# Cases: random heads and truths, plus planted predictions and crowded cells.

def _logit(p):
    return math.log(p / (1 - p))


def plant(raws, truth, b, scale_wh=1.0):
    """Make every mask anchor of the cell holding `truth` in both heads decode to the truth box (times
    scale_wh in size): predictions that overlap a truth strongly, assigned or not."""
    for raw, spec, g in zip(raws, specs(), GRIDS):
        i, j = min(int(truth[0] * g), g - 1), min(int(truth[1] * g), g - 1)
        for a, m in enumerate(spec.mask):
            base = a * (5 + C)
            fx, fy = truth[0] * g - i, truth[1] * g - j
            if not (0 < fx < 1 and 0 < fy < 1):
                continue
            raw[b, base + 0, j, i] = _logit(fx)
            raw[b, base + 1, j, i] = _logit(fy)
            raw[b, base + 2, j, i] = math.log(truth[2] * scale_wh * NET / ANCHORS[m][0])
            raw[b, base + 3, j, i] = math.log(truth[3] * scale_wh * NET / ANCHORS[m][1])


def crowd(anchor, col, row, g, classes, rng):
    """Truths in one cell whose best anchor is `anchor` (so they share a cell/anchor of one head)."""
    out = []
    for k in classes:
        w, h = (v / NET * rng.uniform(0.97, 1.03) for v in ANCHORS[anchor])
        out.append([(col + rng.uniform(0.1, 0.9)) / g, (row + rng.uniform(0.1, 0.9)) / g, w, h, k])
    return out


def make_case(seed, dtype=torch.float64, planted=True, fit=None):
    rng = np.random.default_rng(seed)
    n, t_max = 3, 12
    raws = [torch.tensor(rng.normal(0, 1.5, (n, 3 * (5 + C), g, g))) for g in GRIDS]
    # fp64 plants exact inverses (IoU 1 up to rounding, so truth_thresh=1 is decided by the last bit and
    # checks that our IoU arithmetic is Darknet's); fp32 against this fp64 reference would differ there.
    fit = fit or (1.0 if dtype == torch.float64 else 0.97)
    truths = np.zeros((n, t_max, 5))
    truths[...] = rng.uniform(0.05, 0.95, (n, t_max, 5))  # padding rows hold garbage: counts must win
    truths[..., 4] = 99
    counts = np.array([9, 0, 11])
    for b in (0, 2):
        k = counts[b]
        truths[b, :k, :2] = rng.uniform(0.02, 0.98, (k, 2))
        truths[b, :k, 2:4] = rng.uniform(0.03, 0.6, (k, 2))
        truths[b, :k, 4] = rng.integers(0, C, k)
    if planted:
        # image 0: two same-class and two different-class truths sharing a cell/anchor, x == 1.0
        rows = crowd(3, 1, 2, 4, [1, 1], rng) + crowd(1, 5, 6, 8, [0, 2], rng)
        rows.append([1.0, 0.3, 0.2, 0.25, 2])
        rows += crowd(3, 3, 0, 4, [1], rng) + crowd(4, 3, 0, 4, [2], rng)  # pass 1 (class 2) then pass 2 (1)
        truths[0, :7] = rows
        for k in (0, 6, 7):
            plant(raws, truths[0, k], 0, fit)
        plant(raws, rows[2], 0, scale_wh=1.1)
        # image 2: delta_yolo_class quirk when p(class 0) saturates (delta[class 0] == 0 resets the vector)
        rows = (crowd(3, 2, 1, 4, [0, 2, 1], rng) + crowd(0, 3, 3, 8, [2, 1, 0, 2], rng)
                + crowd(3, 0, 3, 4, [2, 1], rng) + crowd(4, 0, 3, 4, [0], rng))
        truths[2, :10] = rows
        raws[0][2, 5, 1, 2] = 40.0  # head 4x4, anchor 3 = mask position 0: p0 == 1 exactly
        raws[0][2, 5, 3, 0] = 40.0
        raws[1][2, 5, 3, 3] = -800.0  # head 8x8, anchor 0 = mask position 0: p0 == 0 exactly
        # with truth_thresh < 1, pass 1 puts a class-0 truth ahead of each chain (in the last cell that
        # truth belongs to anchor 4, so pass 2 leaves anchor 3 to the classes 2, 1 after it)
        for k in (0, 5, 9):
            plant(raws, rows[k], 2, fit)
    truths = torch.tensor(truths)
    return [r.to(dtype).requires_grad_(True) for r in raws], truths.to(dtype), torch.tensor(counts)


def _grads(raws, truths, counts, head_specs):
    res = yolo_loss(raws, truths, counts, head_specs, NET, NET)
    return res, torch.autograd.grad(res.loss, raws)


CASES = [(seed, planted, tt) for seed in (0, 1, 2) for planted in (True, False) for tt in (1.0, 0.9)]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
@pytest.mark.parametrize("seed,planted,truth_thresh", CASES)
def test_gradient_is_minus_darknet_delta(seed, planted, truth_thresh, dtype, tol):
    raws, truths, counts = make_case(seed, dtype, planted)
    sp = specs(truth_thresh=truth_thresh)
    ref_d, ref_stats, ref_cost = reference(raws, truths, counts, sp)
    res, grads = _grads(raws, truths, counts, sp)
    assert res.loss.dtype == dtype and res.loss.dim() == 0
    for g, d in zip(grads, ref_d):
        assert g.dtype == dtype
        np.testing.assert_allclose(-g.double().numpy(), d, rtol=0, atol=tol)
    assert res.cost == pytest.approx(ref_cost, rel=1e-6 if dtype == torch.float32 else 1e-12)
    for got, want in zip(res.heads, ref_stats):
        for key, v in want.items():
            assert getattr(got, key) == pytest.approx(v, abs=1e-6), key
    deltas, heads = darknet_deltas(raws, truths, counts, sp, NET, NET)
    for got, want in zip(deltas, ref_d):
        np.testing.assert_allclose(got.double().numpy(), want, rtol=0, atol=tol)
    assert heads == res.heads


def test_planted_case_covers_the_rules():
    """The planted case really exercises what it claims (checked on the reference, values by hand)."""
    raws, truths, counts = make_case(0, planted=True, fit=0.97)  # IoU 0.94: ignored, clear of truth_thresh=1
    sp = specs()
    (d4, d8), stats, _ = reference(raws, truths, counts, sp)
    d4 = d4.reshape(3, 3, 5 + C, 4, 4)
    d8 = d8.reshape(3, 3, 5 + C, 8, 8)
    # every valid truth trains exactly one head; both heads get some
    assert stats[0]["count"] + stats[1]["count"] == int(counts.sum()) and stats[0]["count"] and stats[1]["count"]
    # ignored predictions: planted anchors that are not assigned have IoU ~1 with a truth -> objectness delta 0
    t0 = truths[0, 0].tolist()
    assert (d4[0, 1:, 4, 2, 1] == 0).all() and (d8[0, :, 4, int(t0[1] * 8), int(t0[0] * 8)] == 0).all()
    x = raws[0].detach().view(3, 3, 5 + C, 4, 4)
    p = torch.sigmoid(x[0, 0, 5:, 2, 1]).numpy()
    # two truths of class 1 in one cell: one-hot; box deltas from the second (the last)
    np.testing.assert_allclose(d4[0, 0, 5:, 2, 1], np.array([0, 1, 0]) - p, atol=1e-12)
    t2 = truths[0, 1].numpy()
    sx = torch.sigmoid(x[0, 0, 0, 2, 1]).item()
    assert d4[0, 0, 0, 2, 1] == pytest.approx((2 - t2[2] * t2[3]) * (t2[0] * 4 - 1 - sx))
    # classes 0 and 2 in one cell: multi-hot
    p8 = torch.sigmoid(raws[1].detach().view(3, 3, 5 + C, 8, 8)[0, 1, 5:, 6, 5]).numpy()
    np.testing.assert_allclose(d8[0, 1, 5:, 6, 5], np.array([1, 0, 1]) - p8, atol=1e-12)
    # x == 1.0 lands in the last column (Darknet would index past the row)
    xs = truths[0, 4].numpy()
    sx = torch.sigmoid(x[0, 0, 0, 1, 3]).item()
    assert xs[0] == 1.0 and d4[0, 0, 0, 1, 3] == pytest.approx((2 - xs[2] * xs[3]) * (1.0 * 4 - 3 - sx))
    # p(class 0) == 1: truths of classes 0, 2, 1 -> class 0 resets the vector, so the target is {1, 2}
    np.testing.assert_allclose(d4[2, 0, 5:, 1, 2][0], -1.0)
    assert (d4[2, 0, 6:, 1, 2] > 0).all()
    # p(class 0) == 0: classes 2, 1, 0, 2 -> each of 2, 1 resets, 0 sticks: the target is {0, 2}
    p = torch.sigmoid(raws[1].detach().view(3, 3, 5 + C, 8, 8)[2, 0, 5:, 3, 3]).numpy()
    np.testing.assert_allclose(d8[2, 0, 5:, 3, 3], np.array([1, 0, 1]) - p, atol=1e-12)
    # a pass-1 positive (IoU 0.94 > truth_thresh 0.9) of class 2 ahead of a pass-2 truth of class 1: multi-hot
    (d4, _), _, _ = reference(raws, truths, counts, specs(truth_thresh=0.9))
    d4 = d4.reshape(3, 3, 5 + C, 4, 4)
    p = torch.sigmoid(x[0, 0, 5:, 0, 3]).numpy()
    np.testing.assert_allclose(d4[0, 0, 5:, 0, 3], np.array([0, 1, 1]) - p, atol=1e-12)


def test_truth_at_x_one_uses_the_last_column():
    raw = torch.zeros(1, 3 * (5 + C), 4, 4, dtype=torch.float64, requires_grad=True)
    sp = specs()[0]
    truths = torch.tensor([[[1.0, 1.0, 28 / NET, 36 / NET, 1]]], dtype=torch.float64)
    deltas, heads = darknet_deltas([raw], truths, torch.tensor([1]), [sp], NET, NET)
    d = deltas[0].view(3, 5 + C, 4, 4)
    scale = 2 - 28 * 36 / NET / NET
    assert d[0, 0, 3, 3].item() == pytest.approx(scale * (1.0 - 0.5))  # tx = 1.0*4 - 3 against sigma(0)
    assert d[0, 4, 3, 3].item() == pytest.approx(0.5) and heads[0].count == 1


def test_no_truths():
    raws, truths, counts = make_case(3, planted=False)
    counts = torch.zeros(3, dtype=torch.long)
    res, grads = _grads(raws, truths, counts, specs())
    for r, g in zip(raws, grads):
        gv = g.view(3, 3, 5 + C, *r.shape[2:])
        torch.testing.assert_close(gv[:, :, 4], torch.sigmoid(r.detach().view_as(gv)[:, :, 4]))  # 0 - sigma
        assert not gv[:, :, [0, 1, 2, 3, 5, 6, 7]].any()
    for h in res.heads:  # Darknet prints nan for the per-truth averages; we report 0
        assert (h.count, h.avg_iou, h.cls, h.obj, h.recall50, h.recall75) == (0, 0, 0, 0, 0, 0) and h.no_obj > 0
    empty = torch.zeros(3, 0, 5, dtype=torch.float64)
    res0, _ = _grads(raws, empty, counts, specs())
    assert res0.loss.item() == pytest.approx(res.loss.item()) and res0.cost == pytest.approx(res.cost)


def test_half_inputs_give_fp32_loss():
    raws, truths, counts = make_case(4, torch.float32)
    half = [r.detach().half().requires_grad_(True) for r in raws]
    res, grads = _grads(half, truths.half(), counts, specs())
    assert res.loss.dtype == torch.float32 and all(g.dtype == torch.float16 for g in grads)
    up = [r.detach().float().requires_grad_(True) for r in half]
    ref, ref_grads = _grads(up, truths.half().float(), counts, specs())
    assert res.loss.item() == ref.loss.item()
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg.half())
    bf = [r.detach().bfloat16() for r in raws]
    assert yolo_loss(bf, truths, counts, specs(), NET, NET).loss.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_reference():
    raws, truths, counts = make_case(5, torch.float32)
    ref_d, ref_stats, ref_cost = reference(raws, truths, counts, specs())
    cuda = [r.detach().cuda().requires_grad_(True) for r in raws]
    res, grads = _grads(cuda, truths.cuda(), counts.cuda(), specs())
    for g, d in zip(grads, ref_d):
        np.testing.assert_allclose(-g.double().cpu().numpy(), d, rtol=0, atol=1e-5)
    assert res.cost == pytest.approx(ref_cost, rel=1e-5)
    assert [h.count for h in res.heads] == [s["count"] for s in ref_stats]
    res16, _ = _grads([r.detach().half().requires_grad_(True) for r in cuda], truths.cuda(), counts, specs())
    assert res16.loss.dtype == torch.float32 and torch.isfinite(res16.loss)


def test_bad_shapes_are_reported():
    raws, truths, counts = make_case(0, planted=False)
    with pytest.raises(ValueError, match="raw output 1"):
        yolo_loss([raws[0], raws[1][:, :-1]], truths, counts, specs(), NET, NET)
    with pytest.raises(ValueError, match="truths"):
        yolo_loss(raws, truths[..., :4], counts, specs(), NET, NET)


def test_gradient_reaches_every_conv_weight():
    torch.manual_seed(0)
    model = build_model(fixture_cfg_text("tiny-shapes").encode()).train()
    net_w, net_h = model.input_size
    x = torch.rand(2, 3, net_h, net_w)
    truths = torch.tensor([[[0.3, 0.4, 0.2, 0.3, 1], [0.7, 0.6, 0.5, 0.4, 4]],
                           [[0.5, 0.5, 0.05, 0.06, 2], [0, 0, 0, 0, 0]]])
    res = yolo_loss(model(x, raw=True), truths, torch.tensor([2, 1]), model.yolo_specs, net_w, net_h)
    res.loss.backward()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and sum(h.count for h in res.heads) == 3
    for m in convs:
        assert torch.isfinite(m.weight.grad).all() and m.weight.grad.abs().sum() > 0
