"""How the layers of a network connect (darknet_py.graph): [route] and [shortcut] sources out of range or
of shapes that do not fit, the filters of the convolution before a [yolo], masks and anchors, classes that
differ between heads, and the [net] values that size the input.

Each case starts from TINY (tests/helpers/config.py), a small valid YOLO net, changes one thing, writes it
to tmp_path and asserts a CfgError whose text holds the file path, the line number the test computes from
its own text, and the offending value.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from darknet_py.graph import build_model, parse_network

from tests.helpers.cfgs import add_line, locate, set_key
from tests.helpers.config import TINY, expect_error, parse_ok, write_cfg


# -- the network every case changes -----------------------------------------------------------------

def test_tiny_parses_to_the_shapes_worked_out_by_hand(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nd = parse_ok(tmp_path, TINY)
    assert nd.shapes == [(16, 64, 64), (16, 32, 32), (32, 32, 32), (32, 16, 16), (32, 16, 16), (32, 16, 16),
                         (18, 16, 16), (18, 16, 16), (32, 16, 16), (32, 32, 32), (64, 32, 32), (18, 32, 32),
                         (18, 32, 32)]
    assert nd.yolo_indices == [7, 12]
    assert [s.line for s in nd.specs] == [locate(TINY, "convolutional", 1), locate(TINY, "maxpool", 1),
                                          locate(TINY, "convolutional", 2), locate(TINY, "maxpool", 2),
                                          locate(TINY, "convolutional", 3), locate(TINY, "shortcut", 1),
                                          locate(TINY, "convolutional", 4), locate(TINY, "yolo", 1),
                                          locate(TINY, "route", 1), locate(TINY, "upsample", 1),
                                          locate(TINY, "route", 2), locate(TINY, "convolutional", 5),
                                          locate(TINY, "yolo", 2)]


# -- route layers -----------------------------------------------------------------------------

@pytest.mark.parametrize("nth, value, bad, refers, valid", [
    (1, "11", "11", 11, 7),        # route at layer 8: beyond itself
    (1, "8", "8", 8, 7),           # self-reference
    (1, "-9", "-9", -1, 7),        # relative, before the first layer
    (1, "-20", "-20", -12, 7),
    (2, "-1,99", "99", 99, 9),     # route at layer 10, second entry
    (2, "10,-1", "10", 10, 9),
])
def test_route_layer_out_of_range(tmp_path, nth, value, bad, refers, valid):
    text = set_key(TINY, "route", nth, "layers", value)
    err = expect_error(tmp_path, text, locate(text, "route", nth, "layers"), f"layers={bad}",
                       f"refers to layer {refers}", f"0..{valid}")
    assert err.index == valid + 1


@pytest.mark.parametrize("value, needle", [("", "empty value"), (",", "layers=,"), ("-1,,2", "layers=-1,,2")])
def test_route_with_empty_layers(tmp_path, value, needle):
    lines = TINY.split("\n")
    line = locate(TINY, "route", 1, "layers")
    lines[line - 1] = f"layers={value}"
    expect_error(tmp_path, "\n".join(lines), line, needle)


def test_route_as_the_first_layer(tmp_path):
    text = TINY.replace("[convolutional]\nbatch_normalize=1\nfilters=16", "[route]\nlayers=-1\n\n"
                        "[convolutional]\nbatch_normalize=1\nfilters=16", 1)
    expect_error(tmp_path, text, locate(text, "route", 1, "layers"), "refers to layer -1")


# -- route shape mismatch ---------------------------------------------------------------------

def test_route_of_layers_of_different_sizes(tmp_path):
    # width 66: layer 1 maxpool (darknet padding size-1=1) -> (66+1-2)//2+1 = 33 wide, layer 3 -> 17,
    # upsample (layer 9) -> 34 wide and 32 high; the route at layer 10 joins it with layer 2 (33 wide).
    text = set_key(TINY, "net", 1, "width", "66")
    err = expect_error(tmp_path, text, locate(text, "route", 2), "layer 9", "layer 2", "34x32x32", "33x32x32",
                       "multiple of 32")
    assert err.index == 10


# -- shortcut ---------------------------------------------------------------------------------

def test_shortcut_subsamples_a_larger_layer(tmp_path):
    # from=-4 at layer 5 is layer 1 (16 ch, 32x32), added to layer 4 (32 ch, 16x16): pjreddie's
    # shortcut_cpu samples every 2nd pixel of the larger one (tests/layers/test_shortcut.py checks values)
    text = set_key(TINY, "shortcut", 1, "from", "-4")
    nd = parse_ok(tmp_path, text)
    assert nd.shapes[5] == nd.shapes[4] == (32, 16, 16)


def test_shortcut_with_unequal_width_and_height_ratios(tmp_path):
    # Darknet's shortcut_cpu asserts equal width and height ratios: 32/16 across but 32/32 down
    text = set_key(TINY, "shortcut", 1, "from", "-4")
    text = add_line(text, "maxpool", 2, "stride_y=1")
    expect_error(tmp_path, text, locate(text, "shortcut", 1), "layer 1", "layer 4")


def test_shortcut_fewer_channels_is_not_broadcast(tmp_path):
    # conv at layer 4 with 1 filter, then shortcut from a 32-channel layer: PyTorch would broadcast
    # 1x16x16 + 32x16x16 to 32 channels; Darknet adds the common channel and keeps layer 4's shape.
    text = set_key(TINY, "convolutional", 3, "filters", "1")
    nd = parse_ok(tmp_path, text)
    shortcut = next(s for s in nd.specs if type(s).__name__ == "ShortcutSpec")
    assert nd.shapes[shortcut.index] == nd.shapes[shortcut.index - 1] == (1, 16, 16)


@pytest.mark.parametrize("value, refers", [("-6", -1), ("5", 5), ("9", 9)])
def test_shortcut_from_out_of_range(tmp_path, value, refers):
    text = set_key(TINY, "shortcut", 1, "from", value)
    needles = [f"refers to layer {refers}", "0..4"] if refers is not None else ["one source layer"]
    expect_error(tmp_path, text, locate(text, "shortcut", 1, "from"), f"from={value}", *needles)


def test_shortcut_as_the_first_layer(tmp_path):
    text = TINY.replace("[convolutional]\nbatch_normalize=1\nfilters=16", "[shortcut]\nfrom=-1\n\n"
                        "[convolutional]\nbatch_normalize=1\nfilters=16", 1)
    expect_error(tmp_path, text, locate(text, "shortcut", 1), "(layer 0)")


# -- filters before [yolo] ---------------------------------------------------------------------

@pytest.mark.parametrize("filters, yolo_nth, conv_nth, classes, layer", [
    ("255", 1, 4, "1", 6),   # coco filters with classes=1: 255 != 3*(1+5)=18
    ("18", 2, 5, "80", 11),  # classes=80 with filters for 1 class: 18 != 3*(80+5)=255
])
def test_filters_before_yolo_must_be_mask_times_classes_plus_5(tmp_path, filters, yolo_nth, conv_nth, classes, layer):
    text = set_key(TINY, "convolutional", conv_nth, "filters", filters)
    text = set_key(text, "yolo", yolo_nth, "classes", classes)
    need = 3 * (int(classes) + 5)
    conv_line = locate(text, "convolutional", conv_nth)
    expect_error(tmp_path, text, locate(text, "yolo", yolo_nth), f"layer {layer}", f"(layer {layer + 1})",
                 f"cfg line {conv_line}", f"{filters} channels", f"3*({classes}+5)", f"= {need}", "[yolo]")


# -- masks and anchors -------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, needle", [
    ("mask", "3,4,6", "mask index 6"), ("mask", "-1,4,5", "mask index -1"), ("mask", "3,4,60", "num=6"),
    ("anchors", "10,14, 23,27, 37,58, 81,82, 135,169, 344", "11 numbers"),
    ("anchors", "10,14, 23,27, 37,58, 81,82, 135,169", "5 pairs"),
    ("anchors", "10,14, 23,27, 37,58, 81,82, 135,169, 344,319, 1,1", "7 pairs"),
    ("anchors", "10,14, a,27, 37,58, 81,82, 135,169, 344,319", "anchors=10,14,a,27"),
    ("anchors", "10,14, 0,27, 37,58, 81,82, 135,169, 344,319", "positive"),
])
def test_bad_mask_or_anchors(tmp_path, key, value, needle):
    text = set_key(TINY, "yolo", 1, key, value)
    expect_error(tmp_path, text, locate(text, "yolo", 1, key), needle)


def test_overlapping_masks_are_legal(tmp_path):
    text = set_key(TINY, "yolo", 1, "mask", "2,3,4")
    nd = parse_ok(tmp_path, text)
    assert [s.mask for s in nd.yolo_specs] == [[2, 3, 4], [0, 1, 2]]


def test_classes_differ_between_heads(tmp_path):
    text = set_key(TINY, "yolo", 2, "classes", "2")
    text = set_key(text, "convolutional", 5, "filters", "21")
    expect_error(tmp_path, text, locate(text, "yolo", 2, "classes"), "classes=2", "classes=1")


# -- [net] size and channels ------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("width", "0"), ("width", "-64"), ("height", "0"), ("channels", "2"),
                                        ("channels", "4"), ("channels", "0"), ("width", "sixty")])
def test_bad_net_size_or_channels(tmp_path, key, value):
    text = set_key(TINY, "net", 1, key, value)
    expect_error(tmp_path, text, locate(text, "net", 1, key), f"{key}={value}")


def test_size_not_a_multiple_of_32_only_warns(tmp_path):
    # 72 -> 36 -> 18 -> upsample 36: nothing breaks, so only a warning
    path = write_cfg(tmp_path, set_key(TINY, "net", 1, "width", "72"))
    with pytest.warns(UserWarning, match="multiples? of 32"):
        nd = parse_network(path)
    assert nd.shapes[10] == (64, 32, 36) and nd.shapes[12] == (18, 32, 36)


def test_one_channel_input(tmp_path):
    nd = parse_ok(tmp_path, set_key(TINY, "net", 1, "channels", "1"))
    assert nd.input_shape == (1, 64, 64)


# -- training values in [net] ------------------------------------------------------------------

def test_batch_and_subdivisions_do_not_change_the_network(tmp_path):
    text = set_key(set_key(TINY, "net", 1, "batch", "64"), "net", 1, "subdivisions", "16")
    nd = parse_ok(tmp_path, text)
    assert nd.net.training["batch"] == "64" and nd.net.training["subdivisions"] == "16"
    model = build_model(nd).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 18, 16, 16), (2, 18, 32, 32)]
