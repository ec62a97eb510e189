"""``[sam]``: AlexeyAB's spatial attention, ``act(previous * layers[from])`` element-wise
(src/sam_layer.c, ``forward_sam_layer``). YOLOv4's "modified SAM": a logistic convolution gives
the attention map, which multiplies an earlier layer's output of the same shape.

``from=`` is one layer index, negative = relative to this layer (``parse_sam`` reads it with
``atoi``, so "from=-2,-3" would silently mean -2; here a list is refused). ``make_sam_layer``
asserts that the two layers have equal channels, width and height; here that is a cfg error
naming both. The output has that shape. No weights.

``activation=`` (default linear) is applied with Darknet's ``activate_array``, whose per-element
``activate()`` has no case for swish, mish, hard_mish or relu6 and returns 0 for them (the parser
only prints a warning): those are refused, as Darknet's CPU output would be all zeros.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .activations import Activation, check_activation
from .registry import LayerKind, LayerSpec, Shape, register, resolve_index
from .shortcut import _fmt

# Names Darknet's get_activation knows but activate() maps to 0 (no switch case).
ZERO_IN_ACTIVATE_ARRAY = ("swish", "mish", "hard_mish", "relu6")


def parse_from(section) -> int:
    """``from=`` of [sam] / [scale_channels]: one layer, absolute index returned."""
    if section.index == 0:
        raise section.error(f"[{section.kind}] cannot be the first layer: it multiplies the previous layer's output")
    sources = section.get_int_list("from", required=True)
    if len(sources) != 1:
        raise section.error(f"from={section.options['from'].value}: [{section.kind}] reads one layer (Darknet's "
                            "atoi would silently take the first)", "from")
    return resolve_index(section, "from", sources[0])


def parse_product_activation(section) -> str:
    """``activation=`` of [sam] / [scale_channels] (default linear), refusing the ones Darknet zeroes."""
    name = check_activation(section, default="linear")
    if name in ZERO_IN_ACTIVATE_ARRAY:
        raise section.error(f"activation={name} is not supported on [{section.kind}]: Darknet's activate_array has no "
                            f"case for it there and outputs 0 (its parser only warns)", "activation")
    return name


@dataclass
class SamSpec(LayerSpec):
    source: int  # absolute index of the layer multiplied by the previous one
    activation: str = "linear"

    def input_layers(self) -> list[int]:
        return [self.index - 1, self.source]


class Sam(nn.Module):
    def __init__(self, activation: str = "linear"):
        super().__init__()
        self.act = Activation(activation)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return self.act(x * other)


@register
class SamKind(LayerKind):
    name = "sam"
    keys = ("from", "activation")

    @classmethod
    def parse(cls, section, net) -> SamSpec:
        source = parse_from(section)
        return SamSpec(section.index, section.line, source, parse_product_activation(section))

    @classmethod
    def out_shape(cls, spec: SamSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        prev, other = in_shapes
        if prev != other:
            raise section.error(f"multiplies layer {spec.index - 1} ({_fmt(prev)}) element-wise by layer {spec.source} "
                                f"({_fmt(other)}); Darknet's make_sam_layer needs equal width x height x channels")
        return other

    @classmethod
    def build(cls, spec: SamSpec, in_shapes: Sequence[Shape]) -> Sam:
        return Sam(spec.activation)

    @classmethod
    def describe(cls, spec: SamSpec) -> str:
        return f"  {spec.source}"
