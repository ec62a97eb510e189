"""Inference sees the weights last loaded: a model reloaded with another file computes what a fresh model
of that file computes."""
from __future__ import annotations

import torch

from darknet_py.weights import load_weights

from tests.helpers.weights import SMALL_LAYOUT, header_v2, random_floats, small_model, write_file


def test_forward_uses_reloaded_weights(tmp_path):
    pa = write_file(tmp_path, "a.weights", header_v2() + random_floats(SMALL_LAYOUT, seed=43).tobytes())
    pb = write_file(tmp_path, "b.weights", header_v2() + random_floats(SMALL_LAYOUT, seed=47).tobytes())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    model = small_model().eval()
    with torch.no_grad():
        load_weights(model, pa)
        out_a = [t.clone() for t in model(x)]
        load_weights(model, pb)
        out_b = [t.clone() for t in model(x)]
        fresh_b = small_model().eval()
        load_weights(fresh_b, pb)
        ref_b = fresh_b(x)
        fresh_a = small_model().eval()
        load_weights(fresh_a, pa)
        ref_a = fresh_a(x)
    assert len(out_a) == len(out_b) == 1
    assert not torch.equal(out_a[0], out_b[0])
    assert torch.equal(out_b[0], ref_b[0])
    assert torch.equal(out_a[0], ref_a[0])
