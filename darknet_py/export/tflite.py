"""TFLite export of a DarknetModel, written straight from the layer graph and checked with LiteRT.

No converter: the network a Darknet cfg describes is a short list of operators TFLite has as
builtins, so the file is written from darknet_py's own layers with the TFLite schema that
``ai-edge-litert`` ships (``ai_edge_litert.schema_py_generated``, packed with ``flatbuffers``),
then loaded and run by LiteRT's interpreter (:func:`tflite_runner`) and compared with PyTorch by
:func:`darknet_py.export.verify.verify_runner` before the report is returned. PyTorch-to-TFLite
converters (litert-torch, onnx2tf + TensorFlow, onnx-tf) pull in hundreds of MB, and onnx2tf and
onnx-tf change numpy, onnx and protobuf; ``ai-edge-litert`` (the interpreter the check needs
anyway) is the whole dependency: ``pip install darknet-py-yolov3[tflite]``.

Layer by layer (each a TFLite builtin, NHWC):

- ``[convolutional]``: CONV_2D (DEPTHWISE_CONV_2D when groups = channels) with the folded kernel
  and bias (:class:`~darknet_py.layers.convolutional.FoldedConv`), OHWI; padding SAME where
  Darknet's symmetric padding equals it (stride 1, ``2*pad = size-1``), else an explicit zero PAD
  and VALID, because TF's SAME pads the bottom/right first at stride 2 where Darknet pads both
  sides. Activations: linear, relu and relu6 fused; leaky as LEAKY_RELU (alpha 0.1, Darknet's
  slope); logistic, tanh; swish as x*logistic(x); mish as x*tanh(log(1 + exp(x))).
- ``[maxpool]``: PADV2 with -inf (Darknet's padding is a total, ``padding/2`` before: out-of-range
  taps are skipped, which -inf reproduces) then MAX_POOL_2D VALID.
- ``[upsample]``: RESIZE_NEAREST_NEIGHBOR (no half-pixel centres: source pixel ``floor(i/s)``);
  ``scale`` a MUL.
- ``[route]``: CONCATENATION on channels; ``groups``/``group_id``: SLICE. ``[shortcut]``: ADD.
- ``[yolo]``: Darknet's ``l.output``: LOGISTIC on x, y, objectness and classes, w and h raw
  (a SELECT_V2 with a per-channel mask), then ``scale_x_y``; ``new_coords`` skips the logistic.

Refused before anything is written, naming the layer, its cfg line and the backend: other layer
kinds, other heads ([region], [detection], [Gaussian_yolo]), grouped (not depthwise) convolution,
xnor, antialiasing, maxpool_depth, reverse upsample, weighted or reshaping shortcuts, other
activations.

Layout: TFLite works in NHWC, so the file's input ``images`` is 1 x H x W x C float32 RGB in
[0, 1] (letterboxed as darknet_py letterboxes) and each output ``yolo_<layer>`` is 1 x h x w x
A*(5+C) float32, Darknet's ``l.output`` with channels last. :func:`tflite_runner` transposes
outside the model: it takes darknet_py's NCHW batch and returns the heads in NCHW, one photo per
invoke.

Precisions (``quantize``):

- ``"fp32"``: float32 weights and compute.
- ``"fp16"``: float16 weights and biases, each dequantized to float32 by a DEQUANTIZE in the file
  (LiteRT does that once, at load): half the file, float32 compute in the interpreter.
- ``"int8"``: static quantisation with float input and output: int8 activations (per tensor,
  asymmetric, min/max ranges measured by running the float network on calibration photos:
  :func:`darknet_py.export.calibrate.calibration_batches`), int8 kernels per output channel
  (symmetric), int32 biases; QUANTIZE/DEQUANTIZE where a float layer meets an int8 one. Kept in
  float: the [yolo] heads, the convolution before each (its logits decide every box), the
  convolutions the sensitivity pass finds below ``min_layer_db`` alone in int8
  (darknet_py.export.sensitivity, the ONNX int8 export's rule), and ``float_layers``. Layers whose
  activation has no int8 kernel with a free scale (logistic, tanh, swish, mish) stay float too, and
  a layer without weights (maxpool, upsample, route, shortcut) is int8 only when its inputs are.

int8 measured (tools/measure_int8.py --backend tflite; yolov3-tiny: the 17 PyTorch detections at .5
on the 7 sample photos, calibrated on them in 6 framings + 22 generated shapes photos; shapes:
mAP@0.5 on 100 held-out generated photos, 64 calibration photos):

  what                                          yolov3-tiny matched, IoU .9 / .5   shapes mAP@0.5
  heads float only (before)                     12/17  14/17   (heads SQNR 12.4 dB)
  + layers 0 2 4 float, maxpools 1 3 5 int8     13/17  13/17   (19.1 dB)
  + maxpools follow their inputs (= ONNX int8)  16/17  17/17   (21.6 dB; ONNX's file 21.5 dB, 16/17)
  sensitivity pass, 25 dB (the default)         16/17  17/17   float 0 2 4   93.34 -> 93.10, float 0 2 4 6 8 21

The gap to ONNX int8 was the int8 maxpools between float convolutions: each re-rounds a full-
resolution activation (maxpool 3 alone int8 costs the heads 17.2 dB, maxpool 1 27.5 dB), where
onnxruntime's quantiser leaves a MaxPool float when its input is. The rest matched ONNX: the min/max
ranges agree with onnxruntime's calibrator to 1e-6 of each range, per-layer SQNRs are the same
(layer 0 18.2 dB, layer 2 13.2 dB, 4 23.2 dB, the rest 25..39), and with the same float layers the
whole file is within 0.1 dB of the ONNX one, so LiteRT's int8 leaky, bias rounding and
concatenation requantisation cost nothing measurable. Calibrated on the 7 photos alone, 15/17 at .9
(17/17 at .5). LiteRT CPU, 1 thread: yolov3-tiny 58.9 ms float32, 26.5 ms int8; shapes 13.8, 11.6.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ExportError
from ..files import write_bytes
from ..graph import DarknetModel
from ..layers.convolutional import FoldedConv
from ..layers.yolo import YoloSpec
from .check import RTOL_FP16, RTOL_FP32, ExportReport, sample_input, synthetic_image, writing
from .graphs import INPUT_NAME, check_model, eval_mode, prepared
from .sensitivity import (DEFAULT_MIN_LAYER_DB, DEFAULT_SENSITIVITY_IMAGES, LayerSensitivity, float_choice, heads_sqnr,
                          probe_batches, run_all, sensitivity_pass)
from .verify import INT8_MATCH_IOU, MATCH_IOU, Runner, Verification, verify_runner

BACKEND = "TFLite"
EXTRA = "pip install darknet-py-yolov3[tflite]"
QUANTIZE_MODES = ("fp32", "fp16", "int8")
# int8 heads against float32 PyTorch, largest difference over max|PyTorch|: measured 0.50 on the real
# yolov3-tiny (7 photos) and 0.56 on the shapes model, dominated by the raw w, h logits of rare cells;
# a sanity bound only, the detections below are the check.
RTOL_INT8 = 1.0
# int8: share of PyTorch's detections (on the check photos) the file must find; a broken
# quantisation finds nearly none.
MIN_MATCHED_INT8 = 0.8
# photos of the calibration list an int8 export is checked on (when none are given)
INT8_CHECK_PHOTOS = 8

_ACTIVATIONS = ("linear", "leaky", "revleaky", "relu", "relu6", "logistic", "tanh", "swish", "mish")
_FUSED = {"linear": "NONE", "relu": "RELU", "relu6": "RELU6"}
# activations an int8 layer can have: fused, or LEAKY_RELU with its own output scale
_INT8_ACTIVATIONS = ("linear", "leaky", "revleaky", "relu", "relu6")
# Darknet's leaky slope
LEAKY_ALPHA = 0.1


def _import_litert():
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ExportError(f"the TFLite export needs the ai-edge-litert package ({e}); {EXTRA}") from e
    return flatbuffers, schema, Interpreter


# ---------------------------------------------------------------------------------------- plan

@dataclass
class _Step:
    index: int
    kind: str          # conv, maxpool, upsample, route, shortcut, yolo
    spec: object
    inputs: list[int]  # absolute layer indices, -1 the network input


def _refuse(spec, kind: str, why: str) -> ExportError:
    return ExportError(f"layer {spec.index} [{kind}] (cfg line {spec.line}): {why}; not supported by the "
                       f"{BACKEND} export")


def plan(model: DarknetModel) -> list[_Step]:
    """The layers as TFLite operators will run them; an ExportError naming the first layer (index,
    kind, cfg line) that the TFLite export cannot write. Nothing is built or written."""
    netdef = model.netdef
    if not netdef.head_indices:
        raise ExportError(f"{netdef.path or 'the network'}: no [yolo] head: the {BACKEND} export writes "
                          "detectors' [yolo] outputs")
    steps: list[_Step] = []
    for spec, kind_cls, ins in zip(netdef.specs, netdef.kinds, model.inputs):
        kind = kind_cls.name
        steps.append(_Step(spec.index, _check_layer(spec, kind, netdef, ins), spec, list(ins)))
    return steps


def _check_layer(spec, kind: str, netdef, ins: Sequence[int]) -> str:
    if kind in ("convolutional", "conv"):
        act = spec.activation
        if act not in _ACTIVATIONS:
            raise _refuse(spec, kind, f"activation={act} (the {BACKEND} export writes {', '.join(_ACTIVATIONS)})")
        if spec.xnor:
            raise _refuse(spec, kind, "xnor=1 (binarised inputs)")
        if spec.antialiasing:
            raise _refuse(spec, kind, f"antialiasing={spec.antialiasing}")
        c_in = netdef.input_shape[0] if ins[0] < 0 else netdef.shapes[ins[0]][0]
        if spec.groups != 1 and not spec.groups == c_in == spec.filters:
            raise _refuse(spec, kind, f"groups={spec.groups} (grouped convolution; groups=1 and depthwise, groups = "
                                      "channels = filters, are written)")
        return "conv"
    if kind == "maxpool":
        if spec.maxpool_depth:
            raise _refuse(spec, kind, "maxpool_depth=1")
        if spec.antialiasing:
            raise _refuse(spec, kind, f"antialiasing={spec.antialiasing}")
        return "maxpool"
    if kind == "upsample":
        if spec.stride < 0:
            raise _refuse(spec, kind, f"stride={spec.stride} (Darknet's reverse, summing downsample)")
        return "upsample"
    if kind == "route":
        return "route"
    if kind == "shortcut":
        if spec.weights_type != "none":
            raise _refuse(spec, kind, f"weights_type={spec.weights_type}")
        if spec.activation not in _ACTIVATIONS:
            raise _refuse(spec, kind, f"activation={spec.activation}")
        shapes = [netdef.shapes[j] for j in spec.input_layers()]
        if any(s != shapes[0] for s in shapes[1:]):
            raise _refuse(spec, kind, "inputs of different shapes (Darknet's partial or resampled add)")
        return "shortcut"
    if kind == "yolo" and isinstance(spec, YoloSpec):
        return "yolo"
    if spec.index in netdef.head_indices:
        raise _refuse(spec, kind, "a detection head other than [yolo]")
    raise _refuse(spec, kind, "this layer kind")


# ---------------------------------------------------------------------------------------- calibration

def _pre_activation(m: FoldedConv, x: torch.Tensor) -> torch.Tensor:
    c = m.conv
    return F.conv2d(x, m.weight, m.bias, c.stride, c.padding, c.dilation, c.groups)


def _run_float(lean: DarknetModel, steps: Sequence[_Step], x: torch.Tensor,
               seen: Callable[[str, torch.Tensor], None]) -> None:
    """The lean (folded, NCHW) network on ``x``, step by step as the file runs it; ``seen(key,
    tensor)`` gets every value the file may hold in int8: each layer's output (``"<i>"``) and a
    convolution's output before its activation (``"<i>.pre"``)."""
    outs: dict[int, torch.Tensor] = {-1: x}
    prev = x
    for step in steps:
        layer = lean.layers[step.index]
        args = [outs[j] if j in outs else prev for j in step.inputs]
        if step.kind == "conv":
            pre = _pre_activation(layer, args[0])
            seen(f"{step.index}.pre", pre)
            y = layer.act(pre)
        else:
            y = layer(*args)
        seen(str(step.index), y)
        outs[step.index] = prev = y


def activation_ranges(model: DarknetModel, batches: Iterable[np.ndarray], steps: Sequence[_Step] | None = None
                      ) -> dict[str, tuple[float, float]]:
    """(min, max) of every value the int8 file may hold (see :func:`_run_float`), from the
    calibration batches (float32 NCHW, as :func:`~darknet_py.export.calibrate.calibration_batches`
    gives them): the whole range seen, as TFLite's own calibrator takes it. (Ranges shrunk to the
    least squared int8 error were tried: no better on the shapes set, worse on yolov3-tiny's photos.)"""
    steps = steps or plan(model)
    _, lean = prepared(model, half=False)
    ranges: dict[str, tuple[float, float]] = {}

    def seen(key: str, t: torch.Tensor) -> None:
        lo, hi = float(t.min()), float(t.max())
        old = ranges.get(key)
        ranges[key] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))

    count = 0
    with torch.inference_mode():
        for b in batches:
            _run_float(lean, steps, torch.as_tensor(np.asarray(b, dtype=np.float32)), seen)
            count += 1
    if not count:
        raise ExportError("int8 calibration got no photos")
    # the input is RGB in [0, 1] by contract: 1/255 steps hold an 8-bit photo's values
    ranges[INPUT_NAME] = (0.0, 1.0)
    return ranges


# ---------------------------------------------------------------------------------------- quantisation

def _affine(lo: float, hi: float) -> tuple[float, int]:
    """int8 (scale, zero point) covering [lo, hi] and 0 (TFLite's asymmetric activations)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not hi - lo > 1e-12:
        hi = lo + 1e-6
    scale = (hi - lo) / 255.0
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zp


def _span(params: tuple[float, int]) -> tuple[float, float]:
    s, zp = params
    return (-128 - zp) * s, (127 - zp) * s


def _per_channel(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 kernel symmetric per output channel (``axis``), zero point 0: (values, scales)."""
    other = tuple(a for a in range(w.ndim) if a != axis)
    peak = np.abs(w).max(axis=other).astype(np.float64)
    scales = np.where(peak > 0, peak / 127.0, 1.0)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scales.reshape(shape)), -127, 127).astype(np.int8)
    return q, scales


# ---------------------------------------------------------------------------------------- the file

class _Value:
    """A layer output in the file: its NHWC shape and its tensor in each domain it exists in
    (``"f"`` float32, ``"q"`` int8 with ``qparams``)."""

    def __init__(self, shape: Sequence[int], key: str):
        self.shape = [int(d) for d in shape]
        self.key = key
        self.tensors: dict[str, int] = {}
        self.qparams: tuple[float, int] | None = None


class _Writer:
    def __init__(self, flatbuffers, schema, mode: str, ranges: dict[str, tuple[float, float]] | None):
        self.fb, self.s, self.mode, self.ranges = flatbuffers, schema, mode, ranges or {}
        self.tensors: list = []
        self.buffers: list = [schema.BufferT()]  # buffer 0: the empty one every non-constant tensor uses
        self.ops: list = []
        self.opcodes: dict[tuple[int, int], int] = {}
        self.codes: list = []
        self.data_bytes = 0

    # -- tensors --------------------------------------------------------------------------------
    def _quant(self, scales, zps, dim: int = 0):
        q = self.s.QuantizationParametersT()
        q.scale = [float(v) for v in np.atleast_1d(scales)]
        q.zeroPoint = [int(v) for v in np.atleast_1d(zps)]
        q.quantizedDimension = dim
        return q

    def tensor(self, name: str, shape: Sequence[int], ttype: str = "FLOAT32", quant=None, data=None) -> int:
        t = self.s.TensorT()
        t.name, t.shape, t.type, t.hasRank = name, [int(d) for d in shape], getattr(self.s.TensorType, ttype), True
        t.quantization = quant
        t.buffer = 0
        if data is not None:
            raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            self.buffers.append(_aligned_buffer(self.s, self.fb, raw))
            self.data_bytes += raw.size
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name: str, array: np.ndarray, quant=None) -> int:
        ttype = {np.dtype(np.float32): "FLOAT32", np.dtype(np.float16): "FLOAT16", np.dtype(np.int32): "INT32",
                 np.dtype(np.int8): "INT8", np.dtype(np.bool_): "BOOL"}[array.dtype]
        return self.tensor(name, array.shape, ttype, quant, array)

    def weight(self, name: str, array: np.ndarray) -> int:
        """A float weight: float32, or float16 + DEQUANTIZE in the fp16 file."""
        array = np.asarray(array, dtype=np.float32)
        if self.mode != "fp16":
            return self.const(name, array)
        half = self.const(name + "_fp16", array.astype(np.float16))
        out = self.tensor(name, array.shape)
        self.op("DEQUANTIZE", [half], [out], version=3)
        return out

    # -- operators ------------------------------------------------------------------------------
    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int], options: str | None = None,
           version: int = 1, **fields) -> None:
        code = getattr(self.s.BuiltinOperator, name)
        key = (code, version)
        if key not in self.opcodes:
            oc = self.s.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), version
            self.opcodes[key] = len(self.codes)
            self.codes.append(oc)
        o = self.s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.opcodes[key], list(inputs), list(outputs)
        if options is not None:
            opts = getattr(self.s, options + "T")()
            for k, v in fields.items():
                setattr(opts, k, v)
            o.builtinOptionsType, o.builtinOptions = getattr(self.s.BuiltinOptions, options), opts
        self.ops.append(o)

    def act_code(self, name: str) -> int:
        return getattr(self.s.ActivationFunctionType, name)

    # -- domains --------------------------------------------------------------------------------
    def qparams_of(self, key: str) -> tuple[float, int]:
        if key not in self.ranges:
            raise ExportError(f"int8: no calibrated range for value {key}")
        return _affine(*self.ranges[key])

    def get(self, v: _Value, domain: str, params: tuple[float, int] | None = None) -> int:
        """``v``'s tensor in ``domain`` (``"q"``: with ``params``, default its own), adding the
        QUANTIZE / DEQUANTIZE (or int8 requantize) that makes it once."""
        if domain == "f":
            if "f" not in v.tensors:
                t = self.tensor(f"{v.key}_float", v.shape)
                self.op("DEQUANTIZE", [v.tensors["q"]], [t], version=2)
                v.tensors["f"] = t
            return v.tensors["f"]
        if "q" not in v.tensors:
            v.qparams = self.qparams_of(v.key)
            t = self.tensor(f"{v.key}_int8", v.shape, "INT8", self._quant(*v.qparams))
            self.op("QUANTIZE", [v.tensors["f"]], [t], version=1)
            v.tensors["q"] = t
        if params is None or params == v.qparams:
            return v.tensors["q"]
        t = self.tensor(f"{v.key}_requant", v.shape, "INT8", self._quant(*params))
        self.op("QUANTIZE", [v.tensors["q"]], [t], version=2)
        return t

    def new(self, v: _Value, domain: str, suffix: str = "", params: tuple[float, int] | None = None) -> int:
        """A new tensor for ``v`` in ``domain``, its output."""
        if domain == "q":
            v.qparams = params or self.qparams_of(v.key)
            t = self.tensor(v.key + suffix, v.shape, "INT8", self._quant(*v.qparams))
        else:
            t = self.tensor(v.key + suffix, v.shape)
        v.tensors[domain] = t
        return t

    # -- packing ---------------------------------------------------------------------------------
    def finish(self, inputs: Sequence[int], outputs: Sequence[int], description: str) -> bytes:
        s = self.s
        sub = s.SubGraphT()
        sub.tensors, sub.inputs, sub.outputs, sub.operators, sub.name = self.tensors, list(inputs), list(outputs), \
            self.ops, "main"
        sig = s.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = "serving_default", 0
        sig.inputs = [_tensor_map(s, self.tensors[i].name, i) for i in inputs]
        sig.outputs = [_tensor_map(s, self.tensors[i].name, i) for i in outputs]
        model = s.ModelT()
        model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, self.codes, [sub], self.buffers
        model.description, model.signatureDefs = description, [sig]
        builder = self.fb.Builder(self.data_bytes + (1 << 20))
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _tensor_map(s, name: str, index: int):
    m = s.TensorMapT()
    m.name, m.tensorIndex = name, index
    return m


def _aligned_buffer(schema, flatbuffers, raw: np.ndarray):
    """A BufferT whose data starts on a 16-byte boundary (the schema's ``force_align: 16``, what
    TFLite's own converter writes), so kernels may read it in place."""

    class Aligned(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 (the generated API's name)
            builder.Prep(16, raw.size)
            data = builder.CreateNumpyVector(raw)
            schema.BufferStart(builder)
            schema.BufferAddData(builder, data)
            return schema.BufferEnd(builder)

    return Aligned()


def _nhwc(shape) -> list[int]:
    c, h, w = shape
    return [1, int(h), int(w), int(c)]


def _emit(w: _Writer, model: DarknetModel, lean: DarknetModel, steps: Sequence[_Step],
          float_layers: set[int]) -> tuple[list[int], list[int]]:
    """Every step as TFLite operators; (input tensors, output tensors)."""
    netdef = model.netdef
    x = _Value(_nhwc(netdef.input_shape), INPUT_NAME)
    x.tensors["f"] = w.tensor(INPUT_NAME, x.shape)
    inputs = [x.tensors["f"]]
    values: dict[int, _Value] = {-1: x}
    heads: dict[int, int] = {}
    quant = w.mode == "int8"
    native_q = {-1: False}  # layer -> its output was computed in int8
    for step in steps:
        i, spec = step.index, step.spec
        ins = [values[j] for j in step.inputs]
        out = _Value(_nhwc(netdef.shapes[i]), str(i))
        domain = "q" if quant and i not in float_layers else "f"
        if step.kind != "conv" and not all(native_q[j] for j in step.inputs):
            # a layer without weights (maxpool, upsample, route, shortcut) of a float value stays float: in
            # int8 it would only add a rounding (yolov3-tiny: maxpool 3 alone in int8 costs the heads 17 dB)
            domain = "f"
        if step.kind == "conv":
            _conv(w, lean.layers[i], spec, ins[0], out, domain, f"layer{i}")
        elif step.kind == "maxpool":
            _maxpool(w, spec, ins[0], out, domain)
        elif step.kind == "upsample":
            _upsample(w, spec, ins[0], out, domain)
        elif step.kind == "route":
            _route(w, spec, ins, out, domain)
        elif step.kind == "shortcut":
            _shortcut(w, spec, ins, out, domain)
        else:  # yolo
            heads[i] = _yolo(w, spec, ins[0], out)
        values[i] = out
        one_input_route = step.kind == "route" and spec.groups == 1 and len(ins) == 1  # the input's tensors
        native_q[i] = native_q[step.inputs[0]] if one_input_route else "q" in out.tensors
    return inputs, [heads[i] for i in model.heads]


def _conv(w: _Writer, m: FoldedConv, spec, x: _Value, out: _Value, domain: str, name: str) -> None:
    kernel = m.weight.detach().cpu().double().numpy()  # O, I/groups, kh, kw
    bias = m.bias.detach().cpu().double().numpy()
    geom = m.conv
    (sh, sw), (ph, pw), (dh, dw) = geom.stride, geom.padding, geom.dilation
    kh, kw = kernel.shape[2:]
    depthwise = geom.groups != 1
    act = spec.activation
    if domain == "q" and act not in _INT8_ACTIVATIONS:
        domain = "f"  # no int8 kernel with a free output scale: the layer stays float
    src = w.get(x, domain)
    in_params = x.qparams
    # Darknet pads both sides by `padding` (already times dilation); SAME pads (k-1)*d in total, the
    # extra at the bottom/right, the same only at stride 1 when 2*pad = (k-1)*d.
    same = (sh, sw) == (1, 1) and 2 * ph == (kh - 1) * dh and 2 * pw == (kw - 1) * dw
    if not same and (ph or pw):
        padded = _Value([x.shape[0], x.shape[1] + 2 * ph, x.shape[2] + 2 * pw, x.shape[3]], f"{name}_pad")
        pads = w.const(f"{name}_paddings", np.array([[0, 0], [ph, ph], [pw, pw], [0, 0]], dtype=np.int32))
        p = w.new(padded, domain, params=in_params if domain == "q" else None)
        w.op("PAD", [src, pads], [p], "PadOptions", version=2 if domain == "q" else 1)  # zeros: the zero point
        src = p
    padding = w.s.Padding.SAME if same else w.s.Padding.VALID
    fused = _FUSED.get(act, "NONE")
    # OHWI for CONV_2D; 1 x kh x kw x O for DEPTHWISE_CONV_2D
    k = kernel.transpose(1, 2, 3, 0) if depthwise else kernel.transpose(0, 2, 3, 1)
    pre = out if act in _FUSED else _Value(out.shape, f"{out.key}.pre")
    if domain == "q":
        qk, wscales = _per_channel(k, 3 if depthwise else 0)
        kt = w.const(f"{name}_kernel", qk, w._quant(wscales, np.zeros(len(wscales), dtype=np.int64),
                                                       3 if depthwise else 0))
        bscales = in_params[0] * wscales
        qb = np.clip(np.round(bias / bscales), -2**31, 2**31 - 1).astype(np.int32)
        bt = w.const(f"{name}_bias", qb, w._quant(bscales, np.zeros(len(bscales), dtype=np.int64)))
        y = w.new(pre, "q")
    else:
        kt = w.weight(f"{name}_kernel", k)
        bt = w.weight(f"{name}_bias", bias)
        y = w.new(pre, "f")
    version = 3 if domain == "q" else 1
    if depthwise:
        w.op("DEPTHWISE_CONV_2D", [src, kt, bt], [y], "DepthwiseConv2DOptions", version=version, padding=padding,
             strideW=sw, strideH=sh, depthMultiplier=1, fusedActivationFunction=w.act_code(fused),
             dilationWFactor=dw, dilationHFactor=dh)
    else:
        w.op("CONV_2D", [src, kt, bt], [y], "Conv2DOptions", version=version, padding=padding, strideW=sw,
             strideH=sh, fusedActivationFunction=w.act_code(fused), dilationWFactor=dw, dilationHFactor=dh)
    if act not in _FUSED:
        _activation(w, act, pre, out, domain, name)


def _activation(w: _Writer, act: str, x: _Value, out: _Value, domain: str, name: str) -> None:
    """A separate activation op from ``x`` to ``out``; only leaky has an int8 form here."""
    if act in ("leaky", "revleaky"):
        w.op("LEAKY_RELU", [w.get(x, domain)], [w.new(out, domain)], "LeakyReluOptions",
             version=2 if domain == "q" else 1, alpha=LEAKY_ALPHA)
        return
    src = w.get(x, "f")
    if act in _FUSED:  # a shortcut's relu/relu6 (its ADD fuses them; here for completeness)
        raise AssertionError(act)
    if act == "logistic":
        w.op("LOGISTIC", [src], [w.new(out, "f")])
    elif act == "tanh":
        w.op("TANH", [src], [w.new(out, "f")])
    elif act == "swish":
        sig = w.tensor(f"{name}_sigmoid", x.shape)
        w.op("LOGISTIC", [src], [sig])
        w.op("MUL", [src, sig], [w.new(out, "f")], "MulOptions", fusedActivationFunction=w.act_code("NONE"))
    elif act == "mish":
        # x * tanh(softplus(x)); TFLite has no softplus: log(1 + exp(x)) (torch's threshold-20 linear branch
        # differs by < 1 ulp of the tanh there, which is 1.0 in float32)
        e, sp, th = (w.tensor(f"{name}_{t}", x.shape) for t in ("exp", "softplus", "tanh"))
        one = w.const(f"{name}_one", np.array(1.0, dtype=np.float32))
        e1 = w.tensor(f"{name}_exp1", x.shape)
        w.op("EXP", [src], [e])
        w.op("ADD", [e, one], [e1], "AddOptions", fusedActivationFunction=w.act_code("NONE"))
        w.op("LOG", [e1], [sp])
        w.op("TANH", [sp], [th])
        w.op("MUL", [src, th], [w.new(out, "f")], "MulOptions", fusedActivationFunction=w.act_code("NONE"))
    else:
        raise AssertionError(act)  # plan() refuses the rest


def _maxpool(w: _Writer, spec, x: _Value, out: _Value, domain: str) -> None:
    _, h, wd, _ = x.shape
    (sy, sx), size, before = spec.strides, spec.size, spec.padding // 2
    out_h, out_w = out.shape[1:3]
    # Darknet's total padding, before = padding/2; what VALID leaves over at the end is not read
    after_h = max(0, (out_h - 1) * sy + size - h - before)
    after_w = max(0, (out_w - 1) * sx + size - wd - before)
    src = w.get(x, domain)
    params = x.qparams if domain == "q" else None
    if before or after_h or after_w:
        padded = _Value([1, h + before + after_h, wd + before + after_w, x.shape[3]], f"{out.key}_pad")
        pads = w.const(f"layer{out.key}_paddings",
                       np.array([[0, 0], [before, after_h], [before, after_w], [0, 0]], dtype=np.int32))
        if domain == "q":  # the lowest int8: below every value the tensor holds, as -inf is
            fill = w.const(f"layer{out.key}_fill", np.array(-128, dtype=np.int8), w._quant(*params))
        else:
            fill = w.const(f"layer{out.key}_fill", np.array(-np.inf, dtype=np.float32))
        p = w.new(padded, domain, params=params)
        w.op("PADV2", [src, pads, fill], [p], "PadV2Options", version=2 if domain == "q" else 1)
        src = p
    w.op("MAX_POOL_2D", [src], [w.new(out, domain, params=params)], "Pool2DOptions", version=2 if domain == "q" else 1,
         padding=w.s.Padding.VALID, strideW=sx, strideH=sy, filterWidth=size, filterHeight=size,
         fusedActivationFunction=w.act_code("NONE"))


def _upsample(w: _Writer, spec, x: _Value, out: _Value, domain: str) -> None:
    scaled = spec.scale != 1.0
    d = "f" if scaled else domain  # a scaled upsample stays float
    src = w.get(x, d)
    size = w.const(f"layer{out.key}_size", np.array(out.shape[1:3], dtype=np.int32))
    resized = _Value(out.shape, f"{out.key}_resized") if scaled else out
    w.op("RESIZE_NEAREST_NEIGHBOR", [src, size], [w.new(resized, d, params=x.qparams if d == "q" else None)],
         "ResizeNearestNeighborOptions", version=2 if d == "q" else 1, alignCorners=False, halfPixelCenters=False)
    if scaled:
        scale = w.const(f"layer{out.key}_scale", np.array(spec.scale, dtype=np.float32))
        w.op("MUL", [resized.tensors["f"], scale], [w.new(out, "f")], "MulOptions",
             fusedActivationFunction=w.act_code("NONE"))


def _route(w: _Writer, spec, ins: Sequence[_Value], out: _Value, domain: str) -> None:
    parts: list[tuple[_Value, int | None]] = []
    for v in ins:
        if spec.groups == 1:
            parts.append((v, None))
            continue
        size = v.shape[3] // spec.groups
        part = _Value(v.shape[:3] + [size], f"{out.key}_from{v.key}")
        src = w.get(v, domain)
        begin = w.const(f"{part.key}_begin", np.array([0, 0, 0, spec.group_id * size], dtype=np.int32))
        extent = w.const(f"{part.key}_size", np.array(part.shape, dtype=np.int32))
        w.op("SLICE", [src, begin, extent], [w.new(part, domain, params=v.qparams if domain == "q" else None)],
             "SliceOptions", version=2 if domain == "q" else 1)
        parts.append((part, None))
    if len(parts) == 1:  # one input: the same tensor, no op
        v = parts[0][0]
        for d, t in v.tensors.items():
            out.tensors[d] = t
        out.qparams = v.qparams
        return
    if domain == "q":
        # TFLite's int8 CONCATENATION wants one scale: the union of the inputs' ranges, inputs requantised to it
        spans = [_span(v.qparams) if v.qparams else w.ranges[v.key] for v, _ in parts]
        params = _affine(min(s[0] for s in spans), max(s[1] for s in spans))
        srcs = [w.get(v, "q", params) for v, _ in parts]
        y = w.new(out, "q", params=params)
    else:
        srcs = [w.get(v, "f") for v, _ in parts]
        y = w.new(out, "f")
    w.op("CONCATENATION", srcs, [y], "ConcatenationOptions", version=2 if domain == "q" else 1, axis=3,
         fusedActivationFunction=w.act_code("NONE"))


def _shortcut(w: _Writer, spec, ins: Sequence[_Value], out: _Value, domain: str) -> None:
    act = spec.activation
    if domain == "q" and act not in ("linear", "relu", "relu6"):
        domain = "f"
    fused = _FUSED.get(act, "NONE")
    acc = w.get(ins[0], domain)
    for n, v in enumerate(ins[1:], 1):
        last = n == len(ins) - 1
        target = out if last and act in _FUSED else _Value(out.shape, f"{out.key}_sum{n}")
        # q: a partial sum (AlexeyAB's several from= layers) takes the output's range
        y = w.new(target, domain, params=w.qparams_of(out.key) if domain == "q" else None)
        w.op("ADD", [acc, w.get(v, domain)], [y], "AddOptions", version=2 if domain == "q" else 1,
             fusedActivationFunction=w.act_code(fused if last else "NONE"))
        acc = y
    if act not in _FUSED:
        _activation(w, act, target, out, domain, f"layer{out.key}")


def _yolo(w: _Writer, spec: YoloSpec, x: _Value, out: _Value) -> int:
    """Darknet's l.output in float: logistic on x, y, objectness, classes; then scale_x_y. The
    output tensor is named ``yolo_<layer>``."""
    src = w.get(x, "f")
    per = 5 + spec.classes
    c = x.shape[3]
    name = f"yolo_{out.key}"
    s = spec.scale_x_y
    steps: list[tuple[str, np.ndarray]] = []
    if not spec.new_coords:
        logistic = np.ones((len(spec.mask), per), dtype=bool)
        logistic[:, 2:4] = False  # w, h stay raw
        steps.append(("logistic", logistic.reshape(c)))
    if s != 1.0:
        xy = np.zeros((len(spec.mask), per), dtype=bool)
        xy[:, 0:2] = True
        steps.append(("scale", xy.reshape(c)))
    if not steps:  # new_coords without scale_x_y: the conv output itself
        w.tensors[src].name = name
        return src
    for n, (what, mask) in enumerate(steps):
        last = n == len(steps) - 1
        y = w.tensor(name if last else f"{name}_{what}", x.shape)
        cond = w.const(f"{name}_{what}_mask", mask)
        t = w.tensor(f"{name}_{what}_all", x.shape)
        if what == "logistic":
            w.op("LOGISTIC", [src], [t])
        else:  # AlexeyAB's scal_add on x, y: s*x - (s-1)/2
            mul = w.tensor(f"{name}_{what}_mul", x.shape)
            w.op("MUL", [src, w.const(f"{name}_s", np.array(s, dtype=np.float32))], [mul], "MulOptions",
                 fusedActivationFunction=w.act_code("NONE"))
            w.op("ADD", [mul, w.const(f"{name}_shift", np.array(-0.5 * (s - 1), dtype=np.float32))], [t],
                 "AddOptions", fusedActivationFunction=w.act_code("NONE"))
        w.op("SELECT_V2", [cond, t, src], [y], "SelectV2Options")
        src = y
    return src


def tflite_bytes(model: DarknetModel, quantize: str = "fp32", *, ranges: dict[str, tuple[float, float]] | None = None,
                 float_layers: Iterable[int] = ()) -> bytes:
    """The TFLite flatbuffer of ``model`` (see the module docstring); ``ranges`` (int8): from
    :func:`activation_ranges`; ``float_layers`` (int8): layers kept in float besides the heads and
    the convolution before each."""
    flatbuffers, schema, _ = _import_litert()
    check_quantize(quantize)
    check_model(model)
    with eval_mode(model):
        steps = plan(model)
        if quantize == "int8" and not ranges:
            raise ExportError("an int8 TFLite export needs calibrated activation ranges (calibration photos)")
        _, lean = prepared(model, half=False)
        return _bytes(model, lean, steps, quantize, ranges, float_layers)


def _bytes(model: DarknetModel, lean: DarknetModel, steps: Sequence[_Step], quantize: str,
           ranges: dict[str, tuple[float, float]] | None, float_layers: Iterable[int]) -> bytes:
    flatbuffers, schema, _ = _import_litert()
    w = _Writer(flatbuffers, schema, quantize, ranges)
    keep = set(default_float_layers(model)) | {int(i) for i in float_layers}
    inputs, outputs = _emit(w, model, lean, steps, keep)
    return w.finish(inputs, outputs, f"darknet-py {os.path.basename(model.netdef.path or 'network')} ({quantize})")


def int8_candidates(model: DarknetModel, steps: Sequence[_Step] | None = None) -> list[int]:
    """The layers an int8 file may hold in int8 and the sensitivity pass measures: convolutions
    with an int8 activation, the heads' excepted. Layers without weights follow their inputs."""
    steps = steps or plan(model)
    keep = set(default_float_layers(model))
    return [s.index for s in steps if s.kind == "conv" and s.index not in keep
            and s.spec.activation in _INT8_ACTIVATIONS]


def default_float_layers(model: DarknetModel) -> list[int]:
    """int8: the layers kept in float whatever is asked: each [yolo] head and the layer before it
    (the convolution whose logits the head turns into boxes and scores)."""
    out = []
    for i in model.heads:
        out += [model.inputs[i][0], i]
    return sorted(set(out))


def check_quantize(quantize: str) -> str:
    if quantize not in QUANTIZE_MODES:
        raise ExportError(f"quantize={quantize!r}: the {BACKEND} export writes {', '.join(QUANTIZE_MODES)}")
    return quantize


# ---------------------------------------------------------------------------------------- running it

def tflite_runner(path, *, num_threads: int | None = None) -> Runner:
    """A runner (see :mod:`darknet_py.export.verify`) of the TFLite file at ``path`` on LiteRT's
    interpreter: NCHW float32 batch in, the heads NCHW out (the file is NHWC; the transposes are
    here, outside the model), one photo per invoke."""
    return _runner(os.fspath(path), None, num_threads)


def _runner(path: str | None, content: bytes | None, num_threads: int | None) -> Runner:
    """:func:`tflite_runner` of a file, or of the file's bytes (``content``: the sensitivity pass)."""
    _, _, interpreter_cls = _import_litert()
    path = path or "the TFLite model"
    threads = num_threads or max(1, torch.get_num_threads())
    try:
        interp = (interpreter_cls(model_content=content, num_threads=threads) if content is not None
                  else interpreter_cls(model_path=path, num_threads=threads))
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ExportError(f"{path}: LiteRT cannot load the file: {e}") from e
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()

    def run(x: np.ndarray) -> list[np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[2:]) + (x.shape[1],) != tuple(inp["shape"][1:]):
            raise ExportError(f"{path}: expected an N x {inp['shape'][3]} x {inp['shape'][1]} x {inp['shape'][2]} "
                              f"batch, got {tuple(x.shape)}")
        got: list[list[np.ndarray]] = [[] for _ in outs]
        for n in range(x.shape[0]):
            interp.set_tensor(inp["index"], np.ascontiguousarray(x[n:n + 1].transpose(0, 2, 3, 1)))
            interp.invoke()
            for k, o in enumerate(outs):
                got[k].append(interp.get_tensor(o["index"]).transpose(0, 3, 1, 2))
        return [np.concatenate(g, 0) for g in got]

    run.output_names = [o["name"] for o in outs]  # type: ignore[attr-defined]
    return run


# ---------------------------------------------------------------------------------------- export

@dataclass
class TFLiteReport(ExportReport):
    """An :class:`~darknet_py.export.check.ExportReport` with what the TFLite check measured."""

    quantize: str = "fp32"
    float_layers: list[int] = field(default_factory=list)  # int8: layers kept in float
    verification: Verification | None = None
    sensitivity: list[LayerSensitivity] = field(default_factory=list)  # int8: each layer alone int8
    min_layer_db: float = DEFAULT_MIN_LAYER_DB
    heads_sqnr_db: float = float("nan")  # int8: the whole file against float, on the sensitivity photos

    def lines(self) -> list[str]:
        what = {"fp32": "float32", "fp16": "float16 weights, float32 compute", "int8": "int8, float input/output"}
        out = [f"wrote {self.path} (TFLite, {what[self.quantize]}, {self.file_bytes / 1e6:.1f} MB)"]
        for kind, items in (("input ", self.inputs), ("output", self.outputs)):
            for name, shape in items:
                out.append(f"  {kind} {name}: {' x '.join(str(d) for d in shape)} (NHWC)")
        if self.quantize == "int8":
            out.append(f"  kept in float: layers {', '.join(map(str, self.float_layers))}")
            if self.sensitivity:
                worst = min(self.sensitivity, key=lambda s: s.sqnr_db)
                out.append(f"  sensitivity (each layer alone int8, heads SQNR): lowest {worst.sqnr_db:.1f} dB at "
                           f"layer {worst.layer}; threshold {self.min_layer_db:g} dB")
            out.append(f"  whole int8 file: heads SQNR {self.heads_sqnr_db:.1f} dB on the calibration photos")
        out += [f"  {note}" for note in self.notes]
        out.append(f"  largest difference from {self.reference} on {self.sample_name} ({self.runtime}): "
                   f"{self.max_abs_diff:.3g} absolute, {self.max_rel_diff:.3g} relative (tolerance {self.tolerance:g})")
        if self.verification is not None:
            t = self.verification.total
            iou = INT8_MATCH_IOU if self.quantize == "int8" else MATCH_IOU
            out.append(f"  detections at thresh {self.verification.thresh:g}: {t.matched} of {t.reference_count} "
                       f"matched (same class, IoU >= {iou:g}), {t.extra} extra")
        return out


def _calibration(model, calibration, calib_images: int) -> list[np.ndarray]:
    if calibration is None:
        raise ExportError(f"an int8 {BACKEND} export needs calibration photos: calibration=<a .data file> "
                          "(its train list) or float32 NCHW batches")
    if isinstance(calibration, (str, os.PathLike)):
        from .calibrate import calibration_batches
        return calibration_batches(model, calibration, calib_images)
    return [np.asarray(b, dtype=np.float32) for b in calibration]


def export_tflite(model: DarknetModel, path, *, quantize: str = "fp32", calibration=None,
                  calib_images: int | None = None, float_layers: Iterable[int] = (), sensitivity: bool = True,
                  sensitivity_images: int = DEFAULT_SENSITIVITY_IMAGES, min_layer_db: float = DEFAULT_MIN_LAYER_DB,
                  sample: np.ndarray | None = None, photos: Sequence[tuple[str, np.ndarray]] | None = None,
                  num_threads: int | None = None) -> TFLiteReport:
    """Write ``model`` as TFLite at ``path`` and check it with LiteRT; see the module docstring.

    ``quantize``: ``"fp32"``, ``"fp16"`` (float16 weights) or ``"int8"``; ``calibration`` (int8):
    a Darknet .data file whose train (else valid) list gives ``calib_images`` photos
    (:func:`~darknet_py.export.calibrate.calibration_batches`), or float32 NCHW batches;
    ``sensitivity`` (int8): each convolution int8 alone on ``sensitivity_images`` of the calibration
    batches, kept float below ``min_layer_db`` (darknet_py.export.sensitivity, as the ONNX int8
    export); ``float_layers`` (int8): layers kept in float besides those and the heads (with the
    convolution before each); ``photos``: (name, HxWx3 uint8 RGB) photos for the check (default:
    ``sample``, else a synthetic picture). The check
    (:func:`~darknet_py.export.verify.verify_runner`) requires, for fp32, heads within RTOL_FP32 of
    PyTorch's and every detection matched; fp16, heads within RTOL_FP16; int8, heads within
    RTOL_INT8 and MIN_MATCHED_INT8 of the detections (same class, IoU >= INT8_MATCH_IOU).
    """
    _import_litert()
    check_quantize(quantize)
    check_model(model)
    path = os.fspath(path)
    with eval_mode(model):
        steps = plan(model)  # refusals first: nothing read, calibrated or written before them
        _, lean = prepared(model, half=False)
        ranges, asked, scores, whole_db = None, sorted({int(i) for i in float_layers}), [], float("nan")
        keep = asked
        if quantize == "int8":
            from .calibrate import DEFAULT_CALIB_IMAGES, listed_photos, load_photos
            batches = _calibration(model, calibration, calib_images or DEFAULT_CALIB_IMAGES)
            ranges = activation_ranges(model, batches, steps)
            probe = probe_batches(batches, sensitivity_images)
            with torch.inference_mode():
                ref = [[h.float().numpy() for h in lean(torch.from_numpy(x))] for x in probe]
            if sensitivity:
                candidates = [i for i in int8_candidates(model, steps) if i not in asked]

                def alone(layer: int) -> Runner:
                    others = [i for i in candidates if i != layer]
                    return _runner(None, _bytes(model, lean, steps, "int8", ranges, others), num_threads)

                scores = sensitivity_pass(candidates, alone, probe, ref, min_layer_db)
            keep = float_choice(scores, asked)
            if photos is None and sample is None and isinstance(calibration, (str, os.PathLike)):
                # int8 is judged on detections: real photos (a few of the calibration list), not a synthetic picture
                photos = load_photos(listed_photos(calibration, limit=INT8_CHECK_PHOTOS))
        data = _bytes(model, lean, steps, quantize, ranges, keep)
        with writing(path):
            write_bytes(path, data)
        del data
        runner = tflite_runner(path, num_threads=num_threads)
        if quantize == "int8":
            whole_db = heads_sqnr(run_all(runner, probe), ref)
        if photos is None:
            photos = [("the sample image" if sample is not None else "a synthetic picture",
                       synthetic_image() if sample is None else np.asarray(sample))]
        sample_input(model, photos[0][1])  # refuses a photo that is not HxWx3 uint8
        checked = verify_runner(model, runner, photos, iou=INT8_MATCH_IOU if quantize == "int8" else MATCH_IOU)
    report = _judge(model, path, quantize, checked, photos, keep)
    report.sensitivity, report.min_layer_db, report.heads_sqnr_db = scores, float(min_layer_db), whole_db
    return report


def _judge(model, path, quantize, checked: Verification, photos, float_layers) -> TFLiteReport:
    c, h, w = model.netdef.input_shape
    outputs = [(f"yolo_{i}", _nhwc(model.netdef.shapes[i])) for i in model.heads]
    tol = {"fp32": RTOL_FP32, "fp16": RTOL_FP16, "int8": RTOL_INT8}[quantize]
    try:
        from ai_edge_litert import __version__ as litert_version
    except ImportError:
        litert_version = "?"
    keep = sorted(set(default_float_layers(model)) | {int(i) for i in float_layers}) if quantize == "int8" else []
    report = TFLiteReport(path, "tflite", None, [(INPUT_NAME, [1, h, w, c])], outputs, os.path.getsize(path),
                          checked.max_abs_diff, checked.max_rel_diff, "int8" if quantize == "int8" else "float32",
                          [1], f"LiteRT {litert_version}", "PyTorch (float32)", tol,
                          sample_name=", ".join(n for n, _ in photos) if len(photos) <= 3 else f"{len(photos)} photos",
                          quantize=quantize, float_layers=keep, verification=checked)
    t = checked.total
    problems = []
    if not checked.max_rel_diff <= tol:
        problems.append(f"its heads differ from PyTorch's by {checked.max_rel_diff:.3g} relative "
                        f"({checked.max_abs_diff:.3g} absolute), above the tolerance {tol:g}")
    if quantize == "fp32" and (t.missing or t.extra):
        problems.append(f"{t.missing} of PyTorch's {t.reference_count} detections missing, {t.extra} extra")
    if quantize == "int8" and t.matched_fraction < MIN_MATCHED_INT8:
        problems.append(f"only {t.matched} of PyTorch's {t.reference_count} detections matched (same class, "
                        f"IoU >= {INT8_MATCH_IOU:g})")
    if problems:
        raise ExportError(f"{path}: the {BACKEND} file fails its check: {'; '.join(problems)}; the file was left in "
                          "place for inspection")
    return report


def runner_model(model: DarknetModel, runner: Runner) -> DarknetModel:
    """``model`` with its forward replaced by ``runner`` (NCHW in, NCHW heads out), for darknet_py's
    own evaluation (``validate.detector_map(..., model=runner_model(model, runner))``): the file's
    heads through the same post-process and AP as PyTorch's. Shares everything else with
    ``model``, which is left as it was."""
    import copy

    wrapped = copy.copy(model)

    def forward(x: torch.Tensor, raw: bool = False) -> list[torch.Tensor]:
        if raw:
            raise ExportError("a converted file gives the heads' outputs, not their inputs (raw=True)")
        heads = runner(x.detach().float().cpu().numpy())
        return [torch.from_numpy(np.ascontiguousarray(a)).to(x.device) for a in heads]

    wrapped.forward = forward  # type: ignore[method-assign]
    return wrapped


__all__ = ["BACKEND", "INT8_CHECK_PHOTOS", "MIN_MATCHED_INT8", "QUANTIZE_MODES", "RTOL_INT8", "TFLiteReport",
           "activation_ranges", "check_quantize", "default_float_layers", "export_tflite", "int8_candidates", "plan",
           "runner_model", "tflite_bytes", "tflite_runner"]
