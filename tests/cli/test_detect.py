"""`darknet-py detect` (darknet_py.cli.detect): Darknet's output lines, JSON, the drawn image, float32
unless --tf32, bad input as one line and a non-zero status."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from darknet_py.cli import main
from darknet_py.config.names import read_names
from darknet_py.detector import detect, load
from darknet_py.graph import build_model
from darknet_py.imageio import load_image
from tests.helpers.paths import ROOT


def test_detect_prints_darknet_lines_and_writes_image(tiny, tmp_path, capsys):
    cfg, weights, photo = tiny
    out = tmp_path / "pred.jpg"
    assert main(["detect", str(cfg), str(weights), str(photo), "-thresh", "0.25", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{photo}: Predicted in ") and lines[0].endswith(" seconds.")
    expected = detect(load(cfg, weights), str(photo), thresh=0.25)
    assert len(expected) > 0
    names = read_names(ROOT / "cfg" / "coco.names")
    want = sorted(f"{names[c]}: {s * 100:.0f}%" for c, s in zip(expected.classes.tolist(), expected.scores.tolist()))
    assert sorted(lines[1:]) == want
    drawn, _ = load_image(out)
    assert drawn.shape == load_image(photo)[0].shape
    assert np.abs(drawn.astype(int) - load_image(photo)[0].astype(int)).max() > 50  # boxes were drawn


def test_detect_json(tiny, tmp_path, capsys):
    cfg, weights, photo = tiny
    assert main(["detect", str(cfg), str(weights), str(photo), str(photo), "--json", "--thresh", "0.25",
                 "--out", str(tmp_path / "p.jpg")]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2 and records[0] == records[1] | {"seconds": records[0]["seconds"]}
    expected = detect(load(cfg, weights), str(photo), thresh=0.25)
    dets = records[0]["detections"]
    assert [d["class_id"] for d in dets] == expected.classes.tolist()
    assert np.allclose([d["box"] for d in dets], expected.boxes.numpy(), atol=0.01)
    for d in dets:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= records[0]["width"] - 1 and 0 <= y1 <= y2 <= records[0]["height"] - 1
    assert (tmp_path / "p-dog photo.jpg").exists()  # several inputs: one drawn image each


def test_float32_unless_tf32_is_asked_for(tiny, tmp_path, capsys):
    """PyTorch's default lets cuDNN convolutions round to TF32 on Ampere and later (~1e-3 relative):
    the commands compute in float32 as Darknet does, and --tf32 allows the faster rounding."""
    cfg, weights, photo = tiny
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        for flag, want in ((["--tf32"], True), ([], False)):
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = not want
            assert main(["detect", str(cfg), str(weights), str(photo), "--json", *flag]) == 0
            assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (want, want)
        capsys.readouterr()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


# ------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("case", ["missing weights", "bad cfg", "missing image"])
def test_bad_input_is_one_line_and_nonzero(tiny, tmp_path, capsys, case):
    cfg, weights, photo = tiny
    args = [str(cfg), str(weights), str(photo)]
    if case == "missing weights":
        args[1] = str(tmp_path / "nope.weights")
    elif case == "bad cfg":
        bad = tmp_path / "bad.cfg"
        bad.write_text(cfg.read_text().replace("filters=255", "filter=255", 1))
        args[0] = str(bad)
    else:
        args[2] = str(tmp_path / "missing.jpg")
    assert main(["detect", *args, "--out", str(tmp_path / "o.jpg")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    assert args[0 if case == "bad cfg" else 1 if case == "missing weights" else 2] in err[0]
    if case == "bad cfg":
        assert "did you mean 'filters'" in err[0]


def test_one_unreadable_image_does_not_stop_the_rest(tiny, tmp_path, capsys):
    cfg, weights, photo = tiny
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"<html>not an image</html>")
    code = main(["detect", str(cfg), str(weights), str(broken), str(photo), "--out", str(tmp_path / "o.jpg")])
    captured = capsys.readouterr()
    assert code == 1
    assert f"{photo}: Predicted in" in captured.out
    assert str(broken) in captured.err and "1 ok, 1 failed" in captured.err


def test_device_cuda_without_cuda_is_a_clear_error(tiny, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: nothing to refuse")
    cfg, weights, photo = tiny
    assert main(["detect", str(cfg), str(weights), str(photo), "--device", "cuda"]) == 1
    assert "cuda" in capsys.readouterr().err.lower()


def test_single_channel_network_is_refused_clearly(tmp_path, capsys, tiny):
    cfg = tmp_path / "gray.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=1\n[convolutional]\nfilters=18\nsize=1\nactivation=linear\n"
                   "[yolo]\nmask=0,1,2\nanchors=1,1,2,2,3,3\nclasses=1\n")
    weights = tmp_path / "gray.weights"
    build_model(cfg).save_weights(weights)
    assert main(["detect", str(cfg), str(weights), str(tiny[2]), "--out", str(tmp_path / "o.jpg")]) == 1
    err = capsys.readouterr().err
    assert f"{cfg}:1" in err and "channels=1" in err


def test_names_file_longer_than_classes_warns_shorter_is_refused(tiny, tmp_path, capsys):
    cfg, weights, photo = tiny
    coco = read_names(ROOT / "cfg" / "coco.names")
    longer = tmp_path / "longer.names"
    longer.write_text("\n".join([*coco, "extra"]) + "\n")
    assert main(["detect", str(cfg), str(weights), str(photo), "--thresh", "0.25", "--names", str(longer)]) == 0
    captured = capsys.readouterr()
    assert [line for line in captured.err.splitlines() if "warning" in line] == [
        f"darknet-py: warning: {longer}: 81 names for a model with classes=80; the first 80 are used, as Darknet does"]
    assert "extra" not in captured.out
    shorter = tmp_path / "shorter.names"
    shorter.write_text("\n".join(coco[:79]) + "\n")
    assert main(["detect", str(cfg), str(weights), str(photo), "--names", str(shorter)]) == 1
    assert f"{shorter}: 79 names but the model has classes=80" in capsys.readouterr().err
