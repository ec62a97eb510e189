"""``[scale_channels]``: AlexeyAB's squeeze-and-excitation product (src/scale_channels_layer.c).

The output is layer ``from``'s output scaled by the previous layer's, then ``activation``:

- default: the previous layer is ``1 x 1 x C`` (the excitation vector, usually a logistic conv
  after an [avgpool]) and ``out[c, y, x] = prev[c] * from[c, y, x]`` (``make_scale_channels_layer``
  asserts ``w == 1 && h == 1`` and equal channels);
- ``scale_wh=1``: the previous layer is ``W x H x 1`` (a spatial map) and
  ``out[c, y, x] = prev[0, y, x] * from[c, y, x]`` (asserts ``c == 1`` and equal width, height).

The output has the ``from`` layer's shape. ``from=`` and ``activation=`` as in [sam] (one
layer; swish/mish/hard_mish/relu6 refused, Darknet's CPU ``activate_array`` outputs 0 for them).
No weights.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .activations import Activation
from .registry import LayerKind, LayerSpec, Shape, register
from .sam import parse_from, parse_product_activation
from .shortcut import _fmt


@dataclass
class ScaleChannelsSpec(LayerSpec):
    source: int  # absolute index of the layer whose output is scaled
    scale_wh: bool = False
    activation: str = "linear"

    def input_layers(self) -> list[int]:
        return [self.index - 1, self.source]


class ScaleChannels(nn.Module):
    def __init__(self, activation: str = "linear"):
        super().__init__()
        self.act = Activation(activation)

    def forward(self, scale: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        # N x C x 1 x 1 (per channel) or N x 1 x H x W (scale_wh): broadcasting is Darknet's indexing
        return self.act(other * scale)


@register
class ScaleChannelsKind(LayerKind):
    name = "scale_channels"
    keys = ("from", "scale_wh", "activation")

    @classmethod
    def parse(cls, section, net) -> ScaleChannelsSpec:
        source = parse_from(section)
        scale_wh = section.get_bool("scale_wh", False)
        return ScaleChannelsSpec(section.index, section.line, source, scale_wh, parse_product_activation(section))

    @classmethod
    def out_shape(cls, spec: ScaleChannelsSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        prev, other = in_shapes
        c, h, w = other
        if spec.scale_wh:
            if prev != (1, h, w):
                raise section.error(
                    f"scale_wh=1 scales layer {spec.source} ({_fmt(other)}) by layer {spec.index - 1} ({_fmt(prev)}); "
                    f"Darknet needs the previous layer to be {_fmt((1, h, w))} (one channel, the same width x height)",
                    "scale_wh")
        elif prev != (c, 1, 1):
            raise section.error(
                f"scales the channels of layer {spec.source} ({_fmt(other)}) by layer {spec.index - 1} ({_fmt(prev)}); "
                f"Darknet needs the previous layer to be {_fmt((c, 1, 1))} (one value per channel; scale_wh=1 for a "
                f"spatial map)")
        return other

    @classmethod
    def build(cls, spec: ScaleChannelsSpec, in_shapes: Sequence[Shape]) -> ScaleChannels:
        return ScaleChannels(spec.activation)

    @classmethod
    def describe(cls, spec: ScaleChannelsSpec) -> str:
        return f"  {spec.source}" + (" wh" if spec.scale_wh else "")
