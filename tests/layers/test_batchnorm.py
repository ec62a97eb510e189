"""[batchnorm] (pjreddie's stand-alone batch normalization): its place in the .weights file and its
arithmetic against float64 NumPy written from ``normalize_cpu`` + ``scale_bias`` (pjreddie's epsilon,
told apart from AlexeyAB's), randomize and the round trip, and that it takes no keys. The weights
file is written here by hand, float by float in Darknet's order.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.detector import load
from darknet_py.graph import build_model
from darknet_py.random_weights import randomize
from darknet_py.weights import count_floats
from tests.helpers.cfgs import cfg
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import write_float_weights

pytestmark = pytest.mark.filterwarnings("ignore:.*multiples of 32")

BN_CFG = cfg("[convolutional]\nfilters=6\nsize=3\npad=1\nactivation=leaky\n\n[batchnorm]\n", width=6, height=5)


def test_batchnorm_file_layout_and_float64(tmp_path):
    cfg_path = tmp_path / "bn.cfg"
    cfg_path.write_text(BN_CFG)
    rng = np.random.default_rng(5)
    conv = rng.normal(0, 0.3, 6 + 6 * 27)
    scales, mean, var = rng.uniform(0.5, 1.5, 6), rng.normal(0, 0.2, 6), rng.uniform(0.05, 2.0, 6)
    data = write_float_weights(tmp_path / "bn.weights", np.concatenate([conv, scales, mean, var]))
    model = load(cfg_path, tmp_path / "bn.weights", channels_last=False)
    assert count_floats(model) == 6 + 6 * 27 + 3 * 6  # scales, rolling mean, rolling variance; no biases
    bn = model.layers[1]
    x = torch.rand(2, 6, 5, 6, generator=torch.Generator().manual_seed(1)) * 4 - 2
    with torch.no_grad():
        ours = bn(x).double().numpy()
    f = lambda v: v.astype(np.float32).astype(np.float64)[None, :, None, None]  # noqa: E731
    # normalize_cpu with pjreddie's epsilon outside the root, scale_bias; add_bias adds calloc's zeros
    ref = (x.double().numpy() - f(mean)) / (np.sqrt(f(var)) + 1e-6) * f(scales)
    assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()
    # AlexeyAB's sqrt(var + 1e-5) would differ by ~1e-4 relative at var .05: the test tells them apart
    alexeyab = (x.double().numpy() - f(mean)) / np.sqrt(f(var) + 1e-5) * f(scales)
    assert np.abs(alexeyab - ref).max() > 10 * np.abs(ours - ref).max()
    model.save_weights(tmp_path / "again.weights")
    assert (tmp_path / "again.weights").read_bytes() == data


def test_batchnorm_randomize_and_round_trip(tmp_path):
    model = build_model(BN_CFG.encode())
    x = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(2))
    randomize(model, x)
    with torch.no_grad():
        y = model(x)[0]
    assert 0.3 < float(y.std()) < 2.0 and torch.isfinite(y).all()
    model.save_weights(tmp_path / "a.weights")
    again = load(BN_CFG.encode(), tmp_path / "a.weights", channels_last=False)
    again.save_weights(tmp_path / "b.weights")
    assert (tmp_path / "a.weights").read_bytes() == (tmp_path / "b.weights").read_bytes()
    with torch.no_grad():
        assert torch.equal(again(x)[0], y)


def test_batchnorm_takes_no_keys(tmp_path):
    text = cfg("[batchnorm]\nbatch_normalize=1\n", width=4, height=4)
    expect_cfg_error(text, line_of(text, "batch_normalize=1"), "unknown key 'batch_normalize'",
                     path=tmp_path / "bad.cfg")
