"""Every activation (darknet_py.layers.activations) against Darknet's src/activations.[ch]: in a
[convolutional] against the float64 ``RefNet`` and, for those it reads (logistic, leaky, relu, tanh,
swish, mish), OpenCV 4.x's Darknet importer; the formulas themselves in float64; the
normalize_channels family's eps; and a misspelt name.

Tolerance ``RTOL`` (tests/helpers/layers.py): 1e-4 relative, float32 against float64.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.graph import build_model
from darknet_py.layers.activations import ACTIVATIONS, Activation
from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.float64_net import RefNet, act_c
from tests.helpers.layers import RTOL, make_input, ours_out, written
from tests.helpers.numeric import rel_err
from tests.helpers.opencv import needs_darknet_importer, opencv_forward


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_matches_float64_reference(name, tmp_path):
    # pre-activations ~ N(0, 4^2) with a spread bias: every kink and tail is reached
    # (relu6's 6, plse's +-4, hard_mish's -2, stair's steps, softplus's 20 for mish)
    text = cfg(conv(6, 3, act=name, bn=False))
    path, weights, model = written(tmp_path, text, std=8.0)
    x = make_input()
    with torch.no_grad():
        pre = torch.nn.functional.conv2d(x, model.layers[0].conv.weight, model.layers[0].conv.bias, 1, 1)
    assert float(pre.min()) < -4.5 and float(pre.max()) > 6.5
    ref = RefNet(text, weights.read_bytes()).forward(x.double().numpy())
    assert rel_err(ours_out(model, x), ref) < RTOL


@needs_darknet_importer
@pytest.mark.parametrize("name", ["linear", "logistic", "leaky", "relu", "tanh", "swish", "mish"])
def test_activations_opencv_knows_match_it(name, tmp_path):
    text = cfg(conv(6, 3, act=name, bn=False)) + "\n[shortcut]\nfrom=-1\nactivation=" + (
        name if name in ("linear", "leaky", "swish", "mish", "logistic") else "linear") + "\n"
    path, weights, model = written(tmp_path, text, std=8.0)
    x = make_input()
    diff = rel_err(ours_out(model, x), opencv_forward(path, weights, x))
    assert diff < RTOL, diff


def test_activation_formulas_in_float64():
    """Each activation in float64 on a grid through every kink (0, +-2, +-4, 6, the integers, 20)
    against the C formulas: constants and branches exactly, beyond float32's resolution."""
    grid = torch.cat([torch.linspace(-30, 30, 6001, dtype=torch.float64), torch.arange(-25, 26, dtype=torch.float64)])
    x = grid[: grid.numel() // 4 * 4].view(1, 4, -1, 1)  # 4 channels for the normalize_channels family
    for name in sorted(ACTIVATIONS):
        with torch.no_grad():
            ours = Activation(name)(x.clone()).numpy()
        ref = act_c(x.numpy(), name)
        assert np.abs(ours - ref).max() <= 1e-12 * max(1.0, np.abs(ref).max()), name


# ------------------------------------------------------------------------------------ normalize_channels

@pytest.mark.parametrize("name, shift", [("normalize_channels", 0.0), ("normalize_channels_softmax", -12.0)])
def test_normalize_channels_eps(name, shift, tmp_path):
    # small sums, where activate_array_normalize_channels*'s eps = 1e-4 in the denominator counts
    text = cfg(conv(4, 1, act=name, bn=False))
    model = build_model(text.encode())
    with torch.no_grad():
        model.layers[0].conv.weight.copy_(torch.randn(4, 3, 1, 1, generator=torch.Generator().manual_seed(3)) * 1e-3)
        model.layers[0].conv.bias.fill_(shift)  # values ~1e-3 (normalize_channels), exp(-12) (softmax)
    path, weights, model = written(tmp_path, text, model=model)
    x = make_input()
    ours = ours_out(model, x)
    ref = RefNet(text, weights.read_bytes()).forward(x.double().numpy())
    assert rel_err(ours, ref) < RTOL
    assert np.median(ours.sum(1)) < 0.98 and ours.max() > 0.01  # the eps is a visible share of each sum


@pytest.mark.parametrize("name", ["normalize_channels", "normalize_channels_softmax",
                                  "normalize_channels_softmax_maxval"])
def test_normalize_channels_sum_to_one_over_channels(name, tmp_path):
    path, weights, model = written(tmp_path, cfg(conv(5, 3, act=name, bn=False)), std=3.0)
    y = ours_out(model, make_input())
    total = y.sum(1)
    assert np.all(total <= 1.0 + 1e-6) and np.median(total) > 0.99  # the eps keeps each sum just below 1
    if name == "normalize_channels":
        assert (y == 0).any() and (y >= 0).all()


# ------------------------------------------------------------------------------------ refused names

def test_misspelt_activation_gets_a_did_you_mean(tmp_path):
    text = cfg(conv(4, 3, act="normalise_channels"))
    expect_cfg_error(text, line_of(text, "activation=normalise_channels"), "did you mean 'normalize_channels'",
                     path=tmp_path / "bad.cfg")
