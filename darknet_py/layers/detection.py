"""``[detection]``: the YOLOv1 head (pjreddie src/detection_layer.c, ``get_detection_detections``).

Its input is a flat vector of ``side*side*((1+coords)*num + classes)`` values (the output of a
``[connected]`` layer), read by Darknet in three blocks:

1. class values, ``classes`` per cell, cells row-major: ``[cell][class]``;
2. one confidence ("scale") per box: ``[cell][box]``;
3. four box numbers per box: ``[cell][box][x, y, w, h]``.

The layer's output (``l.output``) is that vector with, when ``softmax=1``, a softmax over the
classes of each cell (``forward_detection_layer`` on the CPU; its GPU twin skips the softmax at
inference, a Darknet quirk we do not follow). No weights.

Decode (``get_detection_detections``) for box ``b`` of cell ``i`` (row ``i / side``, col ``i % side``):
``x = (col + px) / side``, ``y = (row + py) / side``, ``w = pw^2`` with ``sqrt=1`` else ``pw``, ``h``
likewise; relative to the whole image. Score of class ``j``: ``scale * p_j``, kept when ``> thresh``.
Rows come out cell-major, then box (Darknet's detection order).

Photo preparation: YOLOv1's own test path (examples/yolo.c ``test_yolo``) stretches the photo to
the network size with ``resize_image`` and ``get_detection_detections`` corrects nothing; pjreddie's
later ``test_detector`` letterboxes every model and so puts YOLOv1's boxes in the wrong place (a
Darknet quirk). We follow the stretch: ``letterbox = False``.

Thresholds: Darknet never compares the confidence itself with ``thresh`` for this head, only
``scale * p_j``, and YOLOv1's shipped cfgs say ``softmax=0``: the class values are raw regression
outputs, so a row with ``p_j > 1`` (or ``scale`` and ``p_j`` both negative) passes with
``scale <= thresh``. The spec therefore sets ``gate_objectness = False``: the generic threshold
skips its ``objectness > thresh`` test and keeps exactly the products Darknet keeps.

Darknet's ``yolo`` command (run_yolo / test_yolo) defaults to thresh .2 and nms .4; ``detect``
keeps its own defaults (.5 / .45), so pass ``thresh=.2, nms=.4`` to reproduce ``darknet yolo test``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .connected import ConnectedSpec
from .head import DetectionHead
from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class DetectionSpec(LayerSpec, DetectionHead):
    classes: int
    coords: int
    side: int
    num: int
    softmax: bool
    sqrt: bool
    # Training keys, kept for a trainer (they do not change inference).
    rescore: bool = False
    jitter: float = 0.2
    object_scale: float = 1.0
    noobject_scale: float = 1.0
    class_scale: float = 1.0
    coord_scale: float = 1.0
    forced: bool = False
    random: float = 0.0
    reorg: bool = False
    only_objectness: bool = False
    max_boxes: int = 90
    resize: float = 1.0
    # YOLOv1's test_yolo stretches the photo (see the module docstring)
    letterbox: bool = False
    gate_objectness: bool = False  # Darknet tests scale * p only (module docstring)

    @property
    def inputs(self) -> int:
        return self.side * self.side * ((1 + self.coords) * self.num + self.classes)

    def decode(self, out, net_w, net_h):
        """(N, inputs, 1, 1) layer output -> boxes (N, side*side*num, 4), objectness, class values."""
        n = out.shape[0]
        s, c, b = self.side, self.classes, self.num
        cells = s * s
        flat = out.reshape(n, -1)
        cls = flat[:, :cells * c].reshape(n, cells, 1, c).expand(n, cells, b, c).reshape(n, cells * b, c)
        scale = flat[:, cells * c:cells * (c + b)].reshape(n, cells * b)
        box = flat[:, cells * (c + b):].reshape(n, cells * b, 4)
        cell = torch.arange(cells, device=out.device).repeat_interleave(b)
        col = (cell % s).to(out.dtype)
        row = (cell // s).to(out.dtype)
        x = (box[..., 0] + col) / s
        y = (box[..., 1] + row) / s
        w = box[..., 2] * box[..., 2] if self.sqrt else box[..., 2]  # pow(p, 2) rounded once to float
        h = box[..., 3] * box[..., 3] if self.sqrt else box[..., 3]
        boxes = torch.stack((x, y, w, h), -1)
        return boxes, scale, cls  # Darknet's prob = scale * p (gate_objectness = False)


class DetectionLayer(nn.Module):
    """Darknet's ``l.output``: the flat input, with a softmax over each cell's classes if asked."""

    def __init__(self, side: int, classes: int, softmax: bool):
        super().__init__()
        self.side, self.classes, self.softmax = side, classes, softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        flat = x.reshape(n, -1)  # logical CHW order whatever the memory format
        if self.softmax:
            k = self.side * self.side * self.classes
            cls = torch.softmax(flat[:, :k].reshape(n, -1, self.classes), -1).reshape(n, k)
            flat = torch.cat((cls, flat[:, k:]), 1)
        return flat.reshape(n, -1, 1, 1).contiguous()


@register
class DetectionKind(LayerKind):
    name = "detection"
    keys = ("classes", "coords", "side", "num", "softmax", "sqrt")
    training_keys = ("rescore", "jitter", "object_scale", "noobject_scale", "class_scale", "coord_scale", "forced",
                     "random", "reorg", "only_objectness", "max", "resize")

    @classmethod
    def parse(cls, section, net) -> DetectionSpec:
        # parse_detection's defaults: coords 1, classes 1, num 1, side 7, softmax 0, sqrt 0
        coords = section.get_int("coords", 1)
        if coords != 4:
            # get_detection_detections reads 4 numbers per box whatever coords says, while the input
            # size counts coords: any other value makes Darknet read the wrong values.
            raise section.error(f"coords={coords}{' (Darknet default)' if not section.has('coords') else ''}: "
                                "only coords=4 is supported (Darknet decodes 4 numbers per box)", "coords")
        classes = section.get_int("classes", 1, min=1)
        num = section.get_int("num", 1, min=1)
        side = section.get_int("side", 7, min=1)
        softmax = section.get_bool("softmax", False)
        sqrt = section.get_bool("sqrt", False)
        spec = DetectionSpec(
            section.index, section.line, classes, coords, side, num, softmax, sqrt,
            rescore=section.get_bool("rescore", False),
            jitter=section.get_float("jitter", 0.2, min=0.0),
            object_scale=section.get_float("object_scale", 1.0),
            noobject_scale=section.get_float("noobject_scale", 1.0),
            class_scale=section.get_float("class_scale", 1.0),
            coord_scale=section.get_float("coord_scale", 1.0),
            forced=section.get_bool("forced", False),
            random=section.get_float("random", 0.0),  # pjreddie reads an int, AlexeyAB a float
            reorg=section.get_bool("reorg", False),
            only_objectness=section.get_bool("only_objectness", False),
            max_boxes=section.get_int("max", 90, min=1),  # pjreddie's default (AlexeyAB: 200)
            resize=section.get_float("resize", 1.0),      # AlexeyAB's training resize factor
        )
        return spec

    @classmethod
    def out_shape(cls, spec: DetectionSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        need = spec.inputs
        if c * h * w != need:
            # make_detection_layer asserts side*side*((1+coords)*num+classes) == inputs
            prev = specs[spec.index - 1] if specs and spec.index > 0 else None
            if prev is None:
                where = "the network input"
            else:
                kind = " [connected]" if isinstance(prev, ConnectedSpec) else ""
                where = f"layer {prev.index}{kind} (cfg line {prev.line})"
            fix = f"; set output={need} there" if isinstance(prev, ConnectedSpec) else ""
            raise section.error(
                f"{where} gives {c * h * w} values ({w}x{h}x{c}) but this [detection] needs "
                f"side*side*((1+coords)*num+classes) = {spec.side}*{spec.side}*((1+{spec.coords})*{spec.num}+"
                f"{spec.classes}) = {need}{fix}")
        return (need, 1, 1)

    @classmethod
    def build(cls, spec: DetectionSpec, in_shapes: Sequence[Shape]) -> DetectionLayer:
        return DetectionLayer(spec.side, spec.classes, spec.softmax)

    @classmethod
    def describe(cls, spec: DetectionSpec) -> str:
        return f"{spec.side:5d}x{spec.side} x{spec.num}"
