"""``[upsample]``: nearest-neighbour upsampling by an integer ``stride`` (src/upsample_layer.c).

Darknet also multiplies the output by ``scale`` (default 1). A negative stride (downsampling
in Darknet) is not supported yet. No weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class UpsampleSpec(LayerSpec):
    stride: int
    scale: float


class Upsample(nn.Module):
    def __init__(self, stride: int, scale: float = 1.0):
        super().__init__()
        self.stride, self.scale = stride, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # repeat_interleave is exact nearest-neighbour and exports to plain ONNX ops
        y = x.repeat_interleave(self.stride, dim=2).repeat_interleave(self.stride, dim=3)
        return y if self.scale == 1.0 else y * self.scale


@register
class UpsampleKind(LayerKind):
    name = "upsample"
    keys = ("stride", "scale")

    @classmethod
    def parse(cls, section, net) -> UpsampleSpec:
        stride = section.get_int("stride", 2)
        if stride < 0:
            raise section.error(f"stride={stride} (Darknet's downsampling mode) is not supported by darknet-py yet",
                                "stride")
        if stride == 0:
            raise section.error("stride=0: expected a positive integer", "stride")
        return UpsampleSpec(section.index, section.line, stride, section.get_float("scale", 1.0))

    @classmethod
    def out_shape(cls, spec: UpsampleSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        return (c, h * spec.stride, w * spec.stride)

    @classmethod
    def build(cls, spec: UpsampleSpec, in_shapes: Sequence[Shape]) -> Upsample:
        return Upsample(spec.stride, spec.scale)

    @classmethod
    def describe(cls, spec) -> str:
        return f"{'':5} {spec.stride:>8}x"
