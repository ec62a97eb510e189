"""``[Gaussian_yolo]``: Gaussian YOLOv3's head (AlexeyAB src/gaussian_yolo_layer.c, CPU forward).

The section name is case-sensitive, as in Darknet. The input has ``len(mask)*(9+classes)``
channels, anchor-major; per anchor: x, σx, y, σy, w, σw, h, σh, objectness, class0... The layer's
output (``l.output``) is the input with the logistic applied to x, σx, y, σy, σw, σh, objectness
and the classes; w and h stay raw. Then x and y (not σx, σy) become ``S*x - (S-1)/2`` with
``scale_x_y=S`` (``scal_add_cpu`` on the x and y planes only). No weights.

Decode (``get_gaussian_yolo_box``): ``bx = (col + x)/w``, ``by = (row + y)/h``,
``bw = anchor_w * e^w / net_w``, ``bh = anchor_h * e^h / net_h``; ``yolo_point=left_top`` adds
``bw/2``, ``bh/2`` to the centre, ``right_bottom`` subtracts them (default ``center``).

Scores (``get_gaussian_yolo_detections``): a cell/anchor is a candidate when ``objectness > thresh``;
its class score is ``objectness * p(class) * (1 - mean(σx, σy, σw, σh))``, zeroed when not
``> thresh``. :meth:`GaussianYoloSpec.decode` therefore folds the uncertainty into the class
probability and keeps the objectness as is, so the generic strict thresholds give Darknet's
candidates and scores. Darknet multiplies ``(objectness*p)`` in float by ``(1.0 - uc)`` in double;
here ``objectness * (p*(1-uc))`` in the tensor dtype: the scores agree to a few float32 ulps.

``nms_kind``: as [yolo], plus ``cornersnms``, which AlexeyAB parses only here: its branch of
``diounms_sort`` suppresses on ``box_iou > nms`` (the box merging is commented out), i.e. the
default NMS, which it is mapped to.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .head import DetectionHead
from .registry import LayerKind, LayerSpec, Shape, register
from .yolo import YoloDecode, check_head_channels, parse_anchors_and_mask, parse_scale_and_nms

# Channels of one anchor's block before the classes.
X, SX, Y, SY, W, SW, H, SH, OBJ = range(9)
YOLO_POINTS = ("center", "left_top", "right_bottom")


@dataclass
class GaussianYoloSpec(LayerSpec, DetectionHead):
    mask: list[int]
    anchors: list[tuple[float, float]]  # all `num` anchors, in network-input pixels
    classes: int
    num: int
    scale_x_y: float = 1.0
    yolo_point: str = "center"
    nms_kind: str = "default"
    beta_nms: float = 0.6
    # Training keys, kept for a trainer (they do not change inference).
    jitter: float = 0.2
    ignore_thresh: float = 0.5
    truth_thresh: float = 1.0
    random: float = 0.0
    uc_normalizer: float = 1.0

    @property
    def masked_anchors(self) -> list[tuple[float, float]]:
        return [self.anchors[m] for m in self.mask]

    def decode(self, out, net_w, net_h):
        n, _, h, w = out.shape
        a, c = len(self.mask), self.classes
        p = out.view(n, a, 9 + c, h, w).permute(0, 3, 4, 1, 2)  # (N, h, w, A, 9+C): Darknet's row order
        # get_gaussian_yolo_box is get_yolo_box on the x, y, w, h planes of the wider anchor block
        yolo = YoloDecode(self.masked_anchors, c, h, w, net_w, net_h).to(out.device)
        bxy, bwh = yolo.box(torch.stack((p[..., X], p[..., Y]), -1), torch.stack((p[..., W], p[..., H]), -1))
        (bx, by), (bw, bh) = bxy.unbind(-1), bwh.unbind(-1)
        if self.yolo_point == "left_top":
            bx, by = bx + bw / 2, by + bh / 2
        elif self.yolo_point == "right_bottom":
            bx, by = bx - bw / 2, by - bh / 2
        boxes = torch.stack((bx, by, bw, bh), -1).reshape(n, h * w * a, 4)
        # the mean uncertainty, summed in Darknet's order; folded into the class probabilities
        uc = (((p[..., SX] + p[..., SY]) + p[..., SW]) + p[..., SH]) / 4
        probs = p[..., OBJ + 1:] * (1 - uc)[..., None]
        return boxes, p[..., OBJ].reshape(n, h * w * a), probs.reshape(n, h * w * a, c)


class GaussianYoloHead(nn.Module):
    """Logistic on every channel but w and h; then x, y -> ``S*x - (S-1)/2`` when S != 1."""

    logistic_mask: torch.Tensor
    xy_mask: torch.Tensor

    def __init__(self, num_anchors: int, classes: int, scale_x_y: float = 1.0):
        super().__init__()
        self.num_anchors, self.classes, self.scale_x_y = num_anchors, classes, float(scale_x_y)
        mask = torch.ones(num_anchors, 9 + classes, dtype=torch.bool)
        mask[:, [W, H]] = False
        self.register_buffer("logistic_mask", mask.view(1, -1, 1, 1), persistent=False)
        xy = torch.zeros(num_anchors, 9 + classes, dtype=torch.bool)
        xy[:, [X, Y]] = True
        self.register_buffer("xy_mask", xy.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.where(self.logistic_mask, torch.sigmoid(x), x)
        if self.scale_x_y != 1.0:
            s = self.scale_x_y
            x = torch.where(self.xy_mask, x * s - 0.5 * (s - 1), x)
        return x.contiguous()  # NCHW whatever the trunk's memory format: Darknet's l.output layout


@register
class GaussianYoloKind(LayerKind):
    name = "Gaussian_yolo"
    keys = ("mask", "anchors", "classes", "num", "scale_x_y", "yolo_point", "nms_kind", "beta_nms")
    training_keys = ("jitter", "ignore_thresh", "truth_thresh", "random", "max", "max_delta", "counters_per_class",
                     "label_smooth_eps", "objectness_smooth", "uc_normalizer", "iou_normalizer", "obj_normalizer",
                     "cls_normalizer", "delta_normalizer", "iou_loss", "iou_thresh_kind", "resize", "iou_thresh", "map")

    @classmethod
    def parse(cls, section, net) -> GaussianYoloSpec:
        # diounms_sort's CORNERS_NMS branch is do_nms_sort's IoU test (module docstring)
        scale_x_y, nms_kind, beta_nms = parse_scale_and_nms(section, aliases={"cornersnms": "default"})
        yolo_point = section.get_str("yolo_point", "center")
        if yolo_point not in YOLO_POINTS:  # AlexeyAB reads any other value as center, silently
            raise section.error(f"yolo_point={yolo_point}: expected one of {', '.join(YOLO_POINTS)}", "yolo_point")
        classes = section.get_int("classes", required=True, min=1)
        anchors, num, mask = parse_anchors_and_mask(section)
        spec = GaussianYoloSpec(section.index, section.line, mask, anchors, classes, num, scale_x_y=scale_x_y,
                                yolo_point=yolo_point, nms_kind=nms_kind, beta_nms=beta_nms,
                                jitter=section.get_float("jitter", 0.2),
                                ignore_thresh=section.get_float("ignore_thresh", 0.5),
                                truth_thresh=section.get_float("truth_thresh", 1.0),
                                random=section.get_float("random", 0.0),
                                uc_normalizer=section.get_float("uc_normalizer", 1.0))
        section.mark_used(cls.training_keys)
        return spec

    @classmethod
    def out_shape(cls, spec: GaussianYoloSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        return check_head_channels(spec, in_shapes[0], 9, "Gaussian_yolo", section, specs)

    @classmethod
    def build(cls, spec: GaussianYoloSpec, in_shapes: Sequence[Shape]) -> GaussianYoloHead:
        return GaussianYoloHead(len(spec.mask), spec.classes, spec.scale_x_y)
