"""[scale_channels] (AlexeyAB's channel attention, and with scale_wh its spatial form): against float64
NumPy written from src/scale_channels_layer.c's index arithmetic; and the refused values. (With
[sam], against OpenCV 4.x: tests/layers/test_sam.py.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import calibrated_model, layer_outputs
from tests.helpers.numeric import rel_err
from tests.helpers.reference import ACT64


def test_scale_channels_scales_each_channel():
    # forward_scale_channels_layer: out[i] = in[i / (w*h)] * from[i]: one factor per (image, channel)
    text = cfg(conv(6, 1), "[avgpool]", conv(6, 1, act="logistic", bn=False), "[scale_channels]\nfrom=0")
    model = calibrated_model(text, seed=5)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    outs = layer_outputs(model, x)
    flat_in, flat_from = outs[2].reshape(-1), outs[0].reshape(-1)
    i = np.arange(flat_from.size)
    ref = (flat_in[i // (32 * 32)] * flat_from).reshape(outs[0].shape)
    assert rel_err(outs[3], ref) < 1e-6


@pytest.mark.parametrize("act", ["tanh", "elu", "relu"])
def test_sam_and_scale_wh_against_float64(act):
    text = cfg(
        conv(4, 1),                                          # 0: 4 x 32 x 32
        conv(4, 1, act="logistic", bn=False),                # 1
        f"[sam]\nfrom=-2\nactivation={act}",                  # 2: act(layer 1 * layer 0)
        conv(1, 1, act="logistic", bn=False),                # 3: a 1-channel spatial map
        f"[scale_channels]\nfrom=-2\nscale_wh=1\nactivation={act}",  # 4: layer 2 * map, every channel
        "[sam]\nfrom=-1",                                    # 5: from = the previous layer: its square
    )
    model = calibrated_model(text, seed=3)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    outs = layer_outputs(model, x)
    f = ACT64[act]
    assert rel_err(outs[2], f(outs[1] * outs[0])) < 1e-6
    # forward_scale_channels_layer, scale_wh: input_index = i % (w*h) + (i / (c*w*h)) * (w*h)
    n, c, h, w = outs[2].shape
    flat_in, flat_from = outs[3].reshape(-1), outs[2].reshape(-1)
    i = np.arange(flat_from.size)
    ref = f(flat_in[i % (w * h) + (i // (c * w * h)) * (w * h)] * flat_from).reshape(n, c, h, w)
    assert rel_err(outs[4], ref) < 1e-6
    assert rel_err(outs[5], outs[4] ** 2) < 1e-6


@pytest.mark.parametrize("sections, line, needles", [
    ((conv(8, 1), "[avgpool]", conv(4, 1, bn=False), "[scale_channels]\nfrom=0"), "[scale_channels]",
     ["layer 0 (32x32x8)", "layer 2 (1x1x4)", "1x1x8"]),
    ((conv(8, 1), conv(8, 1), "[scale_channels]\nfrom=0"), "[scale_channels]", ["layer 1 (32x32x8)", "1x1x8"]),
    ((conv(8, 1), conv(2, 1), "[scale_channels]\nfrom=0\nscale_wh=1"), "scale_wh=1",
     ["layer 1 (32x32x2)", "layer 0 (32x32x8)", "32x32x1"]),
    ((conv(8, 1), "[avgpool]", conv(8, 1, bn=False), "[scale_channels]\nfrom=0\nactivation=swish"),
     "activation=swish", ["not supported"]),
    ((conv(8, 1), "[avgpool]", "[scale_channels]\nfrom=0\nscale_wh=2"), "scale_wh=2", ["expected one of 0, 1"]),
])
def test_bad_inputs_name_the_line(sections, line, needles):
    text = cfg(*sections)
    expect_cfg_error(text, line_of(text, line), *needles)
