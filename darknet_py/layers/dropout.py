"""``[dropout]``: identity at inference (src/dropout_layer.c returns at once unless training;
during training it scales the kept values by 1/(1-probability)). No weights."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class DropoutSpec(LayerSpec):
    probability: float


class Dropout(nn.Module):
    def __init__(self, probability: float):
        super().__init__()
        self.probability = probability

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.probability > 0:
            return nn.functional.dropout(x, self.probability, training=True)
        return x


@register
class DropoutKind(LayerKind):
    name = "dropout"
    keys = ("probability",)

    @classmethod
    def parse(cls, section, net) -> DropoutSpec:
        p = section.get_float("probability", 0.5)
        if not 0.0 <= p < 1.0:
            raise section.error(f"probability={p}: expected 0 <= probability < 1", "probability")
        return DropoutSpec(section.index, section.line, p)

    @classmethod
    def out_shape(cls, spec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        return in_shapes[0]

    @classmethod
    def build(cls, spec, in_shapes: Sequence[Shape]) -> Dropout:
        return Dropout(spec.probability)
