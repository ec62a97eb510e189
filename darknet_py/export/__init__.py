"""Export a DarknetModel, and prove the file: every export runs the written file right away and
compares it with PyTorch (darknet_py.export.check).

- :mod:`.graphs`: what is traced (raw heads or decoded rows, folded convolutions);
- :mod:`.onnx`: ONNX, run by onnxruntime;
- :mod:`.torchscript`: TorchScript, loaded back with ``torch.jit.load``;
- :mod:`.checkpoint`: a PyTorch checkpoint (``.pt``), loaded back with ``torch.load``;
- :mod:`.openvino`: OpenVINO IR (``.xml`` + ``.bin``), run by OpenVINO on the CPU (extra ``openvino``);
- :mod:`.ncnn`: ncnn (``.param`` + ``.bin``), converted by pnnx, run by ncnn (extra ``ncnn``).

A new backend is one module here that writes its file and checks it with :mod:`.check`.
"""
from ..errors import ExportError
from .check import MIN_OPSET, RTOL_FP16, RTOL_FP32, ExportReport, check_export_options, sample_input, synthetic_image
from .checkpoint import export_checkpoint
from .graphs import DECODED_NAME, INPUT_NAME, DecodedHeads
from .ncnn import export_ncnn
from .onnx import OPSET, export_onnx
from .openvino import export_openvino
from .runtimes import RuntimeReport
from .torchscript import export_torchscript

__all__ = ["DECODED_NAME", "DecodedHeads", "ExportError", "ExportReport", "INPUT_NAME", "MIN_OPSET", "OPSET",
           "RTOL_FP16", "RTOL_FP32", "RuntimeReport", "check_export_options", "export_checkpoint", "export_ncnn",
           "export_onnx", "export_openvino", "export_torchscript", "sample_input", "synthetic_image"]
