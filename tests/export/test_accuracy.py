"""mAP of a converted model: darknet_py's own `detector map` with the runner in the model's place."""
from __future__ import annotations

import math

import pytest
import torch

import darknet_py
from darknet_py.export.accuracy import compare_accuracy, evaluate_runner
from darknet_py.synth import make_dataset
from darknet_py.validate import detector_map
from tests.helpers.paths import ROOT

CFG = ROOT / "cfg" / "yolov3-tiny-shapes.cfg"
WEIGHTS = ROOT / "weights" / "yolov3-tiny-shapes.weights"

pytest.importorskip("pycocotools", reason="COCO AP is computed by pycocotools")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    data = make_dataset(tmp_path_factory.mktemp("acc") / "d", train=0, valid=8, seed=7, min_side=96,
                        max_side=200).data
    return darknet_py.load(CFG, WEIGHTS), data


def torch_runner(model):
    def run(x):
        with torch.inference_mode():
            return [o.numpy() for o in model(torch.from_numpy(x))]
    return run


def test_model_as_its_own_runner_is_detector_map(shapes):
    model, data = shapes
    # detector map as the command runs it: its own load, batch 8, worker processes
    ref = detector_map(data, CFG, WEIGHTS, batch=8, workers=1).report
    assert ref.num_detections > 0 and ref.map > 0.3  # a meaningful set: the model finds the shapes
    for got in (evaluate_runner(model, torch_runner(model), data), evaluate_runner(model, None, data, batch=3)):
        assert got.map50 == ref.map
        assert got.coco_ap == ref.coco.AP and not math.isnan(got.coco_ap)
        assert got.detections == ref.num_detections and got.images == 8


def test_a_broken_runner_loses_map_and_limit_takes_spread_photos(shapes):
    model, data = shapes

    def wide(x):  # every box twice as wide: IoU with the truth falls below .5 for most
        outs = [o.copy() for o in torch_runner(model)(x)]
        for o, spec in zip(outs, model.head_specs):
            o[:, 2::5 + spec.classes] += 0.7
        return outs
    cmp = compare_accuracy(model, wide, data, limit=5)
    assert cmp.before.images == cmp.after.images == 5
    assert cmp.map50_drop > 20
    assert cmp.before.map50 == detector_map(data, None, None, model=model, limit=5).report.map
    assert any("change" in line for line in cmp.lines())
