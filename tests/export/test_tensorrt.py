"""TensorRT engines: the clear refusal without CUDA or tensorrt (runs everywhere), and the fp16 and
int8 builds checked against PyTorch where a GPU and tensorrt are present."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.errors import ExportError
from darknet_py.export import tensorrt as trt_export
from darknet_py.synth import make_dataset
from tests.helpers.paths import ROOT

NEEDS = r"TensorRT needs an NVIDIA GPU with CUDA and the tensorrt package: pip install darknet-py-yolov3\[tensorrt\]"


@pytest.fixture(scope="module")
def shapes_model():
    return darknet_py.load(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights")


def test_without_cuda_it_refuses_before_any_work(shapes_model, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(trt_export, "lean_onnx", None)  # any work would call it and fail differently
    out = tmp_path / "m.engine"
    for precision in ("fp16", "int8"):
        with pytest.raises(ExportError, match=NEEDS):
            trt_export.export_tensorrt(shapes_model, out, precision=precision, data=tmp_path / "absent.data")
    with pytest.raises(ExportError, match=NEEDS):
        trt_export.load_engine(tmp_path / "absent.engine")
    assert list(tmp_path.iterdir()) == []


def test_without_the_tensorrt_package_it_refuses(shapes_model, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # an import of it raises ImportError
    with pytest.raises(ExportError, match=NEEDS):
        trt_export.export_tensorrt(shapes_model, tmp_path / "m.engine")
    assert list(tmp_path.iterdir()) == []


def gpu_with_tensorrt():
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines need a CUDA GPU (torch sees none)")
    pytest.importorskip("tensorrt", reason="TensorRT engines need the tensorrt package")
    pytest.importorskip("onnxruntime", reason="the graph is pre-processed with onnxruntime's tools")


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_engine_matches_pytorch_on_cuda(shapes_model, tmp_path, precision):
    gpu_with_tensorrt()
    data = make_dataset(tmp_path / "d", train=16, valid=4, seed=5, min_side=128, max_side=256).data
    out = tmp_path / f"m-{precision}.engine"
    rep = trt_export.export_tensorrt(shapes_model, out, precision=precision, data=data, calib_images=16,
                                     calib_batch=4, max_batch=2)
    assert out.stat().st_size == rep.file_bytes > 0
    assert rep.constrained_layers > 0 and rep.head_layers
    assert rep.matched > 0 and rep.matched_fraction >= (0.9 if precision == "fp16" else 0.7)
    # the written engine, loaded back, runs a batch of two and gives what it gave one photo at a time
    runner = trt_export.load_engine(out)
    x = np.random.default_rng(0).random((2, 3, 320, 320), dtype=np.float32)
    both = runner(x)
    for i in range(2):
        for a, b in zip(runner(x[i:i + 1]), both):
            np.testing.assert_allclose(a[0], b[i], rtol=0, atol=1e-2)
    # and it is close to PyTorch on the GPU (fp16: rounding only; int8: a quantised network)
    with torch.inference_mode():
        ref = [o.float().cpu().numpy() for o in shapes_model.cuda()(torch.from_numpy(x).cuda())]
    shapes_model.cpu()
    for a, r in zip(both, ref):
        rel = np.abs(a - r).max() / np.abs(r).max()
        assert rel < (0.05 if precision == "fp16" else 0.5)
