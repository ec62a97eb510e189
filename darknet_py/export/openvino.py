"""OpenVINO IR export (``.xml`` + ``.bin``), run by the OpenVINO runtime on the CPU right after
conversion and checked on photos (darknet_py.export.verify).

The IR is converted from darknet_py's own ONNX export (raw heads, ``yolo_<layer index>``, input
``images`` 1 x 3 x H x W float RGB in [0, 1], letterboxed; see darknet_py.export.onnx) with
``openvino.convert_model``; ``half=True`` stores the weights in float16 (OpenVINO's
``compress_to_fp16``; they are widened again when the model is compiled).

Precision: OpenVINO's CPU plugin computes in bfloat16 by default wherever the processor has
AVX512-BF16 or AMX, which moves yolov3-tiny's heads by about 1e-1 of their scale; ``precision``
("f32", "bf16", "f16") is passed as ``INFERENCE_PRECISION_HINT`` and the check runs at it. The IR
does not carry the hint: deploy with
``core.compile_model("m.xml", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})`` to get what was
checked at f32. A precision the processor cannot compute in (OpenVINO falls back silently, f16 to
bf16 or f32) is refused: the check would not be at the precision stated.
"""
from __future__ import annotations

import os
import re
import tempfile

import numpy as np
import torch

from ..errors import ExportError
from ..graph import DarknetModel
from ..postprocess import DEFAULT_NMS, DEFAULT_THRESH
from .check import RTOL_FP16, RTOL_FP32
from .graphs import INPUT_NAME, check_model, eval_mode
from .onnx import export_onnx
from .runtimes import (RuntimeReport, StagedOutputs, check_photos, import_extra, layer_where, verify_files,
                       weights_beside)

EXTRA = "openvino"
PRECISIONS = ("f32", "bf16", "f16")
# Largest relative head difference accepted per precision. f32 is held to what any float32 export
# is (check.RTOL_FP32; measured 1e-6 on yolov3-tiny). bf16 keeps 8 significant bits: yolov3-tiny
# with the COCO weights measured 1.0e-1 (heads) over the 7 sample photos, scores 3.6e-2; a wrong
# graph is off by O(1). f16 (11 bits) as every float16 export (check.RTOL_FP16).
# Float16 weights (``half``) alone measured 8.3e-3 at f32 (every detection matched): RTOL_FP16 then.
TOLERANCES = {"f32": RTOL_FP32, "bf16": 0.25, "f16": RTOL_FP16}


def tolerance(precision: str, half: bool) -> float:
    return max(TOLERANCES[precision], RTOL_FP16 if half else 0.0)


def _import_openvino():
    return import_extra(["openvino"], EXTRA, "OpenVINO export")[0]


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ExportError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


def cpu_precisions(ov=None) -> list[str]:
    """The precisions this processor computes in under OpenVINO's CPU plugin ("f32" always)."""
    ov = ov or _import_openvino()
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return ["f32"] + [p for p, cap in (("bf16", "BF16"), ("f16", "FP16")) if cap in caps]


def compile_ir(ov, xml: str, bin_path: str | None = None, precision: str = "f32", threads: int | None = None):
    """The IR compiled for the CPU at ``precision`` (checked: OpenVINO falls back silently)."""
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": precision,
              "INFERENCE_NUM_THREADS": int(threads or max(1, torch.get_num_threads()))}
    try:
        compiled = core.compile_model(core.read_model(xml, bin_path) if bin_path else xml, "CPU", config)
    except Exception as e:  # OpenVINO raises its own RuntimeError subclasses
        raise ExportError(f"{xml}: OpenVINO cannot compile the IR for the CPU: {e}") from e
    got = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "f32", "bf16", "f16"
    if got != precision:
        raise ExportError(f"precision={precision!r}: this processor has no {precision} arithmetic under OpenVINO "
                          f"(it would compute in {got}; this CPU offers {', '.join(cpu_precisions(ov))}); check at "
                          "one of those, the IR is the same file")
    return compiled


def runner_of(compiled):
    """A verify.Runner: NCHW float32 batch -> the heads, in the IR's output order."""
    request = compiled.create_infer_request()
    outputs = list(compiled.outputs)

    def run(x: np.ndarray):
        result = request.infer({INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
        return [np.array(result[o]) for o in outputs]
    return run


def _layer_of(model, message: str) -> str:
    """The Darknet layer an OpenVINO message names through the ONNX node (``/model/layers.16/...``)."""
    m = re.search(r"layers\.(\d+)", message)
    if m and int(m.group(1)) < len(model.netdef.specs):
        return layer_where(model, int(m.group(1))) + ": "
    return ""


def export_openvino(model: DarknetModel, path, *, precision: str = "f32", half: bool = False,
                    sample: np.ndarray | None = None, photos=(), thresh: float = DEFAULT_THRESH,
                    nms: float = DEFAULT_NMS) -> RuntimeReport:
    """Write ``model`` as OpenVINO IR: ``path`` (must end in ``.xml``) and the weights beside it
    (same name, ``.bin``), then compile it for the CPU at ``precision`` ("f32", "bf16", "f16") and
    check it on ``sample`` (None: a synthetic picture) and ``photos`` (paths or (name, RGB array)
    pairs) against PyTorch: raw heads within the precision's tolerance (:data:`TOLERANCES`),
    detections at ``thresh``/``nms`` matched and reported. ``half``: float16 weights in the ``.bin``.
    Both files appear only when the check passes."""
    ov = _import_openvino()
    check_model(model)
    check_precision(precision)
    xml = os.fspath(path)
    if not xml.endswith(".xml"):
        raise ExportError(f"{xml}: an OpenVINO IR is named NAME.xml (its weights go to NAME.bin)")
    bin_path = weights_beside(xml, ".xml")
    shots = check_photos(sample, photos)
    with eval_mode(model):
        return _export(ov, model, xml, bin_path, precision, bool(half), shots, thresh, nms)


def _export(ov, model, xml, bin_path, precision, half, shots, thresh, nms) -> RuntimeReport:
    with StagedOutputs([xml, bin_path]) as staged, tempfile.TemporaryDirectory(prefix="darknet-py-ov-") as scratch:
        tmp_xml, tmp_bin = staged.paths
        onnx_path = os.path.join(scratch, "model.onnx")
        onnx_report = export_onnx(model, onnx_path, sample=shots[0][1])  # itself checked with onnxruntime
        try:
            ov_model = ov.convert_model(onnx_path)
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"{_layer_of(model, str(e))}OpenVINO cannot convert the model ({msg}); nothing was "
                              "written") from e
        # save_model names the weights after the .xml; they are moved to the .bin's own temporary
        side_bin = weights_beside(tmp_xml, ".xml")
        try:
            ov.save_model(ov_model, tmp_xml, compress_to_fp16=half)  # its default is True: always say
            os.replace(side_bin, tmp_bin)
        finally:
            if os.path.exists(side_bin):
                os.unlink(side_bin)
        del ov_model
        compiled = compile_ir(ov, tmp_xml, tmp_bin, precision)
        version = ov.__version__.split("-")[0]
        what = f"{xml} (OpenVINO {version}, CPU, {precision})"
        v = verify_files(model, runner_of(compiled), shots, what=what, tolerance=tolerance(precision, half),
                         thresh=thresh, nms=nms)
        report = RuntimeReport(
            xml, "openvino", None, onnx_report.inputs, onnx_report.outputs,
            os.path.getsize(tmp_xml) + os.path.getsize(tmp_bin), v.max_abs_diff, v.max_rel_diff,
            "float16" if half else "float32", [1], f"OpenVINO {version} CPU", "PyTorch (float32)",
            tolerance(precision, half), files=[xml, bin_path], precision=precision, verification=v,
            format_name="OpenVINO IR", sample_name=shots[0][0])
        report.notes.append(f"converted from the ONNX export (opset {onnx_report.opset}); deploy with "
                            f"INFERENCE_PRECISION_HINT={precision} (the IR does not carry it)")
        staged.commit()
    return report


__all__ = ["PRECISIONS", "TOLERANCES", "compile_ir", "tolerance", "cpu_precisions", "export_openvino", "runner_of"]
