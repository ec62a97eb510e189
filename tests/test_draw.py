"""Drawing detections (darknet_py.draw): labels stay whole inside the image."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.draw import class_color, draw_detections, label_rect
from darknet_py.postprocess import Detections


def _dets(box: tuple[float, float, float, float], cls: int = 0) -> Detections:
    return Detections(torch.tensor([box]), torch.tensor([0.9]), torch.tensor([cls]), torch.tensor([0.9]),
                      torch.tensor([0]))


@pytest.mark.parametrize("box", [
    (600.0, 40.0, 639.0, 200.0),   # touches the right edge
    (620.0, 0.0, 639.0, 30.0),     # the top-right corner: no room above either
    (0.0, 0.0, 30.0, 30.0),        # the top-left corner
])
def test_label_box_lies_within_the_image(box):
    h, w = 480, 640
    name = "a rather long class name"
    rgb = np.full((h, w, 3), 255, np.uint8)
    left, top, right, bottom = label_rect(name, int(box[0]), int(box[1]), rgb.shape)
    assert 0 <= left < right <= w - 1 and 0 <= top < bottom <= h - 1
    assert right - left > 100  # the whole text's width, not what was left of it at the edge
    drawn = draw_detections(rgb, _dets(box), [name], 1)
    color = class_color(0, 1)
    # the label's filled box is all there: its corners are drawn in the class colour
    for x, y in ((left, top), (right, top), (left, bottom), (right, bottom)):
        assert tuple(drawn[y, x]) == color
    # the text is written in it, from its left end to its right end
    dark = np.nonzero((drawn[top:bottom + 1, left:right + 1].astype(int).sum(-1) < 255).any(0))[0]
    assert dark.size and dark[0] <= 5 and dark[-1] >= right - left - 10


def test_label_with_room_is_unmoved():
    left, top, right, bottom = label_rect("dog", 100, 200, (480, 640, 3))
    assert left == 100 and bottom == 200  # at the box's left corner, just above it


def test_label_wider_than_the_image_starts_at_its_left_edge():
    left, _, right, _ = label_rect("x" * 200, 30, 100, (480, 640, 3))
    assert left == 0 and right > 639
