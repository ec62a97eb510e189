"""The command line: Darknet's output lines, JSON, drawn image, Darknet spellings, bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.cli import main
from darknet_py.config.names import read_names
from darknet_py.detector import detect
from darknet_py.imageio import load_image, save_image
from darknet_py.random_weights import randomize
from darknet_py.transforms import letterbox
from tests.helpers.paths import ROOT


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, photo_rgb):
    """yolov3-tiny with calibrated random weights, and a PNG photo (lossless, so the CLI's decode
    gives exactly the pixels the expected detections were computed from)."""
    d = tmp_path_factory.mktemp("tiny")
    cfg = ROOT / "cfg" / "yolov3-tiny.cfg"
    x = letterbox(photo_rgb, 416, 416)[0][None]
    weights = d / "tiny.weights"
    randomize(darknet_py.build_model(cfg), x, seed=3, objectness_rate=0.01).save_weights(weights)
    photo = d / "dog photo.png"  # a space in the name on purpose (I14)
    save_image(photo, photo_rgb)
    return cfg, weights, photo


def test_detect_prints_darknet_lines_and_writes_image(tiny, tmp_path, capsys):
    cfg, weights, photo = tiny
    out = tmp_path / "pred.jpg"
    assert main(["detect", str(cfg), str(weights), str(photo), "-thresh", "0.25", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{photo}: Predicted in ") and lines[0].endswith(" seconds.")
    expected = detect(darknet_py.load(cfg, weights), str(photo), thresh=0.25)
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
    expected = detect(darknet_py.load(cfg, weights), str(photo), thresh=0.25)
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


def test_detector_test_form_reads_names_from_data_file(tiny, tmp_path, capsys):
    cfg, weights, photo = tiny
    names = tmp_path / "my.names"
    names.write_text("\r\n".join(f"thing{i}" for i in range(80)) + "\r\n")
    data = tmp_path / "my.data"
    data.write_text(f"classes = 80\nnames = {names}\n")
    assert main(["detector", "test", str(data), str(cfg), str(weights), str(photo), "-thresh", "0.25",
                 "-out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) > 1 and all(line.startswith("thing") for line in out[1:])
    assert (tmp_path / "x.jpg").exists()  # Darknet's -out appends .jpg


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


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "darknet_py", "validate-cfg", str(ROOT / "cfg" / "yolov3.cfg")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "107 layers, 3 [yolo] heads, 62001757 weight floats (248007048 bytes" in res.stdout


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
    darknet_py.build_model(cfg).save_weights(weights)
    assert main(["detect", str(cfg), str(weights), str(tiny[2]), "--out", str(tmp_path / "o.jpg")]) == 1
    err = capsys.readouterr().err
    assert f"{cfg}:1" in err and "channels=1" in err


@pytest.mark.parametrize("fmt, extra, outputs", [
    # 96x96 input: 3x3 and 6x6 grids with 3 anchors each -> (9 + 36) * 3 = 135 predictions
    ("onnx", ["--dynamic", "--decode"], ["output detections: batch x 135 x 85"]),
    ("torchscript", [], ["output yolo_16: batch x 255 x 3 x 3", "output yolo_23: batch x 255 x 6 x 6"]),
])
def test_export_prints_what_it_wrote(tiny, tmp_path, capsys, fmt, extra, outputs):
    cfg, weights, photo = tiny
    out = tmp_path / f"m.{fmt}"
    assert main(["export", str(cfg), str(weights), "--format", fmt, "--size", "96", "--image", str(photo),
                 "-o", str(out), *extra]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and out.exists()
    for line in outputs:
        assert line in text
    assert "largest difference from PyTorch" in text
