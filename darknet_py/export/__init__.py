"""Export a DarknetModel, and prove the file: every export runs the written file right away and
compares it with PyTorch (darknet_py.export.check).

- :mod:`.graphs`: what is traced (raw heads or decoded rows, folded convolutions);
- :mod:`.onnx`: ONNX, run by onnxruntime;
- :mod:`.torchscript`: TorchScript, loaded back with ``torch.jit.load``;
- :mod:`.checkpoint`: a PyTorch checkpoint (``.pt``), loaded back with ``torch.load``;
- :mod:`.int8`: int8 (QDQ) ONNX, calibrated on photos, run by onnxruntime;
- :mod:`.tensorrt`: TensorRT fp16 / int8 engines (CUDA and the tensorrt package);
- :mod:`.accuracy`: mAP of a converted model beside the PyTorch model's (detector map's own code).

A new backend is one module here that writes its file and checks it with :mod:`.check`.
"""
from ..errors import ExportError
from .accuracy import compare_accuracy, evaluate_runner
from .check import MIN_OPSET, RTOL_FP16, RTOL_FP32, ExportReport, check_export_options, sample_input, synthetic_image
from .checkpoint import export_checkpoint
from .graphs import DECODED_NAME, INPUT_NAME, DecodedHeads
from .int8 import export_onnx_int8
from .onnx import OPSET, export_onnx
from .tensorrt import export_tensorrt
from .torchscript import export_torchscript

__all__ = ["DECODED_NAME", "DecodedHeads", "ExportError", "ExportReport", "INPUT_NAME", "MIN_OPSET", "OPSET",
           "RTOL_FP16", "RTOL_FP32", "check_export_options", "compare_accuracy", "evaluate_runner", "export_checkpoint",
           "export_onnx", "export_onnx_int8", "export_tensorrt", "export_torchscript", "sample_input",
           "synthetic_image"]
