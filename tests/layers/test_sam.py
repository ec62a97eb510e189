"""[sam] (AlexeyAB's spatial attention: act(previous * from)), with [scale_channels] after it: against
OpenCV 4.x's Darknet importer and float64 NumPy written from src/sam_layer.c; and the refused values.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import calibrated_model, layer_outputs
from tests.helpers.numeric import rel_err
from tests.helpers.opencv import needs_darknet_importer, opencv_forward
from tests.helpers.reference import ACT64


def sam_net(sam_act="linear", scale_act="linear", sam_from="-2", scale_from="-3"):
    return cfg(
        conv(8, 1),                                        # 0
        conv(8, 1, act="logistic", bn=False),              # 1: attention map
        f"[sam]\nfrom={sam_from}\nactivation={sam_act}",    # 2: layer 1 * layer 0
        "[avgpool]",                                       # 3
        conv(8, 1, act="logistic", bn=False),              # 4: excitation, 1x1x8
        f"[scale_channels]\nfrom={scale_from}\nactivation={scale_act}",  # 5: layer 2 scaled by layer 4
        conv(6, size=3, stride=2),                         # 6
    )


def cut_after(text, nth_section):
    """The cfg up to and including its nth layer section (0-based), for OpenCV's last output."""
    parts = text.split("\n\n[")
    return "\n\n[".join(parts[:nth_section + 2]) + "\n"


@needs_darknet_importer
@pytest.mark.parametrize("sam_act, scale_act, sam_from, scale_from", [
    ("linear", "linear", "-2", "-3"), ("leaky", "logistic", "0", "2"), ("logistic", "leaky", "-2", "2")])
def test_sam_and_scale_channels_match_opencv(sam_act, scale_act, sam_from, scale_from, tmp_path):
    text = sam_net(sam_act, scale_act, sam_from, scale_from)
    model = calibrated_model(text, seed=1)
    weights = tmp_path / "sam.weights"
    model.save_weights(weights)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    outs = layer_outputs(model, x)
    assert model.netdef.shapes[2] == (8, 32, 32) and model.netdef.shapes[5] == (8, 32, 32)
    for layer in (2, 5, 6):
        cut = tmp_path / f"cut{layer}.cfg"
        cut.write_text(cut_after(text, layer))
        theirs = opencv_forward(cut, weights, x, one_by_one=True).astype(np.float64)
        assert theirs.shape == outs[layer].shape
        # float32 summation order (oneDNN vs OpenCV) only: measured at most 2.5e-5
        assert rel_err(outs[layer], theirs) < 1e-4, (layer, rel_err(outs[layer], theirs))
    # and the operations themselves in float64 from their inputs: act(prev * from)
    np.testing.assert_allclose(outs[2], ACT64[sam_act](outs[1] * outs[0]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(outs[5], ACT64[scale_act](outs[4] * outs[2]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("sections, line, needles", [
    # the two layers must have the same shape; both are named
    ((conv(8, 1), conv(4, 1, act="logistic", bn=False), "[sam]\nfrom=-2"), "[sam]",
     ["layer 1 (32x32x4)", "layer 0 (32x32x8)", "make_sam_layer"]),
    ((conv(8, 1), conv(8, 1, stride=2), "[sam]\nfrom=-2"), "[sam]", ["layer 1 (16x16x8)", "layer 0 (32x32x8)"]),
    ((conv(8, 1), "[sam]\nfrom=-1,-1"), "from=-1,-1", ["reads one layer"]),
    ((conv(8, 1), "[sam]\nfrom=1"), "from=1", ["from=1 refers to layer 1"]),
    ((conv(8, 1), "[sam]\nactivation=leaky"), "[sam]", ["missing required key 'from'"]),
    ((conv(8, 1), conv(8, 1), "[sam]\nfrom=-2\nactivation=mish"), "activation=mish", ["not supported", "outputs 0"]),
    ((conv(8, 1), conv(8, 1), "[sam]\nfrom=-2\nactivation=leeky"), "activation=leeky", ["did you mean 'leaky'"]),
    (("[sam]\nfrom=-1",), "[sam]", ["cannot be the first layer"]),
])
def test_bad_inputs_name_the_line(sections, line, needles):
    text = cfg(*sections)
    expect_cfg_error(text, line_of(text, line), *needles)
