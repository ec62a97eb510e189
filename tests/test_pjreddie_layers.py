"""pjreddie-era layers: ``[local]``, ``[crop]``, ``[normalization]``/``[lrn]``, ``[batchnorm]``.

References: OpenCV 4.x for ``[crop]`` (the only one of the four its Darknet importer reads);
float64 NumPy written from Darknet's C loops for the others (``forward_local_layer`` with
``im2col_cpu``, ``forward_normalization_layer``'s running sum, ``normalize_cpu`` + ``scale_bias``).
Weights files are written here by hand, float by float in Darknet's order, and the references
read those floats, so the layout is checked together with the arithmetic.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.graph import build_model, parse_network
from darknet_py.random_weights import randomize
from darknet_py.summary import summarize
from darknet_py.weights import count_floats
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.opencv import HAS_DARKNET_IMPORTER, opencv_forward
from tests.helpers.reference import local_reference

pytestmark = pytest.mark.filterwarnings("ignore:.*multiples of 32")

HEADER = struct.pack("<iiiQ", 0, 2, 0, 0)


def write_weights(path, floats: np.ndarray) -> bytes:
    data = HEADER + np.asarray(floats, "<f4").tobytes()
    path.write_bytes(data)
    return data


def net(width: int, height: int, body: str, channels: int = 3) -> str:
    return f"[net]\nwidth={width}\nheight={height}\nchannels={channels}\n\n{body}"


# ------------------------------------------------------------------------------------------ [local]

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
    cfg = tmp_path / "local.cfg"
    cfg.write_text(net(w, h, f"[local]\nfilters={n}\nsize={size}\nstride={stride}\npad={pad}\n"
                              f"activation={activation}\n"))
    out_h = (h - size if not pad else h - 1) // stride + 1
    out_w = (w - size if not pad else w - 1) // stride + 1
    floats = np.random.default_rng(size * 10 + stride).normal(0, 0.5, n * out_h * out_w * (1 + 3 * size * size))
    data = write_weights(tmp_path / "local.weights", floats)
    model = darknet_py.load(cfg, tmp_path / "local.weights", channels_last=False)
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
    cfg = tmp_path / "local.cfg"
    cfg.write_text(net(5, 4, "[local]\nfilters=2\nsize=3\nstride=1\npad=1\nactivation=linear\n"))
    model = build_model(cfg)
    n, locations, k = 2, 4 * 5, 27
    write_weights(tmp_path / "w.weights", np.arange(n * locations * (1 + k), dtype=np.float64))
    model.load_weights(tmp_path / "w.weights")
    layer = model.layers[0]
    assert layer.bias[1, 2, 3].item() == 1 * locations + 2 * 5 + 3
    loc, f, c, ky, kx = 7, 1, 2, 0, 2
    assert layer.weight[loc, f, c * 9 + ky * 3 + kx].item() == n * locations + loc * n * k + f * k + c * 9 + ky * 3 + kx
    assert count_floats(model) == n * locations * (1 + k)


def test_local_randomize_gives_unit_scale_outputs():
    cfg = net(12, 10, "[convolutional]\nfilters=8\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky\n\n"
                      "[local]\nfilters=6\nsize=3\nstride=1\npad=1\nactivation=linear\n").encode()
    model = build_model(cfg)
    x = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    randomize(model, x)
    with torch.no_grad():
        y = model(x)[0]
    std = y.std((0, 2, 3))
    assert torch.all((std > 0.7) & (std < 1.3)), std
    assert y.mean().abs() < 0.3


def test_local_summary_flops_and_describe():
    s = summarize(parse_network(net(9, 7, "[local]\nfilters=4\nsize=3\nstride=2\npad=1\nactivation=leaky\n").encode()))
    row = s.rows[0]
    assert row.output == (4, 4, 5)
    assert row.flops == 2 * 4 * 3 * 3 * 3 * 4 * 5  # 2 * n * size*size*c * out_h*out_w
    assert row.floats == 4 * 20 + 27 * 4 * 20
    assert row.describe.split() == ["4", "3", "x", "3", "/", "2"]
    assert "local" in "\n".join(s.lines())


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
    text = net(3, 3, "[local]\n" + body)
    expect_cfg_error(text, line_of(text, key), "[local] (layer 0)", *needles, path=tmp_path / "bad.cfg")


def test_local_pad_rule_depends_on_the_input_size(tmp_path):
    # size 2, pad 1, stride 2: Darknet's (h-1)/2+1 and im2col's (h+2-2)/2+1 agree for odd h only
    body = "[local]\nfilters=1\nsize=2\nstride=2\npad=1\n"
    parse_network(net(7, 7, body).encode())
    text = net(8, 7, body)
    expect_cfg_error(text, line_of(text, "pad=1"), "input width 8", "as 4", "lays out 5", path=tmp_path / "bad.cfg")


# ------------------------------------------------------------------------------------------- [crop]

def crop_reference(x: np.ndarray, ch: int, cw: int, noadjust: bool) -> np.ndarray:
    """forward_crop_layer outside training: dh=(h-ch)/2, dw=(w-cw)/2, input*scale + trans."""
    _, _, h, w = x.shape
    dh, dw = (h - ch) // 2, (w - cw) // 2
    scale, trans = (1.0, 0.0) if noadjust else (2.0, -1.0)
    out = np.empty(x.shape[:2] + (ch, cw))
    for i in range(ch):
        for j in range(cw):
            out[:, :, i, j] = x[:, :, i + dh, j + dw] * scale + trans
    return out


@pytest.mark.parametrize("h, w, ch, cw, noadjust", [(8, 9, 5, 4, 0), (8, 9, 5, 4, 1), (7, 7, 7, 7, 0),
                                                    (10, 6, 1, 3, 0), (6, 11, 3, 8, 1)])
def test_crop_against_opencv_and_float64(tmp_path, h, w, ch, cw, noadjust):
    pytest.importorskip("cv2")
    text = net(w, h, f"[crop]\ncrop_height={ch}\ncrop_width={cw}\nflip=1\nangle=7\nsaturation=1.5\nexposure=1.5\n"
                     f"shift=.2\nnoadjust={noadjust}\n")
    cfg = tmp_path / "crop.cfg"
    cfg.write_text(text)
    model = darknet_py.load(cfg, channels_last=False)
    spec = model.netdef.specs[0]
    assert (spec.flip, spec.angle, spec.saturation, spec.exposure, spec.shift) == (True, 7.0, 1.5, 1.5, 0.2)
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    with torch.no_grad():
        ours = model(x)[0].numpy()
    ref = crop_reference(x.double().numpy(), ch, cw, bool(noadjust))
    assert ours.shape == (2, 3, ch, cw)
    assert np.abs(ours - ref).max() <= 1e-6
    if HAS_DARKNET_IMPORTER:
        theirs = opencv_forward(cfg, None, x)
        assert np.abs(ours - theirs).max() <= 1e-6


@pytest.mark.parametrize("body, key, needles", [
    ("crop_height=9\ncrop_width=4\n", "crop_height=9", ["crop_height=9", "larger than the input height 8"]),
    ("crop_height=4\ncrop_width=10\n", "crop_width=10", ["crop_width=10", "larger than the input width 9"]),
    ("crop_height=0\ncrop_width=4\n", "crop_height=0", ["crop_height=0", ">= 1"]),
    ("crop_height=4\ncrop_width=4\nnoadjust=2\n", "noadjust=2", ["noadjust=2", "expected one of 0, 1"]),
    ("crop_height=4\ncrop_width=4\nflip=yes\n", "flip=yes", ["flip=yes", "integer"]),
    ("crop_height=4\ncrop_width=4\ncrop_size=3\n", "crop_size=3", ["unknown key 'crop_size'"]),
])
def test_crop_bad_values_name_the_line(tmp_path, body, key, needles):
    text = net(9, 8, "[crop]\n" + body)
    expect_cfg_error(text, line_of(text, key), *needles, path=tmp_path / "bad.cfg")


# --------------------------------------------------------------------------- [normalization] / [lrn]

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
    nd = parse_network(net(5, 4, f"[convolutional]\nfilters={c}\nsize=1\nactivation=linear\n\n"
                                  f"[lrn]\nsize={size}\nalpha={alpha}\nbeta={beta}\nkappa={kappa}\n").encode())
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
    nd = parse_network(net(4, 4, "[normalization]\n\n[lrn]\nsize=3\n").encode())
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
    text = net(4, 4, "[normalization]\n" + body)
    expect_cfg_error(text, line_of(text, key), *needles, path=tmp_path / "bad.cfg")


# --------------------------------------------------------------------------------------- [batchnorm]

BN_CFG = net(6, 5, "[convolutional]\nfilters=6\nsize=3\npad=1\nactivation=leaky\n\n[batchnorm]\n")


def test_batchnorm_file_layout_and_float64(tmp_path):
    cfg = tmp_path / "bn.cfg"
    cfg.write_text(BN_CFG)
    rng = np.random.default_rng(5)
    conv = rng.normal(0, 0.3, 6 + 6 * 27)
    scales, mean, var = rng.uniform(0.5, 1.5, 6), rng.normal(0, 0.2, 6), rng.uniform(0.05, 2.0, 6)
    data = write_weights(tmp_path / "bn.weights", np.concatenate([conv, scales, mean, var]))
    model = darknet_py.load(cfg, tmp_path / "bn.weights", channels_last=False)
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
    again = darknet_py.load(BN_CFG.encode(), tmp_path / "a.weights", channels_last=False)
    again.save_weights(tmp_path / "b.weights")
    assert (tmp_path / "a.weights").read_bytes() == (tmp_path / "b.weights").read_bytes()
    with torch.no_grad():
        assert torch.equal(again(x)[0], y)


def test_batchnorm_takes_no_keys(tmp_path):
    text = net(4, 4, "[batchnorm]\nbatch_normalize=1\n")
    expect_cfg_error(text, line_of(text, "batch_normalize=1"), "unknown key 'batch_normalize'",
                     path=tmp_path / "bad.cfg")
