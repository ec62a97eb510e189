"""``[route]``: concatenate the outputs of earlier layers along channels (src/route_layer.c).

``layers=`` holds one or more indices, negative = relative to this layer. All inputs must
share height and width (Darknet silently produces a 0x0x0 output otherwise). No weights.

AlexeyAB's ``groups=G group_id=K`` (yolov4-tiny's CSP blocks): each input is cut into G equal
parts and part K is taken (``forward_route_layer`` copies ``input_size/groups`` floats from
``input + group_id*input_size/groups``), so the output has ``sum(c_i) / G`` channels. Darknet
cuts the flat C*H*W buffer; that is channel group K only when G divides every input's channel
count, which is checked (otherwise the slice would straddle channels).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register, resolve_index
from .shortcut import _fmt


@dataclass
class RouteSpec(LayerSpec):
    layers: list[int]  # absolute indices, in cfg order (the channel order of the output)
    groups: int = 1
    group_id: int = 0

    def input_layers(self) -> list[int]:
        return list(self.layers)


class Route(nn.Module):
    def __init__(self, groups: int = 1, group_id: int = 0):
        super().__init__()
        self.groups, self.group_id = groups, group_id

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.groups != 1:
            parts = []
            for x in xs:
                size = x.shape[1] // self.groups
                parts.append(x[:, self.group_id * size:(self.group_id + 1) * size])
            xs = tuple(parts)
        return xs[0] if len(xs) == 1 else torch.cat(xs, 1)


@register
class RouteKind(LayerKind):
    name = "route"
    keys = ("layers", "groups", "group_id")

    @classmethod
    def parse(cls, section, net) -> RouteSpec:
        values = section.get_int_list("layers", required=True)
        layers = [resolve_index(section, "layers", v) for v in values]
        groups = section.get_int("groups", 1, min=1)
        group_id = section.get_int("group_id", 0, min=0)
        if group_id >= groups:
            raise section.error(f"group_id={group_id} out of range: groups={groups} (valid 0..{groups - 1})",
                                "group_id")
        return RouteSpec(section.index, section.line, layers, groups, group_id)

    @classmethod
    def out_shape(cls, spec: RouteSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        first = in_shapes[0]
        for idx, shape in zip(spec.layers[1:], in_shapes[1:]):
            if shape[1:] != first[1:]:
                raise section.error(
                    f"routes layer {spec.layers[0]} ({_fmt(first)}) and layer {idx} ({_fmt(shape)}) of different "
                    f"width x height; is [net] width/height a multiple of 32?")
        for idx, shape in zip(spec.layers, in_shapes):
            if shape[0] % spec.groups:
                raise section.error(f"groups={spec.groups} does not divide the {shape[0]} channels of layer {idx} "
                                    f"({_fmt(shape)}); Darknet would cut its output across channels", "groups")
        return (sum(s[0] // spec.groups for s in in_shapes), first[1], first[2])

    @classmethod
    def build(cls, spec: RouteSpec, in_shapes: Sequence[Shape]) -> Route:
        return Route(spec.groups, spec.group_id)
