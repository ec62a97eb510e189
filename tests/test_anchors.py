"""``detector calc_anchors``: k-means under 1 - IoU, checked against hand computations and known shapes."""
from __future__ import annotations

import re

import numpy as np
import pytest

from darknet_py import anchors as A
from darknet_py.anchors import AnchorResult, calc_anchors, dataset_boxes, kmeans_anchors, shape_iou
from darknet_py.errors import DataError

# --------------------------------------------------------------------------- IoU of shapes


def test_shape_iou_by_hand():
    # (10,20) vs (20,10): the overlap is 10x10 = 100, the union 200 + 200 - 100 = 300
    iou = shape_iou(np.array([[10.0, 20.0], [10.0, 10.0], [7.0, 3.0]]), np.array([[20.0, 10.0], [20.0, 40.0]]))
    assert iou.shape == (3, 2)
    assert iou[0, 0] == pytest.approx(1 / 3)
    assert iou[0, 1] == pytest.approx(200 / 800)   # (10,20) inside (20,40): area ratio
    assert iou[1, 1] == pytest.approx(100 / 800)   # contained: area ratio
    assert iou[1, 0] == pytest.approx(100 / 200)
    assert iou[2, 0] == pytest.approx(21 / 200)    # (7,3) inside (20,10)
    assert shape_iou(np.array([[13.0, 17.0]]), np.array([[13.0, 17.0]]))[0, 0] == 1.0
    # boxes compared by shape only, both centred: symmetric
    rng = np.random.default_rng(0)
    a, b = rng.uniform(1, 100, (50, 2)), rng.uniform(1, 100, (7, 2))
    np.testing.assert_allclose(shape_iou(a, b), shape_iou(b, a).T)


def test_one_minus_iou_is_a_metric():
    # the bounds that let k-means skip boxes rely on the triangle inequality of 1 - IoU
    rng = np.random.default_rng(1)
    x, y, z = (np.exp(rng.normal(3, 1, (2000, 2))) for _ in range(3))

    def d(p, q):
        return 1 - np.array([shape_iou(a[None], b[None])[0, 0] for a, b in zip(p, q)])

    assert (d(x, z) <= d(x, y) + d(y, z) + 1e-12).all()
    assert (d(x, x) == 0).all() and (d(x, y) > 0).all()


# --------------------------------------------------------------------------- k-means

SHAPES = np.array([[12, 16], [40, 30], [30, 90], [120, 60], [200, 220]], np.float64)  # ascending area


def _jittered(rng, shapes, per, rel=0.03):
    return np.concatenate([s * rng.uniform(1 - rel, 1 + rel, (per, 2)) for s in shapes])


def test_recovers_known_shapes():
    rng = np.random.default_rng(2)
    wh = rng.permutation(_jittered(rng, SHAPES, 300))
    res = kmeans_anchors(wh, len(SHAPES), seed=0)
    np.testing.assert_allclose(res.anchors, SHAPES, rtol=0.03)
    assert res.mean_iou > 0.9
    assert res.boxes == len(wh)
    assert res.counts.tolist() == [300] * len(SHAPES)


def test_k_equal_to_distinct_boxes_fits_exactly():
    rng = np.random.default_rng(3)
    distinct = np.array([[5, 9], [14, 14], [33, 21], [21, 60], [77, 40], [150, 150], [300, 90]], np.float64)
    wh = distinct[rng.integers(0, len(distinct), 500)]
    wh = np.concatenate([distinct, wh])  # every size present
    res = kmeans_anchors(wh, len(distinct), seed=5)
    assert res.mean_iou == pytest.approx(1.0, abs=1e-12)
    order = np.argsort(distinct.prod(1))
    np.testing.assert_array_equal(res.rounded, distinct[order])
    assert res.cfg_line() == "anchors = " + ", ".join(f"{int(w)},{int(h)}" for w, h in distinct[order])
    np.testing.assert_array_equal(res.counts, [(wh == s).all(1).sum() for s in distinct[order]])


def test_deterministic_sorted_counts_and_more_clusters_fit_better():
    rng = np.random.default_rng(4)
    wh = np.exp(rng.normal(np.log(50), 0.7, (3000, 2)))
    a, b = kmeans_anchors(wh, 6, seed=11), kmeans_anchors(wh, 6, seed=11)
    np.testing.assert_array_equal(a.anchors, b.anchors)
    assert a.mean_iou == b.mean_iou and a.iterations == b.iterations
    area = a.anchors.prod(1)
    assert (np.diff(area) >= 0).all()
    assert a.counts.sum() == len(wh) == a.boxes
    assert a.anchors.dtype == np.float64 and a.anchors.shape == (6, 2)
    three = kmeans_anchors(wh, 3, seed=11, restarts=5)
    assert a.mean_iou >= three.mean_iou
    nine = kmeans_anchors(wh, 9, seed=11, restarts=5)
    assert nine.mean_iou >= a.mean_iou


def test_mean_iou_is_that_of_the_rounded_anchors():
    rng = np.random.default_rng(5)
    wh = np.round(np.exp(rng.normal(np.log(40), 0.9, (2000, 2)))) + 1  # integer sizes, many repeats
    res = kmeans_anchors(wh, 5, seed=1)
    rounded = np.maximum(np.floor(res.anchors + 0.5), 1)
    iou = shape_iou(wh, rounded)
    assert res.mean_iou == pytest.approx(iou.max(1).mean(), rel=1e-12)
    np.testing.assert_array_equal(res.counts, np.bincount(iou.argmax(1), minlength=5))
    # the float anchors are the mean (w, h) of the boxes nearest to them (AlexeyAB's update)
    members = shape_iou(wh, res.anchors).argmax(1)
    for j in range(5):
        np.testing.assert_allclose(res.anchors[j], wh[members == j].mean(0), rtol=1e-9)


def _plain_lloyd(wh, cent, max_iter=1000):
    """Textbook Lloyd under 1 - IoU with the same empty-cluster rule, no bounds."""
    cent, k, assign = cent.astype(np.float64).copy(), len(cent), None
    for it in range(1, max_iter + 1):
        iou = shape_iou(wh, cent)
        new = iou.argmax(1)
        size = np.bincount(new, minlength=k)
        if (size == 0).any():
            far = np.argsort(-(1 - iou[np.arange(len(wh)), new]), kind="stable")
            pos = 0
            for j in np.flatnonzero(size == 0):
                while size[new[far[pos]]] <= 1:
                    pos += 1
                size[new[far[pos]]] -= 1
                new[far[pos]], size[j] = j, 1
                pos += 1
        if assign is not None and np.array_equal(new, assign):
            return cent, it
        assign = new
        cent = np.stack([wh[assign == j].mean(0) for j in range(k)])
    return cent, max_iter


@pytest.mark.parametrize("k", [1, 2, 4, 9])
def test_bounded_lloyd_matches_plain_lloyd(k):
    rng = np.random.default_rng(10 + k)
    wh = np.exp(rng.normal(np.log(60), 0.8, (4000, 2)))
    init = wh[rng.choice(len(wh), k, replace=False)]
    got, its = A._lloyd(wh, np.ones(len(wh)), init, 1000)
    want, want_its = _plain_lloyd(wh, init)
    assert its == want_its
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_empty_cluster_is_reseeded_with_the_farthest_box():
    rng = np.random.default_rng(6)
    wh = np.exp(rng.normal(np.log(60), 0.8, (1500, 2)))
    init = np.stack([wh[0], wh[0], wh[1], wh[1]])  # the copies lose every tie: two empty clusters
    got, its = A._lloyd(wh, np.ones(len(wh)), init, 1000)
    want, want_its = _plain_lloyd(wh, init)
    assert its == want_its and len(np.unique(got, axis=0)) == 4
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_repeated_boxes_weigh_as_often_as_they_occur():
    rng = np.random.default_rng(7)
    base = np.round(rng.uniform(5, 200, (300, 2)))
    wh = np.concatenate([base, base[:100], base[:100]])
    res = kmeans_anchors(wh, 4, seed=2)
    assert res.boxes == 500 and res.counts.sum() == 500
    assert res.mean_iou == pytest.approx(shape_iou(wh, res.rounded).max(1).mean(), rel=1e-12)


def test_cfg_line_and_printout():
    res = AnchorResult(np.array([[0.2, 30.5], [10.4, 12.6]]), 0.61234, np.array([3, 4]), 7, 7)
    assert res.cfg_line() == "anchors = 1,31, 10,13"  # rounded half up, at least 1
    lines = res.lines()
    assert lines[0] == res.cfg_line()
    assert lines[1] == "avg IoU = 61.23 %"
    assert any("7 boxes" in line for line in lines)


# --------------------------------------------------------------------------- from a .data file


def test_end_to_end_on_a_generated_dataset(tmp_path):
    from darknet_py.synth import make_dataset

    ds = make_dataset(tmp_path, train=20, valid=2, seed=1, min_side=96, max_side=256)
    rows = [line.split() for p in sorted((tmp_path / "labels" / "train").glob("*.txt"))
            for line in p.read_text().splitlines() if line.strip()]
    wh = dataset_boxes(ds.data, 416, 320)
    assert wh.shape == (len(rows), 2)
    np.testing.assert_allclose(np.sort(wh[:, 0]), np.sort([float(r[3]) * 416 for r in rows]))
    np.testing.assert_allclose(np.sort(wh[:, 1]), np.sort([float(r[4]) * 320 for r in rows]))
    res = calc_anchors(ds.data, 6, 416, 416)
    assert res.boxes == len(rows) and res.counts.sum() == len(rows)
    m = re.fullmatch(r"anchors = (.*)", res.cfg_line())
    values = [int(v) for v in m.group(1).split(",")]
    assert len(values) == 12 and min(values) >= 1
    pairs = np.array(values).reshape(6, 2)
    assert 0 < res.mean_iou <= 1
    assert res.mean_iou == pytest.approx(shape_iou(dataset_boxes(ds.data, 416, 416), pairs).max(1).mean())
    assert calc_anchors(ds.data, 6, 416, 416).cfg_line() == res.cfg_line()  # seeded


def _tiny_set(tmp_path, label_text, classes="classes = 2\n"):
    (tmp_path / "images").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    for i, text in enumerate(label_text):
        (tmp_path / "images" / f"a{i}.jpg").write_bytes(b"x")
        if text is not None:
            (tmp_path / "labels" / f"a{i}.txt").write_text(text)
    (tmp_path / "train.txt").write_text("".join(f"images/a{i}.jpg\n" for i in range(len(label_text))))
    data = tmp_path / "set.data"
    data.write_text(classes + "train = train.txt\n")
    return data


def test_errors(tmp_path):
    wh = np.array([[10.0, 10.0], [20.0, 5.0], [20.0, 5.0]])
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="k"):
            kmeans_anchors(wh, bad)
    with pytest.raises(ValueError, match="only 2 distinct box sizes"):
        kmeans_anchors(wh, 3)
    with pytest.raises(ValueError, match="positive finite"):
        kmeans_anchors(np.array([[10.0, 0.0], [3.0, 4.0]]), 1)
    with pytest.raises(ValueError, match="positive finite"):
        kmeans_anchors(np.array([[np.nan, 1.0], [3.0, 4.0]]), 1)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        kmeans_anchors(np.ones((4, 3)), 1)

    empty = _tiny_set(tmp_path / "empty", ["", "\n\n", None])
    with pytest.raises(DataError, match="no boxes in the training labels"):
        calc_anchors(empty, 1, 416, 416)

    few = _tiny_set(tmp_path / "few", ["0 0.5 0.5 0.1 0.2\n1 0.3 0.3 0.2 0.1\n", "0 0.5 0.5 0.1 0.2\n"])
    with pytest.raises(DataError, match="3 clusters but the training labels hold only 2 distinct box sizes"):
        calc_anchors(few, 3, 416, 416)
    with pytest.raises(ValueError, match="k"):
        calc_anchors(few, 0, 416, 416)
    for w, h in ((0, 416), (416, -5), (416.0, 416)):
        with pytest.raises(ValueError, match="width|height"):
            calc_anchors(few, 2, w, h)
    res = calc_anchors(few, 2, 100, 100)
    assert res.boxes == 3 and sorted(res.rounded.tolist()) == [[10, 20], [20, 10]]  # equal areas: any order
    assert res.mean_iou == pytest.approx(1.0)

    bad = _tiny_set(tmp_path / "bad", ["0 0.5 0.5 0.1 0.2\n0 0.5 0.5 0 0.2\n5 0.5 0.5 0.3 0.3\n"], classes="")
    with pytest.raises(DataError, match=r"a0.txt:2: w = 0"):
        dataset_boxes(bad, 416, 416)
    wh = dataset_boxes(bad, 100, 200, on_bad="skip")  # no classes key: any class id >= 0 is taken
    np.testing.assert_allclose(wh, [[10, 40], [30, 60]])

    nokey = tmp_path / "nokey.data"
    nokey.write_text("classes = 1\n")
    with pytest.raises(DataError, match="no 'train' key"):
        calc_anchors(nokey, 1, 416, 416)

