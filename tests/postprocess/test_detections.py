"""darknet_py.postprocess.detections: Detections, and detections_to, which moves a batch's Detections
to another device with one copy per field."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.postprocess import Detections, detections_to
from darknet_py.postprocess.detections import _moved_together
from tests.helpers.detections import FIELDS


def _random_detections(rng, counts, device="cpu"):
    out = []
    for n in counts:
        out.append(Detections(torch.tensor(rng.random((n, 4)), dtype=torch.float32, device=device),
                              torch.tensor(rng.random(n), dtype=torch.float32, device=device),
                              torch.tensor(rng.integers(0, 80, n), dtype=torch.int64, device=device),
                              torch.tensor(rng.random(n), dtype=torch.float32, device=device),
                              torch.tensor(rng.integers(0, 9, n), dtype=torch.int64, device=device)))
    return out


def _same(a, b):
    """Every field equal, with the same dtype, device and shape."""
    return all(getattr(a, f).dtype == getattr(b, f).dtype and getattr(a, f).device == getattr(b, f).device
               and getattr(a, f).shape == getattr(b, f).shape and torch.equal(getattr(a, f), getattr(b, f))
               for f in FIELDS)


def test_detections_moved_together_equal_one_by_one():
    """detections_to: one copy per field for a whole batch, split back per image, empty images too."""
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
    dets = _random_detections(np.random.default_rng(2), [4, 0, 7, 2], device="cuda")
    moved = detections_to(dets, "cpu")
    assert all(_same(d.to("cpu"), m) for d, m in zip(dets, moved))
