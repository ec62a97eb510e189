"""A small, deterministic synthetic detection dataset ("shapes") in Darknet's on-disk layout.

It exists so that evaluation (``detector valid`` / ``map``) can be tested end to end without
downloading COCO, and so that a small YOLOv3-tiny-shaped model can be trained to a known accuracy.
Six classes that differ only by *shape* (never by colour) are drawn on textured backgrounds of
random size and aspect ratio; each shape touches all four sides of its box, so the tight
bounding box is the label. The output is byte-identical for the same arguments and seed.

Layout written by :func:`make_dataset` (``name="shapes"``)::

    shapes.data shapes.names train.txt valid.txt instances_train.json instances_valid.json
    images/{train,valid}/shapes_000001.jpg   labels/{train,valid}/shapes_000001.txt
    images/{train,valid}/shapes_000001.txt   (the same labels beside the photo)

Each photo's labels are written where both Darknet trees look: pjreddie's ``fill_truth_detection``
under ``labels/`` (``images`` -> ``labels``), AlexeyAB's ``replace_image_to_label`` beside the photo
(it maps only COCO's and VOC's own folder names).

This module uses numpy and OpenCV only (no torch), so it can also feed on-the-fly training data.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .checks import check_count, option_error
from .errors import DataError, UsageError
from .files import OutputPlan, exists_error, write_bytes

CLASSES: tuple[str, ...] = ("rectangle", "ellipse", "triangle", "cross", "ring", "diamond")

MAX_IOU = 0.35          # a new box may overlap each earlier box at most this much
MAX_COVERED = 0.5       # no box may be hidden by later boxes over more than this fraction
MIN_CONTRAST = 60.0     # mean |shape - what lies under it| on 0..255, so every object is visible
NEGATIVE_RATE = 0.03    # a few empty images teach the model that "nothing" is an answer
_EPS = 1e-9


@dataclass(frozen=True)
class SynthDataset:
    root: Path
    data: Path
    names: Path
    train_list: Path
    valid_list: Path
    train_json: Path
    valid_json: Path
    classes: tuple[str, ...]
    train_images: int
    valid_images: int


def make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A textured RGB float32 background (HxWx3, 0..255, whole numbers): a random blend of a
    gradient, low-frequency noise, stripes and a checkerboard, plus pixel grain."""
    yy, xx = np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]
    kinds = rng.permutation(4)[: rng.integers(1, 4)]
    weights = rng.dirichlet(np.ones(len(kinds)))
    # each part is colour0 + t * (colour1 - colour0) for a scalar map t; cv2.transform then mixes
    # all maps (and the grain) into RGB in one pass instead of many full-size numpy temporaries
    maps, mix = [], np.zeros((3, len(kinds) + 2), np.float32)
    for i, kind in enumerate(kinds):
        c0, c1 = rng.uniform(0, 255, (2, 3))
        angle = rng.uniform(0, np.pi)
        cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        if kind == 0:  # gradient across the whole image
            t = (xx * cos + yy * sin - min(0.0, width * cos)) / (abs(width * cos) + height * sin + 1)
        elif kind == 1:  # blobs: a tiny random grid upsampled smoothly
            gh, gw = (int(g) for g in rng.integers(2, 9, 2))
            t = cv2.resize(rng.random((gh, gw), dtype=np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        elif kind == 2:  # sine stripes: soft edges, so they do not look like rectangle outlines
            f = np.float32(2 * np.pi / rng.uniform(6, 60))
            t = 0.5 + 0.5 * np.sin(xx * (cos * f) + yy * (sin * f))
        else:  # checkerboard at reduced contrast: hard edges the model must learn to ignore
            cell = rng.uniform(8, 48)
            t = (np.floor(xx / cell) % 2 != np.floor(yy / cell) % 2) * np.float32(rng.uniform(0.2, 0.6))
        maps.append(np.asarray(t, np.float32))
        mix[:, i] = weights[i] * (c1 - c0)
        mix[:, -1] += weights[i] * c0
    maps.append(rng.random((height, width), dtype=np.float32) - np.float32(0.5))  # grain, grey
    mix[:, -2] = rng.uniform(0, 24)
    bg = cv2.transform(cv2.merge(maps), mix)
    # round now so that the pixels outside every shape equal this array exactly (tests rely on it)
    return np.clip(np.rint(bg, out=bg), 0, 255, out=bg)


def shape_mask(cls: int, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean (h, w) mask of class ``cls`` touching all four sides of its w x h box.

    Sides are odd, so u, v below hit exactly 0, 0.5 and 1 at the first, middle and last pixel
    centres: apexes, edge midpoints and ellipse extremes then land on real pixels, and the tight
    bounding box of the mask is the whole box (the label) without any special-casing.
    """
    u = np.linspace(-1.0, 1.0, w)[None, :]  # -1 at the left pixel centre, +1 at the right one
    v = np.linspace(-1.0, 1.0, h)[:, None]
    if cls == 0:  # rectangle
        return np.ones((h, w), bool)
    if cls == 1:  # ellipse
        return u * u + v * v <= 1 + _EPS
    if cls == 2:  # triangle, apex on one side, base along the opposite one
        side = int(rng.integers(4))
        if side < 2:
            m = np.abs(u) <= (v + 1) / 2 + _EPS  # apex at top-middle
            return m if side == 0 else m[::-1]
        m = np.abs(v) <= (u + 1) / 2 + _EPS  # apex at left-middle
        return m if side == 2 else m[:, ::-1]
    if cls == 3:  # plus sign; arm thickness k of the side is |u| <= k in -1..1 units
        k = rng.uniform(0.25, 0.45)
        return (np.abs(u) <= k + _EPS) | (np.abs(v) <= k + _EPS)
    if cls == 4:  # ring: a thick elliptical outline with the same thickness in pixels all round
        a, b = (w - 1) / 2, (h - 1) / 2
        t = rng.uniform(0.25, 0.45) * min(a, b)
        inner = (u * a / (a - t)) ** 2 + (v * b / (b - t)) ** 2 < 1 - _EPS
        return (u * u + v * v <= 1 + _EPS) & ~inner
    if cls == 5:  # diamond through the four edge midpoints
        return np.abs(u) + np.abs(v) <= 1 + _EPS
    raise UsageError(f"class {cls} out of range 0..{len(CLASSES) - 1}")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _covered(box: np.ndarray, later: list[np.ndarray]) -> float:
    """Fraction of integer ``box`` covered by the union of the ``later`` boxes (drawn on top)."""
    x1, y1, x2, y2 = box.astype(int)
    occ = np.zeros((y2 - y1, x2 - x1), bool)
    for b in later:
        bx1, by1, bx2, by2 = b.astype(int)
        occ[max(by1 - y1, 0):max(by2 - y1, 0), max(bx1 - x1, 0):max(bx2 - x1, 0)] = True
    return float(occ.mean())


def _odd(x: float) -> int:
    return 2 * round((x - 1) / 2) + 1


def _sample_box(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    short = min(width, height)
    # log-uniform long side: small and large objects equally often, not mostly large ones
    long_side = short * np.exp(rng.uniform(np.log(0.07), np.log(0.6)))
    other = min(long_side, max(long_side / np.exp(rng.uniform(0, np.log(3))), 0.05 * short, 7))
    bw, bh = (long_side, other) if rng.random() < 0.5 else (other, long_side)
    bw = min(max(_odd(bw), 7), width - (1 - width % 2))
    bh = min(max(_odd(bh), 7), height - (1 - height % 2))
    x1, y1 = rng.integers(0, width - bw + 1), rng.integers(0, height - bh + 1)
    return np.array([x1, y1, x1 + bw, y1 + bh], np.float64)


def render_image(rng: np.random.Generator, width: int, height: int, max_objects: int,
                 negative_rate: float = NEGATIVE_RATE, tries: int = 30
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene: (RGB uint8 HxWx3, boxes float64 (N, 4) pixel x1 y1 x2 y2, classes int64 (N,)).

    Boxes are pixel-edge coordinates: the shape covers columns x1 .. x2-1, so x2 - x1 is its width.
    The background is drawn first from ``rng`` (see :func:`make_background`); the pixels outside
    all boxes are exactly that background.
    """
    width, height = int(width), int(height)
    img = make_background(rng, width, height)
    n = 0 if rng.random() < negative_rate or max_objects < 1 else int(rng.integers(1, max_objects + 1))
    boxes: list[np.ndarray] = []
    for _ in range(n):
        for _ in range(tries):
            cand = _sample_box(rng, width, height)
            if all(_iou(b, cand) <= MAX_IOU and _covered(b, boxes[j + 1:] + [cand]) <= MAX_COVERED
                   for j, b in enumerate(boxes)):
                boxes.append(cand)
                break
    classes = rng.integers(0, len(CLASSES), len(boxes)).astype(np.int64)
    for box, cls in zip(boxes, classes):
        x1, y1, x2, y2 = box.astype(int)
        mask = shape_mask(int(cls), x2 - x1, y2 - y1, rng)
        patch = img[y1:y2, x1:x2]
        under = patch[mask][:: max(1, int(mask.sum()) // 2048)]  # a subsample is enough for a mean
        cands = rng.integers(0, 256, (16, 3)).astype(np.float32)
        contrast = np.abs(under[None] - cands[:, None]).mean(axis=(1, 2))
        ok = np.flatnonzero(contrast >= MIN_CONTRAST)
        colour = cands[ok[0] if ok.size else int(np.argmax(contrast))]
        # light texture: a shading ramp plus grain, small against MIN_CONTRAST
        ramp = np.linspace(-1, 1, x2 - x1, dtype=np.float32)[None, :, None] * rng.uniform(-15, 15)
        fill = colour + ramp + rng.normal(0, rng.uniform(0, 6), (y2 - y1, x2 - x1, 3)).astype(np.float32)
        patch[mask] = np.clip(np.rint(fill), 0, 255)[mask]
    out_boxes = np.array(boxes, np.float64).reshape(-1, 4)
    return img.astype(np.uint8), out_boxes, classes


def make_dataset(out_dir, *, train: int = 200, valid: int = 50, seed: int = 0, min_side: int = 160,
                 max_side: int = 512, max_objects: int = 6, jpeg_quality: int = 90,
                 name: str = "shapes", overwrite: bool = False) -> SynthDataset:
    """Write the dataset (see the module docstring) into ``out_dir`` and describe it. Files that
    exist already (a dataset's own ``train.txt``, an earlier synth run) are replaced, and an earlier,
    larger run's extra photos removed, only with ``overwrite``; without it they are refused before
    anything is written."""
    root = Path(out_dir)
    # the numbers first (UsageError naming the keyword), then the rest (DataError naming the folder)
    check_count("train", train, 0, what="training images")
    check_count("valid", valid, 0, what="validation images")
    check_count("seed", seed, 0)
    check_count("min_side", min_side, 32, what="the smallest image side")
    check_count("max_side", max_side, 32, what="the largest image side")
    if min_side > max_side:
        raise option_error("min_side", min_side, f"at most max_side={max_side}")
    check_count("max_objects", max_objects, 1, what="objects per image, at most")
    check_count("jpeg_quality", jpeg_quality, 0, 100)
    checks = [(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or "") is not None,
               f"name={name!r} must be letters, digits, '.', '_' or '-'"),
              (len(CLASSES) <= 11, "category_id = class + 1 matches Darknet's coco_ids only up to 11 classes")]
    for ok, msg in checks:
        if not ok:
            raise DataError(msg, os.fspath(root))
    if root.exists() and not root.is_dir():
        raise DataError("the dataset folder is a file", os.fspath(root))
    plan = OutputPlan(overwrite)
    stale: list[Path] = []
    for split, first, count in (("train", 1, train), ("valid", train + 1, valid)):
        keep = {f"{name}_{i:06d}" for i in range(first, first + count)}
        for d, ext in ((root / "images" / split, ".jpg"), (root / "images" / split, ".txt"),
                       (root / "labels" / split, ".txt")):
            # an earlier, larger run's photos would be left in the folders without being listed
            for p in sorted(d.glob(f"{name}_*{ext}")):
                if re.fullmatch(rf"{re.escape(name)}_\d+", p.stem) and p.stem not in keep:
                    if not overwrite:
                        raise exists_error(os.fspath(p), "a photo of an earlier synth run, which this one would "
                                                         "remove")
                    stale.append(p)
        for image_id in range(first, first + count):
            stem = f"{name}_{image_id:06d}"
            plan.add(root / "images" / split / f"{stem}.jpg", "a synthetic photo", named=False)
            plan.add(root / "images" / split / f"{stem}.txt", "a synthetic photo's labels", named=False)
            plan.add(root / "labels" / split / f"{stem}.txt", "a synthetic photo's labels", named=False)
        plan.add(root / f"{split}.txt", f"the {split} list", named=False)
        plan.add(root / f"instances_{split}.json", f"the {split} COCO annotations", named=False)
    plan.add(root / f"{name}.names", "the names file", named=False)
    plan.add(root / f"{name}.data", "the .data file", named=False)
    rng = np.random.default_rng(seed)
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
    out = {}
    for split, first, count in (("train", 1, train), ("valid", train + 1, valid)):
        img_dir, lab_dir = root / "images" / split, root / "labels" / split
        try:
            img_dir.mkdir(parents=True, exist_ok=True)
            lab_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the dataset folders: {exc.strerror or exc}", os.fspath(root)) from None
        for p in stale:
            if p.parent in (img_dir, lab_dir):
                p.unlink()
        images, anns, lines = [], [], []
        for image_id in range(first, first + count):
            w, h = (int(s) for s in rng.integers(min_side, max_side + 1, 2))
            rgb, boxes, classes = render_image(rng, w, h, max_objects)
            stem = f"{name}_{image_id:06d}"
            encoded, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                        [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not encoded:
                raise DataError("OpenCV could not encode a JPEG", os.fspath(img_dir / f"{stem}.jpg"))
            write_bytes(img_dir / f"{stem}.jpg", jpg.tobytes())
            rows = []
            for (x1, y1, x2, y2), c in zip(boxes, classes):
                vals = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
                rows.append(f"{c} " + " ".join(f"{v:.6f}" for v in vals) + "\n")
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(c) + 1,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
            write_bytes(lab_dir / f"{stem}.txt", "".join(rows).encode())
            write_bytes(img_dir / f"{stem}.txt", "".join(rows).encode())  # where AlexeyAB's tree looks
            images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": w, "height": h})
            lines.append(f"images/{split}/{stem}.jpg\n")
        # annotation ids restart per file: each json is a separate COCO ground truth
        coco = {"images": images, "annotations": anns, "categories": categories}
        out[split] = (root / f"{split}.txt", root / f"instances_{split}.json")
        write_bytes(out[split][0], "".join(lines).encode())
        write_bytes(out[split][1], (json.dumps(coco, separators=(",", ":")) + "\n").encode())
    names_path, data_path = root / f"{name}.names", root / f"{name}.data"
    write_bytes(names_path, "".join(c + "\n" for c in CLASSES).encode())
    write_bytes(data_path, (f"classes = {len(CLASSES)}\ntrain = train.txt\nvalid = valid.txt\n"
                       f"names = {name}.names\nbackup = backup/\neval = coco\n"
                       "annotations = instances_valid.json\n").encode())
    return SynthDataset(root, data_path, names_path, out["train"][0], out["valid"][0], out["train"][1],
                        out["valid"][1], CLASSES, train, valid)
