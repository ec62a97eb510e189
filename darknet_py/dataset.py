"""Darknet's dataset layout beyond the list files: YOLO label files and ground truth, COCO ids
and annotations (the .data file, names and image lists are darknet_py.config's).

Pure data (numpy, no torch). Every problem is reported with the file and line it comes from,
and nothing is clamped or dropped silently:

- label files: one ``class cx cy w h`` row per object, normalised to the photo; a bad row is an
  error, or with ``on_bad="skip"`` it is left out and counted in a per-file report;
- a missing label file is a negative sample (Darknet's behaviour), counted and reported.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config.lists import ListedImage, quote_problems
from .config.text import read_text, text_lines
from .errors import DataError, UsageError
from .evaluation import GroundTruth

# Darknet's coco_ids (examples/detector.c): class index of the 80-class models -> COCO category id.
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)


# --------------------------------------------------------------------------- label files

_LABEL_DIRS = ("images", "JPEGImages", "raw")
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def label_path_for(image_path: str) -> str:
    """Where Darknet looks for an image's labels (``fill_truth_detection``, src/data.c).

    Darknet replaces the first ``images``, then ``JPEGImages``, then ``raw`` with ``labels`` and the
    image extension with ``.txt``. It matches substrings, so ``/data/drawings/`` would become
    ``/data/dlabelsings/``; we match whole folder names, which agrees on every layout that works
    in Darknet. Without such a folder the labels sit beside the image (Yolo_mark's layout).
    """
    parts = re.split(r"([/\\])", image_path)  # separators kept at odd indices
    for name in _LABEL_DIRS:
        for i in range(0, len(parts) - 1, 2):  # folders only, never the file name
            if parts[i] == name:
                parts[i] = "labels"
                break
    stem, ext = os.path.splitext(parts[-1])
    if ext.lower() not in _IMAGE_EXTENSIONS:
        raise DataError(f"cannot derive a label file: '{ext or '(no extension)'}' is not an image extension "
                        f"({', '.join(_IMAGE_EXTENSIONS)})", image_path)
    parts[-1] = stem + ".txt"
    return "".join(parts)


def listed_label_path(image: ListedImage) -> Path:
    """The label file of a listed image, derived from the path as listed and resolved like it."""
    rel = Path(label_path_for(image.listed))
    return rel if image.base is None or rel.is_absolute() else image.base / rel


@dataclass
class Labels:
    """One label file: boxes as Darknet reads them, normalised cx, cy, w, h."""

    path: Path
    boxes: np.ndarray                 # (N, 4) float64
    classes: np.ndarray               # (N,) int64
    rows: np.ndarray                  # (N,) line number of each box
    missing: bool = False             # no label file: a negative sample, as in Darknet (counted)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # bad rows left out (on_bad="skip")


_INT = re.compile(r"[+-]?\d+")


def _check_row(fields: list[str], classes: int) -> tuple[str | None, tuple[int, list[float]] | None]:
    if len(fields) != 5:
        return f"expected 5 values 'class cx cy w h', found {len(fields)}: '{' '.join(fields)}'", None
    if not _INT.fullmatch(fields[0]):
        return f"class id '{fields[0]}' is not an integer", None
    cls = int(fields[0])
    if not 0 <= cls < classes:
        return f"class id {cls} outside 0..{classes - 1} (classes={classes})", None
    values = []
    for name, text in zip(("cx", "cy", "w", "h"), fields[1:]):
        try:
            v = float(text)
        except ValueError:
            return f"{name} '{text}' is not a number", None
        if not math.isfinite(v):
            return f"{name} is {text}", None
        values.append(v)
    cx, cy, w, h = values
    for name, v in (("cx", cx), ("cy", cy)):
        if not 0.0 <= v <= 1.0:
            return f"{name} = {v:g} outside [0, 1] (coordinates are normalised to the image size)", None
    for name, v in (("w", w), ("h", h)):
        if not 0.0 < v <= 1.0:
            return f"{name} = {v:g} outside (0, 1] (coordinates are normalised to the image size)", None
    return None, (cls, values)


def read_labels(path, classes: int, on_bad: str = "error") -> Labels:
    """A YOLO label file. Bad rows raise DataError at their line, or are skipped and listed."""
    if on_bad not in ("error", "skip"):
        raise UsageError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
    p = Path(os.fspath(path))
    if not p.exists():
        return Labels(p, np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.int64), missing=True)
    boxes, cls, rows, skipped = [], [], [], []
    for lineno, raw in enumerate(text_lines(read_text(p, "label file"), False), start=1):
        fields = raw.split()
        if not fields:  # Darknet's fscanf skips blank lines, and so do we
            continue
        problem, row = _check_row(fields, classes)
        if problem is not None:
            if on_bad == "error":
                raise DataError(problem + " (on_bad='skip' leaves bad rows out)", os.fspath(p), lineno,
                                option=("on_bad", "skip"))
            skipped.append((lineno, problem))
            continue
        cls.append(row[0])
        boxes.append(row[1])
        rows.append(lineno)
    return Labels(p, np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(cls, np.int64),
                  np.asarray(rows, np.int64), skipped=skipped)


@dataclass
class LabelReport:
    """What reading a list's label files found: counts a user should see before trusting a number."""

    files: int = 0
    boxes: int = 0
    missing: list[Path] = field(default_factory=list)
    skipped: dict[Path, list[tuple[int, str]]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"labels: {self.files} files, {self.boxes} boxes"]
        if self.missing:
            shown = ", ".join(str(p) for p in self.missing[:3]) + (", ..." if len(self.missing) > 3 else "")
            out.append(f"labels: {len(self.missing)} images have no label file and count as negatives ({shown})")
        for p, rows in self.skipped.items():
            out.append(f"labels: {p}: skipped {quote_problems(rows, 'bad rows')}")
        return out


def scan_labels(images: Sequence[ListedImage], classes: int, on_bad: str = "error") -> tuple[list[Labels],
                                                                                             LabelReport]:
    """Read every listed image's label file up front, so a bad row fails before a long run."""
    report = LabelReport()
    out = []
    for image in images:
        labels = read_labels(listed_label_path(image), classes, on_bad)
        out.append(labels)
        if labels.missing:
            report.missing.append(labels.path)
        else:
            report.files += 1
        report.boxes += len(labels.classes)
        if labels.skipped:
            report.skipped[labels.path] = labels.skipped
    return out, report


def truth_from_labels(labels: Labels, image_id: int, file_name: str, width: int, height: int) -> GroundTruth:
    """Normalised label boxes -> photo pixel corners (no clipping: the labels say what they say)."""
    cx, cy, w, h = labels.boxes.T if len(labels.boxes) else np.zeros((4, 0))
    boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    return GroundTruth(image_id, file_name, int(width), int(height), boxes.reshape(-1, 4), labels.classes.copy())


# --------------------------------------------------------------------------- COCO ids and annotations


def category_ids(classes: int, coco: bool) -> list[int]:
    """Category id of each class: Darknet's 80->91 map for ``eval=coco``, otherwise class + 1."""
    if not coco:
        return list(range(1, classes + 1))
    if classes > len(COCO_IDS):
        raise DataError(f"eval=coco maps classes through Darknet's {len(COCO_IDS)}-entry coco_ids table; "
                        f"this model has classes={classes}")
    return list(COCO_IDS[:classes])


def coco_image_id(path: str) -> int:
    """Darknet's ``get_coco_image_id``: the number after the last '_' (or '/') of the path."""
    name = path.replace("\\", "/")
    tail = name[max(name.rfind("/"), name.rfind("_")) + 1:]
    m = re.match(r"\d+", tail)
    if not m:
        # Darknet's atoi would give 0 to every such file: results nobody can evaluate.
        raise DataError("cannot take a COCO image id from the file name: Darknet reads the number after the "
                        "last '_' (COCO_val2014_000000000042.jpg -> 42); name a COCO json with "
                        "'annotations =' in the .data file to take ids from there", path)
    return int(m.group())


@dataclass
class CocoAnnotations:
    """A COCO ``instances_*.json``: images by file name, boxes by image id."""

    path: Path
    images: dict[str, dict]                  # file name (basename) -> {"id", "width", "height"}
    annotations: dict[int, list[dict]]       # image id -> its annotations
    categories: dict[int, str]               # category id -> name

    def image(self, file_path: str) -> dict:
        name = Path(file_path).name
        if name not in self.images:
            raise DataError(f"image '{name}' is not in the annotations ({len(self.images)} images)",
                            os.fspath(self.path))
        return self.images[name]


def read_coco_annotations(path) -> CocoAnnotations:
    spath = os.fspath(path)
    try:
        doc = json.loads(read_text(path, "COCO annotation file"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", spath, exc.lineno) from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations",
                                                                                    "categories")):
        raise DataError("expected a COCO object with 'images', 'annotations' and 'categories' lists", spath)
    images: dict[str, dict] = {}
    try:
        for im in doc["images"]:
            name = Path(im["file_name"]).name
            if name in images:
                raise DataError(f"file name '{name}' appears twice in 'images'", spath)
            images[name] = {"id": int(im["id"]), "width": int(im["width"]), "height": int(im["height"])}
        categories = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        known = {im["id"] for im in images.values()}
        annotations: dict[int, list[dict]] = {}
        for i, ann in enumerate(doc["annotations"]):
            bbox = [float(v) for v in ann["bbox"]]
            where = f"annotation {i} (id {ann.get('id')})"
            if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
                raise DataError(f"{where}: bbox {ann['bbox']} is not [x, y, w, h] with w, h >= 0", spath)
            if int(ann["category_id"]) not in categories:
                raise DataError(f"{where}: category_id {ann['category_id']} is not in 'categories'", spath)
            if int(ann["image_id"]) not in known:
                raise DataError(f"{where}: image_id {ann['image_id']} is not in 'images'", spath)
            area = float(ann.get("area", bbox[2] * bbox[3]))
            annotations.setdefault(int(ann["image_id"]), []).append(
                {"bbox": bbox, "category_id": int(ann["category_id"]), "area": area,
                 "iscrowd": bool(ann.get("iscrowd", 0))})
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"malformed COCO entry ({type(exc).__name__}: {exc})", spath) from None
    return CocoAnnotations(Path(spath), images, annotations, categories)


def truth_from_coco(coco: CocoAnnotations, file_path: str, class_of: dict[int, int]) -> GroundTruth:
    """An image's COCO annotations as GroundTruth; crowd regions are kept as ignored truths."""
    im = coco.image(file_path)
    anns = coco.annotations.get(im["id"], [])
    for ann in anns:
        if ann["category_id"] not in class_of:
            raise DataError(f"category {ann['category_id']} ({coco.categories[ann['category_id']]}) has no class "
                            "in this model under the category map in use", os.fspath(coco.path))
    boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                      for a in anns], np.float64).reshape(-1, 4)
    return GroundTruth(im["id"], Path(file_path).name, im["width"], im["height"], boxes,
                       np.array([class_of[a["category_id"]] for a in anns], np.int64),
                       areas=np.array([a["area"] for a in anns], np.float64),
                       ignore=np.array([a["iscrowd"] for a in anns], bool))


__all__ = ["COCO_IDS", "CocoAnnotations", "LabelReport", "Labels", "category_ids", "coco_image_id", "label_path_for",
           "listed_label_path", "read_coco_annotations", "read_labels", "scan_labels", "truth_from_coco",
           "truth_from_labels"]
