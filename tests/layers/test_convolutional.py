"""[convolutional]'s Darknet keys: groups / depthwise, dilation, stride_x / stride_y, flipped, binary and
xnor, antialiasing, the training-only keys; training mode computing what inference computes; and the
refused values.

Each case is a small generated cfg (32 px input): random weights written with our writer, the file
reloaded, and the output compared with OpenCV 4.x's Darknet importer where it implements the key
(groups / depthwise) and otherwise with ``RefNet`` (tests/helpers/float64_net.py), a float64 NumPy
Darknet written from Darknet's C that reads the cfg text and the .weights bytes itself.
Tolerance ``RTOL`` (tests/helpers/layers.py): 1e-4 relative, float32 against float64.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from darknet_py.detector import load
from darknet_py.graph import build_model, parse_network
from darknet_py.weights import weights_bytes
from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import CONV_CASES, RTOL, check_against_ref, make_input, ours_out, write_float_weights, written
from tests.helpers.numeric import rel_err
from tests.helpers.opencv import needs_darknet_importer, opencv_forward


# ------------------------------------------------------------------------------------ against references

@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_keys_match_float64_reference(case, tmp_path):
    x = make_input()
    if "xnor" in case:
        x = x * 2 - 1
        x[:, :, ::3, ::5] = 0.0  # exact zeros: binarize_cpu maps them to -1 (x > 0 ? 1 : -1)
    check_against_ref(tmp_path, cfg(CONV_CASES[case]), x)


@needs_darknet_importer
@pytest.mark.parametrize("case", ["groups", "depthwise", "depthwise_x2"])
def test_conv_groups_match_opencv(case, tmp_path):
    text = cfg(CONV_CASES[case])
    path, weights, model = written(tmp_path, text)
    x = make_input()
    diff = rel_err(ours_out(model, x), opencv_forward(path, weights, x))
    assert diff < RTOL, diff


# ------------------------------------------------------------------------------------ binary / xnor

def test_xnor_and_binary_change_the_output(tmp_path):
    # the same weights without the keys give another output (a test that cannot pass by accident)
    text = cfg(conv(6, 3, "xnor=1", act="linear", bn=False))
    path, weights, model = written(tmp_path, text)
    plain = tmp_path / "plain.cfg"
    plain.write_text(text.replace("xnor=1", "binary=1"))
    binary = load(plain, weights, channels_last=False)
    plain.write_text(text.replace("xnor=1", ""))
    real = load(plain, weights, channels_last=False)
    x = make_input() * 2 - 1
    outs = [ours_out(m, x) for m in (model, binary, real)]
    assert rel_err(outs[0], outs[1]) > 0.1 and rel_err(outs[1], outs[2]) > 0.1
    # binary: each filter's kernel is +-mean|w| (binarize_weights), the file's kernels unchanged
    block = binary.layers[0]
    w = block.conv.weight.detach()
    bw = block.fused_weight
    assert torch.allclose(bw.abs(), w.abs().mean((1, 2, 3), keepdim=True).expand_as(bw), rtol=1e-6)
    assert torch.equal(bw > 0, w > 0)
    assert weights_bytes(binary) == weights.read_bytes()


# ------------------------------------------------------------------------------------ training mode

@pytest.mark.parametrize("extra", ["xnor=1", "binary=1", "dilation=2", "antialiasing=1\nstride=2"])
def test_conv_keys_train_like_they_infer(extra, tmp_path):
    """Training mode (no BN, so no batch statistics) computes what inference computes, and the
    gradient reaches the real-valued kernels (straight through the binarisation, as Darknet's
    update of l.weights does)."""
    text = cfg(conv(4, 3, act="leaky", bn=False), conv(6, 3, extra, act="leaky", bn=False).replace("stride=1\n", ""
               if "stride=2" in extra else "stride=1\n"))
    path, weights, model = written(tmp_path, text)
    x = make_input() * 2 - 1
    infer = ours_out(model.eval(), x)
    model.train()
    out = model(x)[-1]
    assert rel_err(out.detach().double().numpy(), infer) < 1e-6
    out.square().sum().backward()
    for block in model.layers:
        assert block.conv.weight.grad is not None and block.conv.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ flipped file order

def test_flipped_file_order(tmp_path):
    """A hand-built file of consecutive floats: the kernels stored as the (c*k*k) x n transpose."""
    text = cfg(conv(4, 2, "flipped=1", bn=False, act="linear"))
    n, c, k = 4, 3, 2
    floats = np.arange(n + n * c * k * k, dtype="<f4")
    path = tmp_path / "f.cfg"
    path.write_text(text)
    weights = tmp_path / "f.weights"
    write_float_weights(weights, floats)
    model = build_model(path).load_weights(weights)
    w = model.layers[0].conv.weight.detach().numpy()
    for f in range(n):
        for ci in range(c):
            for ky in range(k):
                for kx in range(k):
                    assert w[f, ci, ky, kx] == floats[n + (ci * k * k + ky * k + kx) * n + f]
    assert weights_bytes(model) == weights.read_bytes()  # written back transposed: byte-identical


# ------------------------------------------------------------------------------------ accepted and refused keys

def test_conv_training_keys_and_bin_output_are_accepted(tmp_path):
    text = cfg(conv(4, 3, "stopbackward=1\ntrain_only_bn=1\nbin_output=1"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nd = parse_network(text.encode())
    assert nd.shapes[0] == (4, 32, 32)


BAD = [
    # (sections, the cfg line the error names, needles)
    (conv(4, 3, "dilation=2").replace("pad=1", "pad=0"), "dilation=2", ["dilation=2", "padding = (size-1)/2"]),
    (conv(4, 3, "dilation=0"), "dilation=0", ["expected a value >= 1"]),
    (conv(4, 3, "xnor=2"), "xnor=2", ["expected one of 0, 1"]),
    (conv(4, 3, "binary=yes"), "binary=yes", ["expected an integer"]),
    (conv(4, 3, "flipped=-1"), "flipped=-1", ["expected one of 0, 1"]),
    (conv(4, 3, "antialiasing=3"), "antialiasing=3", ["expected one of 0, 1, 2"]),
    (conv(4, 3, "stride_x=0"), "stride_x=0", ["expected a value >= 1"]),
    (conv(4, 3, "share_index=0"), "share_index=0", ["not supported", "another layer's weights"]),
    (conv(4, 3, "assisted_excitation=1"), "assisted_excitation=1", ["not supported"]),
    (conv(4, 3, "coordconv=1"), "coordconv=1", ["not supported", "CUDA"]),
    (conv(4, 3, "numload=2"), "numload=2", ["not supported", ".weights"]),
]


@pytest.mark.parametrize("sections, line, needles", BAD, ids=[b[1] for b in BAD])
def test_bad_values_name_the_line(sections, line, needles, tmp_path):
    text = cfg(sections)
    expect_cfg_error(text, line_of(text, line), *needles, path=tmp_path / "bad.cfg")
