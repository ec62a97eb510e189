"""[shortcut]: pjreddie's sampled addition (the from layer larger or smaller than the previous one,
channels differing), AlexeyAB's several from layers and weighted sums (weights_type,
weights_normalization) and their place in the .weights file; against the float64 ``RefNet``
(tests/helpers/float64_net.py), OpenCV 4.x where it reads the case, and by hand; and the refused values.

Tolerance ``RTOL`` (tests/helpers/layers.py): 1e-4 relative, float32 against float64.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.graph import build_model
from darknet_py.weights import weights_bytes
from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.float64_net import RefNet
from tests.helpers.heads import yolov4_small_cfg
from tests.helpers.layers import (RTOL, SHORTCUT_CASES, check_against_ref, expect_no_effect_warning, make_input,
                                  ours_out, written)
from tests.helpers.numeric import rel_err
from tests.helpers.opencv import needs_darknet_importer, opencv_forward


# ------------------------------------------------------------------------------------ the addition

@pytest.mark.parametrize("case", list(SHORTCUT_CASES))
def test_shortcut_matches_float64_reference(case, tmp_path):
    check_against_ref(tmp_path, cfg(SHORTCUT_CASES[case]))


@pytest.mark.filterwarnings("ignore:.*not multiples of 32")
def test_shortcut_sampling_by_hand():
    # previous 1x4x4 of zeros (a conv with zero weights), from = the 1x2x2 input: added at (0,0),
    # (0,2), (2,0), (2,2); from = an 8x8 input on a 4x4 previous: every second pixel, row and column
    small = cfg("[convolutional]\nfilters=1\nsize=1\nstride=1\nactivation=linear", "[upsample]\nstride=2",
                "[shortcut]\nfrom=-2", width=2, channels=1)
    model = build_model(small.encode()).eval()
    with torch.no_grad():
        model.layers[0].conv.weight.fill_(1.0)
        model.layers[0].conv.bias.zero_()
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    expect = [[2, 1, 4, 2], [1, 1, 2, 2], [6, 3, 8, 4], [3, 3, 4, 4]]
    assert model(x)[0][0, 0].tolist() == expect
    # previous = 2x2 block maxima of a 4x4 ramp, from = the ramp: from[2j, 2i] added
    large = cfg("[convolutional]\nfilters=1\nsize=1\nstride=1\nactivation=linear", "[maxpool]\nsize=2\nstride=2",
                "[shortcut]\nfrom=-2", width=4, channels=1)
    model = build_model(large.encode()).eval()
    with torch.no_grad():
        model.layers[0].conv.weight.fill_(1.0)
        model.layers[0].conv.bias.zero_()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert model(x)[0][0, 0].tolist() == [[5 + 0, 7 + 2], [13 + 8, 15 + 10]]


@needs_darknet_importer
def test_shortcut_channels_differ_matches_opencv(tmp_path):
    text = cfg(conv(8, 3) + "\n\n" + conv(5, 3) + "\n\n[shortcut]\nfrom=-2\nactivation=leaky")
    path, weights, model = written(tmp_path, text)
    x = make_input()
    assert rel_err(ours_out(model, x), opencv_forward(path, weights, x)) < RTOL


# ------------------------------------------------------------------------------------ weighted sums

def test_shortcut_weights_file_order_and_round_trip(tmp_path):
    """per_channel with 2 from layers and 6 channels: (2+1)*6 floats, [input][channel]."""
    text = cfg(SHORTCUT_CASES["per_channel_softmax"])
    path, weights, model = written(tmp_path, text)
    shortcut = model.layers[3]
    assert tuple(shortcut.weights.shape) == (3, 6)
    data = weights.read_bytes()
    convs = sum(t.numel() for layer in model.layers[:3] for _, t in layer.darknet_tensors())
    tail = np.frombuffer(data, "<f4", offset=20 + 4 * convs)
    assert tail.size == 18 and np.array_equal(tail.reshape(3, 6), shortcut.weights.detach().numpy())
    assert weights_bytes(model) == data  # load -> save: byte-identical
    again = tmp_path / "again.weights"
    model.save_weights(again)
    assert again.read_bytes() == data
    per_feature = build_model(cfg(SHORTCUT_CASES["per_feature_relu"]).encode())
    assert tuple(per_feature.layers[3].weights.shape) == (3,)
    assert per_feature.layers[3].weights.tolist() == [1.0, 1.0, 1.0]  # make_shortcut_layer's initial weights


def test_shortcut_weights_reach_the_output(tmp_path):
    text = cfg(SHORTCUT_CASES["per_channel_relu"])
    path, weights, model = written(tmp_path, text)
    x = make_input()
    before = ours_out(model, x)
    with torch.no_grad():
        model.layers[3].weights[1].fill_(-1.0)  # relu: input 1 (layer 2) drops out
    after = ours_out(model, x)
    assert rel_err(before, after) > 1e-2
    ref = RefNet(text, weights_bytes(model)).forward(x.double().numpy())
    assert rel_err(after, ref) < RTOL


# ------------------------------------------------------------------------------------ refused values

BAD = [
    # (sections, the cfg line the error names, needles)
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nweights_type=per_pixel", "weights_type=per_pixel",
     ["not supported", "per_feature, per_layer, per_channel"]),
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nweights_type=per_feature\nweights_normalization=l2",
     "weights_normalization=l2", ["not supported", "relu, avg_relu, softmax"]),
    # w ratio 32/32 = 1 but h ratio 32/16 = 2: Darknet's shortcut_cpu asserts
    (conv(4, 3) + "\n\n" + conv(4, 3, "stride_y=2\nstride_x=1") + "\n\n[shortcut]\nfrom=-2", "[shortcut]",
     ["layer 0 of shape 32x32x4", "layer 1 of shape 32x16x4", "ratios differ"]),
    (conv(4, 3) + "\n\n" + conv(4, 3, stride=2) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2,-3", "from=-2,-3",
     ["layer 0 of shape 32x32x4", "several from layers", "not supported"]),
    (conv(4, 3) + "\n\n" + conv(4, 3, stride=2) + "\n\n[shortcut]\nfrom=-2\nweights_type=per_channel", "from=-2",
     ["weights_type=per_channel", "equal in width x height"]),
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nalpha=0.5", "alpha=0.5", ["not supported"]),
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nactivation=hard_mish", "activation=hard_mish",
     ["not supported on [shortcut]", "[convolutional]", "outputs 0"]),
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nactivation=normalize_channels",
     "activation=normalize_channels", ["not supported on [shortcut]"]),
]


@pytest.mark.parametrize("sections, line, needles", BAD, ids=[b[1] for b in BAD])
def test_bad_values_name_the_line(sections, line, needles, tmp_path):
    text = cfg(sections)
    expect_cfg_error(text, line_of(text, line), *needles, path=tmp_path / "bad.cfg")


def test_weights_normalization_without_weights_type_warns(tmp_path):
    text = cfg(conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nweights_normalization=relu")
    expect_no_effect_warning(text, "weights_normalization", tmp_path)


# Keys of AlexeyAB's [shortcut] that this version refuses, each with its cfg line (on the small
# YOLOv4-like network of tests/helpers/heads.py).
@pytest.mark.parametrize("old, new, needle", [
    ("from=6\n", "from=6\nweights_type=per_pixel\n", "weights_type=per_pixel"),
    ("from=6\n", "from=6\nweights_type=per_feature\nweights_normalization=avg\n", "weights_normalization=avg"),
    ("from=6\n", "from=6\nalpha=0.5\n", "alpha=0.5"),
    ("from=6\n", "from=6,2\n", "from=6,2"),  # several inputs of different sizes: AlexeyAB asserts
])
def test_unsupported_shortcut_names_the_line(old, new, needle):
    text = yolov4_small_cfg("").replace(old, new)
    expect_cfg_error(text, line_of(text, needle, -1))
