"""`darknet-py detector train` and `detector calc_anchors` (darknet_py.cli.train), and `partial`'s backbone
trained on: errors as one line, the weights file's layers reported, the anchors line."""
from __future__ import annotations

import re

import pytest

from darknet_py.cli import main
from darknet_py.graph import build_model
from darknet_py.synth import make_dataset
from darknet_py.train.trainer import TrainOptions, train
from darknet_py.weights import layers_in_file
from tests.helpers.train import make_overfit_set, write_train_cfg


@pytest.fixture(scope="module")
def shapes4(tmp_path_factory):
    """Four generated images; the valid list is the training list (an overfitting set)."""
    return make_overfit_set(tmp_path_factory.mktemp("train"))


def test_train_cli_errors(shapes4, tmp_path, capsys):
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, max_batches=0)
    assert main(["detector", "train", str(data), str(cfg), "--device", "cpu"]) == 1
    assert "max_batches is 0" in capsys.readouterr().err
    assert main(["detector", "train", str(data), str(cfg), "--gpus", "0,1"]) == 1
    assert "torchrun" in capsys.readouterr().err


def test_backbone_partial_then_train(shapes4, tmp_path, capsys):
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, max_batches=3)
    full = train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"),
                                                 regions=False, log=lambda s: None)).final
    backbone = tmp_path / "backbone.weights"
    assert main(["partial", str(cfg), str(full), str(backbone), "6"]) == 0
    model = build_model(cfg)
    assert layers_in_file(model, backbone) == 6 and layers_in_file(model, full) == len(model.layers)
    assert model.load_weights(backbone, upto=6).header.seen == 0  # Darknet's partial clears seen
    capsys.readouterr()
    assert main(["detector", "train", str(data), str(cfg), str(backbone), "--device", "cpu", "--workers", "0",
                 "--backup", str(tmp_path / "c"), "--quiet", "--max-batches", "2"]) == 0
    out = capsys.readouterr().out
    assert f"Loading weights from {backbone}: 6 of {len(model.layers)} layers (a backbone)" in out
    assert "2 iterations" in out


def test_calc_anchors_command(tmp_path, capsys):
    ds = make_dataset(tmp_path / "d", train=10, valid=1, seed=2, min_side=96, max_side=200)
    assert main(["detector", "calc_anchors", str(ds.data), "-num_of_clusters", "4", "-width", "320",
                 "-height", "320"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"anchors = (\d+,\d+, ){3}\d+,\d+", out[0]) and out[1].startswith("avg IoU = ")
