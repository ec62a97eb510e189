"""``[implicit]``: AlexeyAB's learned constant (YOLOR's implicit knowledge), src/representation_layer.c.

AlexeyAB's parser knows this one name: YOLOR's PyTorch cfgs say ``[implicit_add]`` /
``[implicit_mul]`` (with ``[shift_channels]`` / ``[control_channels]``), which AlexeyAB's
``string_to_layer_type`` does not recognise. Here the constant is combined by the usual layers,
e.g. ``[scale_channels]`` with ``from=`` a feature map multiplies by it.

The layer reads no input: its output is ``filters x atoms x 1`` (Darknet's ``out_c, out_h,
out_w``), ``out[c, a, 0] = weights[c*atoms + a]`` for every image of the batch. It reads the
previous layer here only to know the batch size, device and dtype. ``mean``/``std`` (defaults 0
and 0.2) only initialise the weights, ``mean + uniform(-std, std)`` as ``make_implicit_layer``.

Weights file: ``filters*atoms`` floats (``load_implicit_weights``), at this layer's place in the
cfg order, as ``load_weights_upto`` / ``save_weights_upto`` read and write them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class ImplicitSpec(LayerSpec):
    filters: int = 128
    atoms: int = 1
    mean: float = 0.0
    std: float = 0.2


class Implicit(nn.Module):
    def __init__(self, filters: int, atoms: int, mean: float = 0.0, std: float = 0.2):
        super().__init__()
        self.filters, self.atoms, self.mean, self.std = filters, atoms, mean, std
        self.weight = nn.Parameter(torch.empty(filters, atoms))
        with torch.no_grad():
            self.randomize_()

    def darknet_tensors(self) -> list[tuple[str, torch.Tensor]]:
        return [("weight", self.weight)]

    @torch.no_grad()
    def randomize_(self, *inputs, generator=None) -> None:
        """Darknet's initialisation: ``mean + uniform(-std, std)`` per value."""
        u = torch.rand(self.weight.shape, generator=generator, dtype=torch.float64)
        self.weight.copy_(self.mean + (2 * u - 1) * self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype).view(1, self.filters, self.atoms, 1)
        return w.expand(x.shape[0], -1, -1, -1).contiguous()


@register
class ImplicitKind(LayerKind):
    name = "implicit"
    keys = ("filters", "atoms")
    # mean/std: initial values only; the others are AlexeyAB's per-layer training keys (parse loop)
    training_keys = ("mean", "std", "learning_rate", "stopbackward", "dont_update", "burnin_update")

    @classmethod
    def parse(cls, section, net) -> ImplicitSpec:
        value = section.raw("dontload")
        if value is not None and value != "0":  # load_weights_upto would skip this layer's floats
            raise section.error(f"dontload={value} is not supported by darknet-py yet", "dontload")
        filters = section.get_int("filters", 128, min=1)
        atoms = section.get_int("atoms", 1, min=1)
        mean = section.get_float("mean", 0.0)
        std = section.get_float("std", 0.2, min=0.0)
        for key, value in (("mean", mean), ("std", std)):
            if not math.isfinite(value):
                raise section.error(f"{key}={section.raw(key)}: expected a finite number", key)
        section.mark_used(cls.training_keys)
        return ImplicitSpec(section.index, section.line, filters, atoms, mean, std)

    @classmethod
    def out_shape(cls, spec: ImplicitSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        return (spec.filters, spec.atoms, 1)

    @classmethod
    def build(cls, spec: ImplicitSpec, in_shapes: Sequence[Shape]) -> Implicit:
        return Implicit(spec.filters, spec.atoms, spec.mean, spec.std)

    @classmethod
    def weight_count(cls, spec: ImplicitSpec, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return spec.filters * spec.atoms

    @classmethod
    def describe(cls, spec: ImplicitSpec) -> str:
        return f"{spec.filters:5d}" + (f" x{spec.atoms} atoms" if spec.atoms != 1 else "")
