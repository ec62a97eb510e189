"""``[normalization]`` / ``[lrn]``: local response normalization across channels
(src/normalization_layer.c, ``forward_normalization_layer``). No weights.

``output = input * norms^(-beta)`` with ``norms = kappa + alpha * (sum of squares over a channel
window)``: alpha is applied to the plain sum (not divided by ``size`` as in Caffe/PyTorch), and
the window of channel ``k`` is ``[k - (size-1)/2, k + size/2]`` clipped to the channels.

Darknet quirk, reproduced: the running sum starts from channels ``0 .. size/2 - 1`` (one short)
and then only adds channels from ``size/2 + 1`` on, while still removing channel ``size/2`` when
the window passes it. The result is the textbook window sum minus ``input[size/2]^2`` for *every*
channel: ``norms_k = kappa + alpha * (window_k - sq[size/2])`` (when ``size/2 < c``). Where that
makes ``norms`` negative, ``pow`` gives NaN as in Darknet. ``size/2 > c`` is refused: Darknet's
first loop then reads past the channels of the image.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class NormalizationSpec(LayerSpec):
    size: int
    alpha: float
    beta: float
    kappa: float


class Normalization(nn.Module):
    def __init__(self, size: int, alpha: float, beta: float, kappa: float):
        super().__init__()
        self.size, self.alpha, self.beta, self.kappa = size, alpha, beta, kappa

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        sq = x * x
        before, after = (self.size - 1) // 2, self.size // 2
        # window sum over channels [k-before, k+after], zeros outside: avg over a (size,1,1) box, times size
        padded = F.pad(sq.unsqueeze(1), (0, 0, 0, 0, before, after))
        window = F.avg_pool3d(padded, (self.size, 1, 1), stride=1).squeeze(1) * self.size
        if after < c:
            # the channel forward_normalization_layer's running sum never adds (module docstring)
            window = window - sq[:, after:after + 1]
        norms = self.kappa + self.alpha * window
        return x * norms.pow(-self.beta)


@register
class NormalizationKind(LayerKind):
    name = "normalization"
    aliases = ("lrn",)
    keys = ("size", "alpha", "beta", "kappa")

    @classmethod
    def parse(cls, section, net) -> NormalizationSpec:
        # parse_normalization's defaults: size 5, alpha .0001, beta .75, kappa 1
        size = section.get_int("size", 5, min=1)
        alpha = section.get_float("alpha", 0.0001)
        beta = section.get_float("beta", 0.75)
        kappa = section.get_float("kappa", 1.0)
        return NormalizationSpec(section.index, section.line, size, alpha, beta, kappa)

    @classmethod
    def out_shape(cls, spec: NormalizationSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        if spec.size // 2 > c:
            raise section.error(f"size={spec.size}: Darknet's window sum reads size/2 = {spec.size // 2} channels "
                                f"from the start but the input has {c} ({w}x{h}x{c})", "size")
        return in_shapes[0]

    @classmethod
    def build(cls, spec: NormalizationSpec, in_shapes: Sequence[Shape]) -> Normalization:
        return Normalization(spec.size, spec.alpha, spec.beta, spec.kappa)

    @classmethod
    def describe(cls, spec: NormalizationSpec) -> str:
        return f"{'':5}     {spec.size:2d}"
