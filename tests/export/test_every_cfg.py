"""Every cfg exports: the project's own cfgs and the reference folder's yolov3 family (the 240 MB
networks checked layer by layer against the one export each gets in tests/export/test_onnx.py), a
generated cfg with every layer kind and every route width, and one with every activation, each held to
PyTorch through our own onnxruntime session and checked for a plain graph."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

import darknet_py
from darknet_py.export import export_onnx
from darknet_py.layers.activations import ACTIVATIONS
from darknet_py.layers.convolutional import ConvBlock
from tests.helpers import cfgs
from tests.helpers.export import (RTOL, SMALL, assert_plain_graph, expected_decoded, photo_input, rel_diff_rows,
                                  small_model)
from tests.helpers.numeric import rel_err
from tests.helpers.paths import REF, ROOT
from tests.helpers.runtimes import onnx_session

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


# --------------------------------------------------------------------------- every cfg

# Cfgs that do not load or export, with the reason; each is asserted to still fail that way.
EXCEPTIONS: dict = {}
# The 240 MB networks get one export each (about 8 s apiece on 2 cores): the 416 px export in
# test_onnx.py's test_onnx_heads_decode_and_detections. These files define exactly those networks; the test
# below parses each one and asserts that, layer by layer, instead of exporting it again.
EXPORTED_AS = {
    "ours/yolov3.cfg": "yolov3", "ours/yolov3-spp.cfg": "yolov3-spp",
    "pjreddie/yolov3.cfg": "yolov3", "pjreddie/yolov3-spp.cfg": "yolov3-spp",
}


def _cfg_params():
    params = [pytest.param(f"ours/{p.name}", p, id=f"ours/{p.name}") for p in sorted((ROOT / "cfg").glob("*.cfg"))]
    for fork in ("pjreddie", "alexeyab"):
        for p in sorted((REF / fork / "cfg").glob("yolov3*.cfg")):
            params.append(pytest.param(f"{fork}/{p.name}", p, id=f"{fork}/{p.name}"))
    return params


def _network(cfg):
    netdef = darknet_py.parse_network(cfg, width=SMALL, height=SMALL)
    return [{k: v for k, v in vars(s).items() if k != "line"} | {"kind": type(s).__name__} for s in netdef.specs], \
        netdef.shapes


def _check_export(model, x, path, **kw):
    report = export_onnx(model, path, **kw)
    sess = onnx_session(path)
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(names, {"images": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    if kw.get("decode"):
        ref = [expected_decoded(ref, model)]
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert (rel_diff_rows if kw.get("decode") else rel_err)(g, r) <= RTOL
    assert report.max_rel_diff <= RTOL
    graph = onnx.load(str(path))
    Path(path).unlink()  # up to 250 MB (pytest keeps the last 3 runs' tmp dirs)
    return report, graph


@pytest.mark.parametrize("key, cfg", _cfg_params())
def test_every_cfg_exports(key, cfg, photo_rgb, tmp_path):
    if key in EXCEPTIONS:
        err, pattern, _reason = EXCEPTIONS[key]
        with pytest.raises(err, match=pattern):
            darknet_py.load(cfg, width=SMALL, height=SMALL)
        return
    if key in EXPORTED_AS:
        assert _network(cfg) == _network(ROOT / "cfg" / f"{EXPORTED_AS[key]}.cfg")
        return
    model = small_model(cfg, photo_rgb, seed=4)
    x, _ = photo_input(model, photo_rgb)
    _, graph = _check_export(model, x, tmp_path / "net.onnx")
    assert_plain_graph(graph, model)


def test_cfg_lists_are_current():
    """Every entry of EXCEPTIONS / EXPORTED_AS names a cfg the parametrization collects (where the
    reference folder is present), and every cfg of ours is exported: none drops out unnoticed."""
    keys = {p.values[0] for p in _cfg_params()}
    assert {f"ours/{p.name}" for p in (ROOT / "cfg").glob("*.cfg")} <= keys
    for key in list(EXCEPTIONS) + list(EXPORTED_AS):
        fork, name = key.split("/")
        if fork == "ours" or (REF / fork / "cfg" / name).exists():
            assert key in keys, key
    if REF.exists():
        assert {"pjreddie/yolov3-voc.cfg", "pjreddie/yolov3-openimages.cfg", "alexeyab/yolov3-tiny_3l.cfg"} <= keys


# --------------------------------------------------------------------------- every layer kind, every activation

LAYERS_CFG = """
[net]
width=96
height=64
channels=3

# 0: 8 x 64 x 96
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

# 1: maxpool 2/2 -> 32 x 48
[maxpool]
size=2
stride=2

# 2: grouped conv, no batch norm
[convolutional]
filters=8
size=3
stride=1
pad=1
groups=2
activation=relu

# 3: maxpool 2/1 (Darknet pads one column/row after only)
[maxpool]
size=2
stride=1

# 4: maxpool 5/1 (spp)
[maxpool]
size=5
stride=1

# 5: route of 4 inputs -> 32 channels
[route]
layers=-1,-2,-3,-4

# 6: stride 2 with explicit padding -> 16 x 24
[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
padding=1
activation=mish

# 7
[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
activation=swish

# 8: residual with an activation
[shortcut]
from=-2
activation=leaky

# 9: maxpool 3/2 -> 8 x 12
[maxpool]
size=3
stride=2

# 10/11: head 1 (2 anchors, 3 classes)
[convolutional]
size=1
stride=1
pad=1
filters=16
activation=linear

[yolo]
mask=0,1
anchors=10,13, 16,30, 33,23
classes=3
num=3

# 12: route of 1 input (layer 8)
[route]
layers=-4

# 13: upsample with Darknet's scale -> 32 x 48
[upsample]
stride=2
scale=0.5

# 14: route of 2 inputs (layers 13 and 2)
[route]
layers=-1,2

# 15/16: head 2
[convolutional]
size=3
stride=1
pad=1
filters=8
activation=linear

[yolo]
mask=2
anchors=10,13, 16,30, 33,23
classes=3
num=3
"""


def spread_weights(model, seed=0, std=6.0):
    """Plain random weights, no calibration: batch-normalised convs keep roughly the input's scale
    (about 0.5 for a photo in [0, 1]), convs without batch norm multiply it by ``std``, so a
    branch conv after the trunk sees pre-activations of std ~3: the activations' kinks and tails
    (relu6 at 6, plse at +-4, hard_mish at -2, stair's steps) are all reached."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, ConvBlock):
                w = block.conv.weight
                n, fan_in = w.shape[0], w.shape[1] * w.shape[2] * w.shape[3]
                if block.bn is not None:
                    w.copy_(torch.randn(w.shape, generator=gen) / fan_in ** 0.5)
                    block.bn.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                    block.bn.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                    block.bn.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
                    block.bn.bias.copy_(0.3 * torch.randn(n, generator=gen))
                else:
                    w.copy_(torch.randn(w.shape, generator=gen) * std / fan_in ** 0.5)
                    block.conv.bias.copy_(0.5 * torch.randn(n, generator=gen))
    return model


def activations_cfg() -> str:
    """A trunk, then per activation a branch conv with that activation feeding its own [yolo]:
    each activation's output is compared on its own head (w, h channels hold it unchanged)."""
    layers = [cfgs.conv(8, stride=2, act="linear")]
    for i, name in enumerate(sorted(ACTIVATIONS)):
        if i:
            layers.append(cfgs.route("0"))
        layers += [cfgs.conv(6, stride=2, act=name, bn=False), cfgs.yolo("0", "10,13", 1, 1)]
    return cfgs.cfg(*layers, width=64)


def _centre_in_gap(pre: torch.Tensor) -> torch.Tensor:
    """Per channel of 1 x C x H x W pre-activations: the midpoint of the widest gap between
    consecutive distinct values among the middle fifth (40th to 60th percentile), near the median
    but equal to no pixel's value."""
    centres = []
    for v in pre[0].flatten(1).double():
        s = v.sort().values
        mid = s[int(0.4 * len(s)):int(0.6 * len(s)) + 1].unique()
        assert len(mid) > 1, "the photo leaves a channel's middle fifth on one value"
        i = int((mid[1:] - mid[:-1]).argmax())
        centres.append((mid[i] + mid[i + 1]) / 2)
    return torch.stack(centres).to(pre.dtype)


def test_generated_cfg_every_layer_kind(photo_rgb, tmp_path):
    model = darknet_py.load(LAYERS_CFG.encode())
    kinds = Counter(type(s).__name__ for s in model.netdef.specs)
    assert {"ConvSpec", "MaxpoolSpec", "RouteSpec", "ShortcutSpec", "UpsampleSpec", "YoloSpec"} <= set(kinds)
    assert sorted(len(s.layers) for s in model.netdef.specs if type(s).__name__ == "RouteSpec") == [1, 2, 4]
    x, _ = photo_input(model, photo_rgb)
    spread_weights(model, seed=6, std=1.5)
    for decoded in (False, True):
        _, graph = _check_export(model, x, tmp_path / f"layers{decoded}.onnx", decode=decoded, dynamic=True)
        assert_plain_graph(graph, model, per_layer=8)


def test_generated_cfg_every_activation(photo_rgb, tmp_path):
    model = darknet_py.load(activations_cfg().encode(), channels_last=False)
    acts = [s.activation for s in model.netdef.specs if type(s).__name__ == "ConvSpec"][1:]
    assert sorted(acts) == sorted(ACTIVATIONS) and len(model.heads) == len(ACTIVATIONS)
    x, _ = photo_input(model, photo_rgb)
    spread_weights(model, seed=7)
    with torch.no_grad():
        # Each branch conv rescaled so its pre-activations are centred and span about [-8, 8] per
        # channel: every activation's kinks and tails (relu6's 6, plse's +-4, hard_mish's -2) are hit.
        # The centre lies in a gap between the values, not on one: the letterbox bars (a quarter of
        # the input) and any flat area of the photo put many pixels on one value, and centring on it
        # would put them all exactly on the kink at 0, where float32 rounding alone picks the side
        # and normalize_channels (gain 1/eps = 1e4 there) turns onnxruntime's 1e-6 into 1e-2.
        trunk = model.layers[0](x)
        for block in [layer for layer in model.layers if type(layer).__name__ == "ConvBlock"][1:]:
            w, b = block.conv.weight, block.conv.bias
            pre = torch.nn.functional.conv2d(trunk, w, None, 2, 1)
            centre = _centre_in_gap(pre)
            scale = 8.0 / (pre - centre.view(1, -1, 1, 1)).abs().amax((0, 2, 3))
            w.mul_(scale.view(-1, 1, 1, 1))
            b.copy_(-centre * scale)
            pre = torch.nn.functional.conv2d(trunk, w, b, 2, 1)
            assert float(pre.min()) < -4.5 and float(pre.max()) > 6.5, block.act.name
            assert float(pre.abs().min()) > 1e-3, block.act.name  # no pixel left on the kink
    _, graph = _check_export(model, x, tmp_path / "acts.onnx")
    assert_plain_graph(graph, model, per_layer=20)
