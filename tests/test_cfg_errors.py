"""One test (or parametrized table) per cfg case C1-C23 of bad-inputs.md section 4.

Each case starts from TINY, a small valid YOLO net, changes one thing, writes it to tmp_path and
asserts a CfgError whose text holds the file path, the line number the test computes from its own
text, and the offending value. Cases that need shapes go through ``parse_network(path)``.
The reference cfgs in /work/shared/darknet-reference are used when present, skipped otherwise.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Optional

import pytest
import torch
import torch.nn.functional as F

from darknet_py.config.reader import read_cfg
from darknet_py.errors import CfgError
from darknet_py.graph import build_model, parse_network

from tests.helpers.cfgs import (add_line, conv, head_conv, locate, maxpool, route, sections, set_key, shortcut,
                                upsample, yolo)
from tests.helpers.errors import expect_cfg_error
from tests.helpers.paths import REF  # noqa: E402

# Layers: 0 conv 16 3x3 BN leaky, 1 maxpool 2/2, 2 conv 32, 3 maxpool 2/2, 4 conv 32 1x1,
# 5 shortcut from -2 (layer 3), 6 conv 18 linear, 7 yolo (mask 3,4,5), 8 route -4 (layer 4),
# 9 upsample, 10 route -1,2 (layers 9 and 2), 11 conv 18 linear, 12 yolo (mask 0,1,2).
# At 64x64 the shapes (C,H,W) are: 0 16x64x64, 1 16x32x32, 2 32x32x32, 3..5 32x16x16,
# 6/7 18x16x16, 8 32x16x16, 9 32x32x32, 10 64x32x32, 11/12 18x32x32.
YOLO_KEYS = "jitter=.3\nignore_thresh=.7\ntruth_thresh=1\nrandom=1"
ANCHORS = "10,14, 23,27, 37,58, 81,82, 135,169, 344,319"
TINY = sections(
    "[net]\n# Testing\nbatch=1\nsubdivisions=1\nwidth=64\nheight=64\nchannels=3",
    conv(16), maxpool(), conv(32), maxpool(), conv(32, 1), shortcut(-2),
    head_conv(18), yolo("3,4,5", ANCHORS, 1, 6, YOLO_KEYS),
    route("-4"), upsample(), route("-1,2"),
    head_conv(18), yolo("0,1,2", ANCHORS, 1, 6, YOLO_KEYS))


def write(tmp_path: Path, text, name: str = "net.cfg") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def expect_error(tmp_path: Path, text, line: Optional[int], *needles: str, name: str = "net.cfg") -> CfgError:
    """The text, written to tmp_path/name, is refused at ``line`` (tests.helpers.errors.expect_cfg_error)."""
    return expect_cfg_error(text, line, *needles, path=tmp_path / name)


def parse_ok(tmp_path: Path, text, name: str = "net.cfg"):
    return parse_network(write(tmp_path, text, name))


def test_tiny_is_valid(tmp_path):
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


# -- C1 path --------------------------------------------------------------------------------------

def test_c1_missing_path(tmp_path):
    path = tmp_path / "nope" / "yolov3.cfg"
    for fn in (read_cfg, parse_network):
        with pytest.raises(CfgError) as info:
            fn(path)
        assert str(path) in str(info.value) and "No such file" in str(info.value)


def test_c1_directory(tmp_path):
    with pytest.raises(CfgError) as info:
        parse_network(tmp_path)
    assert str(tmp_path) in str(info.value) and "directory" in str(info.value).lower()


def test_c1_path_through_a_file(tmp_path):
    path = write(tmp_path, TINY) / "x.cfg"
    with pytest.raises(CfgError) as info:
        parse_network(path)
    assert str(path) in str(info.value) and "Not a directory" in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads mode-000 files")
def test_c1_unreadable(tmp_path):
    path = write(tmp_path, TINY)
    path.chmod(0)
    try:
        with pytest.raises(CfgError) as info:
            parse_network(path)
    finally:
        path.chmod(0o644)
    assert str(path) in str(info.value) and "Permission denied" in str(info.value)


# -- C2 empty -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [b"", b"\n\n\n", b"# only\n; comments\n   # here\n", b"\xef\xbb\xbf", b"  \t \r\n\r"])
def test_c2_no_sections(tmp_path, text):
    expect_error(tmp_path, text, None, "no sections")


def test_c2_net_only(tmp_path):
    text = TINY.split("\n\n")[0] + "\n"
    expect_error(tmp_path, text, 1, "no layers")


# -- C3 not a cfg ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, needle", [
    (b"<!DOCTYPE html>\n<html lang=en>\n<head><title>yolov3.cfg</title></head>\n", "HTML"),
    (b"\n\n  <html>\n<body>[net]</body></html>\n", "HTML"),
    (b"<!-- saved page --><html><body>\n", "HTML"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:4a5b\nsize 8342\n", "LFS"),
    (b"\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00" + bytes(range(256)), "binary"),
    (b"[net]\nwidth=64\x00\x00\n", "binary"),
])
def test_c3_not_a_cfg(tmp_path, text, needle):
    expect_error(tmp_path, text, 1, needle)


def test_c3_html_hint_mentions_raw(tmp_path):
    expect_error(tmp_path, b"<!doctype html><html></html>", 1, "raw")


# -- C4 / C5 / C6 through a file (details in test_cfg_reader.py) ----------------------------------

def test_c4_invalid_utf8_in_file(tmp_path):
    text = set_key(TINY, "convolutional", 2, "activation", "leaky").encode()
    line = locate(TINY, "convolutional", 2, "activation")
    lines = text.split(b"\n")
    lines[line - 1] = b"activation=leaky\xc3"
    expect_error(tmp_path, b"\n".join(lines), line, "0xc3")


def test_c4_bom_file_parses(tmp_path):
    nd = parse_ok(tmp_path, b"\xef\xbb\xbf" + TINY.encode())
    assert nd.net.width == 64 and len(nd.specs) == 13


@pytest.mark.parametrize("ending", ["\r\n", "\r"])
def test_c5_line_endings_same_network(tmp_path, ending):
    ref = parse_ok(tmp_path, TINY, "lf.cfg")
    other = parse_ok(tmp_path, TINY.replace("\n", ending), "other.cfg")
    assert other.shapes == ref.shapes and [s.line for s in other.specs] == [s.line for s in ref.specs]
    assert other.specs == ref.specs


def test_c6_inline_comment_value(tmp_path):
    text = set_key(TINY, "convolutional", 4, "filters", "18 # three anchors * (1+5)")
    nd = parse_ok(tmp_path, text)
    assert nd.specs[6].filters == 18


# -- C7 option outside a section ------------------------------------------------------------------

def test_c7_option_before_first_section(tmp_path):
    text = "# yolo\n\nbatch=1\n" + TINY
    expect_error(tmp_path, text, 3, "outside any section", "batch")


# -- C8 [net] placement ---------------------------------------------------------------------------

def test_c8_first_section_not_net(tmp_path):
    text = "# no net\n[convolutional]\nfilters=16\nsize=3\n" + TINY
    expect_error(tmp_path, text, 2, "[net]", "[convolutional]")


def test_c8_second_net(tmp_path):
    text = TINY + "\n[network]\nwidth=32\n"
    second = len(TINY.split("\n")) + 1
    err = expect_error(tmp_path, text, second, "[network]")
    assert f"line {locate(TINY, 'net')}" in str(err)  # both line numbers


# -- C9 malformed headers -------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["[convolutional", "[]", "[ ]", "convolutional]", "[conv-2]", "[1conv]", "[[net]]"])
def test_c9_malformed_header(tmp_path, header):
    lines = TINY.split("\n")
    line = locate(TINY, "convolutional", 2)
    lines[line - 1] = header
    # headers are reported whitespace-free, as darknet's strip() reads them
    needle = header.replace(" ", "")
    if header == "convolutional]":  # no '[': a line without '='
        needle = "convolutional]"
    expect_error(tmp_path, "\n".join(lines), line, needle)


def test_c9_spaces_inside_brackets_warn(tmp_path):
    lines = TINY.split("\n")
    line = locate(TINY, "maxpool", 1)
    lines[line - 1] = "[ maxpool ]"
    path = write(tmp_path, "\n".join(lines))
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}:{line}:.*\[maxpool\]"):
        nd = parse_network(path)
    assert nd.shapes[1] == (16, 32, 32)


# -- C10 line shape -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, needle", [("filters", "filters"), ("filters 32", "filters32"),
                                         ("=32", "empty key"), ("filters=", "empty value"),
                                         ("filters =  ", "empty value"), ("filters=#32", "empty value")])
def test_c10_bad_option_line(tmp_path, bad, needle):
    lines = TINY.split("\n")
    line = locate(TINY, "convolutional", 2, "filters")
    lines[line - 1] = bad
    expect_error(tmp_path, "\n".join(lines), line, needle)


# -- C11 duplicate key ----------------------------------------------------------------------------

def test_c11_duplicate_key(tmp_path):
    first = locate(TINY, "convolutional", 2, "filters")
    text = add_line(TINY, "convolutional", 2, "filters=64")  # the duplicate comes before the original
    dup_first = locate(text, "convolutional", 2) + 1
    second = first + 1
    err = expect_error(tmp_path, text, second, "filters")
    assert f"line {dup_first}" in str(err)


def test_c11_duplicate_training_key_in_net_warns_and_keeps_the_first(tmp_path):
    # batch only sizes training batches: Darknet's reading (the first) is kept, with a warning.
    text = TINY.replace("batch=1\n", "batch=1\nbatch=64\n", 1)
    first = locate(TINY, "net", 1, "batch")
    path = tmp_path / "dup.cfg"
    path.write_text(text)
    with pytest.warns(UserWarning, match=f"{re.escape(str(path))}:{first + 1}:.*batch.*line {first}"):
        nd = parse_network(path)
    assert nd.net.training["batch"] == "1"


def test_c11_duplicate_inference_key_in_net(tmp_path):
    text = TINY.replace("width=64\n", "width=64\nwidth=128\n", 1)
    first = locate(TINY, "net", 1, "width")
    expect_error(tmp_path, text, first + 1, "width", f"line {first}")


# -- C12 keys -------------------------------------------------------------------------------------

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
def test_c12_typo_did_you_mean(tmp_path, header, nth, key, typo):
    line = locate(TINY, header, nth, key)
    value = TINY.split("\n")[line - 1].split("=", 1)[1]
    lines = TINY.split("\n")
    lines[line - 1] = f"{typo}={value}"
    expect_error(tmp_path, "\n".join(lines), line, f"unknown key '{typo}'", f"did you mean '{key}'")


def test_c12_unknown_key_without_close_match(tmp_path):
    text = add_line(TINY, "maxpool", 2, "qqqzzz=1")
    err = expect_error(tmp_path, text, locate(TINY, "maxpool", 2) + 1, "unknown key 'qqqzzz'", "(layer 3)")
    assert "did you mean" not in str(err)


def test_c12_training_keys_accepted(tmp_path):
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
def test_c12_inference_keys_not_supported(tmp_path, header, nth, line):
    key, value = (s.strip() for s in line.split("="))
    if header == "upsample":
        text = set_key(TINY, header, nth, key, value)
    else:
        text = add_line(TINY, header, nth, line)
    expect_error(tmp_path, text, locate(text, header, nth, key), "not supported", f"{key}={value}")


# -- C13 sections ---------------------------------------------------------------------------------

SUPPORTED = ["[convolutional]", "[maxpool]", "[route]", "[shortcut]", "[upsample]", "[yolo]", "[avgpool]", "[connected]",
             "[softmax]", "[dropout]", "[cost]"]


@pytest.mark.parametrize("wrong, right", [("convolutonal", "convolutional"), ("maxpoool", "maxpool"),
                                          ("shortcutt", "shortcut"), ("Yolo", "yolo")])
def test_c13_unknown_section_did_you_mean(tmp_path, wrong, right):
    lines = TINY.split("\n")
    line = locate(TINY, right, 1)
    lines[line - 1] = f"[{wrong}]"
    err = expect_error(tmp_path, "\n".join(lines), line, f"[{wrong}]", f"did you mean [{right}]", "supported:",
                       *SUPPORTED)
    assert "unknown section" in str(err)


@pytest.mark.parametrize("kind", ["lstm", "rnn", "gru", "crnn", "deconvolutional", "l2norm"])
def test_c13_darknet_kind_not_supported(tmp_path, kind):
    text = TINY + f"\n[{kind}]\nsize=1\n"
    line = locate(text, kind)
    err = expect_error(tmp_path, text, line, f"[{kind}]", "does not support", *SUPPORTED)
    assert "unknown section" not in str(err) and "(layer 13)" in str(err)


# -- C14 missing required keys --------------------------------------------------------------------

@pytest.mark.parametrize("header, nth, key, layer", [
    ("convolutional", 1, "filters", 0), ("convolutional", 3, "size", 4), ("route", 2, "layers", 10),
    ("shortcut", 1, "from", 5), ("yolo", 1, "mask", 7), ("yolo", 2, "anchors", 12), ("yolo", 1, "classes", 7),
])
def test_c14_missing_required(tmp_path, header, nth, key, layer):
    text = set_key(TINY, header, nth, key, None)
    expect_error(tmp_path, text, locate(text, header, nth), f"missing required key '{key}'", f"[{header}]",
                 f"(layer {layer})")


@pytest.mark.parametrize("key", ["width", "height"])
def test_c14_net_missing_size(tmp_path, key):
    expect_error(tmp_path, set_key(TINY, "net", 1, key, None), locate(TINY, "net"), "missing required key", "[net]")


# -- C15 types and ranges -------------------------------------------------------------------------

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
def test_c15_type_and_range(tmp_path, header, nth, key, value):
    text = set_key(TINY, header, nth, key, value)
    expect_error(tmp_path, text, locate(text, header, nth, key), f"{key}={value}")


def test_c15_conv_padding_negative(tmp_path):
    text = add_line(TINY, "convolutional", 1, "padding=-1")
    expect_error(tmp_path, text, locate(text, "convolutional", 1, "padding"), "padding=-1")


# -- C16 activations ------------------------------------------------------------------------------

@pytest.mark.parametrize("header, nth, bad, close", [("convolutional", 1, "leakyy", "leaky"),
                                                     ("convolutional", 4, "Linear", "linear"),
                                                     ("shortcut", 1, "lineer", "linear")])
def test_c16_unknown_activation(tmp_path, header, nth, bad, close):
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


def test_c16_missing_activation_is_logistic_with_warning(tmp_path):
    path = write(tmp_path, ONE_BY_ONE.format(activation=""))
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


def test_c16_explicit_linear_differs(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # explicit activation: no warning
        nd = parse_ok(tmp_path, ONE_BY_ONE.format(activation="activation=linear\n"))
    model = build_model(nd).eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 32, 32)
        conv = model.layers[0].conv
        torch.testing.assert_close(model(x)[0][:, 2:4], F.conv2d(x, conv.weight, conv.bias)[:, 2:4])


# -- C17 route layers -----------------------------------------------------------------------------

@pytest.mark.parametrize("nth, value, bad, refers, valid", [
    (1, "11", "11", 11, 7),        # route at layer 8: beyond itself
    (1, "8", "8", 8, 7),           # self-reference
    (1, "-9", "-9", -1, 7),        # relative, before the first layer
    (1, "-20", "-20", -12, 7),
    (2, "-1,99", "99", 99, 9),     # route at layer 10, second entry
    (2, "10,-1", "10", 10, 9),
])
def test_c17_route_out_of_range(tmp_path, nth, value, bad, refers, valid):
    text = set_key(TINY, "route", nth, "layers", value)
    err = expect_error(tmp_path, text, locate(text, "route", nth, "layers"), f"layers={bad}",
                       f"refers to layer {refers}", f"0..{valid}")
    assert err.index == valid + 1


@pytest.mark.parametrize("value, needle", [("", "empty value"), (",", "layers=,"), ("-1,,2", "layers=-1,,2")])
def test_c17_route_empty(tmp_path, value, needle):
    lines = TINY.split("\n")
    line = locate(TINY, "route", 1, "layers")
    lines[line - 1] = f"layers={value}"
    expect_error(tmp_path, "\n".join(lines), line, needle)


def test_c17_route_as_first_layer(tmp_path):
    text = TINY.replace("[convolutional]\nbatch_normalize=1\nfilters=16", "[route]\nlayers=-1\n\n"
                        "[convolutional]\nbatch_normalize=1\nfilters=16", 1)
    expect_error(tmp_path, text, locate(text, "route", 1, "layers"), "refers to layer -1")


# -- C18 route shape mismatch ---------------------------------------------------------------------

def test_c18_route_hw_mismatch(tmp_path):
    # width 66: layer 1 maxpool (darknet padding size-1=1) -> (66+1-2)//2+1 = 33 wide, layer 3 -> 17,
    # upsample (layer 9) -> 34 wide and 32 high; the route at layer 10 joins it with layer 2 (33 wide).
    text = set_key(TINY, "net", 1, "width", "66")
    err = expect_error(tmp_path, text, locate(text, "route", 2), "layer 9", "layer 2", "34x32x32", "33x32x32",
                       "multiple of 32")
    assert err.index == 10


# -- C19 shortcut ---------------------------------------------------------------------------------

def test_c19_shortcut_subsamples_a_larger_layer(tmp_path):
    # from=-4 at layer 5 is layer 1 (16 ch, 32x32), added to layer 4 (32 ch, 16x16): pjreddie's
    # shortcut_cpu samples every 2nd pixel of the larger one (tests/test_layer_keys.py checks values)
    text = set_key(TINY, "shortcut", 1, "from", "-4")
    nd = parse_ok(tmp_path, text)
    assert nd.shapes[5] == nd.shapes[4] == (32, 16, 16)


def test_c19_shortcut_shape_mismatch(tmp_path):
    # Darknet's shortcut_cpu asserts equal width and height ratios: 32/16 across but 32/32 down
    text = set_key(TINY, "shortcut", 1, "from", "-4")
    text = add_line(text, "maxpool", 2, "stride_y=1")
    expect_error(tmp_path, text, locate(text, "shortcut", 1), "layer 1", "layer 4")


def test_c19_shortcut_fewer_channels_is_not_broadcast(tmp_path):
    # conv at layer 4 with 1 filter, then shortcut from a 32-channel layer: PyTorch would broadcast
    # 1x16x16 + 32x16x16 to 32 channels; Darknet adds the common channel and keeps layer 4's shape.
    text = set_key(TINY, "convolutional", 3, "filters", "1")
    nd = parse_ok(tmp_path, text)
    shortcut = next(s for s in nd.specs if type(s).__name__ == "ShortcutSpec")
    assert nd.shapes[shortcut.index] == nd.shapes[shortcut.index - 1] == (1, 16, 16)


@pytest.mark.parametrize("value, refers", [("-6", -1), ("5", 5), ("9", 9)])
def test_c19_shortcut_from_out_of_range(tmp_path, value, refers):
    text = set_key(TINY, "shortcut", 1, "from", value)
    needles = [f"refers to layer {refers}", "0..4"] if refers is not None else ["one source layer"]
    expect_error(tmp_path, text, locate(text, "shortcut", 1, "from"), f"from={value}", *needles)


def test_c19_shortcut_first_layer(tmp_path):
    text = TINY.replace("[convolutional]\nbatch_normalize=1\nfilters=16", "[shortcut]\nfrom=-1\n\n"
                        "[convolutional]\nbatch_normalize=1\nfilters=16", 1)
    expect_error(tmp_path, text, locate(text, "shortcut", 1), "(layer 0)")


# -- C20 filters before [yolo] ---------------------------------------------------------------------

@pytest.mark.parametrize("filters, yolo_nth, conv_nth, classes, layer", [
    ("255", 1, 4, "1", 6),   # coco filters with classes=1: 255 != 3*(1+5)=18
    ("18", 2, 5, "80", 11),  # classes=80 with filters for 1 class: 18 != 3*(80+5)=255
])
def test_c20_filters_vs_yolo(tmp_path, filters, yolo_nth, conv_nth, classes, layer):
    text = set_key(TINY, "convolutional", conv_nth, "filters", filters)
    text = set_key(text, "yolo", yolo_nth, "classes", classes)
    need = 3 * (int(classes) + 5)
    conv_line = locate(text, "convolutional", conv_nth)
    expect_error(tmp_path, text, locate(text, "yolo", yolo_nth), f"layer {layer}", f"(layer {layer + 1})",
                 f"cfg line {conv_line}", f"{filters} channels", f"3*({classes}+5)", f"= {need}", "[yolo]")


# -- C21 masks and anchors -------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, needle", [
    ("mask", "3,4,6", "mask index 6"), ("mask", "-1,4,5", "mask index -1"), ("mask", "3,4,60", "num=6"),
    ("anchors", "10,14, 23,27, 37,58, 81,82, 135,169, 344", "11 numbers"),
    ("anchors", "10,14, 23,27, 37,58, 81,82, 135,169", "5 pairs"),
    ("anchors", "10,14, 23,27, 37,58, 81,82, 135,169, 344,319, 1,1", "7 pairs"),
    ("anchors", "10,14, a,27, 37,58, 81,82, 135,169, 344,319", "anchors=10,14,a,27"),
    ("anchors", "10,14, 0,27, 37,58, 81,82, 135,169, 344,319", "positive"),
])
def test_c21_mask_and_anchors(tmp_path, key, value, needle):
    text = set_key(TINY, "yolo", 1, key, value)
    expect_error(tmp_path, text, locate(text, "yolo", 1, key), needle)


def test_c21_overlapping_masks_are_legal(tmp_path):
    text = set_key(TINY, "yolo", 1, "mask", "2,3,4")
    nd = parse_ok(tmp_path, text)
    assert [s.mask for s in nd.yolo_specs] == [[2, 3, 4], [0, 1, 2]]


def test_c21_classes_differ_between_heads(tmp_path):
    text = set_key(TINY, "yolo", 2, "classes", "2")
    text = set_key(text, "convolutional", 5, "filters", "21")
    expect_error(tmp_path, text, locate(text, "yolo", 2, "classes"), "classes=2", "classes=1")


# -- C22 [net] size and channels ------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("width", "0"), ("width", "-64"), ("height", "0"), ("channels", "2"),
                                        ("channels", "4"), ("channels", "0"), ("width", "sixty")])
def test_c22_bad_net_values(tmp_path, key, value):
    text = set_key(TINY, "net", 1, key, value)
    expect_error(tmp_path, text, locate(text, "net", 1, key), f"{key}={value}")


def test_c22_not_multiple_of_32_only_warns(tmp_path):
    # 72 -> 36 -> 18 -> upsample 36: nothing breaks, so only a warning
    path = write(tmp_path, set_key(TINY, "net", 1, "width", "72"))
    with pytest.warns(UserWarning, match="multiples? of 32"):
        nd = parse_network(path)
    assert nd.shapes[10] == (64, 32, 36) and nd.shapes[12] == (18, 32, 36)


def test_c22_channels_one(tmp_path):
    nd = parse_ok(tmp_path, set_key(TINY, "net", 1, "channels", "1"))
    assert nd.input_shape == (1, 64, 64)


# -- C23 training values in [net] ------------------------------------------------------------------

def test_c23_batch_subdivisions_ignored(tmp_path):
    text = set_key(set_key(TINY, "net", 1, "batch", "64"), "net", 1, "subdivisions", "16")
    nd = parse_ok(tmp_path, text)
    assert nd.net.training["batch"] == "64" and nd.net.training["subdivisions"] == "16"
    model = build_model(nd).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 18, 16, 16), (2, 18, 32, 32)]


# -- reference cfgs ---------------------------------------------------------------------------------

def _ref(sub: str, name: str) -> Path:
    path = REF / sub / "cfg" / name
    if not REF.is_dir():
        pytest.skip(f"{REF} not present")
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def _ref_names(sub, pattern):
    folder = REF / sub / "cfg"
    return sorted(p.name for p in folder.glob(pattern)) if folder.is_dir() else []


# yolov3-openimages.cfg sets "batch" twice in [net] (an indented " batch=1" and "batch=64"): a
# warning, checked separately below.
SUPPORTED_REFS = [("pjreddie", n) for n in _ref_names("pjreddie", "yolov3*.cfg") if n != "yolov3-openimages.cfg"] + \
                 [("alexeyab", "yolov3-tiny_3l.cfg")]


def _sections(path: Path):
    return [(i + 1, m.group(1)) for i, line in enumerate(path.read_text().splitlines())
            if (m := re.match(r"\s*\[(\w+)\]", line))]


@pytest.mark.parametrize("sub, name", SUPPORTED_REFS or [("pjreddie", "yolov3.cfg")])
def test_reference_yolov3_cfgs_parse(sub, name):
    path = _ref(sub, name)
    sections = _sections(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nd = parse_network(path)
    assert len(nd.specs) == len(sections) - 1
    assert [s.line for s in nd.specs] == [line for line, _ in sections[1:]]
    yolo = [i - 1 for i, (_, kind) in enumerate(sections) if kind == "yolo"]
    assert nd.yolo_indices == yolo
    text = path.read_text()
    classes = int(re.search(r"^\s*classes\s*=\s*(\d+)", text, re.M).group(1))
    for i in yolo:
        assert nd.shapes[i][0] == len(nd.specs[i].mask) * (classes + 5)


def test_reference_yolov3_shapes():
    nd = parse_network(_ref("pjreddie", "yolov3.cfg"), width=416, height=416)
    assert nd.yolo_indices == [82, 94, 106]
    assert [nd.shapes[i] for i in nd.yolo_indices] == [(255, 13, 13), (255, 26, 26), (255, 52, 52)]
    tiny = parse_network(_ref("pjreddie", "yolov3-tiny.cfg"))
    assert tiny.yolo_indices == [16, 23] and len(tiny.specs) == 24


def test_reference_openimages_duplicate_batch():
    path = _ref("pjreddie", "yolov3-openimages.cfg")
    batch = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if re.match(r"\s*batch\s*=", line)]
    with pytest.warns(UserWarning, match=f":{batch[1]}:.*batch.*line {batch[0]}"):
        nd = parse_network(path)
    assert nd.yolo_specs[0].classes == 601 and nd.shapes[nd.yolo_indices[0]][0] == 3 * (601 + 5)


# Every reference cfg now loads; the families are run against OpenCV or float64 references in
# test_parity_opencv / test_cfg_files (yolov3), test_classifier and test_layer_keys (darknet19,
# darknet53, resnet50), test_yolov4 (AlexeyAB's), test_yolov2 and test_yolov1.
ALL_REFS = sorted({("pjreddie", n) for n in _ref_names("pjreddie", "*.cfg")} |
                  {("alexeyab", n) for n in _ref_names("alexeyab", "*.cfg")})


def test_reference_folder_has_the_families():
    if not REF.exists():
        pytest.skip("reference folder absent")
    names = {n for _, n in ALL_REFS}
    assert {"yolov1.cfg", "yolov2.cfg", "yolov3.cfg", "yolov4.cfg", "darknet53.cfg", "resnet50.cfg"} <= names


@pytest.mark.parametrize("sub, name", ALL_REFS or [pytest.param("-", "-", marks=pytest.mark.skip("no reference"))])
def test_every_reference_cfg_loads(sub, name):
    path = _ref(sub, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # yolov3-openimages repeats [net] keys (a warning, by design)
        nd = parse_network(path)
    assert len(nd.specs) == len(nd.sections) - 1
    assert all(min(shape) > 0 for shape in nd.shapes)
