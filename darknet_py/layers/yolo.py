"""``[yolo]``: the YOLOv3 detection head (src/yolo_layer.c, forward_yolo_layer on CPU).

The input has ``len(mask)*(5+classes)`` channels, anchor-major: channel ``a*(5+C)+k`` with
k = x, y, w, h, objectness, class0... The layer's output (Darknet's ``l.output``) is the input
with the logistic applied to x, y, objectness and the classes; w and h stay raw, to be
decoded as ``anchor * exp(t)`` (see ``darknet_py.decode``). No weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class YoloSpec(LayerSpec):
    mask: List[int]
    anchors: List[Tuple[float, float]]  # all `num` anchors, in network-input pixels
    classes: int
    num: int
    # Training keys, kept for the trainer (they do not change inference).
    jitter: float = 0.2
    ignore_thresh: float = 0.5
    truth_thresh: float = 1.0
    random: bool = False

    @property
    def masked_anchors(self) -> List[Tuple[float, float]]:
        return [self.anchors[m] for m in self.mask]


class YoloHead(nn.Module):
    """Applies Darknet's logistic to x, y, objectness and classes; w, h pass through."""

    def __init__(self, num_anchors: int, classes: int):
        super().__init__()
        self.num_anchors, self.classes = num_anchors, classes
        mask = torch.ones(num_anchors, 5 + classes, dtype=torch.bool)
        mask[:, 2:4] = False
        self.register_buffer("logistic_mask", mask.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # contiguous NCHW whatever the trunk's memory format: this is Darknet's l.output layout
        return torch.where(self.logistic_mask, torch.sigmoid(x), x).contiguous()


@register
class YoloKind(LayerKind):
    name = "yolo"
    keys = ("mask", "anchors", "classes", "num")
    # (jitter, ignore_thresh, truth_thresh and random are also kept on the spec for the trainer)
    training_keys = ("jitter", "ignore_thresh", "truth_thresh", "random", "max", "counters_per_class", "label_smooth_eps", "iou_normalizer", "cls_normalizer",
                     "obj_normalizer", "delta_normalizer", "iou_loss", "iou_thresh_kind", "iou_thresh", "beta_nms",
                     "nms_kind", "max_delta", "resize", "focal_loss", "objectness_smooth", "map",
                     "track_history_size", "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm",
                     "embedding_layer", "show_details", "uc_normalizer", "rewritten_box",
                     # read by OpenCV's importer only (it zeroes scores below `thresh` and runs NMS itself)
                     "thresh", "nms_threshold")

    @classmethod
    def parse(cls, section, net) -> YoloSpec:
        for key, neutral in (("scale_x_y", 1.0), ("new_coords", 0.0)):
            if section.has(key) and section.get_float(key) != neutral:
                raise section.error(f"{key}={section.options[key].value} is not supported by darknet-py yet", key)
        classes = section.get_int("classes", required=True, min=1)
        flat = section.get_float_list("anchors", required=True)
        if len(flat) % 2:
            raise section.error(f"anchors: {len(flat)} numbers given; expected width,height pairs", "anchors")
        if any(v <= 0 for v in flat):
            raise section.error("anchors must be positive (width,height in network pixels)", "anchors")
        anchors = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        num = section.get_int("num", len(anchors), min=1)
        if num != len(anchors):
            raise section.error(f"num={num} but anchors holds {len(anchors)} pairs ({len(flat)} numbers)", "anchors")
        mask = section.get_int_list("mask", required=True)
        bad = [m for m in mask if not 0 <= m < num]
        if bad:
            raise section.error(f"mask index {bad[0]} out of range: num={num} anchors (valid 0..{num - 1})", "mask")
        spec = YoloSpec(section.index, section.line, mask, anchors, classes, num,
                        jitter=section.get_float("jitter", 0.2), ignore_thresh=section.get_float("ignore_thresh", 0.5),
                        truth_thresh=section.get_float("truth_thresh", 1.0), random=section.get_bool("random", False))
        section.mark_used(cls.training_keys)
        return spec

    @classmethod
    def out_shape(cls, spec: YoloSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        need = len(spec.mask) * (spec.classes + 5)
        if c != need:
            prev = specs[spec.index - 1] if specs else None
            where = f"layer {spec.index - 1}" + (f" (cfg line {prev.line})" if prev is not None else "")
            raise section.error(f"{where} outputs {c} channels but this [yolo] needs len(mask)*(classes+5) = "
                                f"{len(spec.mask)}*({spec.classes}+5) = {need}; set filters={need} there")
        return (c, h, w)

    @classmethod
    def build(cls, spec: YoloSpec, in_shapes: Sequence[Shape]) -> YoloHead:
        return YoloHead(len(spec.mask), spec.classes)
