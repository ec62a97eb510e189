"""Files that end early or run long: a cut at every layer boundary and inside every tensor (the message
names the layer and tensor, and a clean cut says which upto= loads it), a cut header, trailing bytes, one
float short, and backbone files written and read with upto=. A failed load leaves the model unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.errors import WeightsError
from darknet_py.graph import build_model
from darknet_py.weights import load_weights, save_weights, weights_bytes

from tests.helpers.weights import (MODULE_NAME, PJ_CFG, README_FLOATS, SMALL_FLOATS, SMALL_LAYERS, SMALL_LAYOUT,
                                   assert_loaded, assert_same_state, darknet_layout, err_of, header_v1, header_v2,
                                   layer_floats, needs_ref, numel, random_floats, randomise, small_model, snapshot,
                                   tensor_offsets, write_file)


# --------------------------------------------------------------- truncation sweep

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
        p = write_file(tmp_path, f"cut{cut}.weights", full[:cut])
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
        p = write_file(tmp_path, f"h{cut}.weights", full[:cut])
        msg = str(err_of(p))
        assert "not a darknet weights file" in msg, msg
        assert (f"({cut} bytes" in msg) or (cut == 0 and "empty" in msg), msg


@pytest.mark.parametrize("extra", [1, 4, 4096])
def test_trailing_bytes_are_refused_unless_allowed(tmp_path, extra):
    floats = random_floats(SMALL_LAYOUT, seed=11)
    full = header_v2() + floats.tobytes()
    p = write_file(tmp_path, "long.weights", full + bytes((7 * j + 1) % 256 for j in range(extra)))
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


def test_one_float_short_exact_message(tmp_path):
    # Old 16-byte header: one float short is not also a seen-width signature, so the message is exact.
    floats = random_floats(SMALL_LAYOUT, seed=2)
    data = header_v1(0, 10) + floats[:-1].tobytes()
    p = write_file(tmp_path, "short.weights", data)
    L, N, _, tensors = SMALL_LAYOUT[-1]
    X = numel(tensors[-1][1])  # 18 * 24 * 1 * 1
    assert (L, X) == (7, 432)
    A, B = 16 + 4 * (SMALL_FLOATS - 1), 16 + 4 * SMALL_FLOATS
    err = err_of(p)
    assert str(err) == (f"{p}: layer {L} [convolutional] (cfg line {N}): conv.weight needs {X} floats, {X - 1} "
                        f"remain; file {A} bytes, cfg needs {B}")
    assert err.path == str(p)
    # 0.2 header: the same message, then the seen-width hint (4 bytes short is both).
    p2 = write_file(tmp_path, "short2.weights", header_v2() + floats[:-1].tobytes())
    msg = str(err_of(p2))
    assert msg.startswith(f"{p2}: layer {L} [convolutional] (cfg line {N}): conv.weight needs {X} floats, "
                          f"{X - 1} remain; file {A + 4} bytes, cfg needs {B + 4}"), msg


@needs_ref
def test_one_float_short_yolov3_tiny(tmp_path):
    text = (PJ_CFG / "yolov3-tiny.cfg").read_text()
    layout = darknet_layout(text)
    L, N, bn, tensors = layout[-1]
    assert not bn
    X = numel(tensors[-1][1])
    n = README_FLOATS["yolov3-tiny.cfg"]
    data = header_v1() + np.zeros(n - 1, dtype="<f4").tobytes()
    p = write_file(tmp_path, "tiny-short.weights", data)
    with torch.device("meta"):
        model = build_model(PJ_CFG / "yolov3-tiny.cfg")
    assert str(err_of(p, model)) == (
        f"{p}: layer {L} [convolutional] (cfg line {N}): conv.weight needs {X} floats, {X - 1} remain; "
        f"file {16 + 4 * (n - 1)} bytes, cfg needs {16 + 4 * n}")
    assert (L, X) == (22, 255 * 256)


@pytest.mark.parametrize("k", [2, 3, 7])
def test_backbone_file_and_partial_save_are_a_prefix(tmp_path, k):
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
    load_weights(fresh2, write_file(tmp_path, "full.weights", full), upto=k)
    assert weights_bytes(fresh2, upto=k) == part


def test_upto_out_of_range_is_an_argument_error(small_weights):
    p = small_weights
    with pytest.raises(ValueError):
        load_weights(small_model(), p, upto=SMALL_LAYERS + 1)
    with pytest.raises(ValueError):
        load_weights(small_model(), p, upto=-1)
    load_weights(small_model(), p, upto=SMALL_LAYERS)
