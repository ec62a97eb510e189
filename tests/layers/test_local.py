"""[local] (pjreddie's locally connected layer): the output against float64 NumPy written from
``forward_local_layer`` with ``im2col_cpu`` (tests/helpers/reference.py ``local_reference``), which
reads the floats of a weights file written here by hand in Darknet's order, so the layout is checked
together with the arithmetic; the layout by index, randomize's scale, the summary row, and the refused
values.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.detector import load
from darknet_py.graph import build_model, parse_network
from darknet_py.random_weights import randomize
from darknet_py.summary import summarize
from darknet_py.weights import count_floats
from tests.helpers.cfgs import cfg
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import write_float_weights
from tests.helpers.reference import local_reference

pytestmark = pytest.mark.filterwarnings("ignore:.*multiples of 32")

LOCAL_CASES = [  # (h, w, filters, size, stride, pad, activation)
    (7, 9, 4, 3, 2, 1, "leaky"),
    (6, 6, 5, 3, 1, 1, "linear"),
    (8, 5, 2, 2, 2, 0, "logistic"),
    (5, 5, 3, 1, 1, 0, "relu"),
    (7, 7, 2, 5, 1, 2, "linear"),
    (7, 7, 3, 2, 2, 1, "leaky"),  # even size with pad=1: Darknet's two sizes agree at 7 (not at 8)
]


@pytest.mark.parametrize("h, w, n, size, stride, pad, activation", LOCAL_CASES)
def test_local_against_float64_from_the_file(tmp_path, h, w, n, size, stride, pad, activation):
    cfg_path = tmp_path / "local.cfg"
    cfg_path.write_text(cfg(f"[local]\nfilters={n}\nsize={size}\nstride={stride}\npad={pad}\n"
                            f"activation={activation}\n", width=w, height=h))
    out_h = (h - size if not pad else h - 1) // stride + 1
    out_w = (w - size if not pad else w - 1) // stride + 1
    floats = np.random.default_rng(size * 10 + stride).normal(0, 0.5, n * out_h * out_w * (1 + 3 * size * size))
    data = write_float_weights(tmp_path / "local.weights", floats)
    model = load(cfg_path, tmp_path / "local.weights", channels_last=False)
    assert model.netdef.shapes[0] == (n, out_h, out_w)
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = model(x)[0].double().numpy()
    f32 = floats.astype(np.float32)
    ref = np.stack([local_reference(x[i].double().numpy(), f32, n, size, stride, pad, activation) for i in range(2)])
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() <= 1e-5 * scale, np.abs(ours - ref).max() / scale
    # channels_last input (what darknet_py.load gives by default) changes nothing
    with torch.no_grad():
        assert torch.allclose(model.to_channels_last()(x)[0].double(), torch.from_numpy(ours), atol=1e-6 * scale)
    # the file round trip is byte-identical (header as read, biases then weights)
    model.save_weights(tmp_path / "again.weights")
    assert (tmp_path / "again.weights").read_bytes() == data


def test_local_weight_layout_by_index(tmp_path):
    # arange floats: bias[f][y][x] and weight[location][f][c][ky][kx] sit where Darknet reads them
    cfg_path = tmp_path / "local.cfg"
    cfg_path.write_text(cfg("[local]\nfilters=2\nsize=3\nstride=1\npad=1\nactivation=linear\n", width=5, height=4))
    model = build_model(cfg_path)
    n, locations, k = 2, 4 * 5, 27
    write_float_weights(tmp_path / "w.weights", np.arange(n * locations * (1 + k), dtype=np.float64))
    model.load_weights(tmp_path / "w.weights")
    layer = model.layers[0]
    assert layer.bias[1, 2, 3].item() == 1 * locations + 2 * 5 + 3
    loc, f, c, ky, kx = 7, 1, 2, 0, 2
    assert layer.weight[loc, f, c * 9 + ky * 3 + kx].item() == n * locations + loc * n * k + f * k + c * 9 + ky * 3 + kx
    assert count_floats(model) == n * locations * (1 + k)


def test_local_randomize_gives_unit_scale_outputs():
    text = cfg("[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n\n"
               "[local]\nfilters=6\nsize=3\nstride=1\npad=1\nactivation=linear\n", width=12, height=10)
    model = build_model(text.encode())
    x = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    randomize(model, x)
    with torch.no_grad():
        y = model(x)[0]
    std = y.std((0, 2, 3))
    assert torch.all((std > 0.7) & (std < 1.3)), std
    assert y.mean().abs() < 0.3


def test_local_summary_flops_and_describe():
    text = cfg("[local]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=leaky\n", width=9, height=7)
    s = summarize(parse_network(text.encode()))
    row = s.rows[0]
    assert row.output == (4, 4, 5)
    assert row.flops == 2 * 4 * 3 * 3 * 3 * 4 * 5  # 2 * n * size*size*c * out_h*out_w
    assert row.floats == 4 * 20 + 27 * 4 * 20
    assert row.describe.split() == ["4", "3", "x", "3", "/", "2"]
    assert "local" in "\n".join(s.lines())


# ------------------------------------------------------------------------------------ refused values

@pytest.mark.parametrize("body, key, needles", [
    ("filters=2\nsize=5\nstride=1\npad=0\n", "size=5", ["size=5", "pad=0", "leaves no output", "3x3x3"]),
    ("filters=2\nsize=5\nstride=1\npad=1\n", "pad=1", ["pad=1", "size=5", "im2col", "not supported", "pad=2"]),
    ("filters=2\nsize=3\nstride=1\npad=2\n", "pad=2", ["pad=2", "not supported", "pad=1"]),
    ("filters=0\nsize=3\n", "filters=0", ["filters=0", ">= 1"]),
    ("filters=2\nsize=3\nstride=0\n", "stride=0", ["stride=0", ">= 1"]),
    ("filters=2\nsize=3\npad=-1\n", "pad=-1", ["pad=-1", ">= 0"]),
    ("filters=2\nsize=3\nactivation=leeky\n", "activation=leeky", ["leeky", "did you mean 'leaky'"]),
    ("filter=2\nsize=3\n", "filter=2", ["unknown key 'filter'", "did you mean 'filters'"]),
])
def test_local_bad_values_name_the_line(tmp_path, body, key, needles):
    text = cfg("[local]\n" + body, width=3, height=3)
    expect_cfg_error(text, line_of(text, key), "[local] (layer 0)", *needles, path=tmp_path / "bad.cfg")


def test_local_pad_rule_depends_on_the_input_size(tmp_path):
    # size 2, pad 1, stride 2: Darknet's (h-1)/2+1 and im2col's (h+2-2)/2+1 agree for odd h only
    body = "[local]\nfilters=1\nsize=2\nstride=2\npad=1\n"
    parse_network(cfg(body, width=7, height=7).encode())
    text = cfg(body, width=8, height=7)
    expect_cfg_error(text, line_of(text, "pad=1"), "input width 8", "as 4", "lays out 5", path=tmp_path / "bad.cfg")
