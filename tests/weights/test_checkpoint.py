"""PyTorch checkpoints: readable, self-describing, strict, and byte-identical back to .weights."""
from __future__ import annotations

import struct

import pytest
import torch

from darknet_py.checkpoint import checkpoint_names, load_checkpoint, save_checkpoint
from darknet_py.cli.main import main
from darknet_py.detector import detect, load
from darknet_py.errors import WeightsError
from darknet_py.graph import build_model
from darknet_py.random_weights import randomize
from darknet_py.transforms import letterbox

from tests.helpers.paths import ROOT

CFG = ROOT / "cfg" / "yolov3-tiny.cfg"


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, photo_rgb):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.weights"
    x = letterbox(photo_rgb, 416, 416)[0][None]
    randomize(build_model(CFG), x, seed=7).save_weights(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_weights):
    """cfg/yolov3-tiny.cfg with tiny_weights, loaded once for the tests that do not change it."""
    return load(CFG, tiny_weights)


@pytest.fixture(scope="module")
def tiny_pt(tiny_model, tmp_path_factory):
    """tiny_model saved as a checkpoint, once."""
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_checkpoint(tiny_model, path)
    return path


def test_weights_to_pt_to_weights_is_byte_identical(tiny_weights, tmp_path):
    pt, back = tmp_path / "m.pt", tmp_path / "back.weights"
    assert main(["export", str(CFG), str(tiny_weights), "--format", "pt", "-o", str(pt)]) == 0
    assert main(["convert", str(pt), str(back)]) == 0
    assert back.read_bytes() == tiny_weights.read_bytes()


def test_old_header_survives_the_round_trip(tiny_weights, tmp_path):
    # A 0.1 header with a 4-byte 'seen' (pre-2017 files) must come back as it was.
    body = tiny_weights.read_bytes()[20:]
    old = tmp_path / "old.weights"
    old.write_bytes(struct.pack("<iiiI", 0, 1, 7, 123456) + body)
    model = load(CFG, old)
    save_checkpoint(model, tmp_path / "old.pt")
    load_checkpoint(tmp_path / "old.pt").save_weights(tmp_path / "again.weights")
    assert (tmp_path / "again.weights").read_bytes() == old.read_bytes()


def test_checkpoint_is_plain_and_readable(tiny_model, tiny_pt):
    model = tiny_model
    payload = torch.load(tiny_pt, weights_only=True)
    assert payload["cfg"] == CFG.read_text()
    names = list(payload["state_dict"])
    # Darknet's file order, with the layer index and kind in each name
    assert names[:5] == ["000_convolutional.bn.bias", "000_convolutional.bn.weight",
                         "000_convolutional.bn.running_mean", "000_convolutional.bn.running_var",
                         "000_convolutional.conv.weight"]
    assert names[-2:] == ["022_convolutional.conv.bias", "022_convolutional.conv.weight"]
    assert torch.equal(payload["state_dict"]["013_convolutional.conv.weight"], model.layers[13].conv.weight)


def test_pt_given_as_weights_detects_the_same(tiny_model, tiny_pt, photo_rgb):
    a = detect(tiny_model, photo_rgb, thresh=0.25)
    b = detect(load(CFG, tiny_pt), photo_rgb, thresh=0.25)
    assert len(a) > 0 and torch.equal(a.classes, b.classes) and torch.equal(a.boxes, b.boxes)


def test_a_trained_checkpoint_converts_to_weights(tiny_weights, tmp_path):
    model = load(CFG, tiny_weights)  # its own copy: this test changes it
    with torch.no_grad():  # stands in for training: every tensor changes
        for _, t in checkpoint_names(model):
            t.mul_(1.01).add_(0.001)
    save_checkpoint(model, tmp_path / "trained.pt")
    assert main(["convert", str(tmp_path / "trained.pt"), str(tmp_path / "trained.weights")]) == 0
    again = load(CFG, tmp_path / "trained.weights")
    x = torch.rand(1, 3, 416, 416)
    with torch.no_grad():
        for a, b in zip(model(x), again(x)):
            assert torch.equal(a, b)


def test_strict_load_lists_every_problem(tiny_pt, tmp_path):
    payload = torch.load(tiny_pt, weights_only=True)
    del payload["state_dict"]["004_convolutional.bn.bias"]
    payload["state_dict"]["999_extra.weight"] = torch.zeros(3)
    payload["state_dict"]["013_convolutional.conv.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(WeightsError) as info:
        load_checkpoint(tmp_path / "bad.pt")
    msg = str(info.value)
    assert "bad.pt" in msg and "004_convolutional.bn.bias" in msg and "999_extra.weight" in msg
    assert "size mismatch for 013_convolutional.conv.weight" in msg


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError, match="x.pt"):
        load_checkpoint(bad)
