"""AlexeyAB's extra layer kinds: [sam], [scale_channels], [reorg3d], [local_avgpool] / [local_avg],
[implicit] and [contrastive].

[sam] and [scale_channels] (without scale_wh) are compared with OpenCV 4.x's Darknet importer;
everything else (and the activations OpenCV does not read) with float64 NumPy written from the C
loops of AlexeyAB's src/sam_layer.c, scale_channels_layer.c, blas.c ``reorg_cpu``,
maxpool_layer.c ``forward_local_avgpool_layer`` and representation_layer.c.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.graph import parse_network
from darknet_py.random_weights import randomize
from darknet_py.summary import summarize
from darknet_py.weights import count_floats, weights_bytes
from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.numeric import rel_err
from tests.helpers.opencv import needs_darknet_importer, opencv_forward
from tests.helpers.reference import ACT64

cv2 = pytest.importorskip("cv2")


def build(text, seed=0, size=None):
    """The model of a cfg text with calibrated random weights (convolutions and [implicit])."""
    model = darknet_py.build_model(text.encode())
    c, h, w = model.netdef.input_shape
    g = torch.Generator().manual_seed(seed)
    randomize(model, torch.rand(1, c, h, w, generator=g), seed=seed)
    return model.eval()


@torch.no_grad()
def layer_outputs(model, x):
    """Every layer's output (float64 NumPy), running the graph as DarknetModel does."""
    outs = []
    for i, layer in enumerate(model.layers):
        args = [x if j < 0 else outs[j] for j in model.inputs[i]]
        outs.append(layer(*args))
    return [o.double().numpy() for o in outs]



# ------------------------------------------------------------------------------------------- [sam]

def sam_net(sam_act="linear", scale_act="linear", sam_from="-2", scale_from="-3"):
    return cfg(
        conv(8, 1),                                        # 0
        conv(8, 1, act="logistic", bn=False),              # 1: attention map
        f"[sam]\nfrom={sam_from}\nactivation={sam_act}",    # 2: layer 1 * layer 0
        "[avgpool]",                                       # 3
        conv(8, 1, act="logistic", bn=False),              # 4: excitation, 1x1x8
        f"[scale_channels]\nfrom={scale_from}\nactivation={scale_act}",  # 5: layer 2 scaled by layer 4
        conv(6, size=3, stride=2),                         # 6
    )


def cut_after(text, nth_section):
    """The cfg up to and including its nth layer section (0-based), for OpenCV's last output."""
    parts = text.split("\n\n[")
    return "\n\n[".join(parts[:nth_section + 2]) + "\n"


@needs_darknet_importer
@pytest.mark.parametrize("sam_act, scale_act, sam_from, scale_from", [
    ("linear", "linear", "-2", "-3"), ("leaky", "logistic", "0", "2"), ("logistic", "leaky", "-2", "2")])
def test_sam_and_scale_channels_match_opencv(sam_act, scale_act, sam_from, scale_from, tmp_path):
    text = sam_net(sam_act, scale_act, sam_from, scale_from)
    model = build(text, seed=1)
    weights = tmp_path / "sam.weights"
    model.save_weights(weights)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    outs = layer_outputs(model, x)
    assert model.netdef.shapes[2] == (8, 32, 32) and model.netdef.shapes[5] == (8, 32, 32)
    for layer in (2, 5, 6):
        cut = tmp_path / f"cut{layer}.cfg"
        cut.write_text(cut_after(text, layer))
        theirs = opencv_forward(cut, weights, x, one_by_one=True).astype(np.float64)
        assert theirs.shape == outs[layer].shape
        # float32 summation order (oneDNN vs OpenCV) only: measured at most 2.5e-5
        assert rel_err(outs[layer], theirs) < 1e-4, (layer, rel_err(outs[layer], theirs))
    # and the operations themselves in float64 from their inputs: act(prev * from)
    np.testing.assert_allclose(outs[2], ACT64[sam_act](outs[1] * outs[0]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(outs[5], ACT64[scale_act](outs[4] * outs[2]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("act", ["tanh", "elu", "relu"])
def test_sam_and_scale_wh_against_float64(act):
    text = cfg(
        conv(4, 1),                                          # 0: 4 x 32 x 32
        conv(4, 1, act="logistic", bn=False),                # 1
        f"[sam]\nfrom=-2\nactivation={act}",                  # 2: act(layer 1 * layer 0)
        conv(1, 1, act="logistic", bn=False),                # 3: a 1-channel spatial map
        f"[scale_channels]\nfrom=-2\nscale_wh=1\nactivation={act}",  # 4: layer 2 * map, every channel
        "[sam]\nfrom=-1",                                    # 5: from = the previous layer: its square
    )
    model = build(text, seed=3)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    outs = layer_outputs(model, x)
    f = ACT64[act]
    assert rel_err(outs[2], f(outs[1] * outs[0])) < 1e-6
    # forward_scale_channels_layer, scale_wh: input_index = i % (w*h) + (i / (c*w*h)) * (w*h)
    n, c, h, w = outs[2].shape
    flat_in, flat_from = outs[3].reshape(-1), outs[2].reshape(-1)
    i = np.arange(flat_from.size)
    ref = f(flat_in[i % (w * h) + (i // (c * w * h)) * (w * h)] * flat_from).reshape(n, c, h, w)
    assert rel_err(outs[4], ref) < 1e-6
    assert rel_err(outs[5], outs[4] ** 2) < 1e-6


def test_scale_channels_scales_each_channel():
    # forward_scale_channels_layer: out[i] = in[i / (w*h)] * from[i]: one factor per (image, channel)
    text = cfg(conv(6, 1), "[avgpool]", conv(6, 1, act="logistic", bn=False), "[scale_channels]\nfrom=0")
    model = build(text, seed=5)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    outs = layer_outputs(model, x)
    flat_in, flat_from = outs[2].reshape(-1), outs[0].reshape(-1)
    i = np.arange(flat_from.size)
    ref = (flat_in[i // (32 * 32)] * flat_from).reshape(outs[0].shape)
    assert rel_err(outs[3], ref) < 1e-6


# ---------------------------------------------------------------------------------------- [reorg3d]

def reorg_cpu(x, out_w, out_h, out_c, batch, stride, forward):
    """blas.c reorg_cpu on flat arrays, loop for loop (index arithmetic only)."""
    x = x.reshape(-1)
    out = np.full(x.size, np.nan)
    in_c = out_c // (stride * stride)
    for b in range(batch):
        for k in range(out_c):
            for j in range(out_h):
                for i in range(out_w):
                    in_index = i + out_w * (j + out_h * (k + out_c * b))
                    c2 = k % in_c
                    offset = k // in_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + out_w * stride * (h2 + out_h * stride * (c2 + in_c * b))
                    if forward:
                        out[out_index] = x[in_index]
                    else:
                        out[in_index] = x[out_index]
    return out


@pytest.mark.parametrize("stride, reverse, channels", [(2, 0, 4), (4, 0, 2), (1, 0, 3), (2, 1, 16), (1, 1, 5)])
def test_reorg3d_is_reorg_cpu(stride, reverse, channels):
    text = cfg(conv(channels, 1, act="linear", bn=False), f"[reorg3d]\nstride={stride}\nreverse={reverse}")
    model = build(text)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    outs = layer_outputs(model, x)
    n, c, h, w = outs[0].shape
    s = stride
    if reverse:  # forward_reorg_layer: reorg_cpu(input, l.out_w, l.out_h, l.out_c, ..., 1, output)
        shape = (c // (s * s), h * s, w * s)
        ref = reorg_cpu(outs[0], w * s, h * s, c // (s * s), n, s, 1)
    else:        # reorg_cpu(input, l.out_w, l.out_h, l.out_c, ..., 0, output)
        shape = (c * s * s, h // s, w // s)
        ref = reorg_cpu(outs[0], w // s, h // s, c * s * s, n, s, 0)
    assert model.netdef.shapes[1] == shape
    assert not np.isnan(ref).any()  # every output element written exactly by the C loop
    np.testing.assert_array_equal(outs[1], ref.reshape((n,) + shape))  # a permutation: exact
    if not reverse and s == 2:  # the order is offset-major, not pixel_unshuffle's channel-major
        assert not np.array_equal(outs[1], torch.nn.functional.pixel_unshuffle(torch.from_numpy(outs[0]), 2).numpy())


# ----------------------------------------------------------------------------------- [local_avgpool]

def local_avgpool_ref(x, size, stride_x, stride_y, padding):
    """forward_local_avgpool_layer: the mean of the in-range taps (out-of-range ones not counted)."""
    n, c, h, w = x.shape
    out_h = (h + padding - size) // stride_y + 1
    out_w = (w + padding - size) // stride_x + 1
    off = -(padding // 2)
    out = np.zeros((n, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            total, counter = np.zeros((n, c)), 0
            for dn in range(size):
                for m in range(size):
                    cur_h, cur_w = off + i * stride_y + dn, off + j * stride_x + m
                    if 0 <= cur_h < h and 0 <= cur_w < w:
                        counter += 1
                        total += x[:, :, cur_h, cur_w]
            out[:, :, i, j] = total / counter
    return out


@pytest.mark.parametrize("section, geometry", [
    ("[local_avgpool]\nsize=4\nstride=4", (4, 4, 4, 3)),            # yolov4-tiny_contrastive's
    ("[local_avgpool]\nsize=3\nstride=2", (3, 2, 2, 2)),            # padding 2: 1 before, 1 after
    ("[local_avg]\nsize=2\nstride=1", (2, 1, 1, 1)),                # padding 1, all after: shape kept
    ("[local_avgpool]\nstride=2", (2, 2, 2, 1)),                    # size defaults to stride
    ("[local_avgpool]\nsize=5\nstride=1\npadding=4", (5, 1, 1, 4)),
    ("[local_avgpool]\nsize=3\nstride_x=1\nstride_y=2", (3, 1, 2, 2)),
    ("[local_avgpool]\nsize=3\nstride=3\npadding=0", (3, 3, 3, 0)),  # 32 -> 10: the last 2 rows unread
])
def test_local_avgpool_against_float64(section, geometry):
    size, sx, sy, padding = geometry
    text = cfg(conv(5, 1, act="linear", bn=False), section)  # linear conv: negative inputs too
    model = build(text, seed=8)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    outs = layer_outputs(model, x)
    ref = local_avgpool_ref(outs[0], size, sx, sy, padding)
    assert model.netdef.shapes[1] == ref.shape[1:]
    assert rel_err(outs[1], ref) < 1e-6
    # the module follows the input size (odd sizes, asymmetric borders), as Darknet's resize does
    odd = torch.randn(1, 2, 13, 15, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        got = model.layers[1](odd).double().numpy()
    assert rel_err(got, local_avgpool_ref(odd.double().numpy(), size, sx, sy, padding)) < 1e-6


def test_local_avgpool_border_counts_only_real_taps():
    # 2x2 input of ones, size 3 stride 1 padding 2: every window holds 1, 2 or 4 real taps, mean 1
    text = cfg("[local_avgpool]\nsize=3\nstride=1", width=32)
    model = build(text)
    with torch.no_grad():
        out = model.layers[0](torch.ones(1, 1, 2, 2))
    assert out.shape == (1, 1, 2, 2) and torch.equal(out, torch.ones(1, 1, 2, 2))
    row = summarize(parse_network(text.encode())).rows[0]
    assert row.flops == 3 * 3 * 3 * 32 * 32  # make_maxpool_layer's size*size*c*out_h*out_w
    assert "3 x 3 / 1" in row.describe


# ---------------------------------------------------------------------------------------- [implicit]

IMPLICIT = cfg(
    conv(4, 1, act="linear", bn=False),            # 0: biases 4, weights 12
    "[implicit]\nfilters=4\nmean=1.0\nstd=0.1",     # 1: 4 floats
    "[scale_channels]\nfrom=0",                     # 2: layer 0 scaled per channel by the constant
    "[implicit]\nfilters=3\natoms=2",               # 3: 6 floats, 3 x 2 x 1
    conv(2, 1, bn=True),                            # 4: biases 2, BN 3*2, weights 2*3*1*1
)


def test_implicit_load_order_and_output(tmp_path):
    model = darknet_py.build_model(IMPLICIT.encode()).eval()
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
    darknet_py.build_model(IMPLICIT.encode()).load_weights(path).save_weights(again)
    assert again.read_bytes() == path.read_bytes()
    assert summarize(parse_network(IMPLICIT.encode())).floats == n


def test_implicit_initialisation_is_darknets():
    # make_implicit_layer: mean + rand_uniform(-std, std)
    text = cfg("[implicit]\nfilters=500\nmean=1.0\nstd=0.1\nlearning_rate=0.1\nstopbackward=1", "[implicit]")
    model = darknet_py.build_model(text.encode())
    w = model.layers[0].weight.detach()
    assert w.min() >= 0.9 and w.max() <= 1.1 and w.std() > 0.03
    assert model.layers[1].weight.shape == (128, 1)  # filters defaults to 128
    before = model.layers[0].weight.detach().clone()
    randomize(model, seed=3)
    after = model.layers[0].weight.detach()
    assert not torch.equal(before, after) and after.min() >= 0.9 and after.max() <= 1.1


# ------------------------------------------------------------------------------------- [contrastive]

CONTRASTIVE = cfg(
    conv(8, 1),                                                # 0
    conv(18, 1, act="linear", bn=False),                       # 1
    "[yolo]\nmask=0,1,2\nanchors=4,5,8,9,12,13\nclasses=1\nnum=3\nembedding_layer=-3",  # 2
    "[route]\nlayers=0",                                       # 3
    "[contrastive]\nclasses=1\ntemperature=1.0\nyolo_layer=-2\ncls_normalizer=1.0\nmax_delta=10\n"
    "contrastive_neg_max=3",                                   # 4
)


def test_contrastive_is_inert_at_inference():
    model = build(CONTRASTIVE)
    spec = model.netdef.specs[4]
    assert spec.yolo_layer == 2 and spec.temperature == 1.0 and spec.max_delta == 10
    assert model.netdef.head_indices == [2] and model.netdef.shapes[4] == (8, 32, 32)
    x = torch.rand(1, 3, 32, 32)
    outs = layer_outputs(model, x)
    assert not outs[4].any()  # forward_contrastive_layer returns at once when not training
    with torch.no_grad():
        heads = model(x)
    assert len(heads) == 1 and np.array_equal(heads[0].double().numpy(), outs[2])


# ------------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("sections, line, needles", [
    # [sam]: the two layers must have the same shape; both are named
    ((conv(8, 1), conv(4, 1, act="logistic", bn=False), "[sam]\nfrom=-2"), "[sam]",
     ["layer 1 (32x32x4)", "layer 0 (32x32x8)", "make_sam_layer"]),
    ((conv(8, 1), conv(8, 1, stride=2), "[sam]\nfrom=-2"), "[sam]", ["layer 1 (16x16x8)", "layer 0 (32x32x8)"]),
    ((conv(8, 1), "[sam]\nfrom=-1,-1"), "from=-1,-1", ["reads one layer"]),
    ((conv(8, 1), "[sam]\nfrom=1"), "from=1", ["from=1 refers to layer 1"]),
    ((conv(8, 1), "[sam]\nactivation=leaky"), "[sam]", ["missing required key 'from'"]),
    ((conv(8, 1), conv(8, 1), "[sam]\nfrom=-2\nactivation=mish"), "activation=mish", ["not supported", "outputs 0"]),
    ((conv(8, 1), conv(8, 1), "[sam]\nfrom=-2\nactivation=leeky"), "activation=leeky", ["did you mean 'leaky'"]),
    (("[sam]\nfrom=-1",), "[sam]", ["cannot be the first layer"]),
    # [scale_channels]
    ((conv(8, 1), "[avgpool]", conv(4, 1, bn=False), "[scale_channels]\nfrom=0"), "[scale_channels]",
     ["layer 0 (32x32x8)", "layer 2 (1x1x4)", "1x1x8"]),
    ((conv(8, 1), conv(8, 1), "[scale_channels]\nfrom=0"), "[scale_channels]", ["layer 1 (32x32x8)", "1x1x8"]),
    ((conv(8, 1), conv(2, 1), "[scale_channels]\nfrom=0\nscale_wh=1"), "scale_wh=1",
     ["layer 1 (32x32x2)", "layer 0 (32x32x8)", "32x32x1"]),
    ((conv(8, 1), "[avgpool]", conv(8, 1, bn=False), "[scale_channels]\nfrom=0\nactivation=swish"),
     "activation=swish", ["not supported"]),
    ((conv(8, 1), "[avgpool]", "[scale_channels]\nfrom=0\nscale_wh=2"), "scale_wh=2", ["expected one of 0, 1"]),
    # [reorg3d]
    ((conv(8, 1, stride=3), "[reorg3d]\nstride=2"), "stride=2", ["does not divide the 11x11", "layer 0"]),
    ((conv(8, 1), "[reorg3d]\nstride=2\nreverse=1"), "reverse=1", ["stride^4 = 16", "32x32x8"]),
    ((conv(8, 1), "[reorg3d]\nstride=0"), "stride=0", ["expected a value >= 1"]),
    ((conv(8, 1), "[reorg3d]\nstride=2\nflatten=1"), "flatten=1", ["unknown key 'flatten'"]),
    # [local_avgpool]
    ((conv(8, 1), "[local_avgpool]\nsize=2\nstride=1\npadding=4"), "padding=4", ["whole", "0/0"]),
    ((conv(8, 1), "[local_avgpool]\nsize=3\nstride=1\npadding=5"), "padding=5", ["whole", "0/0"]),
    ((conv(8, 1, stride=16), "[local_avgpool]\nsize=5\npadding=0"), "[local_avgpool]", ["does not fit", "2x2x8"]),
    ((conv(8, 1), "[local_avgpool]\nsize=2\nmaxpool_depth=1"), "maxpool_depth=1", ["unknown key 'maxpool_depth'"]),
    ((conv(8, 1), "[local_avgpool]\nsize=2\nstride_x=0"), "stride_x=0", ["expected a value >= 1"]),
    # [implicit]
    (("[implicit]\nfilters=0",), "filters=0", ["expected a value >= 1"]),
    (("[implicit]\nfilters=8\natoms=x",), "atoms=x", ["expected an integer"]),
    (("[implicit]\nfilters=8\nstd=1e999",), "std=1e999", ["finite"]),
    (("[implicit]\nfilter=8",), "filter=8", ["did you mean 'filters'"]),
    (("[implicit]\nfilters=8\ndontload=1",), "dontload=1", ["not supported"]),
    # [contrastive]
    ((conv(8, 1), "[contrastive]\nclasses=1"), "[contrastive]", ["missing required key 'yolo_layer'"]),
    ((conv(8, 1), "[contrastive]\nyolo_layer=0"), "yolo_layer=0", ["dereferences"]),
    ((conv(8, 1), conv(4, 1), "[contrastive]\nyolo_layer=-1"), "yolo_layer=-1", ["layer 1", "not a [yolo]"]),
    ((conv(8, 1), "[contrastive]\nyolo_layer=5"), "yolo_layer=5", ["refers to layer 5"]),
])
def test_bad_inputs_name_the_line(sections, line, needles):
    text = cfg(*sections)
    expect_cfg_error(text, line_of(text, line), *needles)


def test_local_avgpool_padding_error_names_the_windows():
    text = cfg(conv(8, 1), "[local_avgpool]\nsize=2\nstride=1\npadding=3")
    err = expect_cfg_error(text, line_of(text, "padding=3"), "layer 0")
    assert "[local_avgpool] (layer 1)" in str(err)


def test_dynamic_batch_onnx_export(tmp_path):
    # every kind here keeps the batch symbolic (a reshape with a traced batch size breaks batch 3)
    pytest.importorskip("onnxruntime")
    from darknet_py.export import export_onnx
    text = cfg(conv(8, size=3, stride=2), conv(8, 1, act="logistic", bn=False), "[sam]\nfrom=-2",
               "[local_avgpool]\nsize=3\nstride=2", "[reorg3d]\nstride=2", "[implicit]\nfilters=32\nmean=1",
               "[scale_channels]\nfrom=-2", conv(21, 1, act="linear", bn=False),
               "[yolo]\nmask=0,1,2\nanchors=6,8,12,10,20,30\nclasses=2\nnum=3", width=64)
    model = build(text, seed=11)
    report = export_onnx(model, tmp_path / "m.onnx", dynamic=True)
    assert report.checked_batches == [1, 3] and report.max_rel_diff < 1e-4
