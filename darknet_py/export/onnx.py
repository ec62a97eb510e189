"""ONNX export of a DarknetModel, checked with onnxruntime.

Two graphs can be written: raw (default), one output per head, ``yolo_<layer index>``, exactly
what ``model(x)`` returns (Darknet's ``l.output``); decoded (``decode=True``), one output
``detections`` (:class:`~darknet_py.export.graphs.DecodedHeads`). The input is ``images``: N x 3 x
H x W float RGB in [0, 1], letterboxed to the network size (``darknet_py.transforms.letterbox``);
float16 for ``half=True``. Thresholds, NMS and the letterbox inversion are not in the graph
(Darknet's per-class NMS is data-dependent).

Sizes: by default every dimension is fixed (``batch`` as traced, the network's H x W);
``dynamic=True`` makes the batch symbolic; ``dynamic_size=True`` makes batch, height and width
symbolic (``batch x 3 x height x width``, any multiples of the network's stride; other sizes
are refused by onnxruntime at a node named ``images_height_and_width_must_be_multiples_of_32``),
checked at a second size too: darknet_py.export.dynamic.

ONNX goes through the legacy TorchScript-based exporter (``dynamo=False``), the reliable path
here: it writes opset 17 as asked. The dynamo exporter also handles this lean graph (checked on
yolov3-tiny with torch 2.13) but writes opset 18 at least. The file is run right after writing by
onnxruntime on the CPU or, when available and the model is on CUDA, onnxruntime's CUDA provider.
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from ..device import model_device
from ..errors import ExportError, UsageError
from ..files import write_bytes
from ..graph import DarknetModel
from .check import (RTOL_FP16, RTOL_FP32, ExportReport, Shape, batch_of, check_batch, check_export_options,
                    check_tolerance, compare, dtype_name, fp32_rel, reference, sample_input, writing)
from .dynamic import SizeCheck, check_second_size, guard_node, input_dims, model_at_size, plan_sizes, raw_dims
from .e2e import e2e_options, export_onnx_e2e
from .graphs import INPUT_NAME, check_model, eval_mode, output_names, prepared, target

OPSET = 17
ROWS_DIM = "rows"  # the decoded output's row count in a dynamic-size graph (it follows height x width)


def plan(model, decode: bool, half: bool, sample, sizes: SizeCheck | None = None, backend: str = "onnx"):
    """What both exporters need: the prepared model, the reference module (darknet_py's own
    inference path), the module traced (the same arithmetic with folded tensors as parameters;
    shape-free with its input guard for a dynamic-size export), output names, the letterboxed
    sample, device and dtype."""
    m, lean = prepared(model, half)
    traced = target(lean, decode, sizes is not None, sizes.guard(backend) if sizes else None)
    return (m, target(m, decode), traced, output_names(m, decode), sample_input(model, sample),
            model_device(m), torch.float16 if half else torch.float32)


def output_shapes(m: DarknetModel, traced, decode: bool, lead: int | str, any_size: bool = False) -> list[Shape]:
    if decode:
        n_cols = 5 + (m.yolo_specs[0].classes if m.yolo_specs else 0)
        return [[lead, ROWS_DIM if any_size else traced.num_rows, n_cols]]
    if any_size:
        return [raw_dims(m.netdef, i, str(lead)) for i in m.heads]
    return [[lead, *m.netdef.shapes[i]] for i in m.heads]


def second_size_run(m: DarknetModel, sizes: SizeCheck, decode: bool, sample, batch: int, device, dtype):
    """The input and the reference module at a dynamic export's second size: a model built at
    that size with the same tensors (dynamic.model_at_size)."""
    x = batch_of(sample_input(m, sample, sizes.sizes[1]), batch).to(device=device, dtype=dtype)
    return x, target(model_at_size(m, sizes.netdef), decode)


def _import_onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ExportError(f"ONNX export needs the onnx and onnxruntime packages ({e}); "
                          "pip install onnx onnxruntime") from e
    return onnx, onnxruntime


def _onnx_shapes(values) -> list[tuple[str, Shape]]:
    out = []
    for v in values:
        dims = [d.dim_param if d.dim_param else int(d.dim_value) for d in v.type.tensor_type.shape.dim]
        out.append((v.name, dims))
    return out


def _set_output_shapes(proto, shapes: Sequence[Shape]) -> None:
    for value, shape in zip(proto.graph.output, shapes):
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for d in shape:
            dim = dims.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = int(d)


def _ort_session(ort, path: str, device: torch.device):
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(path, opts, providers=providers), providers[0]
    except Exception as e:  # onnxruntime raises its own exception types
        raise ExportError(f"{path}: onnxruntime cannot load the export: {e}") from e


_SYMBOLICS_REGISTERED = False


def _register_symbolics() -> None:
    """ONNX has no expm1 (Darknet's elu/selu use it here); export it as Exp(x) - 1, which is the
    formula of Darknet's C (``exp(x)-1``). Registered once, for opset 15+ (CastLike)."""
    global _SYMBOLICS_REGISTERED
    if _SYMBOLICS_REGISTERED:
        return

    def expm1(g, x):
        one = g.op("CastLike", g.op("Constant", value_t=torch.tensor(1.0)), x)
        return g.op("Sub", g.op("Exp", x), one)

    torch.onnx.register_custom_op_symbolic("aten::expm1", expm1, 15)
    _SYMBOLICS_REGISTERED = True


def write_checked(onnx, model_bytes: bytes, path: str) -> None:
    """The serialised graph through onnx.checker's full check, then written (atomically)."""
    try:
        onnx.checker.check_model(model_bytes, full_check=True)
    except Exception as e:
        raise ExportError(f"{path}: onnx.checker rejects the export: {e}") from e
    with writing(path):
        write_bytes(path, model_bytes)


def refuse_sizes_with_nms(dynamic_size: bool, check_size) -> None:
    if dynamic_size or check_size is not None:
        raise UsageError("an nms=True graph takes the network's own size (with letterbox=True, photos of any size); "
                         "dynamic_size=True applies to raw and decoded graphs")


def export_onnx(model: DarknetModel, path, *, batch: int = 1, dynamic: bool = False, dynamic_size: bool = False,
                check_size: tuple[int, int] | None = None, decode: bool = False, half: bool = False,
                opset: int = OPSET, sample: np.ndarray | None = None, nms: bool = False,
                letterbox: bool = False, max_det: int | None = None, thresh: float | None = None,
                iou: float | None = None) -> ExportReport:
    """Write ``model`` as ONNX at ``path`` and check it with onnxruntime; see the module docstring.

    ``batch``: the batch size of the traced input (the fixed batch unless ``dynamic``);
    ``dynamic``: a symbolic ``batch`` dimension on the input and every output (checked at
    ``batch`` and at 3); ``dynamic_size``: symbolic batch, height and width (implies ``dynamic``;
    any multiple of the network's stride, see darknet_py.export.dynamic), checked also at
    ``check_size`` (width, height; default one stride wider and two higher than the network);
    ``decode``: one ``detections`` output (:class:`DecodedHeads`) instead of the raw heads;
    ``half``: float16 weights, input and outputs; ``sample``: an HxWx3 uint8 RGB photo for the
    check (None: a synthetic picture). ``nms=True`` (with ``letterbox``, ``max_det``, ``thresh``,
    ``iou``): the end-to-end graph of :func:`darknet_py.export.e2e.export_onnx_e2e`.
    """
    e2e = e2e_options(nms, decode, letterbox=letterbox, max_det=max_det, thresh=thresh, iou=iou)
    if e2e is not None:
        refuse_sizes_with_nms(dynamic_size, check_size)
        return export_onnx_e2e(model, path, batch=batch, half=half, opset=opset, sample=sample, **e2e)
    onnx, ort = _import_onnx()
    check_model(model)
    batch = check_batch(batch)
    check_export_options(opset=opset)
    sizes = plan_sizes(model, "ONNX", dynamic_size, check_size)
    with eval_mode(model):
        return _export_onnx(onnx, ort, model, os.fspath(path), batch, dynamic or dynamic_size, sizes, decode, half,
                            int(opset), sample)


def _rename_guard(proto, sizes: SizeCheck) -> None:
    """The guard's first Reshape is the one onnxruntime refuses a size at: name it so its error says why."""
    node = next(n for n in proto.graph.node if n.op_type == "Reshape" and n.name.startswith("/guard/"))
    node.name = guard_node(*sizes.strides)


def _export_onnx(onnx, ort, model, path, batch, dynamic, sizes, decode, half, opset, sample) -> ExportReport:
    m, ref_module, exported, names, x1, device, dtype = plan(model, decode, half, sample, sizes)
    x = batch_of(x1, batch).to(device=device, dtype=dtype)
    dynamic_axes: dict[str, dict[int, str]] | None = None
    lead: int | str = "batch" if dynamic else batch
    expected = output_shapes(m, ref_module, decode, lead, sizes is not None)
    if sizes is not None:
        dynamic_axes = {INPUT_NAME: {i: d for i, d in enumerate(input_dims(m.netdef)) if isinstance(d, str)}}
        for name, shape in zip(names, expected):
            dynamic_axes[name] = {i: d for i, d in enumerate(shape) if isinstance(d, str)}
    elif dynamic:
        dynamic_axes = {n: {0: "batch"} for n in [INPUT_NAME] + names}
    _register_symbolics()
    buf = io.BytesIO()  # all in memory: one serialisation instead of write, read, write (240 MB for yolov3)
    with warnings.catch_warnings():
        # The trace freezes spatial sizes (Maxpool reads x.shape): intended, the input size is fixed.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*[Cc]onstant folding.*")
        with torch.no_grad():
            # Legacy exporter on purpose (see the module docstring).
            torch.onnx.export(exported, (x,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    model_bytes = buf.getvalue()
    del buf
    proto = onnx.load_from_string(model_bytes)
    # After a padded [maxpool] the legacy exporter's shape inference loses the head sizes (its pads
    # come from a reversed Slice that is not constant-folded) and names them 'Whereyolo_16_dim_0'
    # and the like; the shapes are known, so state them. The full check below runs ONNX shape
    # inference against them, so a wrong one would be rejected.
    if [shape for _, shape in _onnx_shapes(proto.graph.output)] != expected or sizes is not None:
        _set_output_shapes(proto, expected)
        if sizes is not None:
            _rename_guard(proto, sizes)
        model_bytes = proto.SerializeToString()
    inputs, outputs = _onnx_shapes(proto.graph.input), _onnx_shapes(proto.graph.output)
    del proto
    write_checked(onnx, model_bytes, path)
    del model_bytes
    sess, provider = _ort_session(ort, path, device)  # from the file: what a consumer will load

    def run(xb: torch.Tensor) -> list[np.ndarray]:
        try:
            return sess.run(names, {INPUT_NAME: xb.cpu().numpy()})
        except Exception as e:
            msg = str(e)
            if half and ("NOT_IMPLEMENTED" in msg or "Could not find an implementation" in msg):
                raise ExportError(f"{path}: this onnxruntime ({ort.__version__}, {provider}) has no float16 kernel "
                                  f"for an operator of the graph ({msg.splitlines()[0]}); run float16 exports "
                                  "with onnxruntime-gpu on CUDA, or export in float32") from e
            raise ExportError(f"{path}: onnxruntime failed on the export: {msg}") from e

    batches = [batch] + ([3] if dynamic and batch != 3 else [])
    max_abs = max_rel = 0.0
    got_first: list[np.ndarray] = []
    for b in batches:
        xb = x if b == batch else batch_of(x1, b).to(device=device, dtype=dtype)
        got = run(xb)
        ref = reference(ref_module, xb)
        a, r = compare(got, ref, names)
        max_abs, max_rel = max(max_abs, a), max(max_rel, r)
        if b == batch:
            got_first = got
    report = ExportReport(path, "onnx", int(opset), inputs, outputs, os.path.getsize(path), max_abs, max_rel,
                          dtype_name(half), batches, f"onnxruntime {ort.__version__} {provider}",
                          f"PyTorch ({dtype_name(half)})", RTOL_FP16 if half else RTOL_FP32)
    if half:
        report.fp32_rel_diff = fp32_rel(model, x, decode, got_first)
    check_tolerance(report)
    if sizes is not None:
        check_second_size(report, sizes, lambda: second_size_run(m, sizes, decode, sample, batch, device, dtype),
                          run, names)
    return report


__all__ = ["OPSET", "export_onnx"]
