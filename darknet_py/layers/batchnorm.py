"""``[batchnorm]``: a standalone batch normalization over the channels (pjreddie src/batchnorm_layer.c).

Inference (``forward_batchnorm_layer``, not training): ``normalize_cpu`` with the rolling
statistics, ``(x - rolling_mean) / (sqrt(rolling_variance) + .000001f)`` (pjreddie's CPU epsilon,
outside the root, as for convolutions here), then ``* scales``, then ``+ biases``.

Weights file (parser.c ``load_batchnorm_weights``): scales[c], rolling_mean[c],
rolling_variance[c]. The layer's biases are neither loaded nor saved, so in any network read from
a file they are calloc's zeros: this module has no bias at all (a Darknet quirk: a bias trained by
Darknet is lost on save). AlexeyAB's fork writes biases[c] first (4c floats, epsilon inside the
root); its files do not match this layout.

pjreddie's CPU build never allocates ``l.x`` for this layer kind and crashes copying into it; the
formula above is what its code computes otherwise (its GPU path uses ``sqrt(var + .00001f)``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..numerics import bn_denominator
from .registry import LayerKind, LayerSpec, Shape, register


class BatchNorm(nn.Module):
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))  # Darknet's scales
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.numerics = "pjreddie-cpu"  # inference BN formula (darknet_py.numerics)

    def darknet_tensors(self) -> list[tuple[str, torch.Tensor]]:
        return [("weight", self.weight), ("running_mean", self.running_mean), ("running_var", self.running_var)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            # batch statistics; rolling = .99*rolling + .01*batch as Darknet's training step
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, None, True, 0.01, 1e-5)
        shape = (1, -1, 1, 1)
        denom = bn_denominator(self.running_var, self.numerics)
        return (x - self.running_mean.view(shape)) / denom.view(shape) * self.weight.view(shape)

    @torch.no_grad()
    def randomize_(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """Statistics measured on the calibration input (lightly perturbed), scales near 1: output near
        zero mean and unit variance."""
        c = self.weight.numel()
        mean = x.mean((0, 2, 3))
        var = x.var((0, 2, 3), unbiased=False).clamp_min(1e-4)
        self.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(c, generator=generator))
        self.running_var.copy_(var * (0.8 + 0.4 * torch.rand(c, generator=generator)))
        self.weight.copy_(0.75 + 0.5 * torch.rand(c, generator=generator))


@register
class BatchnormKind(LayerKind):
    name = "batchnorm"

    @classmethod
    def parse(cls, section, net) -> LayerSpec:
        return LayerSpec(section.index, section.line)  # parse_batchnorm reads no keys

    @classmethod
    def out_shape(cls, spec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        return in_shapes[0]

    @classmethod
    def build(cls, spec, in_shapes: Sequence[Shape]) -> BatchNorm:
        return BatchNorm(in_shapes[0][0])

    @classmethod
    def weight_count(cls, spec, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return 3 * in_shapes[0][0]  # scales, rolling mean, rolling variance
