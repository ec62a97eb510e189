"""A .weights file read and written back byte for byte: the writer's bytes against the tensors assembled in
Darknet's order here, and the header variants (an 8-byte seen above 2^32, the old 16-byte header) kept."""
from __future__ import annotations

import struct

import pytest
import torch

from darknet_py.graph import build_model
from darknet_py.weights import load_weights, save_weights, weights_bytes

from tests.helpers.weights import (SMALL_CFG, SMALL_FLOATS, SMALL_LAYOUT, assert_loaded, assert_same_state, header_v2,
                                   model_tensor, random_floats, randomise, small_model, tensor_offsets, write_file)


# --------------------------------------------------------------- round trip

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
    p = write_file(tmp_path, "h.weights", data)
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
