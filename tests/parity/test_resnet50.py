"""pjreddie's resnet50.cfg (its logits) against the float64 ``RefNet`` (tests/helpers/float64_net.py):
OpenCV 4.x cannot run it (its Eltwise asserts equal shapes), so the reference is the NumPy Darknet.

Tolerance ``RTOL`` (tests/helpers/layers.py): 1e-4 relative, float32 against float64 (measured 5e-6).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from darknet_py.detector import load
from darknet_py.graph import build_model
from darknet_py.random_weights import randomize
from tests.helpers.float64_net import RefNet
from tests.helpers.layers import RTOL, ours_out
from tests.helpers.numeric import rel_err
from tests.helpers.paths import ref_path, sized_cfg_text


def test_resnet50_matches_float64_reference(tmp_path):
    """pjreddie's resnet50.cfg at 64 px: shortcuts from 2x larger layers with half the channels."""
    text = sized_cfg_text(ref_path("pjreddie", "cfg", "resnet50.cfg"), 64)
    logits_text = text[:text.rindex("[softmax]")]
    path = tmp_path / "resnet50.cfg"
    path.write_text(logits_text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(path)
    nd = model.netdef
    sampled = [s for s in nd.specs
               if type(s).__name__ == "ShortcutSpec" and nd.shapes[s.source][1:] != nd.shapes[s.index][1:]]
    assert len(sampled) == 3 and all(nd.shapes[s.source][1] == 2 * nd.shapes[s.index][1] for s in sampled)
    g = torch.Generator().manual_seed(0)

    def smooth():
        return torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear",
                                               align_corners=False)
    calibration, x = smooth(), smooth()
    randomize(model, calibration, seed=1)
    weights = tmp_path / "resnet50.weights"
    model.save_weights(weights)
    loaded = load(path, weights)
    ours = ours_out(loaded, x).reshape(-1)
    ref = RefNet(logits_text, weights.read_bytes()).forward(x.double().numpy()).reshape(-1)
    assert rel_err(ours, ref) < RTOL
    assert ours.argmax() == ref.argmax() and np.std(ref) > 1e-3
