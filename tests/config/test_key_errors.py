"""Keys and sections of a cfg: duplicate keys, misspelt and unknown keys, training keys that are accepted
and inference keys that are not supported, unknown or unsupported sections, missing required keys, values
of the wrong type or out of range, and activations.

Each case starts from TINY (tests/helpers/config.py), a small valid YOLO net, changes one thing, writes it
to tmp_path and asserts a CfgError whose text holds the file path, the line number the test computes from
its own text, and the offending value.
"""
from __future__ import annotations

import re
import warnings

import pytest
import torch
import torch.nn.functional as F

from darknet_py.graph import build_model, parse_network
from darknet_py.layers.registry import DARKNET_KINDS_NOT_SUPPORTED, LAYERS

from tests.helpers.cfgs import add_line, locate, set_key
from tests.helpers.config import TINY, expect_error, parse_ok, write_cfg


# -- duplicate key ----------------------------------------------------------------------------

def test_duplicate_key_is_an_error(tmp_path):
    first = locate(TINY, "convolutional", 2, "filters")
    text = add_line(TINY, "convolutional", 2, "filters=64")  # the duplicate comes before the original
    dup_first = locate(text, "convolutional", 2) + 1
    second = first + 1
    err = expect_error(tmp_path, text, second, "filters")
    assert f"line {dup_first}" in str(err)


def test_duplicate_training_key_in_net_warns_and_keeps_the_first(tmp_path):
    # batch only sizes training batches: Darknet's reading (the first) is kept, with a warning.
    text = TINY.replace("batch=1\n", "batch=1\nbatch=64\n", 1)
    first = locate(TINY, "net", 1, "batch")
    path = tmp_path / "dup.cfg"
    path.write_text(text)
    with pytest.warns(UserWarning, match=f"{re.escape(str(path))}:{first + 1}:.*batch.*line {first}"):
        nd = parse_network(path)
    assert nd.net.training["batch"] == "1"


def test_duplicate_inference_key_in_net_is_an_error(tmp_path):
    text = TINY.replace("width=64\n", "width=64\nwidth=128\n", 1)
    first = locate(TINY, "net", 1, "width")
    expect_error(tmp_path, text, first + 1, "width", f"line {first}")


# -- keys -------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, nth, key, typo", [
    ("convolutional", 1, "filters", "filter"),
    ("convolutional", 2, "size", "sise"),
    ("convolutional", 2, "batch_normalize", "batch_normalise"),
    ("convolutional", 2, "activation", "activaton"),
    ("maxpool", 1, "stride", "stide"),
    ("shortcut", 1, "from", "fron"),
    ("route", 1, "layers", "layer"),
    ("upsample", 1, "stride", "strides"),
    ("yolo", 1, "classes", "clases"),
    ("yolo", 2, "anchors", "anchor"),
    ("yolo", 1, "ignore_thresh", "ignore_treshold"),
    ("net", 1, "width", "widht"),
    ("net", 1, "channels", "channel"),
])
def test_misspelt_key_suggests_the_right_one(tmp_path, header, nth, key, typo):
    line = locate(TINY, header, nth, key)
    value = TINY.split("\n")[line - 1].split("=", 1)[1]
    lines = TINY.split("\n")
    lines[line - 1] = f"{typo}={value}"
    expect_error(tmp_path, "\n".join(lines), line, f"unknown key '{typo}'", f"did you mean '{key}'")


def test_unknown_key_without_a_close_match(tmp_path):
    text = add_line(TINY, "maxpool", 2, "qqqzzz=1")
    err = expect_error(tmp_path, text, locate(TINY, "maxpool", 2) + 1, "unknown key 'qqqzzz'", "(layer 3)")
    assert "did you mean" not in str(err)


def test_training_keys_are_accepted(tmp_path):
    text = TINY
    for line in ["burn_in=1000", "learning_rate=0.001", "momentum=0.9", "decay=0.0005", "max_batches=500200",
                 "policy=steps", "steps=400000,450000", "scales=.1,.1", "angle=0", "saturation = 1.5",
                 "exposure = 1.5", "hue=.1", "mosaic=1"]:
        text = add_line(text, "net", 1, line)
    for line in ["iou_normalizer=0.07", "cls_normalizer=1.0", "iou_loss=ciou", "max=200", "beta_nms=0.6",
                 "scale_x_y=1.0", "new_coords=0"]:
        text = add_line(text, "yolo", 2, line)
    text = add_line(text, "convolutional", 1, "stopbackward=1")
    text = add_line(text, "route", 1, "groups=1")
    text = add_line(text, "convolutional", 2, "binary=0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nd = parse_ok(tmp_path, text)
    yolo = nd.specs[12]
    assert (yolo.jitter, yolo.ignore_thresh, yolo.truth_thresh, yolo.random) == (0.3, 0.7, 1.0, True)
    assert nd.net.training["burn_in"] == "1000" and nd.net.training["batch"] == "1"


@pytest.mark.parametrize("header, nth, line", [
    ("convolutional", 2, "share_index=0"),
    ("convolutional", 3, "assisted_excitation=1"),
    ("convolutional", 1, "coordconv=1"),
    ("convolutional", 1, "dontload=1"),
    ("maxpool", 1, "maxpool_zero_nonmax=1"),
])
def test_unsupported_inference_keys_are_refused(tmp_path, header, nth, line):
    key, value = (s.strip() for s in line.split("="))
    if header == "upsample":
        text = set_key(TINY, header, nth, key, value)
    else:
        text = add_line(TINY, header, nth, line)
    expect_error(tmp_path, text, locate(text, header, nth, key), "not supported", f"{key}={value}")


# -- sections ---------------------------------------------------------------------------------

# Every registered kind (aliases too) is listed in the message: a new kind is covered without editing this.
SUPPORTED = [f"[{name}]" for name in LAYERS.names()]


@pytest.mark.parametrize("wrong, right", [("convolutonal", "convolutional"), ("maxpoool", "maxpool"),
                                          ("shortcutt", "shortcut"), ("Yolo", "yolo")])
def test_misspelt_section_suggests_the_right_one(tmp_path, wrong, right):
    lines = TINY.split("\n")
    line = locate(TINY, right, 1)
    lines[line - 1] = f"[{wrong}]"
    err = expect_error(tmp_path, "\n".join(lines), line, f"[{wrong}]", f"did you mean [{right}]", "supported:",
                       *SUPPORTED)
    assert "unknown section" in str(err)


@pytest.mark.parametrize("kind", DARKNET_KINDS_NOT_SUPPORTED)
def test_darknet_kind_not_supported_yet(tmp_path, kind):
    assert kind not in LAYERS.names()  # a kind that gets supported leaves the list
    text = TINY + f"\n[{kind}]\nsize=1\n"
    line = locate(text, kind)
    err = expect_error(tmp_path, text, line, f"[{kind}]", "does not support", *SUPPORTED)
    assert "unknown section" not in str(err) and "(layer 13)" in str(err)


# -- missing required keys --------------------------------------------------------------------

@pytest.mark.parametrize("header, nth, key, layer", [
    ("convolutional", 1, "filters", 0), ("convolutional", 3, "size", 4), ("route", 2, "layers", 10),
    ("shortcut", 1, "from", 5), ("yolo", 1, "mask", 7), ("yolo", 2, "anchors", 12), ("yolo", 1, "classes", 7),
])
def test_missing_required_key(tmp_path, header, nth, key, layer):
    text = set_key(TINY, header, nth, key, None)
    expect_error(tmp_path, text, locate(text, header, nth), f"missing required key '{key}'", f"[{header}]",
                 f"(layer {layer})")


@pytest.mark.parametrize("key", ["width", "height"])
def test_net_without_width_or_height(tmp_path, key):
    expect_error(tmp_path, set_key(TINY, "net", 1, key, None), locate(TINY, "net"), "missing required key", "[net]")


# -- types and ranges -------------------------------------------------------------------------

@pytest.mark.parametrize("header, nth, key, value", [
    ("convolutional", 1, "filters", "3.5"), ("convolutional", 1, "filters", "abc"),
    ("convolutional", 2, "batch_normalize", "true"), ("convolutional", 2, "batch_normalize", "2"),
    ("convolutional", 1, "size", "0"), ("convolutional", 1, "stride", "0"), ("convolutional", 1, "filters", "-16"),
    ("convolutional", 1, "size", "-3"), ("convolutional", 1, "stride", "-1"), ("convolutional", 1, "pad", "yes"),
    ("maxpool", 1, "size", "0"), ("maxpool", 1, "stride", "0"), ("maxpool", 2, "size", "-2"),
    ("upsample", 1, "stride", "0"), ("upsample", 1, "stride", "1.5"), ("yolo", 1, "classes", "0"),
    ("yolo", 1, "classes", "1.0"), ("yolo", 1, "num", "0"), ("yolo", 1, "jitter", "big"), ("yolo", 1, "random", "2"),
    ("route", 1, "layers", "-4.0"), ("shortcut", 1, "from", "two"),
])
def test_value_of_wrong_type_or_out_of_range(tmp_path, header, nth, key, value):
    text = set_key(TINY, header, nth, key, value)
    expect_error(tmp_path, text, locate(text, header, nth, key), f"{key}={value}")


def test_negative_conv_padding(tmp_path):
    text = add_line(TINY, "convolutional", 1, "padding=-1")
    expect_error(tmp_path, text, locate(text, "convolutional", 1, "padding"), "padding=-1")


# -- activations ------------------------------------------------------------------------------

@pytest.mark.parametrize("header, nth, bad, close", [("convolutional", 1, "leakyy", "leaky"),
                                                     ("convolutional", 4, "Linear", "linear"),
                                                     ("shortcut", 1, "lineer", "linear")])
def test_unknown_activation_suggests_a_known_one(tmp_path, header, nth, bad, close):
    text = set_key(TINY, header, nth, "activation", bad)
    expect_error(tmp_path, text, locate(text, header, nth, "activation"), f"unknown activation '{bad}'",
                 f"did you mean '{close}'", "leaky", "linear", "logistic", "relu", "mish", "swish")


ONE_BY_ONE = """[net]
width=32
height=32
channels=3

[convolutional]
filters=6
size=1
stride=1
{activation}
[yolo]
mask=0
anchors=10,10
classes=1
num=1
"""


def test_missing_activation_is_logistic_with_a_warning(tmp_path):
    path = write_cfg(tmp_path, ONE_BY_ONE.format(activation=""))
    with pytest.warns(UserWarning) as record:
        nd = parse_network(path)
    msgs = [str(w.message) for w in record]
    assert any("logistic" in m and f"{path}:6" in m and "linear" in m for m in msgs), msgs
    assert nd.specs[0].activation == "logistic"

    model = build_model(nd).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        conv = model.layers[0].conv
        conv.weight.copy_(torch.randn_like(conv.weight))
        conv.bias.copy_(torch.randn_like(conv.bias))
        x = torch.randn(2, 3, 32, 32)
        raw = F.conv2d(x, conv.weight, conv.bias)
        out = model(x)[0]
    # the yolo head passes channels 2 and 3 (w, h) through untouched: they show the conv's activation
    torch.testing.assert_close(out[:, 2:4], torch.sigmoid(raw[:, 2:4]))
    torch.testing.assert_close(model.layers[0](x), torch.sigmoid(raw))
    assert not torch.allclose(out[:, 2:4], raw[:, 2:4])


def test_explicit_linear_activation_differs_and_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # explicit activation: no warning
        nd = parse_ok(tmp_path, ONE_BY_ONE.format(activation="activation=linear\n"))
    model = build_model(nd).eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32)
        conv = model.layers[0].conv
        torch.testing.assert_close(model(x)[0][:, 2:4], F.conv2d(x, conv.weight, conv.bias)[:, 2:4])
