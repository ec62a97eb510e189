"""Export a DarknetModel, and prove the file: every export runs the written file right away and
compares it with PyTorch (darknet_py.export.check).

- :mod:`.graphs`: what is traced (raw heads or decoded rows, folded convolutions);
- :mod:`.onnx`: ONNX, run by onnxruntime;
- :mod:`.torchscript`: TorchScript, loaded back with ``torch.jit.load``;
- :mod:`.checkpoint`: a PyTorch checkpoint (``.pt``), loaded back with ``torch.load``;
- :mod:`.e2e`: end-to-end graphs (``nms=True``: thresholds, per-class NMS, top K; ``letterbox=True``: uint8 photos in,
  photo-pixel boxes out), for ONNX and TorchScript;
- :mod:`.tflite`: TFLite (fp32, fp16 weights, int8), written from the layer graph, run by LiteRT;
- :mod:`.verify`, :mod:`.report`, :mod:`.backends`: the proof every converted file gets (its heads
  through darknet_py's own post-process, detections matched against PyTorch's), the conversion
  report, and the table of formats the CLI and the benchmark go through;
- :mod:`.dynamic`: ``dynamic_size=True`` (ONNX, TorchScript): any input height and width that
  are multiples of the network's stride, checked at two sizes;
- :mod:`.openvino`: OpenVINO IR (``.xml`` + ``.bin``), run by OpenVINO on the CPU (extra ``openvino``);
- :mod:`.ncnn`: ncnn (``.param`` + ``.bin``), converted by pnnx, run by ncnn (extra ``ncnn``);
- :mod:`.int8`: int8 (QDQ) ONNX, calibrated on photos, run by onnxruntime;
- :mod:`.sensitivity`: which layers an int8 file keeps float (each layer int8 alone, heads SQNR), for
  int8 ONNX and TFLite;
- :mod:`.tensorrt`: TensorRT fp16 / int8 engines (CUDA and the tensorrt package);
- :mod:`.accuracy`: mAP of a converted model beside the PyTorch model's (detector map's own code).

A new backend is one module here that writes its file and checks it with :mod:`.check`.
"""
from ..errors import ExportError
from .accuracy import compare_accuracy, evaluate_runner
from .check import MIN_OPSET, RTOL_FP16, RTOL_FP32, ExportReport, check_export_options, sample_input, synthetic_image
from .checkpoint import export_checkpoint
from .e2e import DEFAULT_MAX_DET, OUTPUT_NAMES, export_onnx_e2e, export_torchscript_e2e, net_boxes_to_photo
from .graphs import DECODED_NAME, INPUT_NAME, DecodedHeads
from .int8 import export_onnx_int8
from .ncnn import export_ncnn
from .onnx import OPSET, export_onnx
from .openvino import export_openvino
from .runtimes import RuntimeReport
from .tensorrt import export_tensorrt
from .tflite import export_tflite
from .torchscript import export_torchscript

__all__ = ["DECODED_NAME", "DEFAULT_MAX_DET", "DecodedHeads", "ExportError", "ExportReport", "INPUT_NAME", "MIN_OPSET",
           "OPSET", "OUTPUT_NAMES", "RTOL_FP16", "RTOL_FP32", "RuntimeReport", "check_export_options",
           "compare_accuracy", "evaluate_runner", "export_checkpoint", "export_ncnn", "export_onnx", "export_onnx_e2e",
           "export_onnx_int8", "export_openvino", "export_tensorrt", "export_tflite", "export_torchscript",
           "export_torchscript_e2e", "net_boxes_to_photo", "sample_input", "synthetic_image"]
