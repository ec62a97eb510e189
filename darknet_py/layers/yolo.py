"""``[yolo]``: the YOLOv3 detection head (src/yolo_layer.c, forward_yolo_layer on CPU), and its decode.

The input has ``len(mask)*(5+classes)`` channels, anchor-major: channel ``a*(5+C)+k`` with
k = x, y, w, h, objectness, class0... The layer's output (Darknet's ``l.output``) is the input
with the logistic applied to x, y, objectness and the classes; w and h stay raw. No weights.

The decode (:func:`yolo_box`, the paper's formulas as Darknet's ``get_yolo_box`` computes them):
for cell (row, col) of an h x w grid and anchor (pw, ph) in network pixels,
``bx = (col + sigma(tx)) / w``, ``by = (row + sigma(ty)) / h``, ``bw = pw * e^tw / net_w``,
``bh = ph * e^th / net_h``. Rows come out cell-major then anchor (``get_yolo_detections``'
order). :class:`YoloDecode` is that decode as a module with its grid and anchors as buffers, so
that it traces (ONNX, TorchScript) and can be captured in a CUDA graph; ``detect``,
``FastDetector``, ``export --decode`` and the training loss all use it.

AlexeyAB's keys, as its CPU ``forward_yolo_layer`` applies them to ``l.output``:

- ``scale_x_y=S``: after the logistic, x and y become ``S*x - (S-1)/2``
  (``scal_add_cpu(2*l.w*l.h, l.scale_x_y, -0.5*(l.scale_x_y - 1), ...)``); ``get_yolo_box`` then
  reads them unchanged, ``(col + x) / w``. So ``l.output`` holds the scaled centre offsets and the
  decode needs nothing more.
- ``new_coords=1`` (yolov4-csp, yolov7): no logistic at all here (the convolution before has
  ``activation=logistic``); the same ``scal_add`` on x, y; ``get_yolo_box`` decodes
  ``w = (x_w)^2 * 4 * anchor_w / net_w`` instead of the exponential.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..boxes import NMS_KINDS
from .head import DetectionHead
from .registry import LayerKind, LayerSpec, Shape, register

Tensor = torch.Tensor


@dataclass
class YoloSpec(LayerSpec, DetectionHead):
    mask: list[int]
    anchors: list[tuple[float, float]]  # all `num` anchors, in network-input pixels
    classes: int
    num: int
    # Training keys, kept for the trainer (they do not change inference).
    jitter: float = 0.2
    ignore_thresh: float = 0.5
    truth_thresh: float = 1.0
    random: bool = False
    # AlexeyAB's inference keys (see the module docstring)
    scale_x_y: float = 1.0
    new_coords: bool = False
    # AlexeyAB's post-processing: the NMS measure test_detector uses after the last [yolo]
    nms_kind: str = "default"
    beta_nms: float = 0.6

    def decoder(self, h: int, w: int, net_w: int, net_h: int) -> YoloDecode:
        return YoloDecode(self.masked_anchors, self.classes, h, w, net_w, net_h, self.new_coords)

    @property
    def masked_anchors(self) -> list[tuple[float, float]]:
        return [self.anchors[m] for m in self.mask]


def yolo_box(xy: Tensor, twh: Tensor, grid: Tensor, anchors: Tensor, grid_size: Tensor, net_size: Tensor,
             new_coords: bool = False) -> tuple[Tensor, Tensor]:
    """Darknet's ``get_yolo_box`` on (x, y) and (w, h) pairs in the last dimension: the centre
    ``(grid + xy) / grid_size`` (``(col + x) / w``, ``(row + y) / h``) and the size
    ``e^twh * anchor / net_size`` (``4 * twh^2 * anchor / net_size`` with ``new_coords``), both
    relative to the network input; ``xy`` holds ``l.output`` after the logistic, ``twh`` raw.
    Broadcasting over cells and anchors."""
    bxy = (grid + xy) / grid_size
    if new_coords:
        bwh = twh * twh * 4 * anchors / net_size
    else:
        bwh = torch.exp(twh) * anchors / net_size
    return bxy, bwh


class YoloDecode(nn.Module):
    """One ``[yolo]`` head's decode: ``l.output`` (N, A*(5+C), h, w) -> boxes (N, h*w*A, 4) as cx, cy,
    w, h relative to the network input, objectness (N, h*w*A) and class probabilities (N, h*w*A, C).

    The grid, the anchors and the sizes are non-persistent buffers made once (they follow
    ``.to(device)``), kept in float64 and rounded to the output's dtype when used, which is how a
    Python number enters a float32 (or float16) computation; so the module runs in any dtype and
    holds no host-to-device copy (a CUDA graph may capture it). Divisions are by tensors, true
    divisions on every device, as Darknet's C divides."""

    graph_safe = True
    grid: Tensor       # (1, h, w, 1, 2): col, row of each cell
    anchors: Tensor    # (A, 2) in network pixels
    grid_size: Tensor  # (w, h)
    net_size: Tensor   # (net_w, net_h)

    def __init__(self, anchors: Sequence[tuple[float, float]], classes: int, h: int, w: int, net_w: int, net_h: int,
                 new_coords: bool = False):
        super().__init__()
        self.a, self.classes, self.h, self.w = len(anchors), int(classes), int(h), int(w)
        self.new_coords = bool(new_coords)
        row, col = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                  indexing="ij")
        self.register_buffer("grid", torch.stack((col, row), -1).view(1, h, w, 1, 2), persistent=False)
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float64).view(-1, 2), persistent=False)
        self.register_buffer("grid_size", torch.tensor([w, h], dtype=torch.float64), persistent=False)
        self.register_buffer("net_size", torch.tensor([net_w, net_h], dtype=torch.float64), persistent=False)

    def box(self, xy: Tensor, twh: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`yolo_box` of (N, h, w, A, 2) pairs with this head's grid and anchors."""
        dt = xy.dtype
        return yolo_box(xy, twh, self.grid.to(dt), self.anchors.to(dt), self.grid_size.to(dt), self.net_size.to(dt),
                        self.new_coords)

    def forward(self, out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, c, h, w = self.a, self.classes, self.h, self.w
        p = out.reshape(-1, a, 5 + c, h, w).permute(0, 3, 4, 1, 2)  # (N, h, w, A, 5+C): Darknet's row order
        bxy, bwh = self.box(p[..., 0:2], p[..., 2:4])
        rows = h * w * a
        return (torch.cat((bxy, bwh), -1).reshape(-1, rows, 4), p[..., 4].reshape(-1, rows),
                p[..., 5:].reshape(-1, rows, c))

    def any_size(self, out: Tensor, net_size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`forward` for an output of any grid size, ``net_size`` (net_w, net_h) in the
        output's dtype (:func:`size_of` the input): the grid, the grid size and the rows come from
        ``out`` itself, which a trace records as operations on it (a dynamic-size export), where
        :meth:`forward`'s buffers would be frozen constants. The same arithmetic: the grid and the
        sizes are whole numbers, exact in the output's dtype, as the buffers are."""
        a, c = self.a, self.classes
        h, w = out.shape[-2], out.shape[-1]  # plain ints when run, recorded shape values when traced
        p = out.reshape(-1, a, 5 + c, h, w).permute(0, 3, 4, 1, 2)
        # Counted from ones like ``out`` rather than torch.arange: a traced arange names the device
        # it ran on, and a TorchScript archive must load on any (torch.jit.load's map_location).
        ones = torch.ones_like(out[:1, :1])  # (1, 1, h, w)
        grid = torch.stack((ones.cumsum(3) - 1, ones.cumsum(2) - 1), -1).permute(0, 2, 3, 1, 4)  # (1, h, w, 1, 2)
        bxy, bwh = yolo_box(p[..., 0:2], p[..., 2:4], grid, self.anchors.to(out.dtype), size_of(out), net_size,
                            self.new_coords)
        return (torch.cat((bxy, bwh), -1).flatten(1, 3), p[..., 4].flatten(1, 3), p[..., 5:].flatten(1, 3))


def size_of(t: Tensor) -> Tensor:
    """(width, height) of an N x C x H x W tensor as a tensor of its dtype on its device, counted
    from ones like it: a trace records operations on ``t``, neither a size nor a device."""
    return torch.stack((torch.ones_like(t[:1, :1, :1]).sum(), torch.ones_like(t[:1, :1, :, :1]).sum()))


class YoloHead(nn.Module):
    """Applies Darknet's logistic to x, y, objectness and classes (none with ``new_coords``);
    w, h pass through; then x, y -> ``scale_x_y*x - (scale_x_y-1)/2`` when scale_x_y != 1."""

    logistic_mask: Tensor
    xy_mask: Tensor

    def __init__(self, num_anchors: int, classes: int, scale_x_y: float = 1.0, new_coords: bool = False):
        super().__init__()
        self.num_anchors, self.classes = num_anchors, classes
        self.scale_x_y, self.new_coords = float(scale_x_y), bool(new_coords)
        mask = torch.ones(num_anchors, 5 + classes, dtype=torch.bool)
        mask[:, 2:4] = False
        self.register_buffer("logistic_mask", mask.view(1, -1, 1, 1), persistent=False)
        xy = torch.zeros(num_anchors, 5 + classes, dtype=torch.bool)
        xy[:, 0:2] = True
        self.register_buffer("xy_mask", xy.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous NCHW whatever the trunk's memory format: this is Darknet's l.output layout
        if not self.new_coords:
            x = torch.where(self.logistic_mask, torch.sigmoid(x), x)
        if self.scale_x_y != 1.0:
            s = self.scale_x_y
            x = torch.where(self.xy_mask, x * s - 0.5 * (s - 1), x)
        return x.contiguous()


def parse_anchors_and_mask(section) -> tuple[list[tuple[float, float]], int, list[int]]:
    """``anchors`` (width,height pairs, positive), ``num`` (= the pairs given) and ``mask``
    (indices into them) of a [yolo]-like head: (anchors, num, mask)."""
    flat = section.get_float_list("anchors", required=True)
    if len(flat) % 2:
        raise section.error(f"anchors: {len(flat)} numbers given; expected width,height pairs", "anchors")
    if any(not 0 < v < math.inf for v in flat):
        raise section.error("anchors must be positive (width,height in network pixels)", "anchors")
    anchors = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    num = section.get_int("num", len(anchors), min=1)
    if num != len(anchors):
        # Darknet writes every anchor given into a buffer of 2*num floats
        raise section.error(f"num={num} but anchors holds {len(anchors)} pairs ({len(flat)} numbers)", "anchors")
    mask = section.get_int_list("mask", required=True)
    bad = [m for m in mask if not 0 <= m < num]
    if bad:
        raise section.error(f"mask index {bad[0]} out of range: num={num} anchors (valid 0..{num - 1})", "mask")
    return anchors, num, mask


def parse_scale_and_nms(section, aliases: dict[str, str] | None = None) -> tuple[float, str, float]:
    """(scale_x_y, nms_kind, beta_nms) of a [yolo]-like head. ``aliases``: other nms_kind names a
    kind accepts, mapped to the NMS Darknet then runs."""
    scale_x_y = section.get_float("scale_x_y", 1.0)
    if not 0 < scale_x_y < 1e6:  # also refuses nan/inf
        raise section.error(f"scale_x_y={section.raw('scale_x_y')}: expected a positive number", "scale_x_y")
    aliases = aliases or {}
    nms_kind = section.get_str("nms_kind", "default")
    nms_kind = aliases.get(nms_kind, nms_kind)
    if nms_kind not in NMS_KINDS:  # AlexeyAB maps unknown names to default silently
        raise section.error(f"nms_kind={nms_kind} is not supported; expected one of "
                            f"{', '.join(NMS_KINDS + tuple(aliases))}", "nms_kind")
    return scale_x_y, nms_kind, section.get_float("beta_nms", 0.6)


def check_head_channels(spec, in_shape: Shape, per_anchor_extra: int, kind: str, section, specs=None) -> Shape:
    """The layer before a [yolo]-like head must give ``len(mask) * (classes + extra)`` channels;
    the error names that layer and the filters= to set. Returns the (unchanged) shape."""
    c, h, w = in_shape
    need = len(spec.mask) * (spec.classes + per_anchor_extra)
    if c != need:
        prev = specs[spec.index - 1] if specs else None
        where = f"layer {spec.index - 1}" + (f" (cfg line {prev.line})" if prev is not None else "")
        raise section.error(f"{where} outputs {c} channels but this [{kind}] needs len(mask)*(classes+"
                            f"{per_anchor_extra}) = {len(spec.mask)}*({spec.classes}+{per_anchor_extra}) = {need}; "
                            f"set filters={need} there")
    return (c, h, w)


@register
class YoloKind(LayerKind):
    name = "yolo"
    keys = ("mask", "anchors", "classes", "num", "scale_x_y", "new_coords", "nms_kind", "beta_nms")
    # (jitter, ignore_thresh, truth_thresh and random are also kept on the spec for the trainer)
    training_keys = ("jitter", "ignore_thresh", "truth_thresh", "random", "max", "counters_per_class",
                     "label_smooth_eps", "iou_normalizer", "cls_normalizer",
                     "obj_normalizer", "delta_normalizer", "iou_loss", "iou_thresh_kind", "iou_thresh", "max_delta",
                     "beta1", "resize", "focal_loss", "objectness_smooth", "map",
                     "track_history_size", "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm",
                     "embedding_layer", "show_details", "uc_normalizer", "rewritten_box",
                     # read by OpenCV's importer only (it zeroes scores below `thresh` and runs NMS itself)
                     "thresh", "nms_threshold")

    @classmethod
    def parse(cls, section, net) -> YoloSpec:
        scale_x_y, nms_kind, beta_nms = parse_scale_and_nms(section)
        new_coords = section.get_bool("new_coords", False)
        classes = section.get_int("classes", required=True, min=1)
        anchors, num, mask = parse_anchors_and_mask(section)
        spec = YoloSpec(section.index, section.line, mask, anchors, classes, num,
                        jitter=section.get_float("jitter", 0.2), ignore_thresh=section.get_float("ignore_thresh", 0.5),
                        truth_thresh=section.get_float("truth_thresh", 1.0), random=section.get_bool("random", False),
                        scale_x_y=scale_x_y, new_coords=new_coords, nms_kind=nms_kind, beta_nms=beta_nms)
        section.mark_used(cls.training_keys)
        return spec

    @classmethod
    def out_shape(cls, spec: YoloSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        return check_head_channels(spec, in_shapes[0], 5, "yolo", section, specs)

    @classmethod
    def build(cls, spec: YoloSpec, in_shapes: Sequence[Shape]) -> YoloHead:
        return YoloHead(len(spec.mask), spec.classes, spec.scale_x_y, spec.new_coords)
