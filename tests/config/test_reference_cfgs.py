"""The reference cfgs (Darknet's own, in the reference folder) that must load: the yolov3 family without
a warning, with the layers, heads and head channels their text spells; yolov3-openimages' repeated
batch= with a warning; and every other reference cfg. Skipped without the reference folder.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from darknet_py.graph import parse_network

from tests.helpers.paths import REF, ref_path


def _ref(sub: str, name: str) -> Path:
    return ref_path(sub, "cfg", name)


def _ref_names(sub, pattern):
    folder = REF / sub / "cfg"
    return sorted(p.name for p in folder.glob(pattern)) if folder.is_dir() else []


# yolov3-openimages.cfg sets "batch" twice in [net] (an indented " batch=1" and "batch=64"): a
# warning, checked separately below.
SUPPORTED_REFS = [("pjreddie", n) for n in _ref_names("pjreddie", "yolov3*.cfg") if n != "yolov3-openimages.cfg"] + \
                 [("alexeyab", "yolov3-tiny_3l.cfg")]


def _sections(path: Path):
    return [(i + 1, m.group(1)) for i, line in enumerate(path.read_text().splitlines())
            if (m := re.match(r"\s*\[(\w+)\]", line))]


@pytest.mark.parametrize("sub, name", SUPPORTED_REFS or [("pjreddie", "yolov3.cfg")])
def test_reference_yolov3_cfgs_parse(sub, name):
    path = _ref(sub, name)
    sections = _sections(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nd = parse_network(path)
    assert len(nd.specs) == len(sections) - 1
    assert [s.line for s in nd.specs] == [line for line, _ in sections[1:]]
    yolo = [i - 1 for i, (_, kind) in enumerate(sections) if kind == "yolo"]
    assert nd.yolo_indices == yolo
    text = path.read_text()
    classes = int(re.search(r"^\s*classes\s*=\s*(\d+)", text, re.M).group(1))
    for i in yolo:
        assert nd.shapes[i][0] == len(nd.specs[i].mask) * (classes + 5)


def test_reference_yolov3_shapes():
    nd = parse_network(_ref("pjreddie", "yolov3.cfg"), width=416, height=416)
    assert nd.yolo_indices == [82, 94, 106]
    assert [nd.shapes[i] for i in nd.yolo_indices] == [(255, 13, 13), (255, 26, 26), (255, 52, 52)]
    tiny = parse_network(_ref("pjreddie", "yolov3-tiny.cfg"))
    assert tiny.yolo_indices == [16, 23] and len(tiny.specs) == 24


def test_reference_openimages_duplicate_batch():
    path = _ref("pjreddie", "yolov3-openimages.cfg")
    batch = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if re.match(r"\s*batch\s*=", line)]
    with pytest.warns(UserWarning, match=f":{batch[1]}:.*batch.*line {batch[0]}"):
        nd = parse_network(path)
    assert nd.yolo_specs[0].classes == 601 and nd.shapes[nd.yolo_indices[0]][0] == 3 * (601 + 5)


# Every reference cfg now loads; the families are run against OpenCV or float64 references in
# tests/parity/ and tests/layers/ (yolov1 to yolov4, resnet50), tests/config/test_project_cfgs.py (our
# yolov3 cfgs) and tests/test_classifier.py (darknet19, darknet53).
ALL_REFS = sorted({("pjreddie", n) for n in _ref_names("pjreddie", "*.cfg")} |
                  {("alexeyab", n) for n in _ref_names("alexeyab", "*.cfg")})


def test_reference_folder_has_the_families():
    if not REF.exists():
        pytest.skip("reference folder absent")
    names = {n for _, n in ALL_REFS}
    assert {"yolov1.cfg", "yolov2.cfg", "yolov3.cfg", "yolov4.cfg", "darknet53.cfg", "resnet50.cfg"} <= names


@pytest.mark.parametrize("sub, name", ALL_REFS or [pytest.param("-", "-", marks=pytest.mark.skip("no reference"))])
def test_every_reference_cfg_loads(sub, name):
    path = _ref(sub, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # yolov3-openimages repeats [net] keys (a warning, by design)
        nd = parse_network(path)
    assert len(nd.specs) == len(nd.sections) - 1
    assert all(min(shape) > 0 for shape in nd.shapes)
