"""The single home of what the .weights tests (tests/weights/) share: SMALL_CFG, a small network whose
layout is counted by hand, an independent walker that derives Darknet's tensor layout of a cfg from
read_cfg's sections (Darknet's order: bias, BN scale, mean, variance, then kernels [n][c/groups][ky][kx];
bias then kernels without BN), headers packed by hand with ``struct``, payloads, and the checks that a
model holds exactly a file's floats. Float counts and file sizes are the independent figures of the
reference folder's README.md. darknet_py.weights' own output is never used as an expectation.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_py.errors import WeightsError
from darknet_py.graph import build_model
from darknet_py.weights import load_weights

from tests.helpers.cfgs import conv, head_conv, maxpool, net, route, sections, shortcut, upsample, yolo
from tests.helpers.paths import REF
from tests.helpers.reference import cfg_sections

PJ_CFG = REF / "pjreddie" / "cfg"

# Layers 1 (maxpool), 4 (shortcut), 5 (upsample), 6 (route) and 8 (yolo) own no bytes.
SMALL_CFG = sections(
    net(64, batch=1),
    conv(8), maxpool(), conv(16), conv(16, 1, "groups=2"), shortcut(-2), upsample(), route("-1,0"),
    head_conv(18), yolo("0,1,2", "10,13,16,30,33,23,30,61,62,45,59,119", 1, 6))
SMALL_LAYERS = 9
# By hand: 8+3*8+8*3*3*3 | 16+3*16+16*8*3*3 | 16+3*16+16*(16/2)*1*1 | 18+18*24*1*1
SMALL_FLOATS = 248 + 1216 + 192 + 450

# darknet-reference/README.md (independent figures).
README_FLOATS = {"yolov3.cfg": 62_001_757, "yolov3-tiny.cfg": 8_858_734, "yolov3-spp.cfg": 63_052_381,
                 "yolov3-voc.cfg": 61_678_657, "yolov3-openimages.cfg": 64_807_342}

needs_ref = pytest.mark.skipif(not PJ_CFG.is_dir(), reason=f"{PJ_CFG} not present")


# --------------------------------------------------------------- an independent cfg walker (on read_cfg's sections)

def darknet_layout(text: str):
    """[(layer index, cfg line, has_bn, [(darknet tensor name, shape)])] in file order."""
    secs = cfg_sections(text)
    c = int(secs[0][1].get("channels", 3))
    chans, layout = [], []
    for i, (kind, s, line) in enumerate(secs[1:]):
        if kind in ("convolutional", "conv"):
            n, k, g = int(s["filters"]), int(s["size"]), int(s.get("groups", 1))
            bn = s.get("batch_normalize", "0") == "1"
            tensors = [("biases", (n,))]
            if bn:
                tensors += [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
            tensors.append(("weights", (n, c // g, k, k)))
            layout.append((i, line, bn, tensors))
            c = n
        elif kind == "route":
            c = sum(chans[j if j >= 0 else i + j] for j in (int(v) for v in s["layers"].split(",")))
        elif kind in ("maxpool", "upsample", "shortcut", "yolo"):
            pass
        else:
            raise AssertionError(f"walker does not know [{kind}]")
        chans.append(c)
    return layout


# The module's names for the tensors, as its error messages must spell them.
MODULE_NAME = {("biases", True): "bn.bias", ("biases", False): "conv.bias", ("scales", True): "bn.weight",
               ("rolling_mean", True): "bn.running_mean", ("rolling_variance", True): "bn.running_var",
               ("weights", True): "conv.weight", ("weights", False): "conv.weight"}


def model_tensor(model, i: int, dname: str, bn: bool) -> torch.Tensor:
    """The torch tensor holding Darknet's ``dname`` of layer i, reached by attribute, not darknet_tensors()."""
    block = model.layers[i]
    if dname == "biases":
        return block.bn.bias if bn else block.conv.bias
    return {"scales": lambda: block.bn.weight, "rolling_mean": lambda: block.bn.running_mean,
            "rolling_variance": lambda: block.bn.running_var, "weights": lambda: block.conv.weight}[dname]()


def numel(shape) -> int:
    """The number of elements of a tensor of ``shape``."""
    return int(np.prod(shape))


def layer_floats(entry) -> int:
    """The floats one layer of a ``darknet_layout`` holds in the file."""
    return sum(numel(shape) for _, shape in entry[3])


def tensor_offsets(layout):
    """[(layer, line, bn, name, shape, start float)] in file order."""
    out, off = [], 0
    for i, line, bn, tensors in layout:
        for name, shape in tensors:
            out.append((i, line, bn, name, shape, off))
            off += numel(shape)
    return out


SMALL_LAYOUT = darknet_layout(SMALL_CFG)


# --------------------------------------------------------------- files

def header_v2(revision=0, seen=0) -> bytes:
    """The 20-byte header of version 0.2 and later: major, minor, revision, an 8-byte seen."""
    return struct.pack("<iiiQ", 0, 2, revision, seen)


def header_v1(revision=0, seen=0) -> bytes:
    """The old 16-byte header (version 0.1): a 4-byte seen."""
    return struct.pack("<iiiI", 0, 1, revision, seen)


def random_floats(layout, seed=0) -> np.ndarray:
    """Random float32 payload with positive running variances (no negative-variance warnings)."""
    rng = np.random.default_rng(seed)
    total = sum(layer_floats(e) for e in layout)
    vals = rng.standard_normal(total).astype("<f4")
    for _, _, _, name, shape, start in tensor_offsets(layout):
        if name == "rolling_variance":
            vals[start:start + numel(shape)] = rng.uniform(0.5, 2.0, numel(shape)).astype("<f4")
    return vals


def write_file(tmp_path, name: str, data: bytes) -> Path:
    """``data`` written to tmp_path/NAME."""
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --------------------------------------------------------------- models

def small_model():
    """A fresh model of SMALL_CFG (the same initial values every call), a target to load a file into."""
    torch.manual_seed(0)
    return build_model(SMALL_CFG.encode())


def randomise(model, seed=3):
    """Every float tensor of ``model`` set to normal noise (running variances positive)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                v = torch.randn(t.shape, generator=g)
                t.copy_(v.abs() + 0.1 if name.endswith("running_var") else v)


def snapshot(model):
    """A copy of the model's state, to show later that a failed load changed nothing."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_loaded(model, layout, floats: np.ndarray, layers=None):
    """Each tensor of the layers in ``layers`` (all by default) holds exactly its slice of ``floats``."""
    for i, _, bn, name, shape, start in tensor_offsets(layout):
        if layers is not None and i not in layers:
            continue
        t = model_tensor(model, i, name, bn)
        assert tuple(t.shape) == shape, (i, name)
        expect = floats[start:start + numel(shape)].reshape(shape)
        assert t.detach().numpy().tobytes() == expect.astype("<f4").tobytes(), f"layer {i} {name}"


def assert_same_state(a: dict, b: dict, keys=None):
    """Two states (or their ``keys``) hold equal tensors."""
    for k in (keys if keys is not None else a):
        assert a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k


def err_of(path, model=None, **kw) -> WeightsError:
    """The WeightsError that load_weights (into ``model``, by default a fresh small_model) must raise."""
    with pytest.raises(WeightsError) as info:
        load_weights(model if model is not None else small_model(), path, **kw)
    return info.value
