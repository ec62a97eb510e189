"""[reorg3d] (AlexeyAB's reorg, forward and reverse): exactly blas.c's ``reorg_cpu``, ported loop for
loop (a permutation, offset-major rather than pixel_unshuffle's order); and the refused values.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import calibrated_model, layer_outputs


def reorg_cpu(x, out_w, out_h, out_c, batch, stride, forward):
    """blas.c reorg_cpu on flat arrays, loop for loop (index arithmetic only)."""
    x = x.reshape(-1)
    out = np.full(x.size, np.nan)
    in_c = out_c // (stride * stride)
    for b in range(batch):
        for k in range(out_c):
            for j in range(out_h):
                for i in range(out_w):
                    in_index = i + out_w * (j + out_h * (k + out_c * b))
                    c2 = k % in_c
                    offset = k // in_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + out_w * stride * (h2 + out_h * stride * (c2 + in_c * b))
                    if forward:
                        out[out_index] = x[in_index]
                    else:
                        out[in_index] = x[out_index]
    return out


@pytest.mark.parametrize("stride, reverse, channels", [(2, 0, 4), (4, 0, 2), (1, 0, 3), (2, 1, 16), (1, 1, 5)])
def test_reorg3d_is_reorg_cpu(stride, reverse, channels):
    text = cfg(conv(channels, 1, act="linear", bn=False), f"[reorg3d]\nstride={stride}\nreverse={reverse}")
    model = calibrated_model(text)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    outs = layer_outputs(model, x)
    n, c, h, w = outs[0].shape
    s = stride
    if reverse:  # forward_reorg_layer: reorg_cpu(input, l.out_w, l.out_h, l.out_c, ..., 1, output)
        shape = (c // (s * s), h * s, w * s)
        ref = reorg_cpu(outs[0], w * s, h * s, c // (s * s), n, s, 1)
    else:        # reorg_cpu(input, l.out_w, l.out_h, l.out_c, ..., 0, output)
        shape = (c * s * s, h // s, w // s)
        ref = reorg_cpu(outs[0], w // s, h // s, c * s * s, n, s, 0)
    assert model.netdef.shapes[1] == shape
    assert not np.isnan(ref).any()  # every output element written exactly by the C loop
    np.testing.assert_array_equal(outs[1], ref.reshape((n,) + shape))  # a permutation: exact
    if not reverse and s == 2:  # the order is offset-major, not pixel_unshuffle's channel-major
        assert not np.array_equal(outs[1], torch.nn.functional.pixel_unshuffle(torch.from_numpy(outs[0]), 2).numpy())


@pytest.mark.parametrize("sections, line, needles", [
    ((conv(8, 1, stride=3), "[reorg3d]\nstride=2"), "stride=2", ["does not divide the 11x11", "layer 0"]),
    ((conv(8, 1), "[reorg3d]\nstride=2\nreverse=1"), "reverse=1", ["stride^4 = 16", "32x32x8"]),
    ((conv(8, 1), "[reorg3d]\nstride=0"), "stride=0", ["expected a value >= 1"]),
    ((conv(8, 1), "[reorg3d]\nstride=2\nflatten=1"), "flatten=1", ["unknown key 'flatten'"]),
])
def test_bad_inputs_name_the_line(sections, line, needles):
    text = cfg(*sections)
    expect_cfg_error(text, line_of(text, line), *needles)
