"""Darknet's detection training data (darknet_py.train.data): augmentation geometry and colour,
box bookkeeping, the multi-scale sampler and the loader, each against facts computed independently."""
from __future__ import annotations

import dataclasses
import itertools
import shutil

import cv2
import numpy as np
import pytest
import torch

from darknet_py.errors import DataError
from darknet_py.synth import make_dataset
from darknet_py.train.data import (AugmentConfig, DetectionDataset, Draws, MultiScaleBatchSampler, augment, collate,
                                   distort, draw, make_loader)

FILL = 0.5
SHAPE = np.array([235, 20, 30], np.uint8)      # red: far from the 0.5 fill and from the background
BACKGROUND = np.array([30, 60, 200], np.uint8)  # blue


class Scripted:
    """A stand-in for numpy's Generator: uniform(lo, hi) = lo + f * (hi - lo) with scripted f."""

    def __init__(self, fractions, coins):
        self.fractions, self.coins = iter(fractions), iter(coins)

    def uniform(self, lo, hi):
        return lo + next(self.fractions) * (hi - lo)

    def random(self):
        return next(self.coins)


def rectangle_scene(rng, w, h):
    """A flat background with one solid rectangle; its label as cx, cy, w, h of pixel edges."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    bw, bh = int(rng.integers(4, w // 2)), int(rng.integers(4, h // 2))
    x1, y1 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
    img[y1:y1 + bh, x1:x1 + bw] = SHAPE
    return img, np.array([[(x1 + bw / 2) / w, (y1 + bh / 2) / h, bw / w, bh / h]])


def shape_pixels(img):
    """Canvas pixels more red than half way between the shape and anything else around it."""
    return (img[..., 0] > 0.6) & (img[..., 2] < 0.45)


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("out_w,out_h", [(320, 320), (192, 352), (352, 160)])
def test_boxes_follow_the_pixels(out_w, out_h):
    rng = np.random.default_rng(out_w * 1000 + out_h)
    clipped = 0
    for trial in range(40):
        photo, box = rectangle_scene(rng, int(rng.integers(60, 300)), int(rng.integers(60, 300)))
        p = draw(rng, photo.shape[1], photo.shape[0], out_w, out_h, jitter=0.45)
        out = {flip: augment(photo, box, np.array([3]), out_w, out_h, params=dataclasses.replace(p, flip=flip),
                             jitter=0.45) for flip in (False, True)}
        for flip, (img, boxes, classes) in out.items():
            assert img.shape == (out_h, out_w, 3) and img.dtype == np.float32
            assert 0.0 <= img.min() and img.max() <= 1.0
            mask = shape_pixels(img)
            if not mask.any():  # cropped away entirely: the box went too
                assert len(boxes) == 0 or min(boxes[0, 2] * out_w, boxes[0, 3] * out_h) < 1.5
                continue
            assert len(boxes) == 1 and classes.tolist() == [3]
            ys, xs = np.nonzero(mask)
            cx, cy, bw, bh = boxes[0].astype(np.float64) * [out_w, out_h, out_w, out_h]
            # pixel edges of the shape vs the box sides: inside, and touching within 2 px
            for got, want in ((xs.min(), cx - bw / 2), (xs.max() + 1, cx + bw / 2),
                              (ys.min(), cy - bh / 2), (ys.max() + 1, cy + bh / 2)):
                assert abs(got - want) <= 2.0, (trial, flip, got, want)
        (img, boxes, _), (img_f, boxes_f, _) = out[False], out[True]
        # the flip mirrors pixels (up to OpenCV's 1/32 px sampling grid at sharp edges) and boxes
        assert np.abs(img_f - img[:, ::-1]).max() < 0.05
        assert len(boxes) == len(boxes_f)
        np.testing.assert_allclose(boxes_f[:, 0], 1 - boxes[:, 0], atol=1e-6)
        np.testing.assert_allclose(boxes_f[:, 1:], boxes[:, 1:], atol=1e-6)
        # the photo region: everything that is not the 0.5 fill lies inside [dx, dx + nw) x [dy, dy + nh)
        photo_px = np.nonzero(np.abs(img - FILL).max(-1) > 1e-3)
        assert photo_px[1].min() >= np.floor(p.dx) and photo_px[1].max() < np.ceil(p.dx + p.nw)
        assert photo_px[0].min() >= np.floor(p.dy) and photo_px[0].max() < np.ceil(p.dy + p.nh)
        x = (box[0, 0] - box[0, 2] / 2) * p.nw + p.dx, (box[0, 0] + box[0, 2] / 2) * p.nw + p.dx
        y = (box[0, 1] - box[0, 3] / 2) * p.nh + p.dy, (box[0, 1] + box[0, 3] / 2) * p.nh + p.dy
        clipped += x[0] < 0 or x[1] > out_w or y[0] < 0 or y[1] > out_h
    if out_h != out_w:  # only a non-square canvas lets the jittered photo overflow it (and be cropped)
        assert clipped > 0


def test_hand_computed_geometry():
    photo = np.zeros((50, 100, 3), np.float32)
    photo[:, :50] = 0.9   # left half
    photo[:, 50:] = 0.1   # right half
    # jitter .5: dw = 50, dh = 25; width 100 - 50 = 50, height 50 + 25 = 75 -> new_ar = 2/3 < 1,
    # so nh = 200, nw = 400/3; dx = .25 * (300 - 400/3) = 125/3, dy = U(0, 0) = 0
    rng = Scripted([0.0, 1.0, 0.25, 0.6, 0.5, 0.5, 0.5], [0.9, 0.9, 0.9])
    p = draw(rng, 100, 50, 300, 200, jitter=0.5)
    assert (p.nw, p.nh, p.dx, p.dy) == pytest.approx((400 / 3, 200, 125 / 3, 0), abs=1e-9)
    assert (p.dhue, p.dsat, p.dexp, p.flip) == (0.0, 1.0, 1.0, False)
    box = np.array([[0.3, 0.4, 0.2, 0.4]])
    img, boxes, _ = augment(photo, box, np.array([0]), 300, 200, params=p, jitter=0.5)
    # left = .2 * 400/3 + 125/3 = 205/3 px, right = .4 * 400/3 + 125/3 = 95 px, of 300
    assert boxes[0].tolist() == pytest.approx([(205 / 3 + 95) / 600, 0.4, (95 - 205 / 3) / 300, 0.4], abs=1e-6)
    # the photo covers the columns whose centres lie in [125/3, 175): 42 .. 174, all rows
    assert np.all(img[:, 41] == FILL) and np.all(img[:, 175] == FILL)
    assert np.allclose(img[:, 42], 0.9) and np.allclose(img[:, 174], 0.1)
    assert np.allclose(img[:, 100], 0.9) and np.allclose(img[:, 116], 0.1)  # the split at 125/3 + 200/3 = 108.3

    flipped = dataclasses.replace(p, flip=True)  # mirrored: [300 - 175, 300 - 125/3) = columns 125 .. 257
    img, boxes, _ = augment(photo, box, np.array([0]), 300, 200, params=flipped, jitter=0.5)
    assert boxes[0].tolist() == pytest.approx([1 - (205 / 3 + 95) / 600, 0.4, (95 - 205 / 3) / 300, 0.4], abs=1e-6)
    assert np.all(img[:, 124] == FILL) and np.all(img[:, 258] == FILL)
    assert np.allclose(img[:, 125], 0.1) and np.allclose(img[:, 257], 0.9)

    # the same placement from a uint8 photo: the same pixels within 8-bit precision
    img8, boxes8, _ = augment((photo * 255).round().astype(np.uint8), box, np.array([0]), 300, 200,
                              params=flipped, jitter=0.5)
    assert np.abs(img8 - img).max() < 1.5 / 255 and np.array_equal(boxes8, boxes)


@pytest.mark.parametrize("flip", [False, True])
def test_place_samples_pixel_centres(flip):
    # a linear ramp is reproduced exactly by bilinear sampling: canvas pixel c (centre c + .5) shows
    # the photo at edge coordinate (c + .5 - x0) / kx, i.e. pixel index (c + .5 - x0) / kx - .5
    ramp = np.broadcast_to(np.arange(80, dtype=np.float32)[None, :, None] / 100, (60, 80, 3)).copy()
    p = Draws(nw=200.0, nh=150.0, dx=13.3, dy=-20.7, flip=flip)
    img, _, _ = augment(ramp, np.zeros((0, 4)), np.zeros(0), 240, 120, params=p, jitter=0)
    kx = 200 / 80
    c = np.arange(30, 200)  # away from the replicated edge pixels
    u = (c + 0.5 - 13.3) / kx - 0.5
    got = img[50, 240 - 1 - c] if flip else img[50, c]
    np.testing.assert_allclose(got[:, 0], u / 100, atol=1e-3)  # OpenCV's 1/32 px grid: 1/32/2.5/100
    # the photo covers the columns whose centres lie in [13.3, 213.3): 13 .. 212 (mirrored: 27 .. 226)
    assert np.all(img[:, (227 if flip else 12)] == FILL) and np.all(img[:, (226 if flip else 13)] != FILL)
    assert np.all(img[:, (26 if flip else 213)] == FILL) and np.all(img[:, (27 if flip else 212)] != FILL)
    assert not np.any(img[:, 100] == FILL)  # the photo overflows the canvas vertically: no fill rows


def test_crop_clips_boxes_and_drops_the_thin_ones():
    photo = np.zeros((100, 200, 3), np.uint8)
    # photo 200 px wide drawn 200 px wide at dx = -50 on a 100 px canvas: photo columns 50..150 show
    p = Draws(nw=200, nh=100, dx=-50, dy=0)
    boxes = np.array([
        [0.10, 0.5, 0.10, 0.2],            # columns 10..30: cropped away entirely
        [0.30, 0.5, 0.20, 0.2],            # 40..80 -> canvas -10..30 -> clipped to 0..30
        [(40 + 50.05) / 400, 0.5, (50.05 - 40) / 200, 0.2],   # right edge at canvas 0.05 px: w .0005 < .001
        [(40 + 50.2) / 400, 0.5, (50.2 - 40) / 200, 0.2],     # right edge at canvas 0.2 px: w .002, kept
        [0.75, 0.5, 0.5, 0.2],             # 100..200 -> canvas 50..150 -> clipped to 50..100
    ])
    _, out, classes = augment(photo, boxes, np.arange(5), 100, 100, params=p, jitter=0)
    assert classes.tolist() == [1, 3, 4]
    np.testing.assert_allclose(out, [[0.15, 0.5, 0.3, 0.2], [0.001, 0.5, 0.002, 0.2], [0.75, 0.5, 0.5, 0.2]],
                               atol=1e-6)


def test_label_box_at_the_origin_is_an_ordinary_box():
    # Darknet's x == 0 && y == 0 sentinel is not reproduced: a box centred on the corner is clipped
    _, out, _ = augment(np.zeros((10, 10, 3), np.uint8), np.array([[0.0, 0.0, 0.4, 0.4]]), np.array([2]), 10, 10,
                        params=Draws(10, 10, 0, 0), jitter=0)
    np.testing.assert_allclose(out, [[0.1, 0.1, 0.2, 0.2]], atol=1e-6)


# --------------------------------------------------------------------------- colour


def darknet_distort(rgb, dhue, dsat, dexp):
    """distort_image written out from src/image.c's formulas (float64, vectorised), for comparison."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    mx, mn = rgb.max(-1).astype(np.float64), rgb.min(-1).astype(np.float64)
    delta = mx - mn
    safe = np.where(delta > 0, delta, 1)
    h = np.where(r == mx, (g - b) / safe, np.where(g == mx, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = np.where(delta > 0, h, 0)
    h = np.where(h < 0, h + 6, h) / 6
    s, v = np.where(mx > 0, delta / np.where(mx > 0, mx, 1), 0) * dsat, mx * dexp
    h = h + dhue
    h = np.where(h > 1, h - 1, np.where(h < 0, h + 1, h)) * 6
    i = np.floor(h)
    f = h - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(rgb.shape)
    for k, chans in enumerate(table):
        sel = (i == k) if k < 5 else (i >= 5)
        for c in range(3):
            out[..., c] = np.where(sel, chans[c], out[..., c])
    out = np.where((s == 0)[..., None], v[..., None], out)
    return np.clip(out, 0, 1)


def test_distort_identity_and_exposure():
    img = np.random.default_rng(1).random((64, 96, 3)).astype(np.float32)
    assert np.abs(distort(img.copy(), 0.0, 1.0, 1.0) - img).max() < 1e-6
    # exposure scales V and keeps H, S: every channel doubles, then each is clipped
    assert np.allclose(distort(img.copy(), 0.0, 1.0, 2.0), np.clip(2 * img, 0, 1), atol=1e-5)
    doubled = distort(img.copy(), 0.0, 1.0, 2.0)
    assert np.allclose(doubled.max(-1), np.minimum(1, 2 * img.max(-1)), atol=1e-5)


def test_hue_is_a_fraction_of_the_circle():
    prim = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1]]], np.float32)
    assert np.allclose(distort(prim.copy(), 1 / 3, 1, 1), [[[0, 1, 0], [0, 0, 1], [1, 0, 0]]], atol=1e-5)
    assert np.allclose(distort(prim.copy(), -1 / 3, 1, 1), [[[0, 0, 1], [1, 0, 0], [0, 1, 0]]], atol=1e-5)


@pytest.mark.parametrize("dhue,dsat,dexp", [(0.1, 1.5, 0.7), (-0.45, 0.6, 1.4), (0.3, 2.5, 1.0), (-0.05, 1, 0.5)])
def test_distort_matches_darknet_formulas(dhue, dsat, dexp):
    rng = np.random.default_rng(7)
    img = rng.random((40, 50, 3)).astype(np.float32)
    img[:5] = rng.random((5, 50, 1))  # grays (no hue) too
    img[5, :3] = 0                    # and black
    assert np.abs(distort(img.copy(), dhue, dsat, dexp) - darknet_distort(img, dhue, dsat, dexp)).max() < 1e-4


def test_draw_ranges():
    rng = np.random.default_rng(3)
    sat, exp, hue = [], [], []
    for _ in range(2000):
        p = draw(rng, 400, 300, 416, 416, jitter=0.3, hue=0.1, saturation=1.5, exposure=2.0)
        assert 0 <= p.dx <= 416 - p.nw + 1e-9 and 0 <= p.dy <= 416 - p.nh + 1e-9
        assert max(p.nw, p.nh) == pytest.approx(416)
        sat.append(p.dsat)
        exp.append(p.dexp)
        hue.append(p.dhue)
    sat, exp, hue = map(np.array, (sat, exp, hue))
    assert np.all((sat >= 1 / 1.5 - 1e-9) & (sat <= 1.5 + 1e-9)) and 0.4 < np.mean(sat > 1) < 0.6
    assert np.all((exp >= 0.5 - 1e-9) & (exp <= 2 + 1e-9)) and np.abs(hue).max() <= 0.1
    # rand_scale keeps U(1, s) on one coin side and inverts it on the other; the flip takes the third coin
    p = draw(Scripted([0.5] * 7, [0.1, 0.9, 0.1]), 400, 300, 416, 416, jitter=0.3, saturation=1.5, exposure=1.5)
    assert p.dsat == pytest.approx(1.25) and p.dexp == pytest.approx(1 / 1.25) and p.flip
    p = draw(Scripted([0.5] * 7, [0.9, 0.1, 0.9]), 400, 300, 416, 416, jitter=0.3, saturation=1.5, exposure=1.5)
    assert p.dsat == pytest.approx(1 / 1.25) and p.dexp == pytest.approx(1.25) and not p.flip


def test_augment_config():
    assert AugmentConfig.of(None) == AugmentConfig(0.2, 0.0, 1.0, 1.0, True)
    c = AugmentConfig.of({"hue": 0.1, "saturation": 1.5, "batch": 64}, jitter=0.3)
    assert (c.jitter, c.hue, c.saturation, c.exposure) == (0.3, 0.1, 1.5, 1.0)
    with pytest.raises(ValueError):
        AugmentConfig.of({"jitter": 1.5})


# --------------------------------------------------------------------------- sampler


def test_sampler_sizes_and_determinism():
    kw = dict(subdivisions=4, width=416, height=416, random=True, seed=5)
    s = MultiScaleBatchSampler(100, 3, 260, **kw)
    batches = list(s)
    assert len(batches) == len(s) == 260 * 4 and all(len(b) == 3 for b in batches)
    assert batches == list(MultiScaleBatchSampler(100, 3, 260, **kw))
    assert batches != list(MultiScaleBatchSampler(100, 3, 260, **{**kw, "seed": 6}))
    sizes = [batches[i * 4][0][1:3] for i in range(260)]
    for i in range(260):  # one size per iteration, across all its subdivisions and images
        assert {item[1:3] for b in batches[i * 4:(i + 1) * 4] for item in b} == {sizes[i]}
    assert all(w == h and w % 32 == 0 and 320 <= w <= 608 for w, h in sizes)
    for block in range(6):  # constant over each 10 iterations (before the last 200)
        assert len(set(sizes[block * 10:(block + 1) * 10])) == 1
    assert len(set(sizes[:60])) > 2
    assert set(sizes[60:]) == {(608, 608)}
    assert all(0 <= item[0] < 100 for b in batches for item in b)
    assert len({item[3] for b in batches for item in b}) == 260 * 12  # a fresh seed per image


def test_sampler_scaled_to_the_cfg_and_fixed():
    s = MultiScaleBatchSampler(10, 2, 400, width=608, height=320, random=True)
    assert s.sizes[0] == (480, 256) and s.sizes[-1] == (896, 480)  # 320..608 * 608/416 and * 320/416, /32
    seen = {s.size_at(i) for i in range(400)}
    assert seen <= set(s.sizes) and all(w % 32 == 0 and h % 32 == 0 for w, h in seen)
    assert s.size_at(399) == s.size_at(200) == s.sizes[-1]
    tiny = MultiScaleBatchSampler(10, 2, 50, width=32, height=32, random=True)
    assert {tiny.size_at(i) for i in range(50)} <= {(32, 32), (64, 64)}
    fixed = MultiScaleBatchSampler(10, 2, 50, width=300, height=200, random=False)
    assert {item[1:3] for b in fixed for item in b} == {(300, 200)}


def test_sampler_resumes_and_splits_ranks():
    kw = dict(subdivisions=2, width=416, height=416, random=True, seed=11)
    full = list(MultiScaleBatchSampler(50, 4, 40, **kw))
    assert list(MultiScaleBatchSampler(50, 4, 40, start_iteration=17, **kw)) == full[17 * 2:]
    r0 = list(MultiScaleBatchSampler(50, 4, 40, rank=0, world_size=2, **kw))
    r1 = list(MultiScaleBatchSampler(50, 4, 40, rank=1, world_size=2, **kw))
    assert [b[0][1:3] for b in r0] == [b[0][1:3] for b in r1]
    assert [[i[0] for i in b] for b in r0] != [[i[0] for i in b] for b in r1]
    assert not {i[3] for b in r0 for i in b} & {i[3] for b in r1 for i in b}


# --------------------------------------------------------------------------- dataset and loader


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("shapes"), train=8, valid=2, seed=3, min_side=64, max_side=160,
                        max_objects=4)


def test_dataset_items(shapes):
    ds = DetectionDataset(shapes.train_list, len(shapes.classes), {"jitter": 0.3, "hue": 0.1, "saturation": 1.5,
                                                                   "exposure": 1.5})
    assert len(ds) == 8 and ds.report.files == 8 and not ds.report.missing
    img, target = ds[(2, 128, 96, 123)]
    assert img.shape == (3, 96, 128) and img.dtype == torch.float32 and target.dtype == torch.float32
    again = ds[(2, 128, 96, 123)]
    assert torch.equal(img, again[0]) and torch.equal(target, again[1])
    assert target.shape[1] == 5 and len(target) <= len(ds.labels[2].classes)
    assert set(target[:, 4].long().tolist()) <= set(ds.labels[2].classes.tolist())
    assert torch.all((target[:, :4] >= 0) & (target[:, :4] <= 1))
    with pytest.raises(TypeError):
        ds[2]


def test_loader_same_batches_with_workers(shapes):
    ds = DetectionDataset(shapes.train_list, len(shapes.classes), {"jitter": 0.3, "hue": 0.1, "saturation": 1.5,
                                                                   "exposure": 1.5})
    # 12 iterations of a long run: multi-scale (the last 200 would all be at the largest size)
    sampler = MultiScaleBatchSampler(len(ds), 2, 1000, subdivisions=2, width=128, height=128, random=True, seed=1)
    runs = []
    for workers in (0, 2):
        runs.append(list(itertools.islice(make_loader(ds, sampler, workers), 24)))
    assert len(runs[0]) == len(runs[1]) == 24
    for (i0, t0, c0), (i1, t1, c1) in zip(*runs):
        assert torch.equal(i0, i1) and torch.equal(t0, t1) and torch.equal(c0, c1)
    for images, truths, counts in runs[0]:
        assert images.shape[:2] == (2, 3) and images.shape[2] % 32 == 0 and images.shape[2] == images.shape[3]
        assert truths.shape[0] == 2 and truths.shape[2] == 5 and truths.shape[1] == max(1, int(counts.max()))
        for t, n in zip(truths, counts):
            assert torch.all(t[n:] == 0)
    assert len({r[0].shape for r in runs[0]}) > 1  # multi-scale


def test_collate_pads():
    a = (torch.zeros(3, 4, 4), torch.ones(2, 5))
    b = (torch.ones(3, 4, 4), torch.zeros(0, 5))
    images, truths, counts = collate([a, b])
    assert images.shape == (2, 3, 4, 4) and truths.shape == (2, 2, 5) and counts.tolist() == [2, 0]
    assert torch.all(truths[0] == 1) and torch.all(truths[1] == 0)
    assert collate([b])[1].shape == (1, 1, 5)


def test_max_boxes(shapes, tmp_path):
    root = tmp_path / "many"
    shutil.copytree(shapes.root, root)
    # a square photo with jitter 0, no flip, drawn at its own size: the geometry is the identity
    _, jpg = cv2.imencode(".jpg", np.full((96, 96, 3), 90, np.uint8))
    (root / "images" / "train" / "shapes_000001.jpg").write_bytes(jpg.tobytes())
    cxs = 0.05 + 0.009 * np.arange(100)
    rows = "".join(f"{k % 6} {cx:.4f} 0.5 {0.0005 if k % 2 else 0.004} 0.3\n" for k, cx in enumerate(cxs))
    (root / "labels" / "train" / "shapes_000001.txt").write_text(rows)
    aug = {"jitter": 0, "flip": False}
    counts = []
    for seed in range(8):  # Darknet's default [yolo] max=90 cut first, then the 50 thin boxes dropped
        t = DetectionDataset(root / "train.txt", 6, aug)[(0, 96, 96, seed)][1]
        assert np.allclose(t[:, 2].numpy(), 0.004) and np.abs(t[:, :1].numpy() - cxs).min(1).max() < 1e-5
        counts.append(len(t))
    assert all(40 <= n <= 50 for n in counts) and min(counts) < 50
    few = DetectionDataset(root / "train.txt", 6, aug, max_boxes=5)
    picks = [few[(0, 96, 96, seed)][1] for seed in range(8)]
    assert all(len(p) <= 5 for p in picks) and max(len(p) for p in picks) > 0
    assert len({tuple(np.round(p[:, 0].numpy(), 4)) for p in picks}) > 1  # shuffled before the cut


def test_corrupt_image_names_the_list_line(shapes, tmp_path):
    root = tmp_path / "corrupt"
    shutil.copytree(shapes.root, root)
    jpg = root / "images" / "train" / "shapes_000003.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])  # truncated
    ds = DetectionDataset(root / "train.txt", 6)
    with pytest.raises(DataError) as err:
        ds[(2, 64, 64, 0)]
    assert err.value.line == 3 and str(root / "train.txt") in str(err.value) and "shapes_000003.jpg" in str(err.value)
    sampler = MultiScaleBatchSampler(len(ds), 8, 3, width=64, height=64)  # 24 draws of 8 images hit it
    with pytest.raises(DataError, match="train.txt:3"):
        list(make_loader(ds, sampler, 0))


def test_bad_and_missing_labels(shapes, tmp_path):
    root = tmp_path / "labels"
    shutil.copytree(shapes.root, root)
    bad = root / "labels" / "train" / "shapes_000004.txt"
    bad.write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")  # class 7 of 6
    (root / "labels" / "train" / "shapes_000005.txt").unlink()
    with pytest.raises(DataError) as err:
        DetectionDataset(root / "train.txt", 6)
    assert err.value.line == 2 and str(bad) in str(err.value)
    ds = DetectionDataset(root / "train.txt", 6, on_bad="skip")
    assert ds.report.skipped[bad][0][0] == 2 and len(ds.report.missing) == 1
    assert ds.labels[3].classes.tolist() == [0]
    img, target = ds[(4, 64, 64, 0)]  # the image without labels is a negative
    assert img.shape == (3, 64, 64) and target.shape == (0, 5)
