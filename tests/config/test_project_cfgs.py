"""Our cfg/ files define the same networks as Darknet's reference cfgs."""
from __future__ import annotations

import dataclasses

import pytest

from darknet_py.config.names import read_names
from darknet_py.graph import build_model, parse_network
from darknet_py.weights import count_floats

from tests.helpers.paths import ROOT, ref_path

# Our [net] sections are set for inference; these keys may differ from the training headers.
INFERENCE_KEYS = {"batch", "subdivisions", "width", "height"}


def _layers(netdef):
    return [{k: v for k, v in dataclasses.asdict(s).items() if k != "line"} | {"kind": type(s).__name__}
            for s in netdef.specs]


@pytest.mark.parametrize("name", ["yolov3", "yolov3-tiny", "yolov3-spp"])
def test_same_network_as_reference(name):
    ours = parse_network(ROOT / "cfg" / f"{name}.cfg")
    ref = parse_network(ref_path("pjreddie", "cfg", f"{name}.cfg"), width=ours.net.width, height=ours.net.height)
    assert _layers(ours) == _layers(ref)
    assert ours.shapes == ref.shapes
    assert ours.net.channels == ref.net.channels
    ours_train = {k: v for k, v in ours.net.training.items() if k not in INFERENCE_KEYS}
    ref_train = {k: v for k, v in ref.net.training.items() if k not in INFERENCE_KEYS}
    assert ours_train == ref_train
    assert count_floats(build_model(ours)) == count_floats(build_model(ref))


def test_yolov3_weights_size_is_the_official_files():
    # 248,007,048 bytes is the size of the published yolov3.weights (20-byte header).
    assert 20 + 4 * count_floats(build_model(ROOT / "cfg" / "yolov3.cfg")) == 248_007_048


def test_coco_names_match_reference():
    ours = read_names(ROOT / "cfg" / "coco.names", 80)
    assert ours == read_names(ref_path("pjreddie", "data", "coco.names"), 80)
    assert ours[0] == "person" and ours[16] == "dog"
