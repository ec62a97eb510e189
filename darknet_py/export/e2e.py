"""End-to-end exported graphs: Darknet's thresholds and per-class NMS (and optionally its letterbox)
inside the file, with the fixed outputs TensorRT's EfficientNMS and OpenVINO use.

Outputs (N photos, K = ``max_det``), padded with zeros past ``num_dets``, best score first (ties
in (box, class) order, as darknet_py reports them):

- ``num_dets`` (N, 1) int32;
- ``det_boxes`` (N, K, 4) float32 x1, y1, x2, y2: network-input pixels, unclipped (``images``
  input), or photo pixels clipped as Darknet draws them (``letterbox=True``);
- ``det_scores`` (N, K) float32 objectness * p(class);
- ``det_classes`` (N, K) int32.

What runs in the graph: the network, darknet_py's one decode (``layers.head.HeadsDecoder``,
through :class:`~darknet_py.export.graphs.DecodedHeads`), Darknet's two strict thresholds
(``postprocess.thresholds``: objectness > thresh, then obj * p > thresh), per-class NMS, the top K.

- ONNX: NonMaxSuppression (center_point_box=1, per class, max_output_boxes_per_class = every row,
  so no per-class cap). Scores Darknet's thresholds removed are set to -1 and score_threshold is
  0, so the operator's own score comparison (onnxruntime: strict ``>``; other runtimes may use
  ``>=``) cannot change which entries enter it.
- TorchScript: darknet_py's own ``do_nms_sort`` (``postprocess.nms``: ``_pairs_in_blocks`` and
  ``suppress_on_pairs``, compiled by torch.jit.script, so ``torch.jit.load`` needs no
  darknet_py): plain PyTorch has no NMS operator without torchvision, and carrying the same code
  makes the file give what ``darknet_py.detect`` gives, [yolo] nms_kind (DIoU) included.

Where ONNX NonMaxSuppression can differ from ``do_nms_sort`` (measured in the tests and the
export's own check; onnxruntime 1.32 checked by hand: IoU compared with ``>``, score with ``>``,
ties kept in index order):

- IoU at the threshold: both suppress on ``IoU > nms``. Darknet's box_iou takes the areas as
  ``w * h``; onnxruntime recomputes them from the corners ``(cx + w/2) - (cx - w/2)``: the IoU
  may differ in the last float bits, so a pair within ~1e-7 of the threshold can fall either way;
- score order: Darknet's qsort leaves ties unspecified, darknet_py keeps candidate order, the
  operator keeps index order (the same rows, so the same order);
- frame: Darknet measures the overlaps on photo-relative boxes (``correct_yolo_boxes`` before its
  NMS). With ``letterbox=True`` the graph does the same. The plain graph has no photo and
  measures them on network-relative boxes: the correction is an affine map per axis, and IoU is
  invariant under any x -> a x + b, y -> c y + d (a, c > 0), so only the rounding differs;
- the per-class cap: none (every row may be kept per class); the K best of all classes are kept,
  as the user would cut darknet_py's list at K;
- DIoU (AlexeyAB's ``[yolo] nms_kind=greedynms/diounms``): the operator has no DIoU, so the ONNX
  export refuses such a cfg (TorchScript carries it faithfully).

The letterbox (``letterbox=True``): input ``photos`` (N, H, W, 3) uint8 RGB, N, H and W dynamic
(one photo is N = 1; a batch holds photos of one size). The graph computes Darknet's geometry
from H and W (``transforms.letterbox_size``'s float32 comparison and integer divisions), the
two-pass bilinear taps as ``transforms._axis_taps`` does (float32, in Darknet's order), the
``(float)u8/255.`` table, the 0.5 canvas, and, after the network, ``correct_yolo_boxes``
(``transforms.correct_boxes_rows``, Darknet's double / float32 mix) and the drawing clip
(``transforms.to_photo_xyxy_rows``). A network darknet_py stretches photos for
(``detector.letterboxed`` False) stretches instead. The box correction keeps Darknet's float64
steps (Cast to double in the graph): onnxruntime and OpenVINO run them; TensorRT has no float64.
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from ..boxes import NMS_KINDS, cxcywh_to_xyxy
from ..detector import letterboxed
from ..device import model_device
from ..checks import check_count
from ..errors import ExportError, UsageError
from ..files import atomic_output
from ..graph import DarknetModel
from ..layers.yolo import YoloSpec
from ..postprocess import DEFAULT_NMS, DEFAULT_THRESH, Detections, postprocess
from ..postprocess.nms import _pairs_in_blocks, suppress_on_pairs
from ..postprocess.thresholds import candidate_mask, class_scores
from ..transforms import (LETTERBOX_FILL, correct_boxes, correct_boxes_rows, prepare_batch, stretch_info,
                          to_photo_xyxy, to_photo_xyxy_rows, u8_to_float)
from .check import RTOL_FP32, ExportReport, Shape, batch_of, check_batch, check_export_options, sample_input, \
    synthetic_image, writing
from .graphs import INPUT_NAME, DecodedHeads, check_model, eval_mode, prepared
from .verify import as_arrays, match_detections

PHOTO_NAME = "photos"
OUTPUT_NAMES = ("num_dets", "det_boxes", "det_scores", "det_classes")
# EfficientNMS' usual keepTopK for 80-class detectors; darknet_py reports every detection, so a
# photo with more than this loses its weakest ones (the check says so when it happens).
DEFAULT_MAX_DET = 100

Tensor = torch.Tensor


# --------------------------------------------------------------------------- checks, before anything is traced


def e2e_options(nms: bool, decode: bool, **options) -> dict | None:
    """What export_onnx / export_torchscript pass on: None for their own graphs (``nms`` False),
    else the keywords of :func:`export_onnx_e2e` (None: its default). End-to-end options without
    ``nms=True``, or with ``decode=True``, are UsageErrors."""
    given = {k: v for k, v in options.items() if v is not None and v is not False}
    if not nms:
        if given:
            raise UsageError(f"{', '.join(sorted(given))} appl{'ies' if len(given) == 1 else 'y'} to the end-to-end "
                             "graph only: add nms=True")
        return None
    if decode:
        raise UsageError("nms=True writes the end-to-end graph (detections) and decode=True the decoded rows: "
                         "choose one")
    return {k: v for k, v in options.items() if v is not None}


def check_e2e_options(model: DarknetModel, backend: str, *, letterbox: bool, max_det: int, thresh: float,
                      iou: float, half: bool = False) -> None:
    """Everything an end-to-end export refuses, raised before anything is traced or written."""
    check_model(model)
    check_count("max_det", 0 if max_det is None else max_det, 1, what="the detections kept per photo")
    for name, v in (("thresh", thresh), ("iou", iou)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
            raise UsageError(f"{name} must be a number in [0, 1], got {v!r}")
    if half:
        raise ExportError("the end-to-end graph (nms=True) is exported in float32 only: Darknet's thresholds and "
                          "NMS compare float32 scores and overlaps; export it without half=True")
    specs = list(model.head_specs)
    others = [s for s in specs if not isinstance(s, YoloSpec)]
    sections = model.netdef.sections
    if others or not specs:
        what = (f"layer {others[0].index} ([{sections[others[0].index + 1].kind}], cfg line {others[0].line})"
                if others else "no detection head")
        raise ExportError(f"{backend} export with nms=True: the end-to-end graph decodes [yolo] heads only; this "
                          f"network has {what}; export the raw heads (nms=False)")
    if model.netdef.net.channels != 3:
        raise ExportError(f"{backend} export with nms=True: [net] channels={model.netdef.net.channels} (cfg line "
                          f"{model.netdef.net.line}); detection takes RGB photos, channels=3 only")
    last = specs[-1]  # Darknet's test_detector reads the NMS of net.layers[net.n-1]
    if last.nms_kind != "default" and backend == "ONNX" and float(iou) > 0:
        sec = sections[last.index + 1]
        line = sec.options["nms_kind"].line if "nms_kind" in sec.options else last.line
        raise ExportError(f"ONNX export with nms=True: [yolo] layer {last.index} (cfg line {line}) sets "
                          f"nms_kind={last.nms_kind} (AlexeyAB's DIoU NMS); ONNX NonMaxSuppression measures plain "
                          "IoU only, so the file would not give Darknet's detections. Export TorchScript "
                          "(which carries darknet_py's DIoU NMS) or the raw heads (nms=False)")
    if last.nms_kind not in NMS_KINDS:
        raise ExportError(f"{backend} export: unknown nms_kind {last.nms_kind!r} in layer {last.index}")


# --------------------------------------------------------------------------- the letterbox as graph operations


def _taps(in_n: Tensor, out_n: Tensor, o: Tensor):
    """``transforms._axis_taps`` with the sizes as 0-dim int64 tensors (dynamic in a graph), for
    the output indices ``o`` (int64, already in [0, out_n)). Same float32 operations in the same
    order: ``scale = (float)(in-1)/(out-1)``, ``s = o*scale``, ``i0 = (int)s``, ``d = s - i0``."""
    f32 = torch.float32
    many = out_n > 1
    denom = torch.where(many, out_n - 1, torch.ones_like(out_n)).to(f32)
    # out_n == 1: Darknet divides by zero; darknet_py (and so the graph) takes scale 0
    scale = torch.where(many, (in_n - 1).to(f32) / denom, torch.zeros((), dtype=f32))
    s = o.to(f32) * scale
    i0 = s.to(torch.int64)  # (int) truncates; s >= 0
    d = s - i0.to(f32)
    one_minus_d = 1 - d
    last = in_n - 1
    i1 = torch.minimum(i0 + 1, last)
    i0 = torch.minimum(i0, last)
    special = (o == out_n - 1) | (in_n == 1)  # the last output index, or a 1-pixel input
    return i0, i1, one_minus_d, d, special


class PhotoLetterbox(nn.Module):
    """(N, H, W, 3) uint8 RGB photos of one size -> ((N, 3, net_h, net_w) float32, geometry (8,)
    float64), the network input ``transforms.letterbox_u8`` makes (or the stretch when not
    ``letterbox``) and the photos' row of ``transforms.geometry_rows``, with H and W read from the
    input's shape so the graph takes any photo size. Every canvas pixel is computed (the taps of
    its column and row, or the 0.5 fill outside the pasted photo): the output size is fixed."""

    def __init__(self, net_w: int, net_h: int, letterbox: bool):
        super().__init__()
        self.net_w, self.net_h, self.letterbox = int(net_w), int(net_h), bool(letterbox)
        self.register_buffer("table", u8_to_float(torch.arange(256, dtype=torch.uint8)), persistent=False)
        self.register_buffer("cols", torch.arange(self.net_w), persistent=False)
        self.register_buffer("rows", torch.arange(self.net_h), persistent=False)

    def sizes(self, in_w: Tensor, in_h: Tensor) -> tuple[Tensor, Tensor]:
        """``transforms.letterbox_size`` on 0-dim int64 tensors (``fit_info`` for a stretch)."""
        net_w = torch.full_like(in_w, self.net_w)
        net_h = torch.full_like(in_h, self.net_h)
        if not self.letterbox:
            return net_w, net_h
        f32 = torch.float32
        # Darknet compares (float)w/im.w < (float)h/im.h in float32
        fit_width = net_w.to(f32) / in_w.to(f32) < net_h.to(f32) / in_h.to(f32)
        new_w = torch.where(fit_width, net_w, in_w * net_h // in_h)  # C integer division, all positive
        new_h = torch.where(fit_width, in_h * net_w // in_w, net_h)
        one = torch.ones_like(in_w)
        return torch.maximum(new_w, one), torch.maximum(new_h, one)  # darknet_py's 1-pixel clamp

    def _u8(self, x: Tensor) -> Tensor:
        return self.table[x.to(torch.int64)]  # (float)u8/255. bit for bit

    def forward(self, photos: Tensor) -> tuple[Tensor, Tensor]:
        shape = torch._shape_as_tensor(photos).to(self.cols.device)  # a Shape node: H and W stay dynamic
        in_h, in_w = shape[1], shape[2]
        new_w, new_h = self.sizes(in_w, in_h)
        dx, dy = (self.net_w - new_w) // 2, (self.net_h - new_h) // 2  # embed_image's offsets
        ox, oy = self.cols - dx, self.rows - dy
        in_x = (ox >= 0) & (ox < new_w)
        in_y = (oy >= 0) & (oy < new_h)
        zero = torch.zeros_like(new_w)
        ox = torch.minimum(torch.maximum(ox, zero), new_w - 1)
        oy = torch.minimum(torch.maximum(oy, zero), new_h - 1)
        i0, i1, w0, w1, copy_last = _taps(in_w, new_w, ox)
        j0, j1, v0, v1, no_second = _taps(in_h, new_h, oy)
        chw = photos.permute(0, 3, 1, 2)  # load_image_stb's planar layout
        last = (in_w - 1).reshape(1)

        def horizontal(rows_u8: Tensor) -> Tensor:
            # resize_image's first pass on the photo rows the second pass reads (a gather commutes with it)
            interp = w0 * self._u8(rows_u8.index_select(3, i0)) + w1 * self._u8(rows_u8.index_select(3, i1))
            return torch.where(copy_last, self._u8(rows_u8.index_select(3, last)), interp)

        first = v0[:, None] * horizontal(chw.index_select(2, j0))
        second = v1[:, None] * horizontal(chw.index_select(2, j1))
        # resize_image's last-row quirk: the last output row never gets its second term
        resized = torch.where(no_second[:, None], first, first + second)
        x = torch.where(in_y[:, None] & in_x[None, :], resized, torch.full_like(resized[:1, :1], LETTERBOX_FILL))
        f32, f64 = torch.float32, torch.float64
        net_w32, net_h32 = torch.full((), self.net_w, dtype=f32), torch.full((), self.net_h, dtype=f32)
        geom = torch.stack((
            (self.net_w - new_w).to(f64) / 2.0 / self.net_w,  # true division: Darknet's half-pixel quirk
            (self.net_h - new_h).to(f64) / 2.0 / self.net_h,
            (new_w.to(f32) / net_w32).to(f64), (new_h.to(f32) / net_h32).to(f64),
            (net_w32 / new_w.to(f32)).to(f64), (net_h32 / new_h.to(f32)).to(f64),
            in_w.to(f64), in_h.to(f64)))
        return x, geom


# --------------------------------------------------------------------------- NMS: darknet_py's, or ONNX's operator


def darknet_selected(boxes: Tensor, scores: Tensor, nms_thresh: float, kind: str, beta: float) -> Tensor:
    """darknet_py's ``do_nms_sort`` per image on (N, R, 4) cxcywh boxes and (N, R, C) thresholded
    scores (0: not a detection) -> the kept (image, class, row) triples, (S, 3) int64: what ONNX
    NonMaxSuppression returns. Rows without a score are left out first, as ``batched_nms`` does.
    torch.jit.script compiles it (the TorchScript export carries it)."""
    parts: list[Tensor] = []
    for b in range(boxes.shape[0]):
        s = scores[b]
        rows = torch.nonzero((s > 0).any(1))[:, 0]
        probs = s[rows]
        if nms_thresh > 0:
            first, second = _pairs_in_blocks(boxes[b][rows], nms_thresh, kind, beta)
            probs = suppress_on_pairs(probs, first, second)
        hits = torch.nonzero(probs > 0)
        parts.append(torch.stack((torch.full_like(hits[:, 0], b), hits[:, 1], rows[hits[:, 0]]), 1))
    if len(parts) == 0:
        return torch.zeros((0, 3), dtype=torch.int64, device=boxes.device)
    return torch.cat(parts)


class _OnnxNMS(torch.autograd.Function):
    """Eager / trace: darknet_py's NMS; in ONNX: NonMaxSuppression (per class, no per-class cap)."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores_ncr: Tensor, nms_thresh: float, max_per_class: int) -> Tensor:
        return darknet_selected(boxes, scores_ncr.transpose(1, 2), nms_thresh, "default", 0.6)

    @staticmethod
    def symbolic(g, boxes, scores_ncr, nms_thresh: float, max_per_class: int):
        out = g.op("NonMaxSuppression", boxes, scores_ncr,
                   g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64)),
                   g.op("Constant", value_t=torch.tensor([nms_thresh], dtype=torch.float32)),
                   # below every kept score (> thresh >= 0) and above the -1 of the removed ones
                   g.op("Constant", value_t=torch.tensor([0.0], dtype=torch.float32)),
                   center_point_box_i=1)  # Darknet's box: cx, cy, w, h
        return out


_SCRIPTED: dict = {}


def scripted_darknet_selected():
    if "fn" not in _SCRIPTED:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch 2.13 deprecates torch.jit
            _SCRIPTED["fn"] = torch.jit.script(darknet_selected)
    return _SCRIPTED["fn"]


# --------------------------------------------------------------------------- the end-to-end module


class EndToEnd(nn.Module):
    """The network, decode, Darknet's thresholds, per-class NMS and the top ``max_det`` detections
    (module docstring). ``backend``: "onnx" (NonMaxSuppression in the export) or "torchscript"
    (darknet_py's NMS, scripted); eager, both run darknet_py's NMS."""

    def __init__(self, model: DarknetModel, *, letterbox: bool, max_det: int, thresh: float, iou: float,
                 backend: str, stretch: bool = False):
        super().__init__()
        self.decoded = DecodedHeads(model)
        net_w, net_h = self.decoded.net_w, self.decoded.net_h
        self.photo = PhotoLetterbox(net_w, net_h, not stretch).to(model_device(model)) if letterbox else None
        self.rows = self.decoded.num_rows
        self.classes = int(model.yolo_specs[0].classes)
        self.max_det = min(int(max_det), self.rows * self.classes)
        self.thresh, self.iou, self.backend = float(thresh), float(iou), backend
        last = model.head_specs[-1]
        self.kind, self.beta = last.nms_kind, float(last.beta_nms)
        self.eval()

    def selected(self, boxes: Tensor, scores: Tensor) -> Tensor:
        if self.backend == "onnx":
            nms_scores = torch.where(scores > 0, scores, torch.full_like(scores, -1.0))
            return _OnnxNMS.apply(boxes, nms_scores.transpose(1, 2).contiguous(), self.iou, self.rows)
        if self.backend == "torchscript":
            return scripted_darknet_selected()(boxes, scores, self.iou, self.kind, self.beta)
        return darknet_selected(boxes, scores, self.iou, self.kind, self.beta)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        geom = None
        if self.photo is not None:
            x, geom = self.photo(x)
        boxes, obj, probs = self.decoded.decoder(list(self.decoded.model(x)))
        n, r, c = probs.shape[0], self.rows, self.classes
        # Darknet's two strict thresholds (get_yolo_detections): 0 where a row or score is not kept
        scores = torch.where(candidate_mask(obj, probs, self.thresh)[..., None], class_scores(obj, probs, self.thresh),
                             torch.zeros_like(probs))
        if geom is not None:
            # correct_yolo_boxes before the NMS, as Darknet: overlaps measured on photo-relative boxes
            boxes = correct_boxes_rows(boxes.reshape(-1, 4), geom.expand(n * r, 8)).reshape(n, r, 4)
        if self.iou > 0:  # nms=0: Darknet runs no NMS
            sel = self.selected(boxes, scores)
            b, k, i = sel[:, 0], sel[:, 1], sel[:, 2]
            kept = torch.zeros_like(scores)
            kept[b, i, k] = scores[b, i, k]
        else:
            kept = scores
        # box-major flat index: TopK keeps ties in (box, class) order, darknet_py's report order
        values, flat = torch.topk(kept.reshape(n, r * c), self.max_det, dim=1)
        valid = values > 0
        box_i = torch.div(flat, c, rounding_mode="floor")
        cls = flat - box_i * c
        picked = torch.gather(boxes, 1, box_i[..., None].expand(n, self.max_det, 4))
        if geom is not None:
            xyxy = to_photo_xyxy_rows(picked.reshape(-1, 4), geom.expand(n * self.max_det, 8))
            xyxy = xyxy.reshape(n, self.max_det, 4)
        else:
            scale = torch.tensor([self.decoded.net_w, self.decoded.net_h] * 2, dtype=picked.dtype,
                                 device=picked.device)
            xyxy = cxcywh_to_xyxy(picked * scale)  # network pixels, as DecodedHeads
        num = valid.sum(1, keepdim=True).to(torch.int32)
        return (num, torch.where(valid[..., None], xyxy, torch.zeros_like(xyxy)),
                torch.where(valid, values, torch.zeros_like(values)),
                torch.where(valid, cls, torch.zeros_like(cls)).to(torch.int32))


# --------------------------------------------------------------------------- references and comparison


def net_boxes_to_photo(det_boxes: np.ndarray | Tensor, info) -> Tensor:
    """The plain graph's ``det_boxes`` (network pixels, x1 y1 x2 y2) -> photo pixels, clipped, as
    darknet_py reports them (``info``: the photo's LetterboxInfo from darknet_py.transforms)."""
    b = torch.as_tensor(np.asarray(det_boxes), dtype=torch.float32).reshape(-1, 4)
    size = torch.tensor([info.net_w, info.net_h], dtype=torch.float32)
    rel = torch.cat(((b[:, :2] + b[:, 2:]) / 2 / size, (b[:, 2:] - b[:, :2]) / size), 1)
    return to_photo_xyxy(correct_boxes(rel, info), info)


def _net_pixel_corners(rel: Tensor, info) -> Tensor:
    scale = torch.tensor([info.net_w, info.net_h] * 2, dtype=rel.dtype, device=rel.device)
    return cxcywh_to_xyxy(rel * scale)


def reference_plain(model: DarknetModel, x: Tensor, thresh: float, iou: float) -> list[Detections]:
    """darknet_py's post-process of letterboxed network inputs, boxes in network pixels unclipped
    (the plain graph's frame: the photo is the network input, so the correction is the identity)."""
    net_w, net_h = model.input_size
    with torch.inference_mode():
        heads = model(x.to(model_device(model)))
    infos = [stretch_info(net_w, net_h, net_w, net_h)] * x.shape[0]
    return postprocess(model, heads, infos, thresh, iou, photo_boxes=_net_pixel_corners)


def reference_photos(model: DarknetModel, photos: np.ndarray, thresh: float, iou: float) -> list[Detections]:
    """darknet_py's detections of (N, H, W, 3) uint8 photos, prepared as ``detect`` prepares them."""
    net_w, net_h = model.input_size
    x, infos = prepare_batch([torch.from_numpy(np.ascontiguousarray(p)) for p in photos], net_w, net_h,
                             device=model_device(model), letterboxed=letterboxed(model))
    with torch.inference_mode():
        return postprocess(model, model(x), infos, thresh, iou)


@dataclass
class E2EComparison:
    photos: int = 0
    reference: int = 0      # darknet_py's detections (cut at max_det)
    matched: int = 0
    missing: int = 0
    extra: int = 0
    count_mismatch: int = 0  # photos whose num_dets differ
    max_box_diff: float = 0.0   # pixels, over matched pairs
    max_score_diff: float = 0.0

    def ok(self) -> bool:
        return self.missing == 0 and self.extra == 0 and self.count_mismatch == 0

    def line(self) -> str:
        return (f"detections on {self.photos} photo(s): {self.matched} of {self.reference} matched (same class, "
                f"IoU >= 0.99), {self.missing} missing, {self.extra} extra; largest box difference "
                f"{self.max_box_diff:.3g} px, score difference {self.max_score_diff:.3g}")


def compare_outputs(outputs: Sequence[np.ndarray], refs: Sequence[Detections], max_det: int,
                    into: E2EComparison | None = None) -> E2EComparison:
    """The graph's four outputs against darknet_py's Detections, photo by photo."""
    out = into if into is not None else E2EComparison()
    num, boxes, scores, classes = (np.asarray(o) for o in outputs)
    for k, ref in enumerate(refs):
        n = int(num[k, 0])
        rb, rs, rc = (a[:max_det] for a in as_arrays(ref))
        got = (boxes[k, :n], scores[k, :n], classes[k, :n])
        m = match_detections((rb, rs, rc), got)
        out.photos += 1
        out.reference += len(rs)
        out.matched += m.matched
        out.missing += m.missing
        out.extra += m.extra
        out.count_mismatch += int(n != len(rs))
        out.max_score_diff = max(out.max_score_diff, m.max_score_diff)
        if n == len(rs) and n:
            # pair in order when the lists agree (same sort): the largest corner difference
            same = (rc == classes[k, :n]) & np.isclose(rs, scores[k, :n], rtol=1e-4, atol=1e-6)
            if same.all():
                out.max_box_diff = max(out.max_box_diff, float(np.abs(rb - boxes[k, :n]).max()))
        pad = slice(n, None)
        if (boxes[k, pad] != 0).any() or (scores[k, pad] != 0).any() or (classes[k, pad] != 0).any():
            raise ExportError("the end-to-end graph's outputs are not zero past num_dets")
    return out


# --------------------------------------------------------------------------- export


def _check_samples(model, letterbox: bool, sample: np.ndarray | None, batch: int):
    """The inputs the written file is checked on: [(graph input, darknet_py's Detections thunk)].

    Plain: the letterboxed sample at ``batch`` and at 3 (batch_of's flips and inversions).
    Letterbox: the sample at ``batch`` and a second photo size (a crop of another aspect) at 2."""
    img = synthetic_image() if sample is None else np.asarray(sample)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ExportError(f"sample must be an HxWx3 uint8 RGB array, got {img.dtype} {tuple(img.shape)}")
    if not letterbox:
        x1 = sample_input(model, img)
        return [batch_of(x1, b) for b in ([batch] + ([3] if batch != 3 else []))]
    h, w = img.shape[:2]
    other = np.ascontiguousarray(img[: max(1, h * 2 // 3), : max(1, w * 5 // 6)])
    first = np.stack([img] * batch) if batch == 1 else np.stack([img if i % 2 == 0 else img[:, ::-1]
                                                               for i in range(batch)])
    return [np.ascontiguousarray(first), np.stack([other, np.ascontiguousarray(other[::-1])])]


def _references(model, inputs, letterbox: bool, thresh: float, iou: float):
    out = []
    for x in inputs:
        out.append(reference_photos(model, x, thresh, iou) if letterbox
                   else reference_plain(model, x, thresh, iou))
    return out


def _input_spec(model, letterbox: bool) -> tuple[str, Shape]:
    c, h, w = model.netdef.input_shape
    return (PHOTO_NAME, ["batch", "height", "width", 3]) if letterbox else (INPUT_NAME, ["batch", c, h, w])


def _output_specs(k: int) -> list[tuple[str, Shape]]:
    return [("num_dets", ["batch", 1]), ("det_boxes", ["batch", k, 4]), ("det_scores", ["batch", k]),
            ("det_classes", ["batch", k])]


def _finish(path, fmt, opset, model, module, runtime, cmp: E2EComparison, letterbox: bool) -> ExportReport:
    nms_line = ("ONNX NonMaxSuppression" if fmt == "onnx" else "darknet_py's do_nms_sort (scripted)")
    notes = [f"in the graph: {'letterbox, ' if letterbox else ''}decode, thresholds (> {module.thresh:g}), "
             f"per-class NMS ({nms_line}, IoU > {module.iou:g}), the {module.max_det} best; boxes in "
             f"{'photo' if letterbox else 'network-input'} pixels", cmp.line()]
    report = ExportReport(os.fspath(path), fmt, opset, [_input_spec(model, letterbox)], _output_specs(module.max_det),
                          os.path.getsize(path), cmp.max_box_diff, cmp.max_score_diff, "float32", [], runtime,
                          "darknet_py's post-process", RTOL_FP32, notes=notes)
    if not cmp.ok():
        raise ExportError(f"{path}: the end-to-end export's detections differ from darknet_py's: {cmp.line()}; "
                          "the file was left in place for inspection")
    if not cmp.max_score_diff <= RTOL_FP32:
        raise ExportError(f"{path}: the end-to-end export's scores differ from darknet_py's by "
                          f"{cmp.max_score_diff:.3g}, above {RTOL_FP32:g}; the file was left in place")
    return report


def export_onnx_e2e(model: DarknetModel, path, *, letterbox: bool = False, max_det: int = DEFAULT_MAX_DET,
                    thresh: float = DEFAULT_THRESH, iou: float = DEFAULT_NMS, batch: int = 1, opset: int = 17,
                    half: bool = False, sample: np.ndarray | None = None) -> ExportReport:
    """Write the end-to-end ONNX graph (module docstring) at ``path`` and check it with onnxruntime
    against darknet_py's own detections on the sample (and a second batch or photo size). The
    batch (and with ``letterbox`` the photo's height and width) are dynamic."""
    from .onnx import _import_onnx, _ort_session, _register_symbolics, write_checked
    onnx, ort = _import_onnx()
    check_export_options(opset=opset)
    check_e2e_options(model, "ONNX", letterbox=letterbox, max_det=max_det, thresh=thresh, iou=iou, half=half)
    batch = check_batch(batch)
    path = os.fspath(path)
    with eval_mode(model):
        _, lean = prepared(model, False)
        module = EndToEnd(lean, letterbox=letterbox, max_det=max_det, thresh=thresh, iou=iou, backend="onnx",
                          stretch=not letterboxed(model))
        inputs = _check_samples(model, letterbox, sample, batch)
        dev = model_device(model)
        first = torch.from_numpy(inputs[0]).to(dev) if letterbox else inputs[0].to(dev)
        in_name = PHOTO_NAME if letterbox else INPUT_NAME
        axes = {in_name: ({0: "batch", 1: "height", 2: "width"} if letterbox else {0: "batch"})}
        axes.update({name: {0: "batch"} for name in OUTPUT_NAMES})
        _register_symbolics()
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=UserWarning)
            with torch.no_grad():
                try:
                    torch.onnx.export(module, (first,), buf, dynamo=False, opset_version=int(opset),
                                      input_names=[in_name], output_names=list(OUTPUT_NAMES), dynamic_axes=axes,
                                      do_constant_folding=True)
                except ExportError:
                    raise
                except Exception as e:
                    raise ExportError(f"ONNX export with nms=True failed: {e}") from e
        write_checked(onnx, buf.getvalue(), path)
        sess, provider = _ort_session(ort, path, dev)
        cmp = E2EComparison()
        for x, refs in zip(inputs, _references(model, inputs, letterbox, thresh, iou)):
            feed = x if letterbox else x.numpy()
            try:
                got = sess.run(list(OUTPUT_NAMES), {in_name: feed})
            except Exception as e:
                raise ExportError(f"{path}: onnxruntime failed on the export: {e}") from e
            compare_outputs(got, refs, module.max_det, cmp)
        report = _finish(path, "onnx", int(opset), model, module, f"onnxruntime {ort.__version__} {provider}", cmp,
                         letterbox)
        report.checked_batches = [len(x) for x in inputs]
        return report


def export_torchscript_e2e(model: DarknetModel, path, *, letterbox: bool = False, max_det: int = DEFAULT_MAX_DET,
                           thresh: float = DEFAULT_THRESH, iou: float = DEFAULT_NMS, batch: int = 1,
                           half: bool = False, sample: np.ndarray | None = None) -> ExportReport:
    """Write the end-to-end TorchScript archive (a trace of the network, decode and thresholds
    around darknet_py's scripted NMS) and check it, loaded back, against darknet_py's detections."""
    check_e2e_options(model, "TorchScript", letterbox=letterbox, max_det=max_det, thresh=thresh, iou=iou, half=half)
    batch = check_batch(batch)
    path = os.fspath(path)
    with eval_mode(model):
        _, lean = prepared(model, False)
        module = EndToEnd(lean, letterbox=letterbox, max_det=max_det, thresh=thresh, iou=iou,
                          backend="torchscript", stretch=not letterboxed(model))
        inputs = _check_samples(model, letterbox, sample, batch)
        dev = model_device(model)
        as_t = [torch.from_numpy(x).to(dev) if letterbox else x.to(dev) for x in inputs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch 2.13 deprecates torch.jit
            with torch.no_grad():
                # no check_trace: the trace is checked below, loaded back, at two batches / photo sizes
                traced = torch.jit.trace(module, (as_t[0],), check_trace=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            with writing(path), atomic_output(path) as fh:
                torch.jit.save(traced, fh)
            del traced
            loaded = torch.jit.load(path, map_location=dev).eval()
        cmp = E2EComparison()
        for x, refs in zip(as_t, _references(model, inputs, letterbox, thresh, iou)):
            with torch.no_grad():
                got = [o.cpu().numpy() for o in loaded(x)]
            compare_outputs(got, refs, module.max_det, cmp)
        report = _finish(path, "torchscript", None, model, module,
                         f"torch.jit.load (torch {torch.__version__}, {dev})", cmp, letterbox)
        report.checked_batches = [len(x) for x in inputs]
        return report


__all__ = ["DEFAULT_MAX_DET", "E2EComparison", "EndToEnd", "OUTPUT_NAMES", "PHOTO_NAME", "PhotoLetterbox",
           "check_e2e_options", "compare_outputs", "darknet_selected", "e2e_options", "export_onnx_e2e",
           "export_torchscript_e2e", "net_boxes_to_photo", "reference_photos", "reference_plain"]
