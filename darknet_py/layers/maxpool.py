"""``[maxpool]`` (src/maxpool_layer.c).

Darknet's ``padding`` is a *total* (default ``size-1``); window ``i`` starts at
``i*stride - padding/2`` and taps outside the input are skipped (as if -inf), so
``out = (in + padding - size)/stride + 1``. That is why yolov3-tiny's size-2 stride-1 pool
keeps 13x13: it pads one column on the right only. A zero-padding port differs wherever
inputs are negative. No weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class MaxpoolSpec(LayerSpec):
    size: int
    stride: int
    padding: int


class Maxpool(nn.Module):
    def __init__(self, size: int, stride: int, padding: int):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        size, stride, before = self.size, self.stride, self.padding // 2
        out_h = (h + self.padding - size) // stride + 1
        out_w = (w + self.padding - size) // stride + 1
        # Pad after so that an unpadded pool yields exactly Darknet's output size (negative = crop).
        pad = (before, (out_w - 1) * stride + size - w - before, before, (out_h - 1) * stride + size - h - before)
        if any(pad):
            x = F.pad(x, pad, value=float("-inf"))  # Darknet skips out-of-range taps: -inf padding
        return F.max_pool2d(x, size, stride)


@register
class MaxpoolKind(LayerKind):
    name = "maxpool"
    aliases = ("max",)
    keys = ("size", "stride", "padding")

    @classmethod
    def parse(cls, section, net) -> MaxpoolSpec:
        for key, neutral in (("stride_x", None), ("stride_y", None), ("maxpool_depth", "0"),
                             ("out_channels", None), ("antialiasing", "0")):
            value = section.raw(key)
            if value is not None and value != neutral:
                raise section.error(f"{key}={value} is not supported by darknet-py yet", key)
        size = section.get_int("size", 1, min=1)
        stride = section.get_int("stride", 1, min=1)
        padding = section.get_int("padding", size - 1, min=0)
        return MaxpoolSpec(section.index, section.line, size, stride, padding)

    @classmethod
    def out_shape(cls, spec: MaxpoolSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        out_h = (h + spec.padding - spec.size) // spec.stride + 1
        out_w = (w + spec.padding - spec.size) // spec.stride + 1
        if out_h < 1 or out_w < 1:
            raise section.error(f"size={spec.size} on a {w}x{h} input leaves no output")
        if spec.padding // 2 >= spec.size:
            raise section.error(f"padding={spec.padding} puts whole windows outside the input (size={spec.size})",
                                "padding")
        return (c, out_h, out_w)

    @classmethod
    def build(cls, spec: MaxpoolSpec, in_shapes: Sequence[Shape]) -> Maxpool:
        return Maxpool(spec.size, spec.stride, spec.padding)

    @classmethod
    def describe(cls, spec) -> str:
        return f"{'':5} {spec.size:2d} x{spec.size:2d} /{spec.stride:2d}"

    @classmethod
    def flops(cls, spec, in_shapes: Sequence[Shape], out_shape: Shape) -> float:
        # AlexeyAB's make_maxpool_layer counts size*size*c*out_h*out_w (pjreddie's table shows none)
        return float(spec.size * spec.size * in_shapes[0][0] * out_shape[1] * out_shape[2])
