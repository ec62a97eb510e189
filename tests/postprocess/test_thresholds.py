"""darknet_py.postprocess.thresholds: Darknet's two strict comparisons (objectness, then objectness *
class probability), through the per-image reference that applies them."""
from __future__ import annotations

import torch

from tests.helpers.reference import candidates as threshold_one_image


def test_threshold_is_strict_and_multiplies_objectness():
    boxes = torch.zeros(3, 4, dtype=torch.float64)
    obj = torch.tensor([0.5, 0.6, 1.0], dtype=torch.float64)
    cls = torch.tensor([[1.0, 1.0], [0.9, 0.5], [0.5, 0.49]], dtype=torch.float64)
    c = threshold_one_image(boxes, obj, cls, 0.5)
    assert c.objectness.tolist() == [0.6, 1.0]  # obj == thresh is not > thresh
    assert torch.allclose(c.probs, torch.tensor([[0.54, 0.0], [0.0, 0.0]], dtype=torch.float64))  # 0.5 is not > 0.5
