"""``[shortcut]``: residual add ``act(previous + layers[from])`` (src/shortcut_layer.c).

Darknet's ``shortcut_cpu`` also adds tensors of different sizes (over the common channels with
stride/sample factors); this version requires equal shapes and says so, rather than relying on
broadcasting. No bytes in the weights file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch
import torch.nn as nn

from .activations import Activation, check_activation
from .registry import LayerKind, LayerSpec, Shape, register, resolve_index


@dataclass
class ShortcutSpec(LayerSpec):
    source: int  # absolute index of the layer added to the previous one
    activation: str

    def input_layers(self) -> List[int]:
        return [self.index - 1, self.source]


class Shortcut(nn.Module):
    def __init__(self, activation: str = "linear"):
        super().__init__()
        self.act = Activation(activation)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.act(x + other)


@register
class ShortcutKind(LayerKind):
    name = "shortcut"
    keys = ("from", "activation")

    @classmethod
    def parse(cls, section, net) -> ShortcutSpec:
        if section.index == 0:
            raise section.error("[shortcut] cannot be the first layer: it adds the previous layer's output")
        for key, neutral in (("weights_type", "none"), ("weights_normalization", "none")):
            value = section.raw(key)
            if value is not None and value != neutral:
                raise section.error(f"{key}={value} is not supported by darknet-py yet", key)
        sources = section.get_int_list("from", required=True)
        if len(sources) != 1:
            raise section.error(f"from={section.options['from'].value}: darknet-py supports one source layer", "from")
        source = resolve_index(section, "from", sources[0])
        # pjreddie scales the two inputs by alpha/beta (both 1 by default); other values are not used by any cfg.
        for key in ("alpha", "beta"):
            if section.has(key) and section.get_float(key) != 1.0:
                raise section.error(f"{key}={section.options[key].value} is not supported by darknet-py yet", key)
        activation = check_activation(section, default="linear")
        return ShortcutSpec(section.index, section.line, source, activation)

    @classmethod
    def out_shape(cls, spec: ShortcutSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        prev, other = in_shapes
        if prev != other:
            raise section.error(f"adds layer {spec.source} of shape {_fmt(other)} to layer {spec.index - 1} of shape "
                                f"{_fmt(prev)}; the shapes must be equal")
        return prev

    @classmethod
    def build(cls, spec: ShortcutSpec, in_shapes: Sequence[Shape]) -> Shortcut:
        return Shortcut(spec.activation)


def _fmt(shape: Shape) -> str:
    c, h, w = shape
    return f"{w}x{h}x{c}"
