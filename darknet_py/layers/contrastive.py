"""``[contrastive]``: AlexeyAB's supervised contrastive loss (src/softmax_layer.c,
``make_contrastive_layer`` / ``forward_contrastive_layer``). Training only.

At inference ``forward_contrastive_layer`` returns at once, so the layer's output is its
zero-filled buffer (``l.outputs = l.inputs`` floats): here, zeros shaped like the input. Darknet
sets no ``out_w/out_h/out_c`` for it (they stay 0), so a layer reading it would see an empty
input there (and zeros here); in the family's cfgs it is the last layer, after the heads
(yolov4-tiny_contrastive.cfg).

``yolo_layer=`` (relative or absolute) is required and must be a [yolo]: ``parse_contrastive``
dereferences it unconditionally (a missing key or 0 crashes Darknet) and errors for another
kind. The loss keys (``classes``, ``temperature``, ``cls_normalizer``, ``max_delta``,
``contrastive_neg_max``) are kept for training. The embedding-size agreement with the [yolo]'s
``embedding_layer`` is a training-time check, not repeated here. No weights.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register, resolve_index
from .yolo import YoloSpec


@dataclass
class ContrastiveSpec(LayerSpec):
    yolo_layer: int  # absolute index of the [yolo] whose detections the loss embeds
    classes: int = 1000
    temperature: float = 1.0
    cls_normalizer: float = 1.0
    max_delta: float = float("inf")
    contrastive_neg_max: int = 3


class Contrastive(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)  # Darknet's l.output at inference: calloc'ed, never written


@register
class ContrastiveKind(LayerKind):
    name = "contrastive"
    keys = ("yolo_layer",)
    training_keys = ("classes", "temperature", "cls_normalizer", "max_delta", "contrastive_neg_max")

    @classmethod
    def parse(cls, section, net) -> ContrastiveSpec:
        value = section.get_int("yolo_layer", required=True)
        if value == 0:
            raise section.error("yolo_layer=0: Darknet reads 0 as 'no [yolo] layer' and then dereferences it; "
                                "name the [yolo] layer (e.g. yolo_layer=-2)", "yolo_layer")
        yolo_layer = resolve_index(section, "yolo_layer", value)
        spec = ContrastiveSpec(section.index, section.line, yolo_layer,
                               classes=section.get_int("classes", 1000, min=1),
                               temperature=section.get_float("temperature", 1.0),
                               cls_normalizer=section.get_float("cls_normalizer", 1.0),
                               max_delta=section.get_float("max_delta", float("inf")),
                               contrastive_neg_max=section.get_int("contrastive_neg_max", 3))
        return spec

    @classmethod
    def out_shape(cls, spec: ContrastiveSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        target = specs[spec.yolo_layer] if specs else None
        if target is not None and not isinstance(target, YoloSpec):
            raise section.error(f"yolo_layer={section.options['yolo_layer'].value} refers to layer {spec.yolo_layer} "
                                f"(cfg line {target.line}), which is not a [yolo] layer", "yolo_layer")
        return in_shapes[0]

    @classmethod
    def build(cls, spec: ContrastiveSpec, in_shapes: Sequence[Shape]) -> Contrastive:
        return Contrastive()

    @classmethod
    def describe(cls, spec: ContrastiveSpec) -> str:
        return f"  yolo {spec.yolo_layer}"
