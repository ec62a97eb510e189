"""One test over every registered layer kind (darknet_py.layers.LAYERS; an alias such as [conv] counts
once), so that a kind added later is tested without editing the test body: each kind's minimal valid
cfg (``MINIMAL``, a small table kind -> sections; a registered kind without an entry fails, naming it)
must build, give each layer the output shape NetworkDef.shapes says, round-trip its weights
byte-identically in a file of the size count_floats implies, have its row in summarize's table, and
give finite outputs on a random input. The kinds' arithmetic is tested in their own files here.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from darknet_py.config.reader import Section
from darknet_py.graph import build_model
from darknet_py.layers import LAYERS
from darknet_py.random_weights import randomize
from darknet_py.summary import summarize
from darknet_py.weights import Header, count_floats, layer_tensors
from tests.helpers.cfgs import cfg, conv, head_conv, route, yolo
from tests.helpers.layers import layer_outputs

# Every registered kind once, by its own name (LAYERS.get resolves an alias to its kind).
KINDS = sorted({LAYERS.get(Section(kind=name, line=0, index=0)).name for name in LAYERS.names()})

# kind -> the layer sections of a small valid cfg (32 x 32 x 3 input) that uses it; a kind with weights
# has some of every sort it writes (batch_normalize, per-channel weights) where it takes them.
MINIMAL = {
    "convolutional": [conv(4, 3)],
    "maxpool": [conv(4, 3), "[maxpool]\nsize=2\nstride=2"],
    "upsample": [conv(4, 3), "[upsample]\nstride=2"],
    "shortcut": [conv(4, 3), conv(4, 3), "[shortcut]\nfrom=-2\nweights_type=per_channel\nweights_normalization=relu"],
    "route": [conv(4, 3), conv(2, 1), route("-1,0")],
    "yolo": [conv(4, 3), head_conv(3 * (5 + 2)), yolo("0,1,2", "4,5,8,9,12,13", 2, 3)],
    "Gaussian_yolo": [conv(4, 3), head_conv(2 * (9 + 2)),
                      "[Gaussian_yolo]\nmask=0,1\nanchors=4,5,8,9\nclasses=2\nnum=2"],
    "region": [conv(4, 3), head_conv(2 * (5 + 3)), "[region]\nanchors=1,1,2,2\nclasses=3\ncoords=4\nnum=2\nsoftmax=1"],
    "detection": [conv(2, 3, stride=4), f"[connected]\noutput={2 * 2 * ((1 + 4) * 2 + 3)}\nactivation=linear",
                  "[detection]\nclasses=3\ncoords=4\nside=2\nnum=2\nsoftmax=1\nsqrt=1"],
    "reorg": [conv(4, 3), "[reorg]\nstride=2"],
    "avgpool": [conv(4, 3), "[avgpool]"],
    "connected": [conv(2, 3, stride=4), "[connected]\noutput=5\nbatch_normalize=1\nactivation=leaky"],
    "softmax": [conv(4, 3), "[softmax]\ngroups=2"],
    "dropout": [conv(4, 3), "[dropout]\nprobability=.5"],
    "cost": [conv(4, 3), "[avgpool]", "[softmax]", "[cost]"],
    "crop": ["[crop]\ncrop_height=24\ncrop_width=20", conv(4, 3)],
    "local": [conv(2, 3, stride=4), "[local]\nfilters=3\nsize=3\nstride=1\npad=1\nactivation=leaky"],
    "normalization": [conv(4, 3), "[normalization]\nsize=3"],
    "batchnorm": [conv(4, 3, bn=False), "[batchnorm]"],
    "sam": [conv(4, 3), conv(4, 1, act="logistic", bn=False), "[sam]\nfrom=-2"],
    "scale_channels": [conv(4, 3), "[avgpool]", conv(4, 1, act="logistic", bn=False), "[scale_channels]\nfrom=0"],
    "reorg3d": [conv(4, 3), "[reorg3d]\nstride=2"],
    "local_avgpool": [conv(4, 3), "[local_avgpool]\nsize=3\nstride=2"],
    "implicit": [conv(4, 3), "[implicit]\nfilters=4", "[scale_channels]\nfrom=0"],
    "contrastive": [conv(4, 1), head_conv(3 * 6), yolo("0,1,2", "4,5,8,9,12,13", 1, 3), route("0"),
                    "[contrastive]\nclasses=1\nyolo_layer=-2"],
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_shapes_round_trips_and_summarizes(kind, tmp_path):
    if kind not in MINIMAL:
        pytest.fail(f"layer kind [{kind}] is registered but has no minimal cfg: add one to MINIMAL in {__file__}")
    text = cfg(*MINIMAL[kind])
    # (1) it builds, without a warning (a minimal cfg deserves none), and the cfg does use the kind
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_model(text.encode())
    nd = model.netdef
    assert kind in {k.name for k in nd.kinds}, f"MINIMAL[{kind!r}] has no [{kind}] layer"
    where = [f"layer {i} [{s.kind}] (cfg line {s.line})" for i, s in enumerate(nd.sections[1:])]

    # (3) weights: randomize, save -> load into a fresh model -> save, byte-identical, of the implied size
    randomize(model, seed=0)
    first, second = tmp_path / "first.weights", tmp_path / "second.weights"
    model.save_weights(first)
    again = build_model(text.encode()).load_weights(first)
    again.save_weights(second)
    assert second.read_bytes() == first.read_bytes(), f"[{kind}]: save -> load -> save changed the file"
    assert first.stat().st_size == Header().size + 4 * count_floats(model)

    # (2) each layer's output has the shape NetworkDef.shapes says, and (5) is finite, on a random input
    x = torch.rand((2, *nd.input_shape), generator=torch.Generator().manual_seed(1))
    outs = layer_outputs(model, x)
    for i, out in enumerate(outs):
        assert out.shape == (2, *nd.shapes[i]), f"{where[i]}: output {out.shape[1:]}, NetworkDef.shapes {nd.shapes[i]}"
        assert np.isfinite(out).all(), f"{where[i]}: non-finite output"
    # the reloaded model computes the same (everything the layers compute with is in the file)
    for i, out in enumerate(layer_outputs(again.eval(), x)):
        assert np.array_equal(out, outs[i]), f"{where[i]}: the reloaded weights compute something else"

    # (4) one row per layer in summarize's table, with the layer's kind, output shape and weight count
    floats = {i: sum(t.numel() for _, t in tensors) for i, tensors in layer_tensors(model)}
    rows = summarize(nd).rows
    assert [r.kind for r in rows] == [s.kind for s in nd.sections[1:]]
    for i, row in enumerate(rows):
        assert (row.index, row.output, row.floats) == (i, nd.shapes[i], floats.get(i, 0)), where[i]
    assert kind in {r.kind for r in rows}


def test_the_table_names_only_registered_kinds():
    # an entry for a kind that is gone (or misspelt) would otherwise never run
    assert sorted(set(MINIMAL) - set(KINDS)) == []
