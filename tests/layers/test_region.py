"""``[region]`` (pjreddie/darknet, YOLOv2 / YOLO9000) on small generated networks, against float64
references written from Darknet's C (src/region_layer.c ``forward_region_layer`` /
``get_region_detections`` / ``correct_region_boxes``, src/tree.c, src/box.c ``do_nms_sort``, in
tests/helpers/heads.py), never from darknet_py's code.

- The activations and the decode of every softmax / background variant; ``detect`` end to end.
- The YOLO9000 tree (OpenCV refuses trees): its group softmax, the hierarchy's class choice, detect.
- Refusals with the cfg line.
(The reference YOLOv2 networks against OpenCV: tests/parity/test_yolov2.py.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.graph import parse_network
from darknet_py.transforms import letterbox
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.heads import (NMS, REGION_SIZE, THRESH, TREE, Tree, assert_same_region_detections,
                                 region_darknet_boxes, region_detections, region_forward, small_region_cfg,
                                 small_region_model)


# ------------------------------------------------------------------------------------ variants

@pytest.mark.parametrize("region", ["softmax=1\n", "softmax=0\n", "softmax=1\nbackground=1\n",
                                    "softmax=0\nbackground=1\n"])
def test_region_activations_and_decode_against_float64(region, photo_rgb):
    classes, num = 6, 2
    # a 96x64 network: a 24x16 grid, so x/w and y/h (and the anchors' w/h) cannot be swapped unseen
    model, x = small_region_model(small_region_cfg(classes, region, num, width=96, height=64), photo_rgb,
                                  obj_shift=0.0, cls_std=1.5)
    assert model.netdef.shapes[-1][1:] == (16, 24)
    spec = model.head_specs[0]
    background = "background=1" in region
    softmax = "softmax=1" in region
    with torch.no_grad():
        raw = model(x, raw=True)[0][0].double().numpy()
        out = model(x)[0]
        boxes, obj, probs = spec.decode(out, 96, 64)
    ref_out = region_forward(raw, num, classes, softmax=softmax, background=background)
    np.testing.assert_allclose(out[0].numpy(), ref_out, rtol=2e-6, atol=2e-6)
    for thresh in (0.0, 0.3, 0.6):
        ref = region_detections(ref_out, num, classes, spec.anchors, thresh, background=background)
        np.testing.assert_allclose(boxes[0].numpy(), [d[0] for d in ref], rtol=1e-5, atol=1e-6)
        scores = obj[0, :, None] * probs[0]
        np.testing.assert_allclose(scores.numpy(), [d[3] for d in ref], rtol=1e-5, atol=1e-6)
        # the generic pipeline's strict comparisons keep exactly get_region_detections' non-zero probs
        keep = (obj[0, :, None] > thresh) & (scores > thresh)
        ref_keep = np.array([d[2] for d in ref]) > 0
        assert np.array_equal(keep.numpy(), ref_keep)
        assert ref_keep.any() and (thresh == 0 or not ref_keep.all())
    if background:
        assert torch.equal(obj, torch.ones_like(obj))


def test_region_detect_end_to_end_small(photo_rgb):
    classes, num = 6, 3
    model, x = small_region_model(small_region_cfg(classes, "softmax=1\n", num, width=64, height=96), photo_rgb,
                                  seed=2, cls_std=4.0)
    spec = model.head_specs[0]
    with torch.no_grad():
        raw = model(x, raw=True)[0][0].double().numpy()
    info = letterbox(photo_rgb, 64, 96)[1]
    ref_out = region_forward(raw, num, classes)
    ref = region_darknet_boxes(region_detections(ref_out, num, classes, spec.anchors, THRESH), info, NMS)
    assert len(ref) >= 3
    assert_same_region_detections(darknet_py.detect(model, photo_rgb, THRESH, NMS), ref, 1e-5)


# ------------------------------------------------------------------------------------ YOLO9000 tree

def _tree_cfg(tmp_path, extra="") -> str:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "small.tree").write_text(TREE)
    text = small_region_cfg(14, f"softmax=1\ntree=data/small.tree\nmap=data/never-read.map\n{extra}", num=3)
    (tmp_path / "cfg").mkdir(exist_ok=True)
    cfg = tmp_path / "cfg" / "tree.cfg"  # Darknet layout: cfg/ and data/ side by side
    cfg.write_text(text)
    return cfg


def test_tree_head_and_decode_against_float64(tmp_path, photo_rgb):
    cfg = _tree_cfg(tmp_path)
    model, x = small_region_model(parse_network(cfg), photo_rgb, seed=3, obj_shift=0.0, cls_std=2.5)
    spec = model.head_specs[0]
    assert spec.map == "data/never-read.map" and spec.hier_thresh == 0.5
    tree = Tree(TREE)
    with torch.no_grad():
        raw = model(x, raw=True)[0][0].double().numpy()
        out = model(x)[0]
    ref_out = region_forward(raw, 3, 14, tree=tree)
    np.testing.assert_allclose(out[0].numpy(), ref_out, rtol=2e-6, atol=2e-6)
    ours64 = out[0].double().numpy()
    trace = []
    for hier in (0.5, 0.2, 0.05, 0.01):
        spec.hier_thresh = hier
        with torch.no_grad():
            boxes, obj, probs = spec.decode(out, REGION_SIZE, REGION_SIZE)
        # class choice: the C's hierarchy on our own l.output (in float64), so near-ties cannot flip it
        ref = region_detections(ours64, 3, 14, spec.anchors, 0.0, tree=tree, hier_thresh=hier, trace=trace)
        assert probs[0].argmax(1).tolist() == [int(np.argmax(d[3])) for d in ref]
        assert torch.equal(probs[0].sum(1), torch.ones(len(ref)))
        np.testing.assert_allclose(boxes[0].numpy(), [d[0] for d in ref], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(obj[0].numpy(), [d[1] for d in ref], rtol=1e-5, atol=1e-6)
    assert {"leaf", "root", "parent"} <= set(trace)  # every way out of hierarchy_top_prediction was taken


def test_tree_detect_end_to_end(tmp_path, photo_rgb):
    cfg = _tree_cfg(tmp_path)
    model, x = small_region_model(parse_network(cfg), photo_rgb, seed=4, obj_shift=-0.5, cls_std=2.5)
    spec = model.head_specs[0]
    info = letterbox(photo_rgb, REGION_SIZE, REGION_SIZE)[1]
    with torch.no_grad():
        out = model(x)[0][0].double().numpy()
    ref = region_darknet_boxes(region_detections(out, 3, 14, spec.anchors, THRESH, tree=Tree(TREE)), info, NMS)
    assert len(ref) >= 3 and len({c for c, _, _ in ref}) >= 2
    assert_same_region_detections(darknet_py.detect(model, photo_rgb, THRESH, NMS), ref, 1e-5)


# ------------------------------------------------------------------------------------ refusals

def test_filters_mismatch_names_both_layers():
    text = small_region_cfg(6, "softmax=1\n").replace("filters=22", "filters=21")
    conv_line = [i + 1 for i, line in enumerate(text.splitlines()) if line == "[convolutional]"][-1]
    err = expect_cfg_error(text, line_of(text, "[region]"), f"layer 2 (cfg line {conv_line})", "outputs 21 channels",
                           "num*(coords+1+classes)", "2*(4+1+6) = 22", "filters=22")
    assert "[region] (layer 3)" in str(err)


@pytest.mark.parametrize("region, line_text, needles", [
    ("softmax=1\nnum=3\n", "anchors=1.5,2.0, 3.2,2.5", ["anchors holds 4 numbers but num=3", "2*num = 6"]),
    ("softmax=1\ncoords=5\n", "coords=5", ["coords=5 is not supported"]),
    ("softmax=2\n", "softmax=2", ["softmax=2", "expected one of 0, 1"]),
    ("softmax=1\nfoo=1\n", "foo=1", ["unknown key 'foo'"]),
    ("softmax=1\nbias_macth=1\n", "bias_macth=1", ["unknown key 'bias_macth'", "did you mean 'bias_match'"]),
    ("softmax=1\nbackground=1\ntree=x.tree\n", "background=1", ["background=1 with tree= is not supported"]),
    ("softmax=1\ntree=missing.tree\n", "tree=missing.tree", ["tree=missing.tree: file not found"]),
])
def test_region_refusals(region, line_text, needles):
    text = small_region_cfg(6, region)
    if "num=3" in region:  # one [region] num: drop the generated num=2
        text = text.replace("num=2\n", "", 1).replace("filters=22", "filters=33")
    expect_cfg_error(text, line_of(text, line_text), *needles)


def test_region_anchors_count_with_darknet_default_num():
    text = small_region_cfg(6, "softmax=1\n").replace("num=2\n", "").replace("filters=22", "filters=11")
    expect_cfg_error(text, line_of(text, "anchors=1.5,2.0, 3.2,2.5"),
                     "anchors holds 4 numbers but num=1 (Darknet's default", "2*num = 2")


def test_region_anchors_must_be_positive():
    text = small_region_cfg(6, "softmax=1\n").replace("anchors=1.5,2.0, 3.2,2.5", "anchors=1.5,2.0,-3.2,2.5")
    expect_cfg_error(text, line_of(text, "anchors=1.5,2.0,-3.2,2.5"), "anchors must be positive")


def test_region_classes_required():
    text = small_region_cfg(6, "softmax=1\n").replace("classes=6\n", "")
    expect_cfg_error(text, line_of(text, "[region]"), "missing required key 'classes'")
