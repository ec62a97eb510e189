"""``[softmax]``: softmax over the flattened input in ``groups`` equal, contiguous blocks
(src/softmax_layer.c, ``softmax_cpu``), each ``exp(x/temperature - max/temperature)``.

YOLO9000's hierarchical ``tree=`` and the GPU-only ``spatial=1`` are refused. No weights.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class SoftmaxSpec(LayerSpec):
    groups: int
    temperature: float


class Softmax(nn.Module):
    def __init__(self, groups: int, temperature: float):
        super().__init__()
        self.groups, self.temperature = groups, temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Darknet's memory is CHW per image: the blocks are slices of that flat order
        flat = x.contiguous().view(x.shape[0], self.groups, -1)
        if self.temperature != 1.0:
            flat = flat / self.temperature
        return torch.softmax(flat, dim=-1).view(x.shape)


@register
class SoftmaxKind(LayerKind):
    name = "softmax"
    aliases = ("soft",)
    keys = ("groups", "temperature")
    training_keys = ("noloss",)

    @classmethod
    def parse(cls, section, net) -> SoftmaxSpec:
        if section.has("tree"):
            raise section.error("tree= (YOLO9000's hierarchical softmax) is not supported by darknet-py yet", "tree")
        if section.has("spatial") and section.get_float("spatial") != 0:
            raise section.error("spatial=1 (a per-pixel softmax in Darknet's GPU code only) is not supported",
                                "spatial")
        groups = section.get_int("groups", 1, min=1)
        temperature = section.get_float("temperature", 1.0)
        if not temperature > 0:
            raise section.error(f"temperature={temperature}: expected a positive number", "temperature")
        section.mark_used(cls.training_keys)
        return SoftmaxSpec(section.index, section.line, groups, temperature)

    @classmethod
    def out_shape(cls, spec: SoftmaxSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        if (c * h * w) % spec.groups:
            raise section.error(f"groups={spec.groups} does not divide the {c * h * w} inputs ({w}x{h}x{c})", "groups")
        return in_shapes[0]

    @classmethod
    def build(cls, spec: SoftmaxSpec, in_shapes: Sequence[Shape]) -> Softmax:
        return Softmax(spec.groups, spec.temperature)
