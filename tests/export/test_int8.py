"""int8 ONNX: the graph it starts from, what stays float, the written file run by onnxruntime."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import darknet_py
from darknet_py.errors import ExportError
from darknet_py.synth import make_dataset
from tests.helpers.paths import ROOT

onnx = pytest.importorskip("onnx", reason="int8 export writes ONNX")
ort = pytest.importorskip("onnxruntime", reason="int8 export quantises and runs with onnxruntime")
pytest.importorskip("onnxruntime.quantization", reason="int8 export uses onnxruntime's quantiser")

from darknet_py.export.int8 import export_onnx_int8, head_nodes, layer_of, lean_onnx  # noqa: E402


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights")
    data = make_dataset(tmp_path_factory.mktemp("int8") / "d", train=8, valid=6, seed=11, min_side=128,
                        max_side=256).data
    return model, data


def ort_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})


def test_lean_graph_is_the_export_without_the_inf_pad(shapes, tmp_path):
    from onnxruntime import quantization
    model, _ = shapes
    lean, base, folded = lean_onnx(onnx, quantization, model, str(tmp_path))
    proto = onnx.load(lean)
    # the shapes cfg has one [maxpool] size=2 stride=1: Darknet's -FLT_MAX padding, exported as Pad(-inf)
    assert folded == 1 and not [n for n in proto.graph.node if n.op_type == "Pad"]
    x = np.random.default_rng(0).random((2, 3, 320, 320), dtype=np.float32)
    for a, b in zip(ort_run(tmp_path / "fp32.onnx", x), ort_run(lean, x)):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    # the heads: the conv before each [yolo] and the [yolo] layer itself, nothing else
    heads = {layer_of(n) for n in head_nodes(proto)}
    assert heads == {i for h in model.heads for i in (h - 1, h)}


def test_int8_file_keeps_detections_and_map(shapes, tmp_path):
    model, data = shapes
    out = tmp_path / "m-int8.onnx"
    rep = export_onnx_int8(model, out, data, calib_images=8, sensitivity_images=2, verify_images=4, evaluate=True)
    proto = onnx.load(out)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 10 and "DequantizeLinear" in ops
    int8_weights = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert len(int8_weights) == len(rep.sensitivity) - len(rep.float_layers)  # every int8 layer's conv weights
    # the heads stayed float: their conv weights are float32 initializers
    convs = {n.name: n for n in proto.graph.node if n.op_type == "Conv"}
    for h in model.heads:
        conv = convs[f"/model/layers.{h - 1}/Conv"]
        assert conv.input[1] in {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert {s.layer for s in rep.sensitivity}.isdisjoint(rep.head_layers)
    assert all(np.isfinite(s.sqnr_db) for s in rep.sensitivity)
    assert rep.matched_fraction >= 0.8 and rep.matched > 0
    # before/after by detector map's code; the file itself, loaded again, gives the same "after"
    from darknet_py.export.accuracy import evaluate_runner
    again = evaluate_runner(model, lambda x: ort_run(out, x), data)
    assert again.map50 == pytest.approx(rep.map_after, abs=1e-9)
    assert rep.map_before > 0.3 and rep.map_before - rep.map_after < 0.1
    assert any("int8" in line for line in rep.lines())


def test_a_failed_check_writes_nothing(shapes, tmp_path):
    model, data = shapes
    out = tmp_path / "old.onnx"
    out.write_bytes(b"the user's file")
    # IoU >= 1 with every detection: no int8 file can pass, so the export must fail and write nothing
    with pytest.raises(ExportError, match="nothing was written"):
        export_onnx_int8(model, out, data, calib_images=2, sensitivity=False, verify_images=2, match_iou=1.0,
                         min_matched=1.0)
    assert out.read_bytes() == b"the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.onnx"]


def test_bad_arguments_and_missing_package(shapes, tmp_path, monkeypatch):
    model, data = shapes
    with pytest.raises(ExportError, match="calibration must be one of"):
        export_onnx_int8(model, tmp_path / "x.onnx", data, calibration="median")
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx_int8(model, tmp_path / "no" / "x.onnx", data)
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx_int8(model, tmp_path, data)
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # as if onnxruntime were absent
    with pytest.raises(ExportError, match=r"pip install darknet-py-yolov3\[export\]"):
        export_onnx_int8(model, tmp_path / "x.onnx", data)
    assert not (tmp_path / "x.onnx").exists()
