"""How many floats a network's .weights file holds: SMALL_CFG's, counted by hand, against the independent
walker (tests/helpers/weights.py) and the module; the reference cfgs' against the figures of the reference
folder's README.md; the size of the published yolov3.weights; yolov3-tiny written and read back."""
from __future__ import annotations

import pytest
import torch

from darknet_py.graph import build_model
from darknet_py.weights import Header, count_floats, layer_tensors, load_weights, save_weights, weights_bytes

from tests.helpers.weights import (PJ_CFG, README_FLOATS, SMALL_CFG, SMALL_FLOATS, SMALL_LAYOUT, assert_same_state,
                                   darknet_layout, header_v2, layer_floats, needs_ref, small_model)

# darknet-reference/README.md (independent figures).
YOLOV3_FILE_BYTES = 248_007_048
TINY_FILE_BYTES = 35_434_956


# --------------------------------------------------------------- the walker agrees with the hand count

def test_walker_matches_hand_count():
    assert [e[0] for e in SMALL_LAYOUT] == [0, 2, 3, 7]
    assert [layer_floats(e) for e in SMALL_LAYOUT] == [248, 1216, 192, 450]
    lines = SMALL_CFG.splitlines()
    for _, line, _, _ in SMALL_LAYOUT:
        assert lines[line - 1] == "[convolutional]"
    assert count_floats(small_model()) == SMALL_FLOATS


# --------------------------------------------------------------- sizes of the reference cfgs

def first_key_wins(text: str) -> bytes:
    """Drop repeated keys inside a section, keeping the first as darknet does. yolov3-openimages.cfg
    repeats batch/subdivisions in [net] (testing, then training values), which our reader reports
    with a warning (a repeated key); neither key changes the weights layout."""
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
