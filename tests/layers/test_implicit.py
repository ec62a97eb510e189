"""[implicit] (AlexeyAB's learned constant, representation_layer.c): its floats in the .weights file
in cfg order, its output (the same for every image), the round trip, Darknet's initialisation; and
the refused values.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from darknet_py.graph import build_model, parse_network
from darknet_py.random_weights import randomize
from darknet_py.summary import summarize
from darknet_py.weights import count_floats, weights_bytes
from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import layer_outputs
from tests.helpers.numeric import rel_err

IMPLICIT = cfg(
    conv(4, 1, act="linear", bn=False),            # 0: biases 4, weights 12
    "[implicit]\nfilters=4\nmean=1.0\nstd=0.1",     # 1: 4 floats
    "[scale_channels]\nfrom=0",                     # 2: layer 0 scaled per channel by the constant
    "[implicit]\nfilters=3\natoms=2",               # 3: 6 floats, 3 x 2 x 1
    conv(2, 1, bn=True),                            # 4: biases 2, BN 3*2, weights 2*3*1*1
)


def test_implicit_load_order_and_output(tmp_path):
    model = build_model(IMPLICIT.encode()).eval()
    assert model.netdef.shapes[1] == (4, 1, 1) and model.netdef.shapes[3] == (3, 2, 1)
    n = 4 + 12 + 4 + 6 + 2 + 6 + 6
    assert count_floats(model) == n
    path = tmp_path / "counted.weights"
    path.write_bytes(struct.pack("<iiiQ", 0, 2, 5, 64) + np.arange(n, dtype="<f4").tobytes())
    model.load_weights(path)
    # load_weights_upto: the conv's 16 floats, then the implicit's 4, then the next ones, in cfg order
    assert model.layers[0].conv.bias.tolist() == [0, 1, 2, 3]
    assert model.layers[1].weight.flatten().tolist() == [16, 17, 18, 19]
    assert model.layers[3].weight.flatten().tolist() == [20, 21, 22, 23, 24, 25]
    assert model.layers[4].bn.bias.tolist() == [26, 27]  # with BN the biases are BN's shift
    x = torch.rand(2, 3, 32, 32)
    outs = layer_outputs(model, x)
    # forward_implicit_layer: output[i] = weights[i % nweights], the same for every image
    np.testing.assert_array_equal(outs[3], np.broadcast_to(np.arange(20, 26.0).reshape(1, 3, 2, 1), (2, 3, 2, 1)))
    np.testing.assert_array_equal(outs[1][:, :, 0, 0], np.tile(np.arange(16, 20.0), (2, 1)))
    assert rel_err(outs[2], outs[0] * np.arange(16, 20.0).reshape(1, 4, 1, 1)) < 1e-7
    # byte-identical round trip, the header included
    assert weights_bytes(model) == path.read_bytes()
    again = tmp_path / "again.weights"
    build_model(IMPLICIT.encode()).load_weights(path).save_weights(again)
    assert again.read_bytes() == path.read_bytes()
    assert summarize(parse_network(IMPLICIT.encode())).floats == n


def test_implicit_initialisation_is_darknets():
    # make_implicit_layer: mean + rand_uniform(-std, std)
    text = cfg("[implicit]\nfilters=500\nmean=1.0\nstd=0.1\nlearning_rate=0.1\nstopbackward=1", "[implicit]")
    model = build_model(text.encode())
    w = model.layers[0].weight.detach()
    assert w.min() >= 0.9 and w.max() <= 1.1 and w.std() > 0.03
    assert model.layers[1].weight.shape == (128, 1)  # filters defaults to 128
    before = model.layers[0].weight.detach().clone()
    randomize(model, seed=3)
    after = model.layers[0].weight.detach()
    assert not torch.equal(before, after) and after.min() >= 0.9 and after.max() <= 1.1


@pytest.mark.parametrize("sections, line, needles", [
    (("[implicit]\nfilters=0",), "filters=0", ["expected a value >= 1"]),
    (("[implicit]\nfilters=8\natoms=x",), "atoms=x", ["expected an integer"]),
    (("[implicit]\nfilters=8\nstd=1e999",), "std=1e999", ["finite"]),
    (("[implicit]\nfilter=8",), "filter=8", ["did you mean 'filters'"]),
    (("[implicit]\nfilters=8\ndontload=1",), "dontload=1", ["not supported"]),
])
def test_bad_inputs_name_the_line(sections, line, needles):
    text = cfg(*sections)
    expect_cfg_error(text, line_of(text, line), *needles)
