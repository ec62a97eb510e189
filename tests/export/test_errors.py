"""Export's errors: a missing runtime, an exported file that differs from PyTorch beyond the tolerance
(the exporter's built-in check, made to fail), float16 where the CPU has no kernels, bad arguments, a
float16 model; and an export that leaves the model as it found it."""
from __future__ import annotations

import copy
import sys

import pytest
import torch

from darknet_py.errors import DarknetPyError
from darknet_py.export import ExportError, export_onnx, export_torchscript
from tests.helpers.export import SMALL

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def test_missing_onnx_is_a_clear_error(small_tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ExportError, match="pip install onnx onnxruntime") as exc:
        export_onnx(small_tiny, tmp_path / "x.onnx")
    assert isinstance(exc.value, DarknetPyError)
    assert not (tmp_path / "x.onnx").exists()


def test_onnx_difference_above_tolerance_raises(small_tiny, tmp_path, monkeypatch):
    run = ort.InferenceSession.run
    monkeypatch.setattr(ort.InferenceSession, "run", lambda self, *a, **k: [o * 1.001 for o in run(self, *a, **k)])
    with pytest.raises(ExportError, match="tolerance"):
        export_onnx(small_tiny, tmp_path / "x.onnx")


def test_decoded_scores_are_checked_on_their_own_scale(small_tiny, tmp_path, monkeypatch):
    """A 1e-3 error in the class scores is 1e-3 of their scale, though a few 1e-6 of the pixel
    coordinates beside them: the check must still see it."""
    run = ort.InferenceSession.run

    def off_scores(self, *a, **k):
        out = run(self, *a, **k)
        out[0][..., 5:] += 1e-3
        return out

    # (unperturbed, the same export passes: test_export_leaves_the_model_alone)
    monkeypatch.setattr(ort.InferenceSession, "run", off_scores)
    with pytest.raises(ExportError, match="tolerance"):
        export_onnx(small_tiny, tmp_path / "x.onnx", decode=True)


def test_half_without_cpu_kernels_says_use_cuda(small_tiny, tmp_path, monkeypatch):
    """Where the CPU runtimes have no float16 convolution (older torch / onnxruntime builds; both
    have one here), the error says so and points to CUDA."""
    conv2d = torch.nn.functional.conv2d

    def no_half_conv(x, *a, **k):
        if x.dtype == torch.float16 and x.device.type == "cpu":
            raise RuntimeError('"slow_conv2d_cpu" not implemented for \'Half\'')
        return conv2d(x, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(torch.nn.functional, "conv2d", no_half_conv)
        with pytest.raises(ExportError, match="float16 on the CPU.*CUDA"):
            export_torchscript(small_tiny, tmp_path / "h.pt", half=True)

    def no_half_ort(self, names, feeds, *a, **k):
        raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
                           "Conv(11) node with name '/model/layers.0/Conv'")

    monkeypatch.setattr(ort.InferenceSession, "run", no_half_ort)
    with pytest.raises(ExportError, match="float16 kernel.*CUDA"):
        export_onnx(small_tiny, tmp_path / "h.onnx", half=True)


def test_bad_arguments_are_clear_errors(small_tiny, tmp_path):
    for call, pattern in [(lambda: export_onnx("yolov3.cfg", tmp_path / "x.onnx"), "DarknetModel"),
                          (lambda: export_onnx(small_tiny, tmp_path / "no" / "x.onnx"), "cannot write"),
                          (lambda: export_torchscript(small_tiny, tmp_path / "no" / "x.pt"), "cannot write")]:
        with pytest.raises(ExportError, match=pattern):
            call()


def test_bad_numbers_are_usage_errors_naming_the_keyword(small_tiny, tmp_path):
    from darknet_py.errors import UsageError

    for call, pattern in [(lambda: export_onnx(small_tiny, tmp_path / "x.onnx", opset=13), r"opset=13: .*>= 15"),
                          (lambda: export_torchscript(small_tiny, tmp_path / "x.pt", batch=0), r"batch=0: .*>= 1")]:
        with pytest.raises(UsageError, match=pattern) as info:
            call()
        assert info.value.option is not None


def test_float16_model_is_refused(small_tiny, tmp_path):
    with pytest.raises(ExportError, match="float32"):
        export_onnx(copy.deepcopy(small_tiny).half(), tmp_path / "x.onnx")


def test_torchscript_difference_above_tolerance_raises(small_tiny, tmp_path, monkeypatch):
    load = torch.jit.load

    class Off:
        def __init__(self, m):
            self.m = m

        def eval(self):
            return self

        def __call__(self, x):
            return tuple(o * 1.001 for o in self.m(x))

    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: Off(load(*a, **k)))
    with pytest.raises(ExportError, match="tolerance"):
        export_torchscript(small_tiny, tmp_path / "x.pt")


def test_export_leaves_the_model_alone(small_tiny, tmp_path):
    """Export works on a copy: same outputs, same memory format and mode afterwards."""
    x = torch.rand(1, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = [o.clone() for o in small_tiny(x)]
    cl, training = small_tiny.channels_last, small_tiny.training
    export_onnx(small_tiny, tmp_path / "a.onnx", decode=True)
    export_torchscript(small_tiny, tmp_path / "a.pt")
    with torch.no_grad():
        after = small_tiny(x)
    assert small_tiny.channels_last == cl and small_tiny.training == training
    for a, b in zip(before, after):
        assert torch.equal(a, b)
