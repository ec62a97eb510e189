"""Golden placement: a file of consecutive integers, so that every value a tensor holds says where in the
file it was read; checked element by element against slices written out from the cfg numbers."""
from __future__ import annotations

import warnings

import numpy as np
import torch

from darknet_py.graph import build_model
from darknet_py.weights import load_weights

from tests.helpers.weights import (PJ_CFG, README_FLOATS, SMALL_FLOATS, SMALL_LAYOUT, assert_loaded, darknet_layout,
                                   header_v2, needs_ref, small_model, write_file)


# --------------------------------------------------------------- golden placement

def test_golden_placement_arange(golden_weights):
    floats = np.arange(SMALL_FLOATS, dtype="<f4")  # what golden_weights holds
    p = golden_weights
    model = small_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_weights(model, p)
    # Explicit slices from the cfg numbers, written out for layer 0 and the non-BN layer 7.
    blk = model.layers[0]
    assert torch.equal(blk.bn.bias, torch.arange(0, 8, dtype=torch.float32))
    assert torch.equal(blk.bn.weight, torch.arange(8, 16, dtype=torch.float32))
    assert torch.equal(blk.bn.running_mean, torch.arange(16, 24, dtype=torch.float32))
    assert torch.equal(blk.bn.running_var, torch.arange(24, 32, dtype=torch.float32))
    assert torch.equal(blk.conv.weight, torch.arange(32, 248, dtype=torch.float32).reshape(8, 3, 3, 3))
    # kernel element [n=1][c=2][ky=0][kx=1] = 32 + ((1*3 + 2)*3 + 0)*3 + 1
    assert blk.conv.weight[1, 2, 0, 1].item() == 32 + 46
    # grouped conv (layer 3): [n][c/groups=8][1][1]
    start3 = 248 + 1216
    w3 = model.layers[3].conv.weight
    assert tuple(w3.shape) == (16, 8, 1, 1)
    assert w3[5, 7, 0, 0].item() == start3 + 64 + 5 * 8 + 7
    last = model.layers[7]
    start7 = 248 + 1216 + 192
    assert torch.equal(last.conv.bias, torch.arange(start7, start7 + 18, dtype=torch.float32))
    assert torch.equal(last.conv.weight,
                       torch.arange(start7 + 18, SMALL_FLOATS, dtype=torch.float32).reshape(18, 24, 1, 1))
    assert_loaded(model, SMALL_LAYOUT, floats)


@needs_ref
def test_golden_placement_yolov3_tiny(tmp_path):
    layout = darknet_layout((PJ_CFG / "yolov3-tiny.cfg").read_text())
    n = README_FLOATS["yolov3-tiny.cfg"]
    assert n < 2**24  # every integer below is exact in float32
    floats = np.arange(n, dtype="<f4")
    p = write_file(tmp_path, "tiny.weights", header_v2() + floats.tobytes())
    model = build_model(PJ_CFG / "yolov3-tiny.cfg")
    load_weights(model, p)
    assert_loaded(model, layout, floats)
