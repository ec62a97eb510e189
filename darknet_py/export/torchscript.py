"""TorchScript export of a DarknetModel, checked by loading the file back.

A traced archive that ``torch.jit.load`` runs without darknet_py: raw, a tuple of head tensors;
decoded, one tensor (darknet_py.export.graphs). The trace holds its constants on the device the
model was on; load it elsewhere with ``torch.jit.load(path, map_location=...)`` (checked both
ways between CPU and CUDA).

The batch is always free. The input height and width are fixed to the network's unless
``dynamic_size=True``: then any multiples of the network's stride run (other sizes raise
``input WxH: width must be a multiple of ...``; see darknet_py.export.dynamic), checked at the
network's size and at ``check_size``.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from ..errors import ExportError
from ..files import atomic_output
from ..graph import DarknetModel
from .check import (RTOL_FP16, RTOL_FP32, ExportReport, batch_of, check_batch, check_tolerance, compare, dtype_name,
                    fp32_rel, half_on_cpu_errors, reference, sample_input, writing)
from .dynamic import check_second_size, input_dims, plan_sizes
from .e2e import e2e_options, export_torchscript_e2e
from .graphs import INPUT_NAME, check_model, eval_mode
from .onnx import output_shapes, plan, refuse_sizes_with_nms, second_size_run


def export_torchscript(model: DarknetModel, path, *, batch: int = 1, decode: bool = False, half: bool = False,
                       dynamic_size: bool = False, check_size: tuple[int, int] | None = None,
                       sample: np.ndarray | None = None, nms: bool = False, letterbox: bool = False,
                       max_det: int | None = None, thresh: float | None = None,
                       iou: float | None = None) -> ExportReport:
    """Write ``model`` as a traced TorchScript archive (``torch.jit.load`` needs no darknet_py).

    The trace is checked by torch.jit (a second trace at batch 3 must give the same graph: the
    batch is free, the input size fixed unless ``dynamic_size``, when the second trace is also
    at ``check_size``); the saved file is then loaded back and compared with the PyTorch model at
    ``batch`` and at 3 (and, ``dynamic_size``, at ``check_size``: see the module docstring).
    Raw: a tuple of head tensors; decoded: one tensor. ``nms=True`` (with ``letterbox``,
    ``max_det``, ``thresh``, ``iou``): the end-to-end archive of
    :func:`darknet_py.export.e2e.export_torchscript_e2e`.
    """
    e2e = e2e_options(nms, decode, letterbox=letterbox, max_det=max_det, thresh=thresh, iou=iou)
    if e2e is not None:
        refuse_sizes_with_nms(dynamic_size, check_size)
        return export_torchscript_e2e(model, path, batch=batch, half=half, sample=sample, **e2e)
    check_model(model)
    batch = check_batch(batch)
    sizes = plan_sizes(model, "TorchScript", dynamic_size, check_size)
    with eval_mode(model):
        return _export_torchscript(model, os.fspath(path), batch, sizes, decode, half, sample)


def _export_torchscript(model, path, batch, sizes, decode, half, sample) -> ExportReport:
    m, ref_module, exported, names, x1, device, dtype = plan(model, decode, half, sample, sizes, "torchscript")
    x = batch_of(x1, batch).to(device=device, dtype=dtype)
    other = 3 if batch != 3 else 1
    x_other = batch_of(x1, other).to(device=device, dtype=dtype)
    # torch.jit's own check traces again on other inputs: a batch, and a size when it is free
    check_inputs = [(x_other,)]
    if sizes is not None:
        check_inputs.append((batch_of(sample_input(m, sample, sizes.sizes[1]), other).to(device=device, dtype=dtype),))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        with torch.no_grad(), half_on_cpu_errors(x):
            try:
                traced = torch.jit.trace(exported, (x,), check_trace=True, check_inputs=check_inputs,
                                         check_tolerance=RTOL_FP16 if half else RTOL_FP32)
            except torch.jit.TracingCheckError as e:
                raise ExportError(f"torch.jit.trace does not reproduce the model: {e}") from e
    with writing(path), atomic_output(path) as fh:
        torch.jit.save(traced, fh)
    del traced

    loaded = torch.jit.load(path, map_location=device)
    loaded.eval()

    def run(xb: torch.Tensor) -> list[np.ndarray]:
        try:
            with torch.no_grad():
                out = loaded(xb)
        except RuntimeError as e:
            raise ExportError(f"{path}: the loaded TorchScript fails: {e}") from e
        return [o.float().cpu().numpy() for o in ([out] if isinstance(out, torch.Tensor) else out)]

    max_abs = max_rel = 0.0
    batches = [batch, other]
    for xb in (x, x_other):
        got = run(xb)
        a, r = compare(got, reference(ref_module, xb), names)
        max_abs, max_rel = max(max_abs, a), max(max_rel, r)
        if xb is x:
            got_first = got
    c, h, w = model.netdef.input_shape
    inputs = [(INPUT_NAME, input_dims(model.netdef) if sizes else ["batch", c, h, w])]
    outputs = list(zip(names, output_shapes(m, ref_module, decode, "batch", sizes is not None)))
    report = ExportReport(path, "torchscript", None, inputs, outputs, os.path.getsize(path), max_abs, max_rel,
                          dtype_name(half), batches, f"torch.jit.load (torch {torch.__version__}, {device})",
                          f"PyTorch ({dtype_name(half)})", RTOL_FP16 if half else RTOL_FP32)
    if half:
        report.fp32_rel_diff = fp32_rel(model, x, decode, got_first)
    check_tolerance(report)
    if sizes is not None:
        check_second_size(report, sizes, lambda: second_size_run(m, sizes, decode, sample, batch, device, dtype),
                          run, names)
    return report


__all__ = ["export_torchscript"]
