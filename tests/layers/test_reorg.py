"""``[reorg]`` (pjreddie/darknet, YOLOv2's passthrough): every key variant against a float64 port of
src/blas.c ``reorg_cpu`` / ``flatten``, the layer against OpenCV 4.x, and the refusals with the cfg line.
(YOLOv2's own reorg, inside the reference network: tests/parity/test_yolov2.py.)"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.graph import parse_network
from tests.helpers.cfgs import conv, sections
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.heads import reorg_reference
from tests.helpers.models import write_random_model
from tests.helpers.opencv import needs_darknet_importer, opencv_forward


def _reorg_cfg(size, channels, body):
    """[net] takes 1 or 3 channels: a linear 1x1 convolution makes `channels` of them for the [reorg]."""
    return (f"[net]\nwidth={size}\nheight={size}\nchannels=3\n\n[convolutional]\nfilters={channels}\nsize=1\n"
            f"stride=1\npad=0\nactivation=linear\n\n{body}")


@pytest.mark.parametrize("stride, reverse, flatten", [(2, 0, 0), (4, 0, 0), (1, 0, 0), (2, 1, 0), (2, 0, 1),
                                                      (2, 1, 1), (4, 1, 0)])
def test_reorg_variants_against_reorg_cpu(stride, reverse, flatten):
    c, size = 32, 32
    text = _reorg_cfg(size, c, f"[reorg]\nstride={stride}\nreverse={reverse}\nflatten={flatten}\n")
    model = darknet_py.build_model(text.encode()).eval()
    x = torch.randn(2, c, size, size, generator=torch.Generator().manual_seed(stride))
    with torch.no_grad():
        out = model.layers[1](x)  # the [reorg] module on its own
    s = stride
    expect_shape = (c // (s * s), size * s, size * s) if reverse else (c * s * s, size // s, size // s)
    assert tuple(out.shape[1:]) == expect_shape == model.netdef.shapes[1]
    for b in range(2):
        ref = reorg_reference(x[b].numpy(), stride, bool(reverse), bool(flatten))
        assert np.array_equal(out[b].numpy().ravel(), ref)
    if stride > 1 and not flatten:  # not a plain space-to-depth (the famous quirk)
        plain = torch.nn.functional.pixel_unshuffle(x, s) if not reverse else torch.nn.functional.pixel_shuffle(x, s)
        assert not torch.equal(out, plain)


@needs_darknet_importer
def test_reorg_matches_opencv(tmp_path):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    text = _reorg_cfg(32, 3, sections(conv(12, act="linear", bn=False), "[reorg]\nstride=2"))
    cfg, weights, model = write_random_model(tmp_path, "reorg", text, x, seed=0)
    theirs = opencv_forward(cfg, weights, x)
    with torch.no_grad():
        ours = model.eval()(x)[0].numpy()
    assert ours.shape == theirs.shape == (1, 48, 16, 16)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())


def test_reorg_without_stride_warns_darknet_default():
    with pytest.warns(UserWarning, match="default 1"):
        nd = parse_network(_reorg_cfg(32, 8, "[reorg]\n").encode())
    assert nd.shapes[1] == (8, 32, 32)


@pytest.mark.parametrize("body, line_text, needles", [
    ("[reorg]\nstride=2\nextra=4\n", "extra=4", ["extra=4 is not supported"]),
    ("[reorg]\nstride=0\n", "stride=0", ["stride=0", ">= 1"]),
    ("[reorg]\nstride=2\nreverse=2\n", "reverse=2", ["reverse=2", "expected one of 0, 1"]),
    ("[reorg]\nstride=2\nreversed=1\n", "reversed=1", ["unknown key 'reversed'", "did you mean 'reverse'"]),
    ("[reorg]\nstride=3\n", "stride=3", ["stride=3 does not divide the 32x32 output of layer 0 (cfg line 6)"]),
    ("[reorg]\nstride=4\n", "stride=4", ["the 8 channels", "not a multiple of stride^2 = 16"]),
    ("[reorg]\nstride=2\nreverse=1\n", None, None),  # 8 channels, 2^2 divides: fine
    ("[reorg]\nstride=4\nreverse=1\n", "stride=4", ["reverse=1 stride=4", "not a multiple of stride^2 = 16"]),
])
def test_reorg_refusals(body, line_text, needles):
    text = _reorg_cfg(32, 8, body)
    if line_text is None:
        assert parse_network(text.encode()).shapes[1] == (2, 64, 64)
        return
    expect_cfg_error(text, line_of(text, line_text), *needles)
