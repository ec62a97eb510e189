"""AlexeyAB's ``[route] groups / group_id`` (yolov4-tiny's pattern): the layer on its own, over two
inputs in a small YOLOv4-tiny-like network (tests/helpers/heads.py), and the bad values refused with
the cfg line. (Against OpenCV, inside the network: tests/layers/test_yolo.py, tests/parity/test_yolov4.py.)"""
from __future__ import annotations

import pytest
import torch

import darknet_py
from darknet_py.layers.route import Route
from darknet_py.layers.shortcut import Shortcut
from darknet_py.random_weights import randomize
from darknet_py.transforms import letterbox
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.heads import YOLOV4_SMALL, yolov4_small_cfg


def test_route_groups_and_shortcut_channels_semantics():
    """The layers on their own: group K of each input; the common channels added."""
    a = torch.arange(2 * 8 * 3 * 3, dtype=torch.float32).view(2, 8, 3, 3)
    b = -torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).view(2, 4, 3, 3)
    out = Route(2, 1)(a, b)
    assert torch.equal(out, torch.cat([a[:, 4:], b[:, 2:]], 1))
    assert torch.equal(Route(4, 0)(a), a[:, :2])
    wide = Shortcut()(b, a)  # from-layer wider: its extra channels ignored
    assert torch.equal(wide, b + a[:, :4])
    narrow = Shortcut()(a, b)  # from-layer narrower: the rest of the previous output kept
    assert torch.equal(narrow, torch.cat([a[:, :4] + b, a[:, 4:]], 1))


def test_route_groups_over_two_inputs(photo_rgb):
    """AlexeyAB's forward_route_layer cuts each input: `input + group_id*input_size/groups`.
    (No OpenCV comparison here: OpenCV 4.14's importer gives a grouped route over several inputs
    the wrong channel count and its weights go out of step: the next convolution loads none.)"""
    model = darknet_py.build_model(yolov4_small_cfg("", route3="layers=-1,-3\ngroups=2\ngroup_id=1").encode())
    assert model.netdef.shapes[3][0] == 4 // 2 + 8 // 2
    x = letterbox(photo_rgb, YOLOV4_SMALL, YOLOV4_SMALL)[0][None]
    randomize(model, x, seed=5)
    seen = {}
    hooks = [model.layers[i].register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(i, out))
             for i in (0, 2, 3)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert torch.equal(seen[3], torch.cat([seen[2][:, 2:4], seen[0][:, 4:8]], 1))


@pytest.mark.parametrize("route, needle, message", [
    ("layers=0\ngroups=3\ngroup_id=0", "groups=3", "does not divide"),
    ("layers=0\ngroups=2\ngroup_id=2", "group_id=2", "out of range"),
    ("layers=0\ngroups=0", "groups=0", "groups"),
    ("layers=0\ngroups=2\ngroup_id=-1", "group_id=-1", "group_id"),
])
def test_bad_route_groups_name_the_line(route, needle, message):
    text = yolov4_small_cfg("", route=route)
    expect_cfg_error(text, line_of(text, needle), message)
