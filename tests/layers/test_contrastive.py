"""[contrastive] (AlexeyAB's training-only contrastive loss): parsed with its [yolo] layer, inert at
inference; and the refused values.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import calibrated_model, layer_outputs

CONTRASTIVE = cfg(
    conv(8, 1),                                                # 0
    conv(18, 1, act="linear", bn=False),                       # 1
    "[yolo]\nmask=0,1,2\nanchors=4,5,8,9,12,13\nclasses=1\nnum=3\nembedding_layer=-3",  # 2
    "[route]\nlayers=0",                                       # 3
    "[contrastive]\nclasses=1\ntemperature=1.0\nyolo_layer=-2\ncls_normalizer=1.0\nmax_delta=10\n"
    "contrastive_neg_max=3",                                   # 4
)


def test_contrastive_is_inert_at_inference():
    model = calibrated_model(CONTRASTIVE)
    spec = model.netdef.specs[4]
    assert spec.yolo_layer == 2 and spec.temperature == 1.0 and spec.max_delta == 10
    assert model.netdef.head_indices == [2] and model.netdef.shapes[4] == (8, 32, 32)
    x = torch.rand(1, 3, 32, 32)
    outs = layer_outputs(model, x)
    assert not outs[4].any()  # forward_contrastive_layer returns at once when not training
    with torch.no_grad():
        heads = model(x)
    assert len(heads) == 1 and np.array_equal(heads[0].double().numpy(), outs[2])


@pytest.mark.parametrize("sections, line, needles", [
    ((conv(8, 1), "[contrastive]\nclasses=1"), "[contrastive]", ["missing required key 'yolo_layer'"]),
    ((conv(8, 1), "[contrastive]\nyolo_layer=0"), "yolo_layer=0", ["dereferences"]),
    ((conv(8, 1), conv(4, 1), "[contrastive]\nyolo_layer=-1"), "yolo_layer=-1", ["layer 1", "not a [yolo]"]),
    ((conv(8, 1), "[contrastive]\nyolo_layer=5"), "yolo_layer=5", ["refers to layer 5"]),
])
def test_bad_inputs_name_the_line(sections, line, needles):
    text = cfg(*sections)
    expect_cfg_error(text, line_of(text, line), *needles)
