"""int8 ONNX: static quantisation of darknet_py's ONNX export, checked for what it costs.

Steps of :func:`export_onnx_int8`, all in a private temporary folder until the last one:

1. The float32 export (darknet_py.export.onnx, dynamic batch), pre-processed as onnxruntime's
   quantiser asks (``quant_pre_process``: shape inference, constant folding).
2. Darknet's padded [maxpool] starts from -FLT_MAX: the export pads with -inf before an unpadded
   MaxPool, which no int8 scale can hold (and which breaks the calibrators' histograms); that Pad
   is folded into the MaxPool's own ``pads`` (ONNX MaxPool never picks a padded value: exact).
3. Calibration on photos of a ``.data`` file (darknet_py.export.calibrate, prepared exactly as
   detection prepares them): activation ranges by min/max over the photos (``calibration``),
   weights per output channel, QDQ format, int8 activations and weights.
4. What stays float: each head (the conv feeding a [yolo] layer, and the [yolo] layer's own
   sigmoid and selection after it: 8-bit objectness would round every score to 1/255, at the
   .005 threshold of ``detector map``), and every layer the sensitivity pass finds too lossy.
5. The sensitivity pass (darknet_py.export.sensitivity, shared with the TFLite export): on
   ``sensitivity_images`` calibration photos, each other layer is
   quantised *alone* (the rest float) and the signal-to-quantisation-noise ratio of the heads
   against the float graph is measured (``10 log10(sum ref^2 / sum (q - ref)^2)``, all heads);
   a layer below ``min_layer_db`` stays float.
6. The quantised file is run by onnxruntime and checked with darknet_py.export.verify (its heads
   through darknet_py's decode and post-process, detections matched against PyTorch's at
   ``thresh``); below ``min_matched`` it is an ExportError. Only then is the file written
   (darknet_py.files.write_bytes): a failed export leaves nothing at ``path``.

Why 25 dB and min/max (tools/measure_int8.py; shapes: mAP@0.5 on 100 held-out generated photos,
93.34 in float32; yolov3-tiny: PyTorch's 17 detections at .5 on the 7 sample photos, same class
and IoU >= .9). The sensitive layers are the first, full-resolution convs (yolov3-tiny alone:
layer 0 18 dB, layer 2 13 dB, the rest 23..37 dB; the whole int8 graph with every layer int8: 10 dB).

  calibration, threshold   shapes: float layers, mAP     yolov3-tiny: float layers, matched
  min/max, 20 dB           4              92.54 (-0.80)  0 2           15/17
  min/max, 25 dB           0 2 4 6 8 21   93.28 (-0.05)  0 2 4         16/17 (7 calibrations
                                                                       without the photo: 16/17)
  min/max, 30 dB           -                             0 2 4 .. 12   15/17
  moving average, 20 dB    none           93.01 (-0.33)  0 2           13/17
  percentile 99.999, 20 dB none           93.77 (+0.43)  0 2           11/17
  (entropy gave min/max's ranges on both)

On 17 detections near the .5 threshold one detection is 6 points; past 25 dB the detections lost
are the ones whose score sits within the remaining noise of the threshold. Each layer kept float
costs speed in onnxruntime's CPU kernels (one thread, this machine: yolov3-tiny 53.5 ms per photo
in float32, 29.6 ms in int8 with layers 0 2 4 float; the shapes model, six layers float, 11.9
and 10.9 ms): ``min_layer_db`` trades one for the other.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checks import check_count, check_range
from ..defaults import DEFAULT_NMS, DEFAULT_THRESH
from ..errors import DataError, ExportError, OutputError
from ..files import check_target, write_bytes
from ..graph import DarknetModel
from .calibrate import DEFAULT_CALIB_IMAGES, calibration_batches, listed_photos, load_photos
from .check import ExportReport, check_export_options, writing
from .graphs import INPUT_NAME, check_model, eval_mode
from .onnx import OPSET, _onnx_shapes, export_onnx
from .sensitivity import (DEFAULT_MIN_LAYER_DB, DEFAULT_SENSITIVITY_IMAGES, LayerSensitivity, float_choice, heads_sqnr,
                          probe_batches, run_all, sensitivity_pass)
from .verify import INT8_MATCH_IOU, Verification, verify_runner

# Activation ranges and the sensitivity threshold: see the module docstring's table.
DEFAULT_CALIBRATION = "minmax"
DEFAULT_VERIFY_IMAGES = 8
# A file that keeps fewer of PyTorch's detections than this is refused.
DEFAULT_MIN_MATCHED = 0.5

EXTRA = "pip install darknet-py-yolov3[export]"


@dataclass
class Int8Report(ExportReport):
    """ExportReport plus what quantisation kept, measured and lost."""

    calib_images: int = 0
    calibration: str = ""
    head_layers: list[int] = field(default_factory=list)
    float_layers: list[int] = field(default_factory=list)     # heads excluded: the sensitive ones and the asked ones
    sensitivity: list[LayerSensitivity] = field(default_factory=list)
    min_layer_db: float = DEFAULT_MIN_LAYER_DB
    heads_sqnr_db: float = math.nan                             # the whole int8 graph against float, calibration photos
    verification: Verification | None = None
    matched: int = 0
    missing: int = 0
    extra: int = 0
    match_iou: float = INT8_MATCH_IOU
    map_before: float | None = None                            # mAP@0.5 of PyTorch and of the file (evaluate=True)
    map_after: float | None = None
    coco_ap_before: float | None = None
    coco_ap_after: float | None = None
    evaluated_images: int = 0

    @property
    def matched_fraction(self) -> float:
        n = self.matched + self.missing
        return 1.0 if n == 0 and self.extra == 0 else (self.matched / n if n else 0.0)

    def lines(self) -> list[str]:
        out = [f"wrote {self.path} (ONNX, opset {self.opset}, int8 QDQ, {self.file_bytes / 1e6:.1f} MB)"]
        for kind, items in (("input ", self.inputs), ("output", self.outputs)):
            for name, shape in items:
                out.append(f"  {kind} {name}: {' x '.join(str(d) for d in shape)}")
        out.append(f"  calibrated on {self.calib_images} photos ({self.calibration})")
        out.append(f"  float: heads (layers {', '.join(map(str, self.head_layers))})"
                   + (f"; sensitive or asked: layers {', '.join(map(str, self.float_layers))}" if self.float_layers
                      else "; every other layer int8"))
        if self.sensitivity:
            worst = min(self.sensitivity, key=lambda s: s.sqnr_db)
            out.append(f"  sensitivity (each layer alone int8, heads SQNR): lowest {worst.sqnr_db:.1f} dB at layer "
                       f"{worst.layer}; threshold {self.min_layer_db:g} dB")
        out.append(f"  whole int8 graph: heads SQNR {self.heads_sqnr_db:.1f} dB on the calibration photos")
        n = len(self.verification.photos) if self.verification else 0
        out.append(f"  {self.runtime} on {n} photos: {self.matched} of {self.matched + self.missing} PyTorch "
                   f"detections matched ({100 * self.matched_fraction:.1f} %, IoU >= {self.match_iou:g}), "
                   f"{self.extra} extra; largest head difference {self.max_abs_diff:.3g}")
        before, after = self.map_before, self.map_after
        if before is not None and after is not None:
            out.append(f"  mAP@0.5 on {self.evaluated_images} valid photos: PyTorch {100 * before:.2f} %, "
                       f"int8 {100 * after:.2f} % ({100 * (after - before):+.2f} points); "
                       f"AP@[.5:.95] {100 * (self.coco_ap_before or math.nan):.2f} % -> "
                       f"{100 * (self.coco_ap_after or math.nan):.2f} %")
        out += [f"  {note}" for note in self.notes]
        return out


# --------------------------------------------------------------------------- onnxruntime plumbing


def _import_quantization():
    try:
        import onnx
        import onnxruntime
        import onnxruntime.quantization as quantization
    except ImportError as e:
        raise ExportError(f"int8 ONNX export needs the onnx and onnxruntime packages ({e}); {EXTRA}") from e
    return onnx, onnxruntime, quantization


@contextlib.contextmanager
def _quiet():
    """onnxruntime's quantiser logs advice on the root logger at WARNING for every call, and its
    histogram calibrators print their progress."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _session(ort, path: str):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise ExportError(f"{path}: onnxruntime cannot load the int8 export: {e}") from e


def session_runner(sess):
    """An onnxruntime session as a darknet_py.export.verify runner."""
    names = [o.name for o in sess.get_outputs()]

    def run(x: np.ndarray) -> list[np.ndarray]:
        return sess.run(names, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
    return run


class _Reader:
    """quantize_static's CalibrationDataReader over prepared batches (restartable)."""

    def __init__(self, batches: Sequence[np.ndarray]):
        self.batches = batches
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {INPUT_NAME: self.batches[self.i - 1]}

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


# --------------------------------------------------------------------------- the graph


def fold_neg_inf_pads(onnx, proto) -> int:
    """Pad(x, value=-inf) -> MaxPool  ==>  MaxPool(x, pads += the Pad's); returns how many. Darknet's
    padded maxpool starts each window at -FLT_MAX; ONNX MaxPool ignores its padding the same way."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    consumers: dict[str, list] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    folded = []
    for n in proto.graph.node:
        if n.op_type != "Pad" or len(n.input) < 3 or n.input[1] not in inits or n.input[2] not in inits:
            continue
        mode = next((a.s.decode() for a in n.attribute if a.name == "mode"), "constant")
        value = numpy_helper.to_array(inits[n.input[2]])
        pads = numpy_helper.to_array(inits[n.input[1]]).astype(np.int64).ravel()
        users = consumers.get(n.output[0], [])
        rank = len(pads) // 2
        if (mode != "constant" or value.size != 1 or not np.isneginf(value).all() or len(users) != 1
                or users[0].op_type != "MaxPool" or pads[:2].any() or pads[rank:rank + 2].any() or (pads < 0).any()
                or n.output[0] in {o.name for o in proto.graph.output}):
            continue
        pool = users[0]
        spatial = rank - 2
        old = next((list(a.ints) for a in pool.attribute if a.name == "pads"), [0] * (2 * spatial))
        new = [int(a) + int(b) for a, b in zip(old, [*pads[2:rank], *pads[rank + 2:]])]
        if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in pool.attribute):
            continue
        kept = [a for a in pool.attribute if a.name != "pads"]
        del pool.attribute[:]
        pool.attribute.extend(kept + [onnx.helper.make_attribute("pads", new)])
        pool.input[0] = n.input[0]
        folded.append(n)
    for n in folded:
        proto.graph.node.remove(n)
    return len(folded)


_LAYER_RE = re.compile(r"(?:^|/)layers\.(\d+)/")


def layer_of(node_name: str) -> int | None:
    """The Darknet layer index in a node name of darknet_py's export ('/model/layers.15/Conv')."""
    m = _LAYER_RE.search(node_name)
    return int(m.group(1)) if m else None


def head_nodes(proto) -> list[str]:
    """The conv feeding each output (walking back through the [yolo] layer's own nodes) and every
    node after those convs."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    convs: list = []
    stack = [o.name for o in proto.graph.output]
    seen = set()
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            convs.append(n)
        else:
            stack.extend(n.input)
    consumers: dict[str, list] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = {n.name for n in convs}
    stack = [o for n in convs for o in n.output]
    while stack:
        for n in consumers.get(stack.pop(), []):
            if n.name not in out:
                out.add(n.name)
                stack.extend(n.output)
    return [n.name for n in proto.graph.node if n.name in out]


def layer_groups(proto, skip: set[str]) -> dict[int, list[str]]:
    """Nodes that hold weights to quantise (Conv and the like), with the rest of their Darknet
    layer (its activation), by layer index; nodes in ``skip`` left out."""
    by_layer: dict[int, list[str]] = {}
    for n in proto.graph.node:
        layer = layer_of(n.name)
        if n.name not in skip and layer is not None:
            by_layer.setdefault(layer, []).append(n.name)
    ops = {n.name: n.op_type for n in proto.graph.node}
    return {k: v for k, v in by_layer.items()
            if any(ops[name] in ("Conv", "ConvTranspose", "MatMul", "Gemm") for name in v)}


# --------------------------------------------------------------------------- the export


def lean_onnx(onnx, quantization, model, folder: str, opset: int = OPSET) -> tuple[str, ExportReport, int]:
    """darknet_py's float32 ONNX export (dynamic batch, checked against PyTorch) in ``folder``,
    constant-folded by onnxruntime's quantisation pre-processing, with each -inf Pad folded into
    its MaxPool (:func:`fold_neg_inf_pads`): (path, the export's report, how many Pads were folded).
    The graph int8 quantisers (onnxruntime's, TensorRT's calibrator) start from."""
    fp32 = os.path.join(folder, "fp32.onnx")
    base = export_onnx(model, fp32, dynamic=True, opset=opset)
    pre = os.path.join(folder, "lean.onnx")
    try:
        quantization.quant_pre_process(fp32, pre)
    except Exception as e:  # its shape inference and optimiser raise many types
        raise ExportError(f"onnxruntime's quantisation pre-processing failed on the export: {e}") from e
    proto = onnx.load(pre)
    folded = fold_neg_inf_pads(onnx, proto)
    onnx.save(proto, pre)
    return pre, base, folded


CALIBRATIONS = ("minmax", "moving-average", "entropy", "percentile")


def check_output(path: str) -> None:
    """The output, checked before any work: a file we may replace (darknet_py.files.check_target:
    not a folder, device or input of the run) in a folder that exists."""
    try:
        check_target(path)
    except OutputError as e:
        raise ExportError(str(e)) from e
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ExportError(f"{path}: cannot write the export: the folder {folder} does not exist")


def _check_calibration(method) -> tuple[str, float | None]:
    name, value = (method, None) if isinstance(method, str) else tuple(method)
    if name not in CALIBRATIONS:
        raise ExportError(f"calibration must be one of {', '.join(CALIBRATIONS)} (or ('percentile', p)); "
                          f"got {method!r}")
    if name == "percentile":
        value = 99.999 if value is None else float(value)
        if not 50 < value <= 100:
            raise ExportError(f"the calibration percentile must be in (50, 100], got {value:g}")
    return name, value


def export_onnx_int8(model: DarknetModel, path, data, calib_images: int = DEFAULT_CALIB_IMAGES, *,
                     calibration=DEFAULT_CALIBRATION, sensitivity: bool = True,
                     sensitivity_images: int = DEFAULT_SENSITIVITY_IMAGES, min_layer_db: float = DEFAULT_MIN_LAYER_DB,
                     keep_float: Sequence[int] = (), photos=None, verify_images: int = DEFAULT_VERIFY_IMAGES,
                     thresh: float = DEFAULT_THRESH, nms: float = DEFAULT_NMS, match_iou: float = INT8_MATCH_IOU,
                     min_matched: float = DEFAULT_MIN_MATCHED,
                     evaluate: bool = False, evaluate_limit: int | None = None, opset: int = OPSET) -> Int8Report:
    """Write ``model`` as an int8 (QDQ) ONNX file at ``path``; see the module docstring.

    ``data``: a Darknet ``.data`` file; ``calib_images`` photos of its train list (else valid)
    calibrate. ``calibration``: 'minmax', 'entropy' or ('percentile', p). ``sensitivity``: run the
    per-layer pass on ``sensitivity_images`` of those photos and keep float every layer whose heads
    SQNR alone is below ``min_layer_db``; ``keep_float``: Darknet layer indices kept float anyway.
    ``photos``: the photos the file is verified on (paths or (name, HxWx3 uint8 RGB)); default
    ``verify_images`` of the valid list (else train). ``min_matched``: the share of PyTorch's
    detections at ``thresh``/``nms`` the file must keep (same class, IoU >= ``match_iou``).
    ``evaluate``: also mAP before and after (darknet_py.export.accuracy) on the valid list
    (``evaluate_limit`` photos of it).
    """
    onnx, ort, quantization = _import_quantization()
    check_model(model)
    check_export_options(opset=opset)
    check_count("calib_images", calib_images, 1)
    check_count("sensitivity_images", sensitivity_images, 1)
    check_count("verify_images", verify_images, 1)
    check_count("evaluate_limit", evaluate_limit, 1)
    check_range("min_matched", min_matched, 0.0, 1.0)
    check_range("match_iou", match_iou, 0.0, 1.0)
    method = _check_calibration(calibration)
    path = os.fspath(path)
    check_output(path)
    with eval_mode(model):
        # the photos first: a bad list is an error before any work
        batches = calibration_batches(model, data, calib_images)
        if photos is None:
            try:
                verify_paths = listed_photos(data, "valid", verify_images)
            except DataError:  # no valid list: the train list's photos
                verify_paths = listed_photos(data, None, verify_images)
            photos = load_photos(verify_paths)
        else:
            photos = [p if isinstance(p, tuple) else load_photos([p])[0] for p in photos]
        with tempfile.TemporaryDirectory(prefix="darknet-py-int8.") as tmp, _quiet():
            report = _export(onnx, ort, quantization, model, path, tmp, batches, photos, method, sensitivity,
                             sensitivity_images, float(min_layer_db), list(keep_float), thresh, nms, match_iou,
                             min_matched, opset)
            if evaluate:
                from .accuracy import compare_accuracy
                cmp = compare_accuracy(model, session_runner(_session(ort, os.path.join(tmp, "int8.onnx"))), data,
                                       limit=evaluate_limit)
                report.map_before, report.map_after = cmp.before.map50, cmp.after.map50
                report.coco_ap_before, report.coco_ap_after = cmp.before.coco_ap, cmp.after.coco_ap
                report.evaluated_images = cmp.after.images
            with open(os.path.join(tmp, "int8.onnx"), "rb") as f, writing(path):
                write_bytes(path, f.read())
    return report


def _quantize(quantization, src: str, dst: str, batches, cache: str, method, exclude, only=None) -> None:
    name, pct = method
    cm = quantization.CalibrationMethod
    calibrate = {"minmax": cm.MinMax, "moving-average": cm.MinMax, "entropy": cm.Entropy, "percentile": cm.Percentile}
    extra: dict = {}
    if name == "moving-average":  # per photo min/max, averaged: one odd photo does not set the range
        extra = {"CalibMovingAverage": True}
    elif name == "percentile":
        # the percentile is taken of |x|: the range is (-p-th, p-th), stated rather than left to the
        # calibrator's default (a one-sided range of |x| would clip a leaky conv's negative side)
        extra = {"CalibPercentile": pct, "CalibTensorRangeSymmetric": True}
    try:
        quantization.quantize_static(
            src, dst, _Reader(batches), quant_format=quantization.QuantFormat.QDQ, per_channel=True,
            activation_type=quantization.QuantType.QInt8, weight_type=quantization.QuantType.QInt8,
            nodes_to_exclude=list(exclude), nodes_to_quantize=list(only) if only else None,
            calibrate_method=calibrate[name], extra_options=extra, calibration_cache_path=cache)
    except (ValueError, RuntimeError, KeyError) as e:
        raise ExportError(f"onnxruntime's quantiser failed on the export: {e}") from e


def _export(onnx, ort, quantization, model, path, tmp, batches, photos, method, sensitivity, sensitivity_images,
            min_layer_db, keep_float, thresh, nms, match_iou, min_matched, opset) -> Int8Report:
    pre, base, folded = lean_onnx(onnx, quantization, model, tmp, opset)
    proto = onnx.load(pre)
    heads = head_nodes(proto)
    head_layers = sorted({i for i in map(layer_of, heads) if i is not None})
    groups = layer_groups(proto, set(heads))
    unknown = sorted(set(keep_float) - set(groups) - set(head_layers))
    if unknown:
        raise ExportError(f"keep_float: layer {unknown[0]} has no weights to quantise in this network "
                          f"(quantisable layers: {', '.join(map(str, sorted(groups)))})")
    cache = os.path.join(tmp, "ranges.json")
    probe = probe_batches(batches, sensitivity_images)
    ref = run_all(session_runner(_session(ort, pre)), probe)
    scores: list[LayerSensitivity] = []
    if sensitivity:
        solo = os.path.join(tmp, "solo.onnx")

        def alone(layer: int):
            _quantize(quantization, pre, solo, batches, cache, method, heads, only=groups[layer])
            return session_runner(_session(ort, solo))

        scores = sensitivity_pass(groups, alone, probe, ref, min_layer_db)
        for s in scores:
            s.nodes = list(groups[s.layer])
    float_layers = float_choice(scores, keep_float)
    exclude = list(heads) + [n for layer in float_layers for n in groups.get(layer, [])]
    out = os.path.join(tmp, "int8.onnx")
    _quantize(quantization, pre, out, batches, cache, method, exclude)
    try:
        onnx.checker.check_model(out, full_check=True)
    except Exception as e:
        raise ExportError(f"onnx.checker rejects the int8 export: {e}") from e
    sess = _session(ort, out)
    whole_db = heads_sqnr(run_all(session_runner(sess), probe), ref)
    verification = verify_runner(model, session_runner(sess), photos, thresh=thresh, nms=nms, iou=match_iou)
    total = verification.total
    q = onnx.load(out)
    name, pct = method
    report = Int8Report(
        path, "onnx", base.opset, _onnx_shapes(q.graph.input), _onnx_shapes(q.graph.output), os.path.getsize(out),
        verification.max_abs_diff, verification.max_rel_diff, "int8", [1], f"onnxruntime {ort.__version__} "
        "CPUExecutionProvider", "PyTorch (float32)", math.nan, calib_images=sum(len(b) for b in batches),
        calibration=f"{name} {pct:g}" if pct is not None else name, head_layers=head_layers, float_layers=float_layers,
        sensitivity=scores, min_layer_db=min_layer_db, heads_sqnr_db=whole_db, verification=verification,
        matched=total.matched, missing=total.missing, extra=total.extra, match_iou=match_iou)
    if folded:
        report.notes.append(f"{folded} padded maxpool(s): the -inf Pad folded into the MaxPool (exact)")
    if report.matched_fraction < min_matched:
        raise ExportError(f"{path}: the int8 file keeps {100 * report.matched_fraction:.1f} % of PyTorch's detections "
                          f"on {len(photos)} photos (at least {100 * min_matched:g} % asked); nothing was written. "
                          "Calibrate on photos like the ones it will see, or keep more layers float (keep_float=, "
                          "min_layer_db=)")
    return report


__all__ = ["CALIBRATIONS", "DEFAULT_CALIBRATION", "DEFAULT_MIN_LAYER_DB", "INT8_MATCH_IOU", "Int8Report",
           "LayerSensitivity", "export_onnx_int8", "fold_neg_inf_pads", "head_nodes", "heads_sqnr", "layer_of",
           "lean_onnx", "session_runner"]
