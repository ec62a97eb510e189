"""Files that are not what the cfg needs: a seen field of the other width, a missing or unreadable path,
an empty file, an HTML page, Git LFS pointer or text file, absurd or transposed headers, NaN/Inf values and
negative variances, a float16 or big-endian dump, a PyTorch checkpoint or pickle. Each is refused with a
WeightsError that names the file and says what it is (or, for values, warned about)."""
from __future__ import annotations

import os
import pickle
import struct
import warnings

import numpy as np
import pytest
import torch

from darknet_py.errors import WeightsError
from darknet_py.weights import load_weights, weights_bytes

from tests.helpers.weights import (PJ_CFG, SMALL_FLOATS, SMALL_LAYOUT, assert_loaded, assert_same_state, err_of,
                                   header_v2, model_tensor, needs_ref, numel, random_floats, small_model, snapshot,
                                   tensor_offsets, write_file)


# --------------------------------------------------------------- the seen field's width disagrees with the version

def test_seen_width_off_by_four_bytes_is_explained(tmp_path):
    """Header says 0.2 (8-byte seen) but the writer put 4 bytes: the file is 4 bytes short."""
    floats = random_floats(SMALL_LAYOUT, seed=13)
    data = struct.pack("<iiiI", 0, 2, 1, 123456) + floats.tobytes()
    p = write_file(tmp_path, "w7a.weights", data)
    msg = str(err_of(p))
    assert "off by exactly 4 bytes" in msg and "seen_bytes=4" in msg, msg
    model = small_model()
    h = load_weights(model, p, seen_bytes=4)
    assert (h.major, h.minor, h.revision, h.seen, h.seen_bytes) == (0, 2, 1, 123456, 4)
    assert_loaded(model, SMALL_LAYOUT, floats)
    assert weights_bytes(model) == data


def test_seen_width_four_bytes_long_is_explained_not_trailing(tmp_path):
    """Header says 0.1 (4-byte seen) but the writer put 8 bytes: the file is 4 bytes long."""
    floats = random_floats(SMALL_LAYOUT, seed=17)
    data = struct.pack("<iiiQ", 0, 1, 2, 654321) + floats.tobytes()
    p = write_file(tmp_path, "w7b.weights", data)
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


def test_seen_bytes_must_be_4_or_8(small_weights):
    with pytest.raises(ValueError):
        load_weights(small_model(), small_weights, seen_bytes=2)


# --------------------------------------------------------------- missing, unreadable, empty, text, absurd headers

def test_missing_file_or_directory_names_the_path(tmp_path):
    missing = tmp_path / "nope.weights"
    err = err_of(missing)
    assert str(err).startswith(f"{missing}: ") and err.path == str(missing)
    d = tmp_path / "dir.weights"
    d.mkdir()
    assert str(err_of(d)).startswith(f"{d}: ")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_names_the_path(tmp_path):
    p = write_file(tmp_path, "locked.weights", header_v2() + random_floats(SMALL_LAYOUT).tobytes())
    p.chmod(0)
    try:
        assert str(err_of(p)).startswith(f"{p}: ")
    finally:
        p.chmod(0o600)


@pytest.mark.parametrize("data,size", [(b"", "empty"), (bytes(12), "12 bytes"), (b"\x00\x00\x00\x00" * 3, "12 bytes")])
def test_empty_or_shorter_than_a_header(tmp_path, data, size):
    p = write_file(tmp_path, "w2.weights", data)
    msg = str(err_of(p))
    assert msg.startswith(f"{p}: not a darknet weights file"), msg
    assert size in msg


@pytest.mark.parametrize("data,word", [
    (b"<!DOCTYPE html>\n<html lang=\"en\">\n<head><title>GitHub</title></head>\n<body>" + b"x" * 500, "HTML"),
    (b"\n  <html><body>redirect</body></html>\n", "HTML"),
    (b"version https://git-lfs.github.com/spec/v1\n"
     b"oid sha256:523e4e69e1d015393a1b0a441cef1d9c7659e3eb2d7e15f793f060a21b32f297\nsize 248007048\n", "LFS"),
])
def test_html_page_or_lfs_pointer_instead_of_weights(tmp_path, data, word):
    p = write_file(tmp_path, "w3.weights", data)
    msg = str(err_of(p))
    assert word in msg and msg.startswith(f"{p}: "), msg
    # The same page saved with a UTF-8 BOM (its bytes would otherwise read as header 1019198447.x).
    q = write_file(tmp_path, "w3bom.weights", b"\xef\xbb\xbf" + data)
    msg = str(err_of(q))
    assert word in msg and "transposed" not in msg, msg


@pytest.mark.parametrize("data", [
    "# Trained on my data – see notes\n[net]\nwidth=416\n".encode(),
    ("[net]\n#" + "a" * 56 + "é: the 64-byte sniff window ends inside this character\n").encode(),
    b"\xef\xbb\xbf[net]\nbatch=1\nwidth=416\nheight=416\n",
])
def test_utf8_text_is_reported_as_text(tmp_path, data):
    if data.startswith(b"[net]\n#a"):
        assert data[63:65] == "é".encode()  # the sniffer sees half of it
    p = write_file(tmp_path, "notes.weights", data)
    msg = str(err_of(p))
    assert "text file" in msg and "transposed" not in msg, msg


@needs_ref
def test_cfg_given_as_weights(tmp_path):
    msg = str(err_of(PJ_CFG / "yolov3-tiny.cfg"))
    assert "text file" in msg and "[net]" in msg, msg


def test_negative_version_needs_force_header(tmp_path):
    floats = random_floats(SMALL_LAYOUT, seed=19)
    data = struct.pack("<iiiI", -1, 0, 0, 0) + floats.tobytes()  # version < 0.2 -> 4-byte seen
    p = write_file(tmp_path, "neg.weights", data)
    msg = str(err_of(p))
    assert "major=-1" in msg and "minor=0" in msg and "force_header" in msg, msg
    model = small_model()
    h = load_weights(model, p, force_header=True)
    assert (h.major, h.seen_bytes) == (-1, 4)
    assert_loaded(model, SMALL_LAYOUT, floats)
    assert weights_bytes(model) == data


def test_absurd_seen_needs_force_header(tmp_path):
    floats = random_floats(SMALL_LAYOUT, seed=23)
    seen = 2**63 + 5
    data = struct.pack("<iiiQ", 0, 2, 0, seen) + floats.tobytes()
    p = write_file(tmp_path, "seen.weights", data)
    msg = str(err_of(p))
    assert f"seen={seen}" in msg, msg
    model = small_model()
    h = load_weights(model, p, force_header=True)
    assert h.seen == seen
    assert_loaded(model, SMALL_LAYOUT, floats)
    assert weights_bytes(model) == data


@pytest.mark.parametrize("major,minor", [(1000, 0), (0, 1000), (1000, 1000), (2**31 - 1, 2)])
def test_transposed_version_is_not_supported(tmp_path, major, minor):
    data = struct.pack("<iiiI", major, minor, 0, 0) + random_floats(SMALL_LAYOUT).tobytes()
    p = write_file(tmp_path, "tr.weights", data)
    for force in (False, True):
        msg = str(err_of(p, force_header=force))
        assert "not supported" in msg and f"{major}.{minor}" in msg, msg


# --------------------------------------------------------------- non-finite values and negative variances

def test_nan_inf_and_negative_variance_warn_or_fail_when_strict(tmp_path):
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
    p = write_file(tmp_path, "nan.weights", header_v2() + floats.tobytes())
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


# --------------------------------------------------------------- byte order / float16

def test_float16_dump_is_a_size_mismatch(tmp_path):
    floats = random_floats(SMALL_LAYOUT, seed=31)
    p = write_file(tmp_path, "half.weights", header_v2() + floats.astype("<f2").tobytes())
    msg = str(err_of(p))
    assert f"file {20 + 2 * SMALL_FLOATS} bytes, cfg needs {20 + 4 * SMALL_FLOATS}" in msg, msg
    # A float16 dump of a payload one and a half times as long overshoots the cfg: trailing bytes.
    half3 = np.concatenate([floats, floats, floats]).astype("<f2")
    p2 = write_file(tmp_path, "half2.weights", header_v2() + half3.tobytes())
    msg2 = str(err_of(p2))
    assert f"file is {20 + 6 * SMALL_FLOATS} bytes, the cfg needs {20 + 4 * SMALL_FLOATS}" in msg2, msg2


def test_floats_are_always_little_endian(tmp_path):
    floats = random_floats(SMALL_LAYOUT, seed=37)
    big = floats.astype(">f4").tobytes()
    p = write_file(tmp_path, "be.weights", header_v2() + big)
    model = small_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # byte-swapped floats may be NaN
        load_weights(model, p)
    # Read as little-endian: each tensor holds the same bytes as the file, not the big-endian values.
    for i, _, bn, name, shape, start in tensor_offsets(SMALL_LAYOUT):
        t = model_tensor(model, i, name, bn).detach().numpy()
        assert t.astype("<f4").tobytes() == big[4 * start:4 * (start + numel(shape))], (i, name)
    assert not np.array_equal(model.layers[0].conv.weight.detach().numpy().ravel()[:10], floats[32:42])


# --------------------------------------------------------------- PyTorch checkpoints

def test_pytorch_zip_checkpoint_given_as_weights(tmp_path):
    model = small_model()
    p = tmp_path / "ckpt.weights"
    torch.save(model.state_dict(), p)
    assert p.read_bytes()[:4] == b"PK\x03\x04"
    msg = str(err_of(p))
    assert "PyTorch checkpoint" in msg
    # the hint routes to torch.load(weights_only=True) + load_state_dict(strict=True)
    assert "torch.load" in msg and "weights_only=True" in msg and "strict=True" in msg, msg
    state = torch.load(p, weights_only=True)
    fresh = small_model()
    fresh.load_state_dict(state, strict=True)
    assert_same_state(model.state_dict(), fresh.state_dict())


def test_legacy_pytorch_or_pickle_given_as_weights(tmp_path):
    model = small_model()
    p = tmp_path / "legacy.weights"
    torch.save(model.state_dict(), p, _use_new_zipfile_serialization=False)
    assert "PyTorch checkpoint" in str(err_of(p))
    for proto in (2, 3, 4, 5):
        q = tmp_path / f"p{proto}.weights"
        q.write_bytes(pickle.dumps({"model": [1.0, 2.0] * 100}, protocol=proto))
        assert "PyTorch checkpoint" in str(err_of(q)), proto
