"""The model darknet-py ships: it finds the objects of the sample photo, whose truth the
generator wrote (data/shapes.txt), with no download."""
from __future__ import annotations

import torch

import darknet_py
from darknet_py.boxes import iou_matrix_cxcywh, xyxy_to_cxcywh
from darknet_py.config.names import read_names
from darknet_py.dataset import read_labels
from darknet_py.imageio import load_image
from darknet_py.synth import CLASSES
from tests.helpers.paths import ROOT

CFG = ROOT / "cfg" / "yolov3-tiny-shapes.cfg"
WEIGHTS = ROOT / "weights" / "yolov3-tiny-shapes.weights"


def test_shipped_weights_fit_the_cfg_and_the_size_limit():
    model = darknet_py.build_model(CFG).load_weights(WEIGHTS, strict=True)
    assert WEIGHTS.stat().st_size < 10 * 2**20
    # trained for the cfg's whole schedule: max_batches x batch images
    assert model.header.seen == 8000 * 64
    assert read_names(ROOT / "cfg" / "shapes.names", model.netdef.classes) == list(CLASSES)


def test_shipped_model_finds_every_object_of_the_sample():
    model = darknet_py.load(CFG, WEIGHTS)
    dets = darknet_py.detect(model, ROOT / "data" / "shapes.jpg", thresh=0.5)
    _, meta = load_image(ROOT / "data" / "shapes.jpg")
    truth = read_labels(ROOT / "data" / "shapes.txt", classes=6)
    t = torch.from_numpy(truth.boxes).float() * torch.tensor([meta.width, meta.height] * 2)
    iou = iou_matrix_cxcywh(t, xyxy_to_cxcywh(dets.boxes))
    assert len(dets) == len(truth.classes) == 6
    for i, cls in enumerate(truth.classes.tolist()):
        j = int(iou[i].argmax())
        assert iou[i, j] > 0.6 and int(dets.classes[j]) == cls, (i, cls, iou[i].tolist(), dets.classes.tolist())
