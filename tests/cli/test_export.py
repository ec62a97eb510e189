"""`darknet-py export`: the format table, the refusals before any work, and the conversion report."""
from __future__ import annotations

import json

import pytest

from darknet_py.cli import main
from darknet_py.cli.export import EXPORT_SUFFIXES
from darknet_py.export.backends import BACKENDS


def test_the_cli_lists_every_format_of_the_table():
    """--help imports no torch, so the CLI keeps its own list: it must be the table's."""
    assert EXPORT_SUFFIXES == {name: b.suffix for name, b in BACKENDS.items()}


@pytest.mark.parametrize("argv, message", [
    (["--format", "pt", "--half"], "--precision fp16"),
    (["--format", "pt", "--decode"], "--decode"),
    (["--format", "tflite", "--dynamic"], "does not take --dynamic"),
    (["--precision", "int8", "--format", "torchscript", "--calibrate", "x.data"], "does not take --calibrate"),
    (["--format", "tflite", "--precision", "int8"], "calibration"),
    (["--letterbox"], "--letterbox and --max-det apply to --nms graphs"),
    (["--calibrate", "x.data"], "apply to --precision int8"),
    (["--keep-float", "3"], "apply to --precision int8"),
    (["--format", "tensorrt", "--precision", "int8", "--calibrate", "x.data", "--min-layer-db", "20"],
     "does not take --min-layer-db 20"),
    (["--half", "--precision", "int8"], "disagree"),
])
def test_options_a_format_does_not_take_are_refused_before_work(tmp_path, capsys, argv, message):
    """Refused by name before the weights are read (they do not even exist here) or anything written."""
    out = tmp_path / "m.out"
    assert main(["export", "cfg/yolov3-tiny.cfg", str(tmp_path / "absent.weights"), "-o", str(out), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_report_json_matches_what_it_printed(tiny, tmp_path, capsys):
    cfg, weights, photo = tiny
    out, rep = tmp_path / "m.onnx", tmp_path / "report.json"
    assert main(["export", str(cfg), str(weights), "--size", "96", "--image", str(photo), str(photo),
                 "--thresh", "0.05", "-o", str(out), "--report", str(rep)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(rep.read_text())
    assert len(doc) == 1 and doc[0]["backend"] == "onnx" and doc[0]["precision"] == "fp32"
    r = doc[0]
    assert r["thresh"] == 0.05 and len(r["photos"]) == 2
    assert r["detections"]["reference"] > 0  # the comparison saw detections
    assert r["detections"]["matched"] == r["detections"]["reference"] and r["detections"]["extra"] == 0
    assert 0 < r["max_head_rel_diff"] < 1e-4
    assert f"{r['detections']['matched']}/{r['detections']['reference']}" in text
    assert r["files"] == [str(out)] and r["file_bytes"] == out.stat().st_size


def test_end_to_end_report_compares_detections(tiny, tmp_path, capsys):
    cfg, weights, photo = tiny
    out = tmp_path / "e2e.onnx"
    assert main(["export", str(cfg), str(weights), "--size", "96", "--nms", "--letterbox", "--thresh", "0.05",
                 "--image", str(photo), "-o", str(out), "--report", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())[0]
    assert r["max_head_rel_diff"] is None  # an end-to-end graph has no heads to compare
    assert r["detections"]["reference"] > 0
    assert r["detections"]["matched"] == r["detections"]["reference"] and r["detections"]["extra"] == 0


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_int8_layers_kept_float_on_request(fmt, tmp_path, capsys):
    """--keep-float adds layers to the float ones; --min-layer-db moves the sensitivity pass's line:
    at 0 dB no layer is sensitive, so only the heads and the layer asked for stay float."""
    pytest.importorskip("ai_edge_litert" if fmt == "tflite" else "onnxruntime")
    from darknet_py.synth import make_dataset
    ds = make_dataset(tmp_path / "ds", train=6, valid=2, seed=3, min_side=96, max_side=160)
    out = tmp_path / f"m.{fmt}"
    assert main(["export", "cfg/yolov3-tiny-shapes.cfg", "weights/yolov3-tiny-shapes.weights", "--format", fmt,
                 "--precision", "int8", "--calibrate", str(ds.data), "--keep-float", "10", "--min-layer-db", "0",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if "float" in ln and ("asked" in ln or "kept in float" in ln))
    assert "10" in line.split(":")[-1] and "4," not in line.split(":")[-1], line
