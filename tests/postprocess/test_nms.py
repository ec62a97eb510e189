"""darknet_py.postprocess.nms: Darknet's per-class NMS (do_nms_sort) and AlexeyAB's DIoU NMS
(diounms_sort) against their plain-Python ports (tests/helpers/reference.py), one image and a batch."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from darknet_py.postprocess import batched_nms, darknet_nms
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


@st.composite
def image_candidates(draw):
    n_img = draw(st.integers(1, 4))
    c = draw(st.integers(1, 4))
    counts = [draw(st.integers(0, 15)) for _ in range(n_img)]
    return (counts, *draw_candidates(draw, sum(counts), c, torch.float32))


# ------------------------------------------------------------------------------------ one image

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


# ------------------------------------------------------------------------------------ a batch

@settings(max_examples=150, deadline=None)
@given(image_candidates(), st.sampled_from([0.3, 0.45, 0.7]), st.sampled_from(["default", "greedynms", "diounms"]))
def test_batched_nms_equals_per_image(cand, nms, kind):
    # identical boxes and tied scores across images: they must never interact
    counts, boxes, probs = cand
    img = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    got = batched_nms(boxes, probs, img, len(counts), nms, kind, 0.8)
    want = torch.cat([darknet_nms(b, p, nms, kind, 0.8) for b, p in zip(boxes.split(counts), probs.split(counts))])
    assert torch.equal(got, want)
