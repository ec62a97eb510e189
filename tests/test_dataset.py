"""Darknet's dataset layout (darknet_py.dataset): where an image's label file is, label files and their
errors, ground truth from labels and from COCO annotations, COCO ids. The .data, .names and image-list
files are tested in tests/config/test_data.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

from darknet_py.config.lists import read_image_list
from darknet_py.dataset import (COCO_IDS, category_ids, coco_image_id, label_path_for, listed_label_path,
                                read_coco_annotations, read_labels, scan_labels, truth_from_coco, truth_from_labels)
from darknet_py.errors import DataError

from tests.helpers.config import touch


# --------------------------------------------------------------------------- label paths and files


@pytest.mark.parametrize("image, label", [
    ("coco/images/val2014/COCO_val2014_000000000042.jpg", "coco/labels/val2014/COCO_val2014_000000000042.txt"),
    ("VOCdevkit/VOC2007/JPEGImages/000001.jpg", "VOCdevkit/VOC2007/labels/000001.txt"),
    ("/x/raw/img.png", "/x/labels/img.txt"),
    ("/x/images/raw/img.JPEG", "/x/labels/labels/img.txt"),  # both replacements apply, as in Darknet
    ("/data/drawings/images/a.jpg", "/data/drawings/labels/a.txt"),  # whole folder names only
    ("/data/myimages/b.jpeg", "/data/myimages/b.txt"),  # no images folder: labels beside the image
    ("C:\\set\\images\\c.bmp", "C:\\set\\labels\\c.txt"),
    ("images/images/d.jpg", "labels/images/d.txt"),  # first occurrence only
])
def test_label_path_darknet_rule(image, label):
    assert label_path_for(image) == label


def test_label_path_unknown_extension():
    with pytest.raises(DataError, match="'.gif' is not an image extension"):
        label_path_for("images/a.gif")


def test_labels_read_crlf_blank_lines(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"0 0.5 0.5 0.2 0.4\r\n\r\n 2 1 0 1 1e-3 \r\n")
    lab = read_labels(p, classes=3)
    assert lab.classes.tolist() == [0, 2] and lab.rows.tolist() == [1, 3]
    np.testing.assert_array_equal(lab.boxes, [[0.5, 0.5, 0.2, 0.4], [1, 0, 1, 1e-3]])


@pytest.mark.parametrize("row, pattern", [
    ("0 0.5 0.5 0.2", r"expected 5 values 'class cx cy w h', found 4"),
    ("0 0.5 0.5 0.2 0.2 0.9", r"expected 5 values .* found 6"),
    ("1.0 0.5 0.5 0.2 0.2", r"class id '1.0' is not an integer"),
    ("3 0.5 0.5 0.2 0.2", r"class id 3 outside 0..2 \(classes=3\)"),
    ("-1 0.5 0.5 0.2 0.2", r"class id -1 outside"),
    ("0 1.2 0.5 0.2 0.2", r"cx = 1.2 outside \[0, 1\]"),
    ("0 0.5 -0.1 0.2 0.2", r"cy = -0.1 outside"),
    ("0 0.5 0.5 0 0.2", r"w = 0 outside \(0, 1\]"),
    ("0 0.5 0.5 0.2 -0.2", r"h = -0.2 outside"),
    ("0 0.5 0.5 0.2 1.5", r"h = 1.5 outside"),
    ("0 nan 0.5 0.2 0.2", r"cx is nan"),
    ("0 0.5 0.5 inf 0.2", r"w is inf"),
    ("0 0.5 abc 0.2 0.2", r"cy 'abc' is not a number"),
])
def test_bad_label_rows_error_with_line(tmp_path, row, pattern):
    p = tmp_path / "bad.txt"
    p.write_text(f"0 0.5 0.5 0.1 0.1\n{row}\n")
    with pytest.raises(DataError, match=r"bad.txt:2: " + pattern):
        read_labels(p, classes=3)
    lab = read_labels(p, classes=3, on_bad="skip")  # never clamped: left out and reported
    assert lab.classes.tolist() == [0] and lab.skipped[0][0] == 2


def test_missing_label_files_are_negatives_counted(tmp_path):
    touch(tmp_path / "images" / "a.jpg")
    touch(tmp_path / "images" / "b.jpg")
    touch(tmp_path / "labels" / "a.txt", b"0 0.5 0.5 0.5 0.5\n1 0.5 0.5 0.1 0.1\n5 0 0 0 0\n")
    lst = tmp_path / "list.txt"
    lst.write_text("images/a.jpg\nimages/b.jpg\n")
    images = read_image_list(lst)
    assert listed_label_path(images[0]) == tmp_path / "labels" / "a.txt"
    with pytest.raises(DataError, match=r"a.txt:3: class id 5"):
        scan_labels(images, classes=2)
    labels, report = scan_labels(images, classes=2, on_bad="skip")
    assert [len(lab.classes) for lab in labels] == [2, 0] and labels[1].missing
    assert report.files == 1 and report.boxes == 2 and report.missing == [tmp_path / "labels" / "b.txt"]
    text = "\n".join(report.lines())
    assert "1 images have no label file" in text and "skipped 1 bad rows: line 3" in text


def test_truth_from_labels_pixels():
    from darknet_py.dataset import Labels

    lab = Labels(None, np.array([[0.5, 0.25, 0.5, 0.5]]), np.array([1]), np.array([1]))
    gt = truth_from_labels(lab, 7, "a.jpg", 200, 100)
    np.testing.assert_allclose(gt.boxes, [[50, 0, 150, 50]])
    assert gt.image_id == 7 and gt.classes.tolist() == [1] and (gt.width, gt.height) == (200, 100)


# --------------------------------------------------------------------------- COCO ids and json


def test_coco_ids_table_is_the_80_coco_categories():
    # COCO 2014/2017 category ids: 1..90 without the 10 ids the dataset never used.
    unused = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    assert list(COCO_IDS) == [i for i in range(1, 91) if i not in unused]
    assert category_ids(80, coco=True)[-1] == 90 and category_ids(3, coco=False) == [1, 2, 3]
    with pytest.raises(DataError, match="coco_ids table"):
        category_ids(81, coco=True)


@pytest.mark.parametrize("path, image_id", [
    ("data/coco/images/val2014/COCO_val2014_000000000042.jpg", 42),
    ("/coco/val2017/000000000139.jpg", 139),
    ("2007_000027.jpg", 27),
    ("shapes_000201.jpg", 201),
])
def test_coco_image_id_darknet_rule(path, image_id):
    assert coco_image_id(path) == image_id


def test_coco_image_id_without_number_is_an_error():
    with pytest.raises(DataError, match="cannot take a COCO image id"):
        coco_image_id("data/dog.jpg")


def test_read_coco_annotations(tmp_path):
    doc = {"images": [{"id": 42, "file_name": "x/COCO_val2014_000000000042.jpg", "width": 640, "height": 480}],
           "annotations": [{"id": 1, "image_id": 42, "category_id": 18, "bbox": [10, 20, 30, 40], "area": 900.5,
                            "iscrowd": 0},
                           {"id": 2, "image_id": 42, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1}],
           "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}
    p = tmp_path / "instances.json"
    p.write_text(json.dumps(doc))
    coco = read_coco_annotations(p)
    class_of = {c: i for i, c in enumerate(COCO_IDS)}
    gt = truth_from_coco(coco, "images/COCO_val2014_000000000042.jpg", class_of)
    assert gt.image_id == 42 and gt.classes.tolist() == [16, 0]
    np.testing.assert_allclose(gt.boxes, [[10, 20, 40, 60], [0, 0, 5, 5]])
    assert gt.areas.tolist() == [900.5, 25.0] and gt.ignore.tolist() == [False, True]
    with pytest.raises(DataError, match="'other.jpg' is not in the annotations"):
        truth_from_coco(coco, "other.jpg", class_of)
    with pytest.raises(DataError, match="category 18 \\(dog\\) has no class"):
        truth_from_coco(coco, "COCO_val2014_000000000042.jpg", {1: 0})
    doc["annotations"][0]["bbox"] = [1, 2, -3, 4]
    p.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="bbox .* is not"):
        read_coco_annotations(p)
    p.write_text('{"images": [\n}')
    with pytest.raises(DataError, match="instances.json:2: invalid JSON"):
        read_coco_annotations(p)
