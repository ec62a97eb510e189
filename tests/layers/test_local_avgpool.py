"""[local_avgpool] / [local_avg] (AlexeyAB's average pool, a window that counts only its in-range taps):
against float64 NumPy written from maxpool_layer.c's ``forward_local_avgpool_layer``, the border, the
summary row; and the refused values.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.graph import parse_network
from darknet_py.summary import summarize
from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import calibrated_model, layer_outputs
from tests.helpers.numeric import rel_err


def local_avgpool_ref(x, size, stride_x, stride_y, padding):
    """forward_local_avgpool_layer: the mean of the in-range taps (out-of-range ones not counted)."""
    n, c, h, w = x.shape
    out_h = (h + padding - size) // stride_y + 1
    out_w = (w + padding - size) // stride_x + 1
    off = -(padding // 2)
    out = np.zeros((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            total, counter = np.zeros((n, c)), 0
            for dn in range(size):
                for m in range(size):
                    cur_h, cur_w = off + i * stride_y + dn, off + j * stride_x + m
                    if 0 <= cur_h < h and 0 <= cur_w < w:
                        counter += 1
                        total += x[:, :, cur_h, cur_w]
            out[:, :, i, j] = total / counter
    return out


@pytest.mark.parametrize("section, geometry", [
    ("[local_avgpool]\nsize=4\nstride=4", (4, 4, 4, 3)),            # yolov4-tiny_contrastive's
    ("[local_avgpool]\nsize=3\nstride=2", (3, 2, 2, 2)),            # padding 2: 1 before, 1 after
    ("[local_avg]\nsize=2\nstride=1", (2, 1, 1, 1)),                # padding 1, all after: shape kept
    ("[local_avgpool]\nstride=2", (2, 2, 2, 1)),                    # size defaults to stride
    ("[local_avgpool]\nsize=5\nstride=1\npadding=4", (5, 1, 1, 4)),
    ("[local_avgpool]\nsize=3\nstride_x=1\nstride_y=2", (3, 1, 2, 2)),
    ("[local_avgpool]\nsize=3\nstride=3\npadding=0", (3, 3, 3, 0)),  # 32 -> 10: the last 2 rows unread
])
def test_local_avgpool_against_float64(section, geometry):
    size, sx, sy, padding = geometry
    text = cfg(conv(5, 1, act="linear", bn=False), section)  # linear conv: negative inputs too
    model = calibrated_model(text, seed=8)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    outs = layer_outputs(model, x)
    ref = local_avgpool_ref(outs[0], size, sx, sy, padding)
    assert model.netdef.shapes[1] == ref.shape[1:]
    assert rel_err(outs[1], ref) < 1e-6
    # the module follows the input size (odd sizes, asymmetric borders), as Darknet's resize does
    odd = torch.randn(1, 2, 13, 15, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        got = model.layers[1](odd).double().numpy()
    assert rel_err(got, local_avgpool_ref(odd.double().numpy(), size, sx, sy, padding)) < 1e-6


def test_local_avgpool_border_counts_only_real_taps():
    # 2x2 input of ones, size 3 stride 1 padding 2: every window holds 1, 2 or 4 real taps, mean 1
    text = cfg("[local_avgpool]\nsize=3\nstride=1", width=32)
    model = calibrated_model(text)
    with torch.no_grad():
        out = model.layers[0](torch.ones(1, 1, 2, 2))
    assert out.shape == (1, 1, 2, 2) and torch.equal(out, torch.ones(1, 1, 2, 2))
    row = summarize(parse_network(text.encode())).rows[0]
    assert row.flops == 3 * 3 * 3 * 32 * 32  # make_maxpool_layer's size*size*c*out_h*out_w
    assert "3 x 3 / 1" in row.describe


@pytest.mark.parametrize("sections, line, needles", [
    ((conv(8, 1), "[local_avgpool]\nsize=2\nstride=1\npadding=4"), "padding=4", ["whole", "0/0"]),
    ((conv(8, 1), "[local_avgpool]\nsize=3\nstride=1\npadding=5"), "padding=5", ["whole", "0/0"]),
    ((conv(8, 1, stride=16), "[local_avgpool]\nsize=5\npadding=0"), "[local_avgpool]", ["does not fit", "2x2x8"]),
    ((conv(8, 1), "[local_avgpool]\nsize=2\nmaxpool_depth=1"), "maxpool_depth=1", ["unknown key 'maxpool_depth'"]),
    ((conv(8, 1), "[local_avgpool]\nsize=2\nstride_x=0"), "stride_x=0", ["expected a value >= 1"]),
])
def test_bad_inputs_name_the_line(sections, line, needles):
    text = cfg(*sections)
    expect_cfg_error(text, line_of(text, line), *needles)


def test_local_avgpool_padding_error_names_the_windows():
    text = cfg(conv(8, 1), "[local_avgpool]\nsize=2\nstride=1\npadding=3")
    err = expect_cfg_error(text, line_of(text, "padding=3"), "layer 0")
    assert "[local_avgpool] (layer 1)" in str(err)
