"""Darknet's thresholds and per-class NMS against a plain-Python port of do_nms_sort."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import darknet_py
from darknet_py.detector import detect, detect_batch
from darknet_py.postprocess import darknet_nms
from darknet_py.random_weights import randomize
from darknet_py.transforms import letterbox
from tests.helpers.paths import ROOT
from tests.helpers.reference import candidates as threshold_one_image
from tests.helpers.reference import do_nms_sort
from tests.helpers.strategies import draw_candidates


def _reference_nms(boxes, probs, thresh, kind="default", beta=0.6):
    """The plain-Python do_nms_sort (diounms_sort for greedynms / diounms) on NumPy candidates -> its probs."""
    return np.array(do_nms_sort(boxes.tolist(), probs.tolist(), thresh, kind, beta)).reshape(len(boxes), -1)


@st.composite
def candidates(draw):
    n = draw(st.integers(0, 40))
    c = draw(st.integers(1, 5))
    return draw_candidates(draw, n, c, torch.float64)  # identical boxes and tied scores, often


@settings(max_examples=300, deadline=None)
@given(candidates(), st.sampled_from([0.3, 0.45, 0.7]))
def test_nms_equals_darknet_greedy(cand, nms):
    boxes, probs = cand
    got = darknet_nms(boxes, probs, nms).numpy()
    want = _reference_nms(boxes.numpy(), probs.numpy(), nms) if len(boxes) else probs.numpy()
    assert np.array_equal(got, want)


@settings(max_examples=300, deadline=None)
@given(candidates(), st.sampled_from([0.3, 0.45, 0.7]), st.sampled_from(["greedynms", "diounms"]),
       st.sampled_from([0.6, 1.0]))
def test_diou_nms_equals_alexeyab_diounms_sort(cand, nms, kind, beta):
    boxes, probs = cand
    got = darknet_nms(boxes, probs, nms, kind, beta).numpy()
    want = _reference_nms(boxes.numpy(), probs.numpy(), nms, kind, beta) if len(boxes) else probs.numpy()
    assert np.array_equal(got, want)


def test_diou_nms_suppresses_less_than_iou_for_distant_centres():
    # two boxes of one class, IoU .4545 > .45, centres apart: DIoU = IoU - (d^2/c^2)^0.6 = .29 < .45
    boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.5, 0.65, 0.4, 0.4]], dtype=torch.float64)
    probs = torch.tensor([[0.9], [0.8]], dtype=torch.float64)
    assert darknet_nms(boxes, probs, 0.45).tolist() == [[0.9], [0.0]]
    assert darknet_nms(boxes, probs, 0.45, "greedynms").tolist() == [[0.9], [0.8]]


def test_nms_keeps_one_box_under_several_classes():
    # Two overlapping boxes; box 0 wins class 0, box 1 wins class 1: both survive (Darknet's
    # per-class suppression zeroes scores, it does not delete boxes).
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.51, 0.5, 0.2, 0.2]], dtype=torch.float64)
    probs = torch.tensor([[0.9, 0.6], [0.7, 0.8]], dtype=torch.float64)
    assert darknet_nms(boxes, probs, 0.45).tolist() == [[0.9, 0.0], [0.0, 0.8]]


def test_threshold_is_strict_and_multiplies_objectness():
    boxes = torch.zeros(3, 4, dtype=torch.float64)
    obj = torch.tensor([0.5, 0.6, 1.0], dtype=torch.float64)
    cls = torch.tensor([[1.0, 1.0], [0.9, 0.5], [0.5, 0.49]], dtype=torch.float64)
    c = threshold_one_image(boxes, obj, cls, 0.5)
    assert c.objectness.tolist() == [0.6, 1.0]  # obj == thresh is not > thresh
    assert torch.allclose(c.probs, torch.tensor([[0.54, 0.0], [0.0, 0.0]], dtype=torch.float64))  # 0.5 is not > 0.5


def test_batch_equals_single_images(photo_rgb):
    cfg = ROOT / "cfg" / "yolov3-tiny.cfg"
    x = letterbox(photo_rgb, 416, 416)[0][None]
    model = randomize(darknet_py.build_model(cfg), x, seed=5, objectness_rate=0.02).eval()
    images = [photo_rgb, np.ascontiguousarray(photo_rgb[:300, :200]),
              np.ascontiguousarray(photo_rgb.transpose(1, 0, 2))]
    batch = detect_batch(model, images, thresh=0.25)
    for image, dets in zip(images, batch):
        one = detect(model, image, thresh=0.25)
        assert torch.equal(one.classes, dets.classes)
        assert torch.allclose(one.boxes, dets.boxes, atol=1e-3) and torch.allclose(one.scores, dets.scores, atol=1e-6)
    assert len(batch[0]) > 0


def _random_detections(rng, counts, device="cpu"):
    from darknet_py.postprocess import Detections
    out = []
    for n in counts:
        out.append(Detections(torch.tensor(rng.random((n, 4)), dtype=torch.float32, device=device),
                              torch.tensor(rng.random(n), dtype=torch.float32, device=device),
                              torch.tensor(rng.integers(0, 80, n), dtype=torch.int64, device=device),
                              torch.tensor(rng.random(n), dtype=torch.float32, device=device),
                              torch.tensor(rng.integers(0, 9, n), dtype=torch.int64, device=device)))
    return out


def _same(a, b):
    fields = ("boxes", "scores", "classes", "objectness", "box_index")
    return all(getattr(a, f).dtype == getattr(b, f).dtype and getattr(a, f).device == getattr(b, f).device
               and getattr(a, f).shape == getattr(b, f).shape and torch.equal(getattr(a, f), getattr(b, f))
               for f in fields)


def test_detections_moved_together_equal_one_by_one():
    """detections_to: one copy per field for a whole batch, split back per image, empty images too."""
    from darknet_py.postprocess.detections import _moved_together, detections_to
    dets = _random_detections(np.random.default_rng(0), [3, 0, 5, 1, 0])
    moved = _moved_together(dets, torch.device("cpu"))
    assert len(moved) == 5 and all(_same(a, b) for a, b in zip(dets, moved))
    assert detections_to(dets, "cpu") == dets  # already there: the same objects
    assert detections_to([], "cpu") == []
    # mixed dtypes: torch.cat would promote; each image moves on its own, dtypes kept
    odd = _random_detections(np.random.default_rng(1), [2])[0]
    odd.scores = odd.scores.double()
    mixed = detections_to([dets[0], odd], "meta")
    assert mixed[1].scores.dtype == torch.float64 and mixed[0].scores.dtype == torch.float32
    assert [len(d) for d in detections_to(dets, "meta")] == [3, 0, 5, 1, 0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_detections_to_cpu_equal_one_by_one():
    from darknet_py.postprocess import detections_to
    dets = _random_detections(np.random.default_rng(2), [4, 0, 7, 2], device="cuda")
    moved = detections_to(dets, "cpu")
    assert all(_same(d.to("cpu"), m) for d, m in zip(dets, moved))
