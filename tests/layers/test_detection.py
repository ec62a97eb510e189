"""YOLOv1's ``[detection]`` head (src/detection_layer.c) on small generated cfgs.

- The forward (softmax per cell) against float64.
- The decode and the generic strict thresholds against a plain-Python ``get_detection_detections``,
  bit for bit, for several thresholds, including the raw (``softmax=0``) class values outside [0, 1]
  that YOLOv1 emits: the head's thresholds are not gated by objectness.
- The training keys are kept; refusals name the cfg line (and, for a wrong input size, both layers).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from darknet_py.graph import build_model, parse_network
from darknet_py.layers.detection import DetectionSpec
from tests.helpers.cfgs import fixture_cfg_text, with_keys
from tests.helpers.errors import expect_cfg_error
from tests.helpers.heads import F32, get_detection_detections
from tests.helpers.reference import candidates

def small(output: int = 52, softmax: int = 0, sqrt: int = 1) -> str:
    """tests/fixtures/cfg/yolov1-small.cfg with [connected] output and [detection] softmax, sqrt set."""
    text = with_keys(fixture_cfg_text("yolov1-small"), "connected", output=output)
    return with_keys(text, "detection", softmax=softmax, sqrt=sqrt)


def _line(text: str, pattern: str) -> int:
    return next(i + 1 for i, line in enumerate(text.split("\n")) if re.fullmatch(pattern, line))


# ------------------------------------------------------------------------------------ forward

@pytest.mark.parametrize("softmax", [0, 1])
def test_detection_forward_against_float64(softmax):
    nd = parse_network(small(output=52, softmax=softmax, sqrt=1).encode())
    layer = build_model(nd).layers[2]
    x = torch.randn(3, 52, 1, 1, generator=torch.Generator().manual_seed(softmax)) * 3
    with torch.no_grad():
        ours = layer(x).reshape(3, -1).double().numpy()
    ref = x.reshape(3, -1).double().numpy().copy()
    if softmax:  # softmax over the classes of each of the side*side cells, first block only
        cls = ref[:, :12].reshape(3, 4, 3)
        e = np.exp(cls - cls.max(-1, keepdims=True))
        ref[:, :12] = (e / e.sum(-1, keepdims=True)).reshape(3, 12)
    assert np.abs(ours - ref).max() <= 1e-6
    assert nd.shapes[2] == (52, 1, 1)


# ------------------------------------------------------------------------------------ decode and thresholds

def _synthetic_output(side, num, classes, seed):
    """A [detection] output with every case: class values in and out of [0, 1], negative scales."""
    g = np.random.default_rng(seed)
    cells = side * side
    cls = g.uniform(-0.4, 1.6, (cells, classes))
    cls[::3] = g.uniform(0, 1, (len(cls[::3]), classes))  # some cells entirely regular
    scale = g.uniform(-0.8, 1.3, cells * num)
    box = g.uniform(-0.2, 1.1, cells * num * 4)
    return np.concatenate([cls.ravel(), scale, box]).astype(F32)


@pytest.mark.parametrize("sqrt", [0, 1])
def test_decode_and_generic_thresholds_equal_get_detection_detections(sqrt):
    side, num, classes = 3, 2, 4
    spec = DetectionSpec(0, 1, classes, 4, side, num, False, bool(sqrt))
    flat = _synthetic_output(side, num, classes, sqrt)
    out = torch.from_numpy(flat).view(1, -1, 1, 1)
    boxes, obj, cls = spec.decode(out, 448, 448)
    rows = side * side * num
    assert boxes.shape == (1, rows, 4) and obj.shape == (1, rows) and cls.shape == (1, rows, classes)
    ref = get_detection_detections(flat, side, num, classes, bool(sqrt), -np.inf)
    assert np.array_equal(boxes[0].numpy(), np.array([d["box"] for d in ref], F32))
    # objectness is the box confidence, class values the raw p (softmax=0): Darknet's prob = scale * p
    assert np.array_equal(obj[0].numpy(), np.array([d["objectness"] for d in ref], F32))
    assert np.array_equal(cls[0].numpy(), flat[:side * side * classes].reshape(-1, 1, classes).repeat(
        num, 1).reshape(rows, classes))
    assert spec.gate_objectness is False
    naive_differs = False
    for thresh in (0.0, 0.05, 0.2, 0.5, 0.9, 1.2):
        darknet = np.array([d["prob"] for d in get_detection_detections(flat, side, num, classes, bool(sqrt), thresh)])
        # generic pipeline, boxes replaced by the row index to see which rows it keeps
        cand = candidates(torch.arange(rows, dtype=torch.float32)[:, None].expand(rows, 4), obj[0], cls[0], thresh,
                          gate=spec.gate_objectness)
        ours = np.zeros((rows, classes), F32)
        ours[cand.boxes[:, 0].long().numpy()] = cand.probs.numpy()
        assert np.array_equal(ours, darknet), thresh  # bit for bit: same float32 products, same set
        naive = candidates(boxes[0], torch.from_numpy(flat[36:54].copy()),
                           torch.from_numpy(flat[:36].copy()).view(9, 1, 4).expand(9, 2, 4).reshape(18, 4), thresh)
        naive_differs |= int((naive.probs > 0).sum()) != int((darknet > 0).sum())
    # the objectness gate of the other heads would drop boxes Darknet reports: the data exercises it
    assert naive_differs


# ------------------------------------------------------------------------------------ keys and refusals

def test_wrong_connected_size_names_both_layers(tmp_path):
    text = small(output=50, softmax=0, sqrt=1)
    expect_cfg_error(text, _line(text, r"\[detection\]"), "(layer 2)",
                     f"layer 1 [connected] (cfg line {_line(text, r'.connected.')})", "gives 50 values",
                     "2*2*((1+4)*2+3) = 52", "set output=52 there", path=tmp_path / "bad.cfg")


def test_detection_after_a_convolution_counts_values(tmp_path):
    # Darknet checks only the number of inputs: 2x2x13 from a convolution is 52 values too
    text = small(output=52, softmax=1, sqrt=0).replace("[connected]\noutput=52\nactivation=linear\n",
                                                       "[convolutional]\nfilters=13\nsize=1\nstride=8\n"
                                                       "activation=linear\n")
    assert parse_network(text.encode()).shapes[-2:] == [(13, 2, 2), (52, 1, 1)]
    bad = text.replace("filters=13", "filters=12")
    err = expect_cfg_error(bad, _line(bad, r"\[detection\]"), "layer 1 (cfg line", "gives 48 values (2x2x12)",
                           path=tmp_path / "bad.cfg")
    assert "set output" not in str(err)


@pytest.mark.parametrize("old, new, key, needles", [
    ("coords=4\n", "coords=2\n", "coords=2", ["coords=2", "only coords=4"]),
    ("coords=4\n", "", r"\[detection\]", ["coords=1 (Darknet default)", "only coords=4"]),
    ("softmax=0\n", "softmax=2\n", "softmax=2", ["softmax=2", "expected one of 0, 1"]),
    ("side=2\n", "side=0\n", "side=0", ["side=0", ">= 1"]),
    ("num=2\n", "num=0\n", "num=0", ["num=0", ">= 1"]),
    ("classes=3\n", "classes=0\n", "classes=0", ["classes=0", ">= 1"]),
    ("classes=3\n", "clases=3\n", "clases=3", ["unknown key 'clases'", "did you mean 'classes'"]),
    ("rescore=1\n", "rescore=1\nobject_scale=big\n", "object_scale=big", ["object_scale=big", "expected a number"]),
])
def test_detection_bad_values_name_the_line(tmp_path, old, new, key, needles):
    text = small(output=52, softmax=0, sqrt=1).replace(old, new)
    expect_cfg_error(text, _line(text, key), *needles, path=tmp_path / "bad.cfg")


def test_detection_training_keys_are_kept():
    text = small(output=52, softmax=0, sqrt=1) + ("jitter=.3\nobject_scale=2\nnoobject_scale=.5\nclass_scale=3\n"
                                                  "coord_scale=5\nforced=1\nrandom=1\nreorg=0\n"
                                                  "only_objectness=1\nmax=30\nresize=1.5\n")
    spec = parse_network(text.encode()).specs[-1]
    assert (spec.rescore, spec.jitter, spec.object_scale, spec.noobject_scale, spec.class_scale, spec.coord_scale,
            spec.forced, spec.random, spec.reorg, spec.only_objectness, spec.max_boxes, spec.resize) == \
        (True, 0.3, 2.0, 0.5, 3.0, 5.0, True, 1.0, False, True, 30, 1.5)
