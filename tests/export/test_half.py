"""float16 export: an ONNX file whose inputs, outputs and weights are float16, a TorchScript file that
computes in float16; both within the float16 tolerance of PyTorch's float32 and float16 runs."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from darknet_py.export import DecodedHeads, export_onnx, export_torchscript
from tests.helpers.export import RTOL_FP16, photo_input, rel_diff_rows
from tests.helpers.numeric import rel_err
from tests.helpers.runtimes import onnx_session


def test_onnx_half(small_tiny, photo_rgb, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    model = small_tiny
    x, _ = photo_input(model, photo_rgb)
    path = tmp_path / "half.onnx"
    report = export_onnx(model, path, decode=True, half=True, sample=photo_rgb)
    assert report.dtype == "float16" and report.max_rel_diff <= RTOL_FP16 and report.fp32_rel_diff is not None
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer if t.dims)
    got = onnx_session(path).run(None, {"images": x.half().numpy()})[0]
    assert got.dtype == np.float16
    half_model = copy.deepcopy(model).to_channels_last(False).half()
    with torch.no_grad():
        ref16 = DecodedHeads(half_model)(x.half())
        ref32 = DecodedHeads(model)(x)
    assert rel_diff_rows(got, ref16.float()) <= RTOL_FP16
    assert rel_diff_rows(got, ref32) <= RTOL_FP16
    assert rel_diff_rows(got, ref32) > 1e-5  # it did compute in float16
    assert "float16" in "\n".join(report.lines())


def test_torchscript_half(small_tiny, photo_rgb, tmp_path):
    model = small_tiny
    x, _ = photo_input(model, photo_rgb)
    report = export_torchscript(model, tmp_path / "half.pt", half=True)
    assert report.dtype == "float16" and report.max_rel_diff <= RTOL_FP16
    loaded = torch.jit.load(str(tmp_path / "half.pt"))
    with torch.no_grad():
        got = loaded(x.half())
        ref = model(x)
    for g, r in zip(got, ref):
        assert g.dtype == torch.float16
        assert rel_err(g.float(), r) <= RTOL_FP16
