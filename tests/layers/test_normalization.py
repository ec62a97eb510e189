"""[normalization] / [lrn]: Darknet's local response normalization against float64 NumPy written from
``forward_normalization_layer``'s running sum (which is not the textbook LRN), the defaults and the
alias, and the refused values.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.graph import build_model, parse_network
from tests.helpers.cfgs import cfg
from tests.helpers.errors import expect_cfg_error, line_of

pytestmark = pytest.mark.filterwarnings("ignore:.*multiples of 32")


def lrn_reference(x: np.ndarray, size: int, alpha: float, beta: float, kappa: float) -> np.ndarray:
    """forward_normalization_layer's loops, float64: a running sum over channels."""
    n, c, h, w = x.shape
    out = np.empty_like(x, dtype=np.float64)
    for b in range(n):
        sq = x[b].astype(np.float64) ** 2
        norms = np.empty((c, h, w))
        norms[0] = kappa
        for k in range(size // 2):
            norms[0] += alpha * sq[k]
        for k in range(1, c):
            norms[k] = norms[k - 1]
            prev, nxt = k - (size - 1) // 2 - 1, k + size // 2
            if prev >= 0:
                norms[k] -= alpha * sq[prev]
            if nxt < c:
                norms[k] += alpha * sq[nxt]
        out[b] = norms ** -beta * x[b]
    return out


def textbook_lrn(x: np.ndarray, size: int, alpha: float, beta: float, kappa: float) -> np.ndarray:
    sq = x.astype(np.float64) ** 2
    c = x.shape[1]
    norms = np.stack([kappa + alpha * sq[:, max(0, k - (size - 1) // 2):k + size // 2 + 1].sum(1) for k in range(c)], 1)
    return x * norms ** -beta


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 14])
def test_lrn_against_darknet_loops(size):
    c, alpha, beta, kappa = 7, 0.3, 0.75, 2.0
    text = cfg(f"[convolutional]\nfilters={c}\nsize=1\nactivation=linear\n\n"
               f"[lrn]\nsize={size}\nalpha={alpha}\nbeta={beta}\nkappa={kappa}\n", width=5, height=4)
    nd = parse_network(text.encode())
    layer = build_model(nd).layers[1]
    # |x| <= 1.5: kappa + alpha*(window - x[size/2]^2) stays >= 2 - .3*2.25 > 0 (no NaN from pow)
    x = (torch.rand(2, c, 4, 5, generator=torch.Generator().manual_seed(size)) - 0.5) * 3
    with torch.no_grad():
        ours = layer(x).double().numpy()
    ref = lrn_reference(x.double().numpy(), size, alpha, beta, kappa)
    assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()
    if size // 2 < c:  # Darknet's window misses x[size/2]^2: a textbook LRN is measurably different
        assert np.abs(textbook_lrn(x.double().numpy(), size, alpha, beta, kappa) - ref).max() > 1e-3


def test_normalization_defaults_and_alias():
    nd = parse_network(cfg("[normalization]\n\n[lrn]\nsize=3\n", width=4, height=4).encode())
    a, b = nd.specs
    assert (a.size, a.alpha, a.beta, a.kappa) == (5, 0.0001, 0.75, 1.0)  # parse_normalization's defaults
    assert b.size == 3 and nd.shapes == [(3, 4, 4), (3, 4, 4)]
    x = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = build_model(nd)(x)[0].double().numpy()
    ref = lrn_reference(lrn_reference(x.double().numpy(), 5, 1e-4, 0.75, 1.0), 3, 1e-4, 0.75, 1.0)
    assert np.abs(ours - ref).max() <= 1e-6


@pytest.mark.parametrize("body, key, needles", [
    ("size=9\n", "size=9", ["size=9", "size/2 = 4", "has 3"]),
    ("size=0\n", "size=0", ["size=0", ">= 1"]),
    ("alpha=x\n", "alpha=x", ["alpha=x", "expected a number"]),
    ("sise=3\n", "sise=3", ["unknown key 'sise'", "did you mean 'size'"]),
])
def test_normalization_bad_values_name_the_line(tmp_path, body, key, needles):
    text = cfg("[normalization]\n" + body, width=4, height=4)
    expect_cfg_error(text, line_of(text, key), *needles, path=tmp_path / "bad.cfg")
