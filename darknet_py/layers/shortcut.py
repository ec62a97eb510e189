"""``[shortcut]``: residual add ``act(previous + layers[from])`` (src/shortcut_layer.c).

The output has the previous layer's shape. When the ``from`` layer has a different channel
count (yolov3-tiny-prn), Darknet adds only the channels both have and keeps the rest of the
previous layer's output as is: pjreddie's ``shortcut_cpu`` loops over ``min(c1, c2)`` channels,
AlexeyAB's ``shortcut_multilayer_cpu`` adds ``add[i]`` for flat indices ``i < add_outputs``, which
for equal height and width is the same first ``min(c1, c2)`` channels. Different widths/heights
(pjreddie's stride/sample sub-sampling) are refused rather than guessed, as are several ``from``
layers and ``weights_type`` (no reference cfg of this project uses them). No bytes in the weights
file.
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
        c, c2 = x.shape[1], other.shape[1]
        if c2 == c:
            return self.act(x + other)
        if c2 > c:  # the extra channels of the `from` layer are ignored
            return self.act(x + other[:, :c])
        return self.act(torch.cat((x[:, :c2] + other, x[:, c2:]), 1))  # channels past c2 pass through


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
        if prev[1:] != other[1:]:
            raise section.error(f"adds layer {spec.source} of shape {_fmt(other)} to layer {spec.index - 1} of shape "
                                f"{_fmt(prev)}; the shapes must be equal in width x height (Darknet's sub-sampled add "
                                "is not supported; different channel counts are: the common channels are added)")
        return prev

    @classmethod
    def build(cls, spec: ShortcutSpec, in_shapes: Sequence[Shape]) -> Shortcut:
        return Shortcut(spec.activation)


def _fmt(shape: Shape) -> str:
    c, h, w = shape
    return f"{w}x{h}x{c}"
