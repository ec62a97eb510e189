"""``[local_avgpool]`` (alias ``[local_avg]``): AlexeyAB's windowed average pooling, the
[maxpool] layer built with ``avgpool=1`` (src/maxpool_layer.c ``forward_local_avgpool_layer``).

Geometry as [maxpool] (``parse_local_avgpool``): ``stride`` (default 1), ``stride_x``/``stride_y``
(default ``stride``), ``size`` (default ``stride``), ``padding`` a *total* (default ``size-1``);
window ``(i, j)`` starts at ``(i*stride_y - padding/2, j*stride_x - padding/2)`` and
``out = (in + padding - size)/stride + 1``. Taps outside the input are skipped and *not counted*:
each output is the sum of its in-range taps divided by their number, so a border window of a
padded pool averages fewer values (cuDNN's AVERAGE_COUNT_EXCLUDE_PADDING on the GPU). Windows with
no tap inside the input would be 0/0 in Darknet and are refused. No weights.

``maxpool_depth``, ``out_channels`` and ``antialiasing``, which [maxpool] reads, are fixed to
0/1/0 by ``parse_local_avgpool`` (it does not read them), so they are unknown keys here.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import LayerKind, LayerSpec, Shape, register
from .shortcut import _fmt


@dataclass
class LocalAvgpoolSpec(LayerSpec):
    size: int
    stride_x: int
    stride_y: int
    padding: int


def _axis(length: int, size: int, stride: int, padding: int) -> tuple[int, int, list[int]]:
    """(outputs, padding after, in-range taps per window) along one axis (after < 0: crop)."""
    out = (length + padding - size) // stride + 1
    before = padding // 2
    after = (out - 1) * stride + size - length - before
    counts = [min(k * stride - before + size, length) - max(k * stride - before, 0) for k in range(out)]
    return out, after, counts


class LocalAvgpool(nn.Module):
    def __init__(self, size: int, stride_x: int, stride_y: int, padding: int):
        super().__init__()
        self.size, self.stride_x, self.stride_y, self.padding = size, stride_x, stride_y, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        size, before = self.size, self.padding // 2
        _, after_y, rows = _axis(h, size, self.stride_y, self.padding)
        _, after_x, cols = _axis(w, size, self.stride_x, self.padding)
        pad = (before, after_x, before, after_y)
        if any(pad):
            x = F.pad(x, pad)  # zeros add nothing to the sums; the divisor below counts real taps only
        y = F.avg_pool2d(x, size, (self.stride_y, self.stride_x))
        if min(rows) < size or min(cols) < size:
            # avg_pool2d divided by size*size; Darknet divides by the number of in-range taps
            count = torch.tensor(rows, dtype=y.dtype, device=y.device)[:, None] * \
                torch.tensor(cols, dtype=y.dtype, device=y.device)[None, :]
            y = y * (size * size / count)
        return y


@register
class LocalAvgpoolKind(LayerKind):
    name = "local_avgpool"
    aliases = ("local_avg",)
    keys = ("size", "stride", "stride_x", "stride_y", "padding")

    @classmethod
    def parse(cls, section, net) -> LocalAvgpoolSpec:
        stride = section.get_int("stride", 1, min=1)
        stride_x = section.get_int("stride_x", stride, min=1)
        stride_y = section.get_int("stride_y", stride, min=1)
        size = section.get_int("size", stride, min=1)  # Darknet: the window defaults to the stride
        padding = section.get_int("padding", size - 1, min=0)
        return LocalAvgpoolSpec(section.index, section.line, size, stride_x, stride_y, padding)

    @classmethod
    def out_shape(cls, spec: LocalAvgpoolSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        outs = []
        for axis, length, stride in (("width", w, spec.stride_x), ("height", h, spec.stride_y)):
            if length + spec.padding < spec.size:
                raise section.error(f"size={spec.size} with padding={spec.padding} does not fit the {axis} of layer "
                                    f"{spec.index - 1} ({_fmt(in_shapes[0])}): no output")
            out, _, counts = _axis(length, spec.size, stride, spec.padding)
            if min(counts) < 1:
                raise section.error(f"padding={spec.padding} puts whole {spec.size}-wide windows outside the {axis} of "
                                    f"layer {spec.index - 1} ({_fmt(in_shapes[0])}): Darknet would average no values "
                                    "(0/0)", "padding")
            outs.append(out)
        return (c, outs[1], outs[0])

    @classmethod
    def build(cls, spec: LocalAvgpoolSpec, in_shapes: Sequence[Shape]) -> LocalAvgpool:
        return LocalAvgpool(spec.size, spec.stride_x, spec.stride_y, spec.padding)

    @classmethod
    def describe(cls, spec: LocalAvgpoolSpec) -> str:
        stride = f"{spec.stride_x:2d}" if spec.stride_x == spec.stride_y else f"{spec.stride_x}x{spec.stride_y}"
        return f"{'':5} {spec.size:2d} x{spec.size:2d} /{stride}"

    @classmethod
    def flops(cls, spec, in_shapes: Sequence[Shape], out_shape: Shape) -> float:
        # make_maxpool_layer (avgpool=1 too): size*size*c*out_h*out_w
        return float(spec.size * spec.size * in_shapes[0][0] * out_shape[1] * out_shape[2])
