"""``[connected]``: a fully connected layer over the flattened input (src/connected_layer.c).

``output = activation(W x + b)`` with x the input in Darknet's CHW order and W stored row-major
(outputs x inputs). The weight and FLOPs rules live here with the file order, which differs from
a convolution's: biases, weights, then (with batch_normalize) scales, rolling mean, rolling
variance. Darknet's default activation here is logistic, as for convolutions.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .activations import Activation, check_activation
from ..numerics import bn_denominator
from .convolutional import bn_stats
from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class ConnectedSpec(LayerSpec):
    output: int
    batch_normalize: bool
    activation: str


class Connected(nn.Module):
    def __init__(self, inputs: int, outputs: int, batch_normalize: bool, activation: str):
        super().__init__()
        self.fc = nn.Linear(inputs, outputs, bias=True)  # Darknet keeps biases even with BN
        self.bn = nn.BatchNorm1d(outputs, eps=1e-5, momentum=0.01) if batch_normalize else None
        self.act = Activation(activation)
        self.numerics = "pjreddie-cpu"  # inference BN formula (darknet_py.numerics)

    def darknet_tensors(self) -> list[tuple[str, torch.Tensor]]:
        out = [("fc.bias", self.fc.bias), ("fc.weight", self.fc.weight)]
        if self.bn is not None:
            mean, var = bn_stats(self.bn)
            out += [("bn.weight", self.bn.weight), ("bn.running_mean", mean), ("bn.running_var", var)]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        y = F.linear(x.contiguous().view(n, -1), self.fc.weight)
        if self.bn is None:
            y = y + self.fc.bias
        elif self.training:
            y = self.bn(y) + self.fc.bias
        else:
            # forward_connected_layer with BN: normalize (the model's numerics), scale, then add the
            # biases (the BN shift), as for convolutions.
            mean, var = bn_stats(self.bn)
            y = (y - mean) / bn_denominator(var, self.numerics) * self.bn.weight + self.fc.bias
        return self.act(y).view(n, -1, 1, 1)


@register
class ConnectedKind(LayerKind):
    name = "connected"
    aliases = ("conn",)
    keys = ("output", "activation", "batch_normalize")
    training_keys = ("learning_rate", "dontload", "dontloadscales")

    @classmethod
    def parse(cls, section, net) -> ConnectedSpec:
        output = section.get_int("output", 1, min=1)
        bn = section.get_bool("batch_normalize", False)
        activation = check_activation(section, default="logistic")
        section.mark_used(cls.training_keys)
        return ConnectedSpec(section.index, section.line, output, bn, activation)

    @classmethod
    def out_shape(cls, spec: ConnectedSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        return (spec.output, 1, 1)

    @classmethod
    def build(cls, spec: ConnectedSpec, in_shapes: Sequence[Shape]) -> Connected:
        c, h, w = in_shapes[0]
        return Connected(c * h * w, spec.output, spec.batch_normalize, spec.activation)

    @classmethod
    def weight_count(cls, spec: ConnectedSpec, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        # biases, the outputs x inputs matrix, then BN scales/mean/variance
        c, h, w = in_shapes[0]
        return spec.output * (1 + c * h * w + (3 if spec.batch_normalize else 0))

    @classmethod
    def flops(cls, spec: ConnectedSpec, in_shapes: Sequence[Shape], out_shape: Shape) -> float:
        c, h, w = in_shapes[0]
        return 2.0 * c * h * w * spec.output  # make_connected_layer: 2 * inputs * outputs

    @classmethod
    def describe(cls, spec: ConnectedSpec) -> str:
        return f"{spec.output:5d}"
