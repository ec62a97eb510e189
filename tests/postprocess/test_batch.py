"""darknet_py.postprocess.batch: the batch-wide post-processing (thresholds, box correction, NMS for all
photos at once) against the per-image oracle (tests.helpers.reference.postprocess_per_image), bit for
bit; and detect_batch's photos against each photo detected alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.detector import detect, detect_batch
from darknet_py.layers.head import decode_heads
from darknet_py.postprocess import postprocess, postprocess_decoded
from darknet_py.transforms import letterbox
from tests.helpers.detections import assert_identical
from tests.helpers.models import random_model
from tests.helpers.paths import ROOT
from tests.helpers.reference import postprocess_per_image

# These tests check numbers, not speed: one thread keeps the file fast on a busy 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("thresh,nms", [(0.5, 0.45), (0.25, 0.45), (0.1, 0.3), (0.3, 0.0)])
def test_batched_postprocess_identical(tiny, tiny_outputs, thresh, nms):
    _, infos, outs = tiny_outputs
    want = postprocess_per_image(tiny, outs, infos, thresh, nms)
    got = postprocess(tiny, outs, infos, thresh, nms)
    assert sum(len(d) for d in want) >= 20
    assert_identical(want, got)


@pytest.mark.parametrize("kind,beta", [("greedynms", 0.6), ("diounms", 0.9)])
def test_batched_postprocess_identical_diou(tiny, tiny_outputs, kind, beta):
    _, infos, outs = tiny_outputs
    last = tiny.head_specs[-1]
    old = last.nms_kind, last.beta_nms
    try:
        last.nms_kind, last.beta_nms = kind, beta
        want = postprocess_per_image(tiny, outs, infos, 0.25, 0.45)
        got = postprocess(tiny, outs, infos, 0.25, 0.45)
    finally:
        last.nms_kind, last.beta_nms = old
    assert sum(len(d) for d in want) >= 30
    assert_identical(want, got)


def test_batched_postprocess_custom_photo_boxes_and_subsets(tiny, tiny_outputs):
    _, infos, outs = tiny_outputs

    def corners(rel, info):  # any other photo_boxes (detector valid passes its own)
        return rel * torch.tensor([info.img_w, info.img_h, 1.0, 2.0])
    assert_identical(postprocess_per_image(tiny, outs, infos, 0.3, 0.45, photo_boxes=corners),
                     postprocess(tiny, outs, infos, 0.3, 0.45, photo_boxes=corners))
    # one image alone, and an image without any candidate in the batch
    assert_identical(postprocess_per_image(tiny, [o[2:3] for o in outs], infos[2:3], 0.5, 0.45),
                     postprocess(tiny, [o[2:3] for o in outs], infos[2:3], 0.5, 0.45))
    boxes, obj, cls = decode_heads(outs, tiny.head_specs, 416, 416)
    obj = obj.clone()
    obj[1] = 0
    got = postprocess_decoded(boxes, obj, cls, infos, 0.3, 0.45)
    assert len(got[1]) == 0 and len(got[0]) > 0
    assert postprocess_decoded(boxes, obj, cls, [], 0.3, 0.45) == []


def test_batch_equals_single_images(photo_rgb):
    cfg = ROOT / "cfg" / "yolov3-tiny.cfg"
    x = letterbox(photo_rgb, 416, 416)[0][None]
    model = random_model(cfg, x, seed=5, objectness_rate=0.02)
    images = [photo_rgb, np.ascontiguousarray(photo_rgb[:300, :200]),
              np.ascontiguousarray(photo_rgb.transpose(1, 0, 2))]
    batch = detect_batch(model, images, thresh=0.25)
    for image, dets in zip(images, batch):
        one = detect(model, image, thresh=0.25)
        assert torch.equal(one.classes, dets.classes)
        assert torch.allclose(one.boxes, dets.boxes, atol=1e-3) and torch.allclose(one.scores, dets.scores, atol=1e-6)
    assert len(batch[0]) > 0
