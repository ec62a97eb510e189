"""``[local]``: a locally connected layer, a convolution whose kernels differ at every output
position (pjreddie src/local_layer.c; YOLOv1's layer before its ``[connected]``).

Darknet's forward (``forward_local_layer``): ``im2col`` of the input (zero padding of ``pad``
pixels, rows ordered channel, ky, kx), then for each output location ``j`` (row-major over
out_h x out_w) an ``n x (c*size*size)`` matrix times column ``j``, added to the biases, then the
activation. So the weights are ``[location][filter][c][ky][kx]`` and the biases one per output
value, ``[filter][out_y][out_x]``.

Weights file order (parser.c ``load_weights_upto``, LOCAL): biases[out_h*out_w*n], then
weights[size*size*c*n*out_h*out_w] in that layout. Here: unfold (im2col) + one batched matmul.

Output size (``local_out_height``): ``(h - size)/stride + 1`` when ``pad=0``, otherwise
``(h - 1)/stride + 1`` whatever ``pad`` is, while ``im2col`` pads by ``pad`` pixels. The two
agree only when ``h + 2*pad - size`` gives the same count (``pad = (size-1)/2`` for odd sizes);
otherwise Darknet's matrix reads walk off the column image, so such cfgs are refused.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .activations import Activation, check_activation
from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class LocalSpec(LayerSpec):
    filters: int
    size: int
    stride: int
    pad: int  # the cfg value: im2col's padding in pixels (and a flag for the output size)
    activation: str


def _darknet_out(n: int, size: int, stride: int, pad: int) -> int:
    """``local_out_height``/``width`` (numerators are >= 0 once out_shape has checked the fit)."""
    return (n - size if not pad else n - 1) // stride + 1


def _im2col_out(n: int, size: int, stride: int, pad: int) -> int:
    """The output rows/columns ``im2col_cpu`` lays out."""
    return (n + 2 * pad - size) // stride + 1


class Local(nn.Module):
    """Locally connected layer: ``weight`` (out_h*out_w, filters, c*size*size), ``bias`` (filters, out_h, out_w)."""

    def __init__(self, in_channels: int, filters: int, size: int, stride: int, pad: int, out_h: int, out_w: int,
                 activation: str):
        super().__init__()
        self.size, self.stride, self.pad = size, stride, pad
        self.out_h, self.out_w = out_h, out_w
        k = in_channels * size * size
        self.weight = nn.Parameter(torch.empty(out_h * out_w, filters, k))
        self.bias = nn.Parameter(torch.zeros(filters, out_h, out_w))
        # make_local_layer's scale sqrt(2/(size*size*c)), uniform in +-scale (Darknet fills only the
        # first location's kernels and leaves the rest 0; every location gets them here).
        nn.init.uniform_(self.weight, -(2.0 / k) ** 0.5, (2.0 / k) ** 0.5)
        self.act = Activation(activation)

    def darknet_tensors(self) -> list[tuple[str, torch.Tensor]]:
        return [("bias", self.bias), ("weight", self.weight)]

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """Everything but the activation: (N, c, h, w) -> (N, filters, out_h, out_w)."""
        n = x.shape[0]
        cols = F.unfold(x, self.size, padding=self.pad, stride=self.stride)  # (N, c*size*size, L): im2col
        # per location l: (filters x K) @ (K x N), batched over the locations
        y = torch.bmm(self.weight, cols.permute(2, 1, 0))                    # (L, filters, N)
        y = y.permute(2, 1, 0).reshape(n, -1, self.out_h, self.out_w)
        return y + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))

    @torch.no_grad()
    def randomize_(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """Random kernels scaled so that each filter's pre-activation has about zero mean and unit
        variance over the calibration input (biases: the centring plus a little noise)."""
        w = self.weight
        w.copy_(torch.randn(w.shape, generator=generator) / w.shape[2] ** 0.5)
        self.bias.zero_()
        y = self.linear(x.to(w.dtype))
        mean = y.mean((0, 2, 3))
        std = y.std((0, 2, 3), unbiased=False).clamp_min(1e-2)
        w.div_(std.view(1, -1, 1))
        noise = 0.1 * torch.randn(self.bias.shape, generator=generator)
        self.bias.copy_(noise - (mean / std).view(-1, 1, 1))


@register
class LocalKind(LayerKind):
    name = "local"
    keys = ("filters", "size", "stride", "pad", "activation")

    @classmethod
    def parse(cls, section, net) -> LocalSpec:
        # parse_local's defaults: filters 1, size 1, stride 1, pad 0, activation logistic
        filters = section.get_int("filters", 1, min=1)
        size = section.get_int("size", 1, min=1)
        stride = section.get_int("stride", 1, min=1)
        pad = section.get_int("pad", 0, min=0)
        activation = check_activation(section, default="logistic")
        return LocalSpec(section.index, section.line, filters, size, stride, pad, activation)

    @classmethod
    def out_shape(cls, spec: LocalSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        for axis, n in (("height", h), ("width", w)):
            if n + 2 * spec.pad - spec.size < 0:
                raise section.error(f"size={spec.size} with pad={spec.pad} does not fit the input {axis} {n} "
                                    f"({w}x{h}x{c}): the layer leaves no output", "size")
            ours, theirs = _darknet_out(n, spec.size, spec.stride, spec.pad), _im2col_out(n, spec.size, spec.stride,
                                                                                          spec.pad)
            if ours != theirs:
                # Darknet quirk: local_out_height treats pad as a flag ((h-1)/stride+1) while im2col pads
                # by pad pixels; when the counts differ Darknet's matrix reads are out of step.
                raise section.error(
                    f"pad={spec.pad} with size={spec.size} stride={spec.stride} on input {axis} {n}: Darknet sizes the "
                    f"output as {ours} (pad as a flag) but im2col pads {spec.pad} pixels and lays out {theirs}; "
                    f"not supported (use pad={(spec.size - 1) // 2} with an odd size, or pad=0)", "pad")
        out_h = _darknet_out(h, spec.size, spec.stride, spec.pad)
        out_w = _darknet_out(w, spec.size, spec.stride, spec.pad)
        return (spec.filters, out_h, out_w)

    @classmethod
    def build(cls, spec: LocalSpec, in_shapes: Sequence[Shape]) -> Local:
        c, h, w = in_shapes[0]
        out_h = _darknet_out(h, spec.size, spec.stride, spec.pad)
        out_w = _darknet_out(w, spec.size, spec.stride, spec.pad)
        return Local(c, spec.filters, spec.size, spec.stride, spec.pad, out_h, out_w, spec.activation)

    @classmethod
    def flops(cls, spec: LocalSpec, in_shapes: Sequence[Shape], out_shape: Shape) -> float:
        # Darknet sets no bflops for [local] (pjreddie prints none; AlexeyAB's total leaves it out);
        # we count its multiply-adds as a convolution's, 2 * n * size*size*c * out_h*out_w, as for [connected].
        c = in_shapes[0][0]
        return 2.0 * spec.filters * spec.size * spec.size * c * out_shape[1] * out_shape[2]

    @classmethod
    def weight_count(cls, spec: LocalSpec, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        # one bias per output value, one c x size x size kernel per filter and output location
        c = in_shapes[0][0]
        locations = out_shape[1] * out_shape[2]
        return spec.filters * locations * (1 + c * spec.size * spec.size)

    @classmethod
    def describe(cls, spec: LocalSpec) -> str:
        return f"{spec.filters:5d}     {spec.size:2d} x{spec.size:2d} /{spec.stride:2d}"
