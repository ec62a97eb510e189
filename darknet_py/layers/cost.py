"""``[cost]``: the classifiers' training loss (src/cost_layer.c). At inference it passes its
input through unchanged, so its keys are accepted and kept for training. No weights."""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register

COST_TYPES = ("sse", "masked", "smooth", "L1", "seg", "wgan")


@register
class CostKind(LayerKind):
    name = "cost"
    training_keys = ("type", "scale", "ratio", "noobj", "thresh")

    @classmethod
    def parse(cls, section, net) -> LayerSpec:
        kind = section.get_str("type", "sse")
        if kind not in COST_TYPES:
            raise section.error(f"type={kind}: expected one of {', '.join(COST_TYPES)}", "type")
        section.mark_used(cls.training_keys)
        return LayerSpec(section.index, section.line)

    @classmethod
    def out_shape(cls, spec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        return in_shapes[0]

    @classmethod
    def build(cls, spec, in_shapes: Sequence[Shape]) -> nn.Identity:
        return nn.Identity()
