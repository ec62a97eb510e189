"""``[upsample]``: nearest-neighbour upsampling by an integer ``stride`` (src/upsample_layer.c).

Darknet multiplies the output by ``scale`` (default 1). A negative ``stride=-s`` is Darknet's
reverse mode, a downsampling: ``forward_upsample_layer`` zeroes the output and runs
``upsample_cpu`` backwards, which *adds* ``scale * input`` over each s x s block, so the output
(``w/s`` x ``h/s``) is ``scale`` times the block sum (not the mean). upsample_cpu indexes the input
as if it were exactly ``(w/s)*s`` wide and ``(h/s)*s`` high: when s does not divide the size it
reads the image's first ``c*(h/s*s)*(w/s*s)`` floats with those strides, reproduced here per image
(Darknet's batch-1 forward). No weights.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class UpsampleSpec(LayerSpec):
    stride: int  # negative: Darknet's reverse mode (downsampling by -stride)
    scale: float


class Upsample(nn.Module):
    def __init__(self, stride: int, scale: float = 1.0):
        super().__init__()
        self.stride, self.scale = stride, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride < 0:
            return self._reverse(x)
        # repeat_interleave is exact nearest-neighbour and exports to plain ONNX ops
        y = x.repeat_interleave(self.stride, dim=2).repeat_interleave(self.stride, dim=3)
        return y if self.scale == 1.0 else y * self.scale

    def _reverse(self, x: torch.Tensor) -> torch.Tensor:
        s = -self.stride
        c, h, w = (int(d) for d in x.shape[1:])  # the batch stays symbolic (-1) for a dynamic export
        oh, ow = h // s, w // s
        if (oh * s, ow * s) != (h, w):
            # upsample_cpu(forward=0) reads the input with row stride ow*s and plane stride oh*s*ow*s
            x = x.reshape(-1, c * h * w)[:, :c * oh * s * ow * s]
        blocks = x.reshape(-1, c, oh, s, ow, s)
        if self.scale != 1.0:
            blocks = blocks * self.scale  # each term is scale*input, summed (Darknet's +=)
        return blocks.sum((3, 5))


@register
class UpsampleKind(LayerKind):
    name = "upsample"
    keys = ("stride", "scale")

    @classmethod
    def parse(cls, section, net) -> UpsampleSpec:
        stride = section.get_int("stride", 2)
        if stride == 0:
            raise section.error("stride=0: expected a non-zero integer (negative: downsample)", "stride")
        return UpsampleSpec(section.index, section.line, stride, section.get_float("scale", 1.0))

    @classmethod
    def out_shape(cls, spec: UpsampleSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        if spec.stride > 0:
            return (c, h * spec.stride, w * spec.stride)
        s = -spec.stride
        if h < s or w < s:
            raise section.error(f"stride={spec.stride} downsamples the {w}x{h} input of layer {spec.index - 1} to "
                                "nothing", "stride")
        return (c, h // s, w // s)

    @classmethod
    def build(cls, spec: UpsampleSpec, in_shapes: Sequence[Shape]) -> Upsample:
        return Upsample(spec.stride, spec.scale)

    @classmethod
    def describe(cls, spec) -> str:
        return f"{'':5} {spec.stride:>8}x"
