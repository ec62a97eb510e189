"""``[avgpool]``: global average pooling to one value per channel (src/avgpool_layer.c).

The classifiers' last spatial layer (Darknet-19, Darknet-53, ResNet). Output c x 1 x 1. No weights.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register


class Avgpool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


@register
class AvgpoolKind(LayerKind):
    name = "avgpool"
    aliases = ("avg",)

    @classmethod
    def parse(cls, section, net) -> LayerSpec:
        return LayerSpec(section.index, section.line)

    @classmethod
    def out_shape(cls, spec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        return (in_shapes[0][0], 1, 1)

    @classmethod
    def build(cls, spec, in_shapes: Sequence[Shape]) -> Avgpool:
        return Avgpool()
