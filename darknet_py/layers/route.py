"""``[route]``: concatenate the outputs of earlier layers along channels (src/route_layer.c).

``layers=`` holds one or more indices, negative = relative to this layer. All inputs must
share height and width (Darknet silently produces a 0x0x0 output otherwise). No weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register, resolve_index
from .shortcut import _fmt


@dataclass
class RouteSpec(LayerSpec):
    layers: List[int]  # absolute indices, in cfg order (the channel order of the output)

    def input_layers(self) -> List[int]:
        return list(self.layers)


class Route(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return xs[0] if len(xs) == 1 else torch.cat(xs, 1)


@register
class RouteKind(LayerKind):
    name = "route"
    keys = ("layers",)

    @classmethod
    def parse(cls, section, net) -> RouteSpec:
        for key, neutral in (("groups", "1"), ("group_id", "0")):
            value = section.raw(key)
            if value is not None and value != neutral:
                raise section.error(f"{key}={value} is not supported by darknet-py yet", key)
        values = section.get_int_list("layers", required=True)
        layers = [resolve_index(section, "layers", v) for v in values]
        return RouteSpec(section.index, section.line, layers)

    @classmethod
    def out_shape(cls, spec: RouteSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        first = in_shapes[0]
        for idx, shape in zip(spec.layers[1:], in_shapes[1:]):
            if shape[1:] != first[1:]:
                raise section.error(
                    f"routes layer {spec.layers[0]} ({_fmt(first)}) and layer {idx} ({_fmt(shape)}) of different "
                    f"width x height; is [net] width/height a multiple of 32?")
        return (sum(s[0] for s in in_shapes), first[1], first[2])

    @classmethod
    def build(cls, spec: RouteSpec, in_shapes: Sequence[Shape]) -> Route:
        return Route()
