"""The synthetic shapes dataset: Darknet layout, labels that match the pixels, YOLO labels that
agree with the COCO json, determinism, value ranges and argument checks."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from darknet_py.errors import DarknetPyError, DataError, UsageError
from darknet_py.config.data import read_data_config
from darknet_py.config.names import read_names
from darknet_py.synth import CLASSES, SynthDataset, make_background, make_dataset, render_image, shape_mask

TRAIN, VALID = 60, 40


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> SynthDataset:
    return make_dataset(tmp_path_factory.mktemp("shapes"), train=TRAIN, valid=VALID, seed=1)


def read_labels(path: Path) -> np.ndarray:
    rows = [line.split() for line in path.read_text().splitlines()]
    assert all(len(r) == 5 for r in rows), path
    return np.array(rows, np.float64).reshape(-1, 5)


def listed(ds: SynthDataset, split: str):
    """(image path, label path, image id) for each line of the split's list file."""
    lst = ds.train_list if split == "train" else ds.valid_list
    text = lst.read_text()
    assert text.endswith("\n") and "\r" not in text
    out = []
    for rel in text.splitlines():
        assert not Path(rel).is_absolute() and rel.startswith(f"images/{split}/") and rel.endswith(".jpg")
        label = rel.replace("images", "labels").replace(".jpg", ".txt")  # Darknet's own substitution
        out.append((ds.root / rel, ds.root / label, int(Path(rel).stem.rsplit("_", 1)[1])))
    return out


def all_boxes(ds: SynthDataset):
    """(width, height, labels (N, 5)) for every listed image, sizes read from the JPEG itself."""
    for split in ("train", "valid"):
        for img, lab, _ in listed(ds, split):
            h, w = cv2.imread(str(img)).shape[:2]
            yield w, h, read_labels(lab)


def test_layout(ds):
    assert ds.classes == CLASSES and (ds.train_images, ds.valid_images) == (TRAIN, VALID)
    for p in (ds.data, ds.names, ds.train_list, ds.valid_list, ds.train_json, ds.valid_json):
        assert p.is_file() and p.parent == ds.root
    assert ds.data.name == "shapes.data" and ds.names.name == "shapes.names"
    assert read_data_config(ds.data).as_dict() == {"classes": "6", "train": "train.txt", "valid": "valid.txt",
                                       "names": "shapes.names", "backup": "backup/", "eval": "coco",
                                       "annotations": "instances_valid.json"}
    assert ds.names.read_bytes() == b"rectangle\nellipse\ntriangle\ncross\nring\ndiamond\n"
    assert read_names(ds.names, 6) == list(CLASSES)
    ids = {}
    for split in ("train", "valid"):
        rows = listed(ds, split)
        ids[split] = [i for _, _, i in rows]
        for img, lab, i in rows:
            assert img.is_file() and lab.is_file(), img
            assert img.name == f"shapes_{i:06d}.jpg"
    assert ids["train"] == list(range(1, TRAIN + 1))
    assert ids["valid"] == list(range(TRAIN + 1, TRAIN + VALID + 1))


@pytest.mark.parametrize("cls", range(len(CLASSES)))
@pytest.mark.parametrize("w,h", [(7, 7), (9, 25), (31, 11), (101, 57), (64 + 1, 199)])
def test_shape_masks_fill_their_box(cls, w, h):
    mask = shape_mask(cls, w, h, np.random.default_rng(cls))
    assert mask.shape == (h, w) and mask.dtype == bool
    assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
    if w >= 31 and h >= 31:  # areas from geometry tell the classes apart (tiny sizes are too coarse)
        lo, hi = {0: (1, 1), 1: (0.74, 0.84), 2: (0.45, 0.56), 3: (0.4, 0.72), 4: (0.35, 0.7), 5: (0.45, 0.56)}[cls]
        assert lo - 1e-9 <= mask.mean() <= hi, mask.mean()


def test_labels_agree_with_pixels():
    """One object drawn on a background we can regenerate: the pixels that changed are exactly
    the labelled box's shape (inside the box, touching all four of its sides)."""
    seen = {c: 0 for c in range(len(CLASSES))}
    for seed in itertools.count():
        if min(seen.values()) >= 4:
            break
        assert seed < 400, seen
        w, h = (int(v) for v in np.random.default_rng(10_000 + seed).integers(32, 400, 2))
        img, boxes, classes = render_image(np.random.default_rng(seed), w, h, 1)
        bg = make_background(np.random.default_rng(seed), w, h).astype(np.uint8)  # drawn first from the rng
        assert img.shape == (h, w, 3) and img.dtype == np.uint8
        assert boxes.shape == (len(classes), 4) and boxes.dtype == np.float64 and classes.dtype == np.int64
        diff = np.abs(img.astype(int) - bg).mean(axis=2)
        if len(classes) == 0:
            assert not diff.any()
            continue
        assert len(classes) == 1
        seen[int(classes[0])] += 1
        x1, y1, x2, y2 = boxes[0]
        ys, xs = np.nonzero(diff)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2), (seed, classes)
        ys, xs = np.nonzero(diff >= 30)  # strongly different pixels: inside and within 2 px of each side
        assert xs.min() >= x1 and ys.min() >= y1 and xs.max() + 1 <= x2 and ys.max() + 1 <= y2
        assert max(xs.min() - x1, ys.min() - y1, x2 - xs.max() - 1, y2 - ys.max() - 1) <= 2, (seed, classes)
        # every object stands out from what lies under it
        m = diff[int(y1):int(y2), int(x1):int(x2)] > 0
        assert np.abs(img[int(y1):int(y2), int(x1):int(x2)][m].astype(int)
                      - bg[int(y1):int(y2), int(x1):int(x2)][m]).mean() >= 45


@pytest.mark.parametrize("split", ["train", "valid"])
def test_yolo_labels_match_coco_json(ds, split):
    coco = json.loads((ds.train_json if split == "train" else ds.valid_json).read_text())
    assert [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])] == list(CLASSES)
    assert [c["id"] for c in coco["categories"]] == list(range(1, 7))
    images = {im["id"]: im for im in coco["images"]}
    anns = {}
    for a in coco["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    rows = listed(ds, split)
    assert sorted(images) == [i for _, _, i in rows]
    for img, lab, image_id in rows:
        h, w = cv2.imread(str(img)).shape[:2]
        meta = images[image_id]
        assert (meta["file_name"], meta["width"], meta["height"]) == (img.name, w, h)
        labels = read_labels(lab)
        got = anns.get(image_id, [])
        assert len(got) == len(labels)
        for (c, cx, cy, bw, bh), a in zip(labels, got):
            assert a["category_id"] == int(c) + 1 and a["iscrowd"] == 0
            x, y, aw, ah = a["bbox"]
            assert a["area"] == pytest.approx(aw * ah)
            # 6 printed decimals limit the agreement to ~1e-6 of the image size (<= 5e-4 px at 512)
            tol = 1e-6 * max(w, h)
            np.testing.assert_allclose([x, y, aw, ah], [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h],
                                       rtol=0, atol=tol)


def test_coco_json_loads_in_pycocotools(ds, capsys):
    from pycocotools.coco import COCO

    for split, count in (("train", TRAIN), ("valid", VALID)):
        coco = COCO(str(ds.train_json if split == "train" else ds.valid_json))
        assert len(coco.getImgIds()) == count
        n_labels = sum(len(read_labels(lab)) for _, lab, _ in listed(ds, split))
        ann_ids = coco.getAnnIds()
        assert len(ann_ids) == n_labels == len(set(ann_ids))
        for image_id in coco.getImgIds():
            name = coco.loadImgs(image_id)[0]["file_name"]
            assert int(Path(name).stem.rsplit("_", 1)[1]) == image_id  # Darknet's get_coco_image_id
        assert sorted(coco.getCatIds()) == list(range(1, 7))
    capsys.readouterr()


def _files(root: Path):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_and_overwrites(tmp_path):
    a = _files(make_dataset(tmp_path / "a", train=8, valid=4, seed=5).root)
    b = _files(make_dataset(tmp_path / "b", train=8, valid=4, seed=5).root)
    assert a == b and len(a) == 3 * 12 + 6  # photo, labels/ and the labels beside the photo, 12 times
    for k in a:  # the labels are the same in both trees' places
        if k.startswith("labels/"):
            assert a["images/" + k[len("labels/"):]] == a[k]
    c = _files(make_dataset(tmp_path / "c", train=8, valid=4, seed=6).root)
    assert set(c) == set(a)
    assert sum(a[k] != c[k] for k in a if k.endswith(".jpg")) == 12
    # regenerating smaller into an existing folder gives exactly the fresh result, no stale files
    with pytest.raises(UsageError, match="exists"):  # not without being asked, and nothing touched
        make_dataset(tmp_path / "a", train=5, valid=2, seed=5)
    assert _files(tmp_path / "a") == a
    make_dataset(tmp_path / "a", train=5, valid=2, seed=5, overwrite=True)
    assert _files(tmp_path / "a") == _files(make_dataset(tmp_path / "d", train=5, valid=2, seed=5).root)
    other = make_dataset(tmp_path / "e", train=2, valid=1, seed=5, name="blocks")
    assert other.data.name == "blocks.data" and (other.root / "images/valid/blocks_000003.jpg").is_file()
    assert read_data_config(other.data).as_dict()["names"] == "blocks.names"


def test_value_ranges_and_variety(ds):
    areas, aspects, rel_long, classes, counts = [], [], [], set(), []
    for w, h, labels in all_boxes(ds):
        assert 160 <= w <= 512 and 160 <= h <= 512
        counts.append(len(labels))
        assert len(labels) <= 6
        if not len(labels):
            continue
        assert np.all(labels[:, 0] == np.round(labels[:, 0])) and labels[:, 0].min() >= 0 and labels[:, 0].max() < 6
        assert labels[:, 1:].min() >= 0 and labels[:, 1:].max() <= 1 and labels[:, 3:].min() > 0
        boxes = np.stack([(labels[:, 1] - labels[:, 3] / 2) * w, (labels[:, 2] - labels[:, 4] / 2) * h,
                          (labels[:, 1] + labels[:, 3] / 2) * w, (labels[:, 2] + labels[:, 4] / 2) * h], 1)
        assert boxes.min() >= -1e-3 and boxes[:, 2].max() <= w + 1e-3 and boxes[:, 3].max() <= h + 1e-3
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        assert np.all(np.maximum(bw, bh) <= 0.6 * min(w, h) + 2)
        assert np.all(np.minimum(bw, bh) >= min(0.05 * min(w, h), 7) - 1e-3)
        areas += list(bw * bh)
        aspects += list(bw / bh)
        rel_long += list(np.maximum(bw, bh) / min(w, h))
        classes |= set(labels[:, 0].astype(int).tolist())
        for (i, p), (j, q) in itertools.combinations(enumerate(boxes), 2):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            assert inter / (bw[i] * bh[i] + bw[j] * bh[j] - inter) <= 0.35 + 1e-6
        # paint boxes in drawing order: each must keep at least half of its box visible
        ids = np.full((h, w), -1)
        ib = np.rint(boxes).astype(int)
        for k, (x1, y1, x2, y2) in enumerate(ib):
            ids[y1:y2, x1:x2] = k
        for k, (x1, y1, x2, y2) in enumerate(ib):
            assert (ids[y1:y2, x1:x2] == k).mean() >= 0.5 - 1e-9
    assert classes == set(range(6))
    assert max(areas) / min(areas) > 50 and min(rel_long) < 0.1 and max(rel_long) > 0.45
    assert max(aspects) > 2.5 and min(aspects) < 1 / 2.5 and max(aspects) <= 3.5 and min(aspects) >= 1 / 3.5
    assert sum(counts) / len(counts) > 2 and max(counts) == 6 and counts.count(0) <= 0.1 * len(counts)


@pytest.mark.parametrize("kwargs", [{"train": -1}, {"valid": -2}, {"min_side": 31}, {"min_side": 600},
                                    {"min_side": 300, "max_side": 200}, {"max_objects": 0},
                                    {"jpeg_quality": 101}, {"name": "a/b"}, {"name": ""}])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(DarknetPyError):
        make_dataset(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_out_dir_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError):
        make_dataset(tmp_path / "f", train=1, valid=1)
