"""Mutation fuzz of darknet_py.weights.load_weights.

A valid small weights file is truncated, extended, and has header bytes flipped or replaced
(and, size-preserving, payload bytes replaced). Loading may succeed (possibly with a warning
about NaN/Inf values or negative variances) or raise WeightsError; any other exception
(IndexError, struct.error, ValueError, OverflowError, ...) is a bug. When a load succeeds, the
file must have held exactly what was asked for, which this file checks from its own arithmetic.
"""
from __future__ import annotations

import atexit
import shutil
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darknet_py.errors import WeightsError
from darknet_py.graph import build_model
from darknet_py.weights import load_weights
from tests.helpers.cfgs import conv, head_conv, maxpool, net, route, sections, upsample, yolo

CFG = sections(
    net(32), conv(4), maxpool(), conv(8), upsample(), route("-1,0"),
    head_conv(18), yolo("0,1,2", "10,13,16,30,33,23,30,61,62,45,59,119", 1, 6)).encode()
N_LAYERS = 7
# Floats per layer, by hand: 4+3*4+4*3*3*3 | 8+3*8+8*4*3*3 | 18+18*12 (route: 8+4 channels)
LAYER_FLOATS = {0: 124, 2: 320, 5: 234}
TOTAL = sum(LAYER_FLOATS.values())


def _payload(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal(TOTAL).astype("<f4")
    # running variances positive: layer 0 at 12..16, layer 2 at 124+24..124+32
    vals[12:16] = np.abs(vals[12:16]) + 0.1
    vals[148:156] = np.abs(vals[148:156]) + 0.1
    return vals.tobytes()


BASES = {
    "v0.2": struct.pack("<iiiQ", 0, 2, 0, 32_013_312) + _payload(1),
    "v0.1": struct.pack("<iiiI", 0, 1, 3, 1000) + _payload(2),
}
HEADER_SIZE = {"v0.2": 20, "v0.1": 16}

MODEL = build_model(CFG)
_TMP = Path(tempfile.mkdtemp(prefix="fuzz_weights_"))  # hypothesis re-runs the body: no function-scoped tmp_path
atexit.register(shutil.rmtree, _TMP, True)


@st.composite
def mutated(draw):
    base_name = draw(st.sampled_from(sorted(BASES)))
    data = bytearray(BASES[base_name])
    kind = draw(st.sampled_from(["truncate", "append", "flip_header", "replace_header", "replace_any", "mixed"]))
    if kind in ("flip_header", "mixed"):
        for _ in range(draw(st.integers(1, 4))):
            pos = draw(st.integers(0, 19))
            data[pos] ^= 1 << draw(st.integers(0, 7))
    if kind in ("replace_header", "mixed"):
        for _ in range(draw(st.integers(1, 6))):
            data[draw(st.integers(0, 19))] = draw(st.integers(0, 255))
    if kind == "replace_any":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if kind in ("truncate", "mixed"):
        data = data[:draw(st.integers(0, len(data)))]
    if kind in ("append", "mixed"):
        data += draw(st.binary(min_size=0, max_size=64))
    return base_name, bytes(data)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated(),
       upto=st.one_of(st.none(), st.integers(0, N_LAYERS)),
       seen_bytes=st.sampled_from([None, 4, 8]),
       allow_trailing=st.booleans(), strict=st.booleans(), force=st.booleans())
def test_mutated_weights_only_raise_weightserror(case, upto, seen_bytes, allow_trailing, strict, force):
    base_name, data = case
    path = _TMP / "fuzz.weights"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            header = load_weights(MODEL, path, upto=upto, seen_bytes=seen_bytes, allow_trailing_bytes=allow_trailing,
                                  strict=strict, force_header=force)
        except WeightsError as err:
            assert str(err).startswith(f"{path}: ")
            return
    # Success: the header and payload must account for the bytes exactly as asked.
    assert header.seen_bytes in (4, 8)
    major, minor, revision = struct.unpack_from("<iii", data)
    assert (header.major, header.minor, header.revision) == (major, minor, revision)
    assert major < 1000 and minor < 1000
    hsize = 12 + header.seen_bytes
    if seen_bytes is not None:
        assert header.seen_bytes == seen_bytes
    else:
        assert header.seen_bytes == (8 if major * 10 + minor >= 2 else 4)
    if not force:
        assert min(major, minor, revision) >= 0
    need = sum(n for i, n in LAYER_FLOATS.items() if upto is None or i < upto)
    if upto is None and not allow_trailing:
        assert len(data) == hsize + 4 * need
    else:
        assert len(data) >= hsize + 4 * need
    # And the values are the file's, little-endian float32, in darknet order.
    off = hsize
    if upto is None or upto > 0:
        b = MODEL.layers[0].bn.bias.detach().numpy()
        assert b.tobytes() == data[off:off + 16]


def test_unmutated_bases_load():
    for name, data in BASES.items():
        path = _TMP / f"{name}.weights"
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            h = load_weights(build_model(CFG), path)
        assert 12 + h.seen_bytes == HEADER_SIZE[name]
        assert len(data) == HEADER_SIZE[name] + 4 * TOTAL
