"""Tests for darknet_py.weights: the Darknet .weights format (docs/darknet-facts.md §2.1) and the
bad-input cases W1-W12 of docs/bad-inputs.md.

Every expected value comes from this file: the tensor layout is derived by a small cfg walker
written here (Darknet's order: bias, BN scale, mean, variance, then kernels [n][c/groups][ky][kx];
bias then kernels without BN), headers are packed by hand with ``struct``, float counts and file
sizes are the independent figures of darknet-reference/README.md. The module's own output is
never used as the expectation.
"""
from __future__ import annotations

import math
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_py.errors import WeightsError
from darknet_py.graph import build_model
from darknet_py.weights import (Header, count_floats, layer_tensors, load_weights, save_weights, weights_bytes,
                                weights_report)

from tests.helpers.cfgs import conv, head_conv, maxpool, net, route, sections, shortcut, upsample, yolo
from tests.helpers.paths import REF  # noqa: E402
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
YOLOV3_FILE_BYTES = 248_007_048
TINY_FILE_BYTES = 35_434_956

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
    return int(np.prod(shape))


def layer_floats(entry) -> int:
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


def header_v2(revision=0, seen=0) -> bytes:
    return struct.pack("<iiiQ", 0, 2, revision, seen)


def header_v1(revision=0, seen=0) -> bytes:
    return struct.pack("<iiiI", 0, 1, revision, seen)


def random_floats(layout, seed=0) -> np.ndarray:
    """Random float32 payload with positive running variances (no W9 warnings)."""
    rng = np.random.default_rng(seed)
    total = sum(layer_floats(e) for e in layout)
    vals = rng.standard_normal(total).astype("<f4")
    for _, _, _, name, shape, start in tensor_offsets(layout):
        if name == "rolling_variance":
            vals[start:start + numel(shape)] = rng.uniform(0.5, 2.0, numel(shape)).astype("<f4")
    return vals


def small_model():
    torch.manual_seed(0)
    return build_model(SMALL_CFG.encode())


def write(tmp_path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_loaded(model, layout, floats: np.ndarray, layers=None):
    """Each tensor of the layers in ``layers`` (all by default) holds exactly its slice of ``floats``."""
    for i, line, bn, name, shape, start in tensor_offsets(layout):
        if layers is not None and i not in layers:
            continue
        t = model_tensor(model, i, name, bn)
        assert tuple(t.shape) == shape, (i, name)
        expect = floats[start:start + numel(shape)].reshape(shape)
        assert t.detach().numpy().tobytes() == expect.astype("<f4").tobytes(), f"layer {i} {name}"


def assert_same_state(a: dict, b: dict, keys=None):
    for k in (keys if keys is not None else a):
        assert a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k


def err_of(path, model=None, **kw) -> WeightsError:
    with pytest.raises(WeightsError) as info:
        load_weights(model if model is not None else small_model(), path, **kw)
    return info.value


# --------------------------------------------------------------- the walker agrees with the hand count

def test_walker_matches_hand_count():
    assert [e[0] for e in SMALL_LAYOUT] == [0, 2, 3, 7]
    assert [layer_floats(e) for e in SMALL_LAYOUT] == [248, 1216, 192, 450]
    lines = SMALL_CFG.splitlines()
    for i, line, _, _ in SMALL_LAYOUT:
        assert lines[line - 1] == "[convolutional]"
    assert count_floats(small_model()) == SMALL_FLOATS


# --------------------------------------------------------------- sizes of the reference cfgs

def first_key_wins(text: str) -> bytes:
    """Drop repeated keys inside a section, keeping the first as darknet does. yolov3-openimages.cfg
    repeats batch/subdivisions in [net] (testing, then training values), which our reader rejects
    on purpose (bad-inputs C11); neither key changes the weights layout."""
    out, seen = [], set()
    for raw in text.splitlines():
        line = "".join(raw.split())
        if line.startswith("["):
            seen = set()
        elif line and line[0] not in "#;" and "=" in line:
            key = line.split("=", 1)[0]
            if key in seen:
                continue
            seen.add(key)
        out.append(raw)
    return ("\n".join(out) + "\n").encode()


@needs_ref
@pytest.mark.parametrize("name", sorted(README_FLOATS))
def test_count_floats_reference_cfgs(name):
    text = (PJ_CFG / name).read_text()
    with torch.device("meta"):  # the count only needs shapes: no 250 MB of parameters
        model = build_model(first_key_wins(text))
    assert count_floats(model) == README_FLOATS[name]
    assert sum(layer_floats(e) for e in darknet_layout(text)) == README_FLOATS[name]
    assert sum(t.numel() for _, ts in layer_tensors(model) for _, t in ts) == README_FLOATS[name]


@needs_ref
def test_yolov3_file_size():
    with torch.device("meta"):
        model = build_model(PJ_CFG / "yolov3.cfg")
    assert len(Header().pack()) == 20  # default header as save_weights_upto writes it: 0, 2, 0, 8-byte seen
    assert 20 + 4 * count_floats(model) == YOLOV3_FILE_BYTES


@needs_ref
def test_yolov3_tiny_written_size_and_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_model(PJ_CFG / "yolov3-tiny.cfg")
    p = tmp_path / "tiny.weights"
    save_weights(model, p)
    assert p.stat().st_size == TINY_FILE_BYTES
    data = p.read_bytes()
    assert data[:20] == header_v2(0, 0)
    fresh = build_model(PJ_CFG / "yolov3-tiny.cfg")
    load_weights(fresh, p)
    assert weights_bytes(fresh) == data
    assert_same_state(model.state_dict(), fresh.state_dict())


# --------------------------------------------------------------- round trip

def randomise(model, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                v = torch.randn(t.shape, generator=g)
                t.copy_(v.abs() + 0.1 if name.endswith("running_var") else v)


def test_round_trip_byte_identical(tmp_path):
    model = small_model()
    randomise(model)
    p1, p2 = tmp_path / "a.weights", tmp_path / "b.weights"
    save_weights(model, p1)
    data = p1.read_bytes()
    # What the writer put there, assembled here from the tensors in Darknet order.
    expect = header_v2() + b"".join(
        model_tensor(model, i, name, bn).detach().numpy().astype("<f4").tobytes()
        for i, _, bn, name, _, _ in tensor_offsets(SMALL_LAYOUT))
    assert data == expect
    assert len(data) == 20 + 4 * SMALL_FLOATS

    torch.manual_seed(99)
    fresh = build_model(SMALL_CFG.encode())
    load_weights(fresh, p1)
    save_weights(fresh, p2)
    assert p2.read_bytes() == data
    assert_same_state(model.state_dict(), fresh.state_dict())


@pytest.mark.parametrize("head,seen_bytes", [
    (struct.pack("<iiiQ", 0, 2, 5, 2**33 + 12345), 8),  # seen above 2^32: only an 8-byte field holds it
    (struct.pack("<iiiI", 0, 1, 7, 4_000_000_000), 4),  # old 16-byte header, written by hand
])
def test_header_variants_preserved(tmp_path, head, seen_bytes):
    floats = random_floats(SMALL_LAYOUT, seed=5)
    data = head + floats.tobytes()
    p = write(tmp_path, "h.weights", data)
    model = small_model()
    header = load_weights(model, p)
    major, minor, revision = struct.unpack_from("<iii", head)
    seen = struct.unpack_from("<Q" if seen_bytes == 8 else "<I", head, 12)[0]
    assert (header.major, header.minor, header.revision, header.seen, header.seen_bytes) == \
        (major, minor, revision, seen, seen_bytes)
    assert_loaded(model, SMALL_LAYOUT, floats)
    assert weights_bytes(model) == data
    out = tmp_path / "out.weights"
    model.save_weights(out)
    assert out.read_bytes() == data
    fresh = small_model()
    load_weights(fresh, out)
    assert weights_bytes(fresh) == data


# --------------------------------------------------------------- golden placement

def test_golden_placement_arange(tmp_path):
    floats = np.arange(SMALL_FLOATS, dtype="<f4")
    p = write(tmp_path, "golden.weights", header_v2() + floats.tobytes())
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
    p = write(tmp_path, "tiny.weights", header_v2() + floats.tobytes())
    model = build_model(PJ_CFG / "yolov3-tiny.cfg")
    load_weights(model, p)
    assert_loaded(model, layout, floats)


# --------------------------------------------------------------- truncation sweep, W5, W6, W8

def boundaries(layout, header_size):
    """[(layer index, byte offset where its bytes start)] plus (None, end of file)."""
    out, off = [], header_size
    for e in layout:
        out.append((e[0], off))
        off += 4 * layer_floats(e)
    return out, off


def test_truncation_sweep(tmp_path):
    floats = random_floats(SMALL_LAYOUT, seed=7)
    full = header_v2(3, 77) + floats.tobytes()
    total = len(full)
    starts, end = boundaries(SMALL_LAYOUT, 20)
    assert end == total
    offsets = tensor_offsets(SMALL_LAYOUT)
    by_layer = {e[0]: e for e in SMALL_LAYOUT}

    def where(i):
        return f"layer {i} [convolutional] (cfg line {by_layer[i][1]})"

    cuts = {}
    for k, (i, b) in enumerate(starts):
        # Clean boundary: everything before layer i is there, nothing of it.
        cuts[b] = ("clean", i)
        # 4 bytes into layer i: one float of its first tensor.
        first = offsets[[o[0] for o in offsets].index(i)]
        cuts[b + 4] = ("mid", i, MODULE_NAME[(first[3], first[2])], numel(first[4]), 1)
        cuts[b + 2] = ("mid", i, MODULE_NAME[(first[3], first[2])], numel(first[4]), 0)
        if k > 0:
            prev = by_layer[starts[k - 1][0]]
            name, shape = prev[3][-1]
            cuts[b - 4] = ("mid", prev[0], MODULE_NAME[(name, prev[2])], numel(shape), numel(shape) - 1)
            cuts[b - 1] = ("mid", prev[0], MODULE_NAME[(name, prev[2])], numel(shape), numel(shape) - 1)
    # And the middle of every tensor.
    for i, _, bn, name, shape, start in offsets:
        half = numel(shape) // 2
        cuts[20 + 4 * (start + half)] = ("mid", i, MODULE_NAME[(name, bn)], numel(shape), half)
    prev_last = by_layer[starts[-1][0]]
    cuts[end - 4] = ("mid", prev_last[0], "conv.weight", numel(prev_last[3][-1][1]), numel(prev_last[3][-1][1]) - 1)
    assert len(cuts) > 25

    for cut, expect in sorted(cuts.items()):
        p = write(tmp_path, f"cut{cut}.weights", full[:cut])
        model = small_model()
        before = snapshot(model)
        with pytest.raises(WeightsError) as info:
            load_weights(model, p)
        msg = str(info.value)
        assert msg.startswith(f"{p}: "), msg
        assert f"file {cut} bytes, cfg needs {total}" in msg or f"({cut} bytes, the cfg needs {total})" in msg, msg
        if expect[0] == "clean":
            i = expect[1]
            assert f"file ends cleanly after the first {i} of {SMALL_LAYERS} layers" in msg, msg
            assert f"pass upto={i}" in msg, msg
        else:
            _, i, tname, need, remain = expect
            assert f"{where(i)}: {tname} needs {need} floats, {remain} remain; " in msg, (cut, msg)
        assert_same_state(before, model.state_dict())  # a failed load changes nothing

        if expect[0] == "clean":
            i = expect[1]
            # Every upto between the previous weighted layer (exclusive) and i loads this file.
            for upto in sorted({i, max([e[0] + 1 for e in SMALL_LAYOUT if e[0] < i], default=0)}):
                model = small_model()
                before = snapshot(model)
                load_weights(model, p, upto=upto)
                assert_loaded(model, SMALL_LAYOUT, floats, layers=range(upto))
                for key in before:
                    if int(key.split(".")[1]) >= upto:
                        assert torch.equal(model.state_dict()[key], before[key]), key
        else:
            # The matching upto of a cut that is not a boundary still fails.
            i = expect[1]
            with pytest.raises(WeightsError):
                load_weights(small_model(), p, upto=i + 1)


def test_truncated_header(tmp_path):
    full = header_v2() + random_floats(SMALL_LAYOUT).tobytes()
    for cut in range(0, 20):
        p = write(tmp_path, f"h{cut}.weights", full[:cut])
        msg = str(err_of(p))
        assert "not a darknet weights file" in msg, msg
        assert (f"({cut} bytes" in msg) or (cut == 0 and "empty" in msg), msg


@pytest.mark.parametrize("extra", [1, 4, 4096])
def test_trailing_bytes_w6(tmp_path, extra):
    floats = random_floats(SMALL_LAYOUT, seed=11)
    full = header_v2() + floats.tobytes()
    p = write(tmp_path, "long.weights", full + bytes((7 * j + 1) % 256 for j in range(extra)))
    size = len(full) + extra
    assert p.stat().st_size == size
    model = small_model()
    before = snapshot(model)
    msg = str(err_of(p, model))
    assert f"file is {size} bytes, the cfg needs {len(full)}: {extra} bytes" in msg, msg
    assert f"({extra / 4:g} floats)" in msg, msg
    assert "cfg and weights do not match" in msg
    assert_same_state(before, model.state_dict())
    with pytest.warns(UserWarning, match=f"{extra} trailing bytes"):
        load_weights(model, p, allow_trailing_bytes=True)
    assert_loaded(model, SMALL_LAYOUT, floats)
    # upto=None is the whole cfg; upto=all layers is the same question
    with pytest.raises(WeightsError):
        load_weights(small_model(), p, upto=None)


def test_one_float_short_w5_exact_message(tmp_path):
    # Old 16-byte header: one float short is not also a seen-width signature, so the message is exact.
    floats = random_floats(SMALL_LAYOUT, seed=2)
    data = header_v1(0, 10) + floats[:-1].tobytes()
    p = write(tmp_path, "short.weights", data)
    L, N, _, tensors = SMALL_LAYOUT[-1]
    X = numel(tensors[-1][1])  # 18 * 24 * 1 * 1
    assert (L, X) == (7, 432)
    A, B = 16 + 4 * (SMALL_FLOATS - 1), 16 + 4 * SMALL_FLOATS
    err = err_of(p)
    assert str(err) == (f"{p}: layer {L} [convolutional] (cfg line {N}): conv.weight needs {X} floats, {X - 1} "
                        f"remain; file {A} bytes, cfg needs {B}")
    assert err.path == str(p)
    # 0.2 header: the same message, then the seen-width hint (4 bytes short is both).
    p2 = write(tmp_path, "short2.weights", header_v2() + floats[:-1].tobytes())
    msg = str(err_of(p2))
    assert msg.startswith(f"{p2}: layer {L} [convolutional] (cfg line {N}): conv.weight needs {X} floats, "
                          f"{X - 1} remain; file {A + 4} bytes, cfg needs {B + 4}"), msg


@needs_ref
def test_one_float_short_w5_yolov3_tiny(tmp_path):
    text = (PJ_CFG / "yolov3-tiny.cfg").read_text()
    layout = darknet_layout(text)
    L, N, bn, tensors = layout[-1]
    assert not bn
    X = numel(tensors[-1][1])
    n = README_FLOATS["yolov3-tiny.cfg"]
    data = header_v1() + np.zeros(n - 1, dtype="<f4").tobytes()
    p = write(tmp_path, "tiny-short.weights", data)
    with torch.device("meta"):
        model = build_model(PJ_CFG / "yolov3-tiny.cfg")
    assert str(err_of(p, model)) == (
        f"{p}: layer {L} [convolutional] (cfg line {N}): conv.weight needs {X} floats, {X - 1} remain; "
        f"file {16 + 4 * (n - 1)} bytes, cfg needs {16 + 4 * n}")
    assert (L, X) == (22, 255 * 256)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_backbone_w8_and_partial_save_prefix(tmp_path, k):
    model = small_model()
    randomise(model, seed=k)
    full = weights_bytes(model)
    prefix_floats = sum(layer_floats(e) for e in SMALL_LAYOUT if e[0] < k)
    p = tmp_path / f"backbone{k}.weights"
    save_weights(model, p, upto=k)
    part = p.read_bytes()
    assert len(part) == 20 + 4 * prefix_floats
    assert part == full[:len(part)]
    assert weights_bytes(model, upto=k) == part

    msg = str(err_of(p))
    assert f"file ends cleanly after the first {k} of {SMALL_LAYERS} layers" in msg, msg
    assert f"pass upto={k}" in msg

    fresh = small_model()
    before = snapshot(fresh)
    load_weights(fresh, p, upto=k)
    for key, v in fresh.state_dict().items():
        ref = model.state_dict()[key] if int(key.split(".")[1]) < k else before[key]
        assert torch.equal(v, ref), key
    assert weights_bytes(fresh, upto=k) == part
    # The full file also loads with upto=k (the rest is not read, as darknet's partial load).
    fresh2 = small_model()
    load_weights(fresh2, write(tmp_path, "full.weights", full), upto=k)
    assert weights_bytes(fresh2, upto=k) == part


def test_upto_out_of_range_is_an_argument_error(tmp_path):
    p = write(tmp_path, "x.weights", header_v2() + random_floats(SMALL_LAYOUT).tobytes())
    with pytest.raises(ValueError):
        load_weights(small_model(), p, upto=SMALL_LAYERS + 1)
    with pytest.raises(ValueError):
        load_weights(small_model(), p, upto=-1)
    load_weights(small_model(), p, upto=SMALL_LAYERS)


# --------------------------------------------------------------- W7: seen width

def test_seen_width_short_w7(tmp_path):
    """Header says 0.2 (8-byte seen) but the writer put 4 bytes: the file is 4 bytes short."""
    floats = random_floats(SMALL_LAYOUT, seed=13)
    data = struct.pack("<iiiI", 0, 2, 1, 123456) + floats.tobytes()
    p = write(tmp_path, "w7a.weights", data)
    msg = str(err_of(p))
    assert "off by exactly 4 bytes" in msg and "seen_bytes=4" in msg, msg
    model = small_model()
    h = load_weights(model, p, seen_bytes=4)
    assert (h.major, h.minor, h.revision, h.seen, h.seen_bytes) == (0, 2, 1, 123456, 4)
    assert_loaded(model, SMALL_LAYOUT, floats)
    assert weights_bytes(model) == data


def test_seen_width_long_w7(tmp_path):
    """Header says 0.1 (4-byte seen) but the writer put 8 bytes: the file is 4 bytes long."""
    floats = random_floats(SMALL_LAYOUT, seed=17)
    data = struct.pack("<iiiQ", 0, 1, 2, 654321) + floats.tobytes()
    p = write(tmp_path, "w7b.weights", data)
    msg = str(err_of(p))
    assert "off by exactly 4 bytes" in msg and "seen_bytes=8" in msg, msg
    # A seen-width disagreement is not "trailing bytes": allow_trailing_bytes must not hide it.
    with pytest.raises(WeightsError, match="seen_bytes=8"):
        load_weights(small_model(), p, allow_trailing_bytes=True)
    model = small_model()
    h = load_weights(model, p, seen_bytes=8)
    assert (h.major, h.minor, h.revision, h.seen, h.seen_bytes) == (0, 1, 2, 654321, 8)
    assert_loaded(model, SMALL_LAYOUT, floats)
    assert weights_bytes(model) == data


def test_seen_bytes_must_be_4_or_8(tmp_path):
    p = write(tmp_path, "x.weights", header_v2() + random_floats(SMALL_LAYOUT).tobytes())
    with pytest.raises(ValueError):
        load_weights(small_model(), p, seen_bytes=2)


# --------------------------------------------------------------- W1-W4

def test_w1_missing_and_directory(tmp_path):
    missing = tmp_path / "nope.weights"
    err = err_of(missing)
    assert str(err).startswith(f"{missing}: ") and err.path == str(missing)
    d = tmp_path / "dir.weights"
    d.mkdir()
    assert str(err_of(d)).startswith(f"{d}: ")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_w1_unreadable(tmp_path):
    p = write(tmp_path, "locked.weights", header_v2() + random_floats(SMALL_LAYOUT).tobytes())
    p.chmod(0)
    try:
        assert str(err_of(p)).startswith(f"{p}: ")
    finally:
        p.chmod(0o600)


@pytest.mark.parametrize("data,size", [(b"", "empty"), (bytes(12), "12 bytes"), (b"\x00\x00\x00\x00" * 3, "12 bytes")])
def test_w2_empty_and_short(tmp_path, data, size):
    p = write(tmp_path, "w2.weights", data)
    msg = str(err_of(p))
    assert msg.startswith(f"{p}: not a darknet weights file"), msg
    assert size in msg


@pytest.mark.parametrize("data,word", [
    (b"<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>GitHub</title></head>\n<body>" + b"x" * 500, "HTML"),
    (b"\n  <html><body>redirect</body></html>\n", "HTML"),
    (b"version https://git-lfs.github.com/spec/v1\n"
     b"oid sha256:523e4e69e1d015393a1b0a441cef1d9c7659e3eb2d7e15f793f060a21b32f297\nsize 248007048\n", "LFS"),
])
def test_w3_text_instead_of_binary(tmp_path, data, word):
    p = write(tmp_path, "w3.weights", data)
    msg = str(err_of(p))
    assert word in msg and msg.startswith(f"{p}: "), msg
    # The same page saved with a UTF-8 BOM (its bytes would otherwise read as header 1019198447.x).
    q = write(tmp_path, "w3bom.weights", b"\xef\xbb\xbf" + data)
    msg = str(err_of(q))
    assert word in msg and "transposed" not in msg, msg


@pytest.mark.parametrize("data", [
    "# Trained on my data – see notes\n[net]\nwidth=416\n".encode(),
    ("[net]\n#" + "a" * 56 + "é: the 64-byte sniff window ends inside this character\n").encode(),
    b"\xef\xbb\xbf[net]\nbatch=1\nwidth=416\nheight=416\n",
])
def test_w3_utf8_text_is_text(tmp_path, data):
    if data.startswith(b"[net]\n#a"):
        assert data[63:65] == "é".encode()  # the sniffer sees half of it
    p = write(tmp_path, "notes.weights", data)
    msg = str(err_of(p))
    assert "text file" in msg and "transposed" not in msg, msg


@needs_ref
def test_w3_cfg_given_as_weights(tmp_path):
    msg = str(err_of(PJ_CFG / "yolov3-tiny.cfg"))
    assert "text file" in msg and "[net]" in msg, msg


def test_w4_negative_version(tmp_path):
    floats = random_floats(SMALL_LAYOUT, seed=19)
    data = struct.pack("<iiiI", -1, 0, 0, 0) + floats.tobytes()  # version < 0.2 -> 4-byte seen
    p = write(tmp_path, "neg.weights", data)
    msg = str(err_of(p))
    assert "major=-1" in msg and "minor=0" in msg and "force_header" in msg, msg
    model = small_model()
    h = load_weights(model, p, force_header=True)
    assert (h.major, h.seen_bytes) == (-1, 4)
    assert_loaded(model, SMALL_LAYOUT, floats)
    assert weights_bytes(model) == data


def test_w4_absurd_seen(tmp_path):
    floats = random_floats(SMALL_LAYOUT, seed=23)
    seen = 2**63 + 5
    data = struct.pack("<iiiQ", 0, 2, 0, seen) + floats.tobytes()
    p = write(tmp_path, "seen.weights", data)
    msg = str(err_of(p))
    assert f"seen={seen}" in msg, msg
    model = small_model()
    h = load_weights(model, p, force_header=True)
    assert h.seen == seen
    assert_loaded(model, SMALL_LAYOUT, floats)
    assert weights_bytes(model) == data


@pytest.mark.parametrize("major,minor", [(1000, 0), (0, 1000), (1000, 1000), (2**31 - 1, 2)])
def test_w4_transposed_not_supported(tmp_path, major, minor):
    data = struct.pack("<iiiI", major, minor, 0, 0) + random_floats(SMALL_LAYOUT).tobytes()
    p = write(tmp_path, "tr.weights", data)
    for force in (False, True):
        msg = str(err_of(p, force_header=force))
        assert "not supported" in msg and f"{major}.{minor}" in msg, msg


# --------------------------------------------------------------- W9: non-finite values

def test_w9_nan_inf_and_negative_variance(tmp_path):
    floats = random_floats(SMALL_LAYOUT, seed=29)
    offs = {(o[0], o[3]): o for o in tensor_offsets(SMALL_LAYOUT)}
    w2 = offs[(2, "weights")][5]
    floats[w2 + 3] = np.nan
    floats[w2 + 100] = np.inf
    floats[w2 + 101] = -np.inf
    v3 = offs[(3, "rolling_variance")][5]
    floats[v3 + 0] = -1.0
    floats[v3 + 9] = -0.5
    floats[v3 + 4] = 0.0  # zero variance is legitimate (darknet divides by sqrt(var) + 1e-6): no warning
    floats[v3 + 5] = -0.0
    b7 = offs[(7, "biases")][5]
    floats[b7 + 1] = np.nan
    p = write(tmp_path, "nan.weights", header_v2() + floats.tobytes())
    line = {e[0]: e[1] for e in SMALL_LAYOUT}

    model = small_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_weights(model, p)
    msgs = [str(w.message) for w in caught]
    expect = [f"layer 2 [convolutional] (cfg line {line[2]}): conv.weight has 3 NaN/Inf values",
              f"layer 3 [convolutional] (cfg line {line[3]}): bn.running_var has 2 negative variances",
              f"layer 7 [convolutional] (cfg line {line[7]}): conv.bias has 1 NaN/Inf values"]
    for e in expect:
        assert any(e in m for m in msgs), (e, msgs)
    assert len(msgs) == 3, msgs
    assert_loaded(model, SMALL_LAYOUT, floats)  # warnings only: the values are loaded as they are

    model = small_model()
    before = snapshot(model)
    with pytest.raises(WeightsError, match=r"layer \d \[convolutional\] \(cfg line \d+\): "):
        load_weights(model, p, strict=True)
    assert_same_state(before, model.state_dict())  # strict refusal leaves the model untouched
    assert model.header is None


# --------------------------------------------------------------- W10: byte order / float16

def test_w10_float16_dump_is_size_mismatch(tmp_path):
    floats = random_floats(SMALL_LAYOUT, seed=31)
    p = write(tmp_path, "half.weights", header_v2() + floats.astype("<f2").tobytes())
    msg = str(err_of(p))
    assert f"file {20 + 2 * SMALL_FLOATS} bytes, cfg needs {20 + 4 * SMALL_FLOATS}" in msg, msg
    # A float16 dump of a payload one and a half times as long overshoots the cfg: W6.
    half3 = np.concatenate([floats, floats, floats]).astype("<f2")
    p2 = write(tmp_path, "half2.weights", header_v2() + half3.tobytes())
    msg2 = str(err_of(p2))
    assert f"file is {20 + 6 * SMALL_FLOATS} bytes, the cfg needs {20 + 4 * SMALL_FLOATS}" in msg2, msg2


def test_w10_always_little_endian(tmp_path):
    floats = random_floats(SMALL_LAYOUT, seed=37)
    big = floats.astype(">f4").tobytes()
    p = write(tmp_path, "be.weights", header_v2() + big)
    model = small_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # byte-swapped floats may be NaN
        load_weights(model, p)
    # Read as little-endian: each tensor holds the same bytes as the file, not the big-endian values.
    for i, _, bn, name, shape, start in tensor_offsets(SMALL_LAYOUT):
        t = model_tensor(model, i, name, bn).detach().numpy()
        assert t.astype("<f4").tobytes() == big[4 * start:4 * (start + numel(shape))], (i, name)
    assert not np.array_equal(model.layers[0].conv.weight.detach().numpy().ravel()[:10], floats[32:42])


# --------------------------------------------------------------- W11: PyTorch checkpoints

def test_w11_torch_zip_checkpoint(tmp_path):
    model = small_model()
    p = tmp_path / "ckpt.weights"
    torch.save(model.state_dict(), p)
    assert p.read_bytes()[:4] == b"PK\x03\x04"
    msg = str(err_of(p))
    assert "PyTorch checkpoint" in msg
    # W11: the hint routes to torch.load(weights_only=True) + load_state_dict(strict=True)
    assert "torch.load" in msg and "weights_only=True" in msg and "strict=True" in msg, msg
    state = torch.load(p, weights_only=True)
    fresh = small_model()
    fresh.load_state_dict(state, strict=True)
    assert_same_state(model.state_dict(), fresh.state_dict())


def test_w11_legacy_torch_and_pickle(tmp_path):
    model = small_model()
    p = tmp_path / "legacy.weights"
    torch.save(model.state_dict(), p, _use_new_zipfile_serialization=False)
    assert "PyTorch checkpoint" in str(err_of(p))
    for proto in (2, 3, 4, 5):
        q = tmp_path / f"p{proto}.weights"
        q.write_bytes(pickle.dumps({"model": [1.0, 2.0] * 100}, protocol=proto))
        assert "PyTorch checkpoint" in str(err_of(q)), proto


# --------------------------------------------------------------- W12: per-layer report

def test_w12_weights_report(tmp_path):
    floats = np.arange(SMALL_FLOATS, dtype="<f4")
    p = write(tmp_path, "golden.weights", header_v2() + floats.tobytes())
    model = small_model()
    load_weights(model, p)
    rows = weights_report(model)
    assert [r["layer"] for r in rows] == [e[0] for e in SMALL_LAYOUT]
    assert [r["line"] for r in rows] == [e[1] for e in SMALL_LAYOUT]
    assert [r["floats"] for r in rows] == [layer_floats(e) for e in SMALL_LAYOUT]
    assert all(r["kind"] == "convolutional" for r in rows)
    for i, _, bn, name, shape, start in tensor_offsets(SMALL_LAYOUT):
        row = rows[[r["layer"] for r in rows].index(i)]
        stats, n = row[MODULE_NAME[(name, bn)]], numel(shape)
        # a run of n consecutive integers from start
        assert stats["min"] == start and stats["max"] == start + n - 1
        assert stats["mean"] == pytest.approx(start + (n - 1) / 2)
        assert stats["std"] == pytest.approx(math.sqrt(n * (n + 1) / 12) if n > 1 else 0.0)


def test_w12_same_size_wrong_cfg_is_visible_in_report(tmp_path):
    """Layers 2 and 3 swapped in the file: same size, loads, and the report shows a negative variance."""
    floats = random_floats(SMALL_LAYOUT, seed=41)
    offs = {(o[0], o[3]): o for o in tensor_offsets(SMALL_LAYOUT)}
    s2, s3, s7 = offs[(2, "biases")][5], offs[(3, "biases")][5], offs[(7, "biases")][5]
    swapped = np.concatenate([floats[:s2], floats[s3:s7], floats[s2:s3], floats[s7:]])
    assert swapped.size == floats.size
    p = write(tmp_path, "swapped.weights", header_v2() + swapped.tobytes())
    model = small_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_weights(model, p)
    rows = {r["layer"]: r for r in weights_report(model)}
    # Layer 3's variance slot now holds kernel values of layer 2 (normal noise): some are negative.
    v3 = offs[(3, "rolling_variance")][5]
    expect_min = float(swapped[v3:v3 + 16].min())
    assert expect_min < 0
    assert rows[3]["bn.running_var"]["min"] == pytest.approx(expect_min)
    assert any("negative variances" in str(w.message) for w in caught)


# --------------------------------------------------------------- inference sees reloaded weights

def test_forward_uses_reloaded_weights(tmp_path):
    pa = write(tmp_path, "a.weights", header_v2() + random_floats(SMALL_LAYOUT, seed=43).tobytes())
    pb = write(tmp_path, "b.weights", header_v2() + random_floats(SMALL_LAYOUT, seed=47).tobytes())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    model = small_model().eval()
    with torch.no_grad():
        load_weights(model, pa)
        out_a = [t.clone() for t in model(x)]
        load_weights(model, pb)
        out_b = [t.clone() for t in model(x)]
        fresh_b = small_model().eval()
        load_weights(fresh_b, pb)
        ref_b = fresh_b(x)
        fresh_a = small_model().eval()
        load_weights(fresh_a, pa)
        ref_a = fresh_a(x)
    assert len(out_a) == len(out_b) == 1
    assert not torch.equal(out_a[0], out_b[0])
    assert torch.equal(out_b[0], ref_b[0])
    assert torch.equal(out_a[0], ref_a[0])
