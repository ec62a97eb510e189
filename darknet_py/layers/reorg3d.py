"""``[reorg3d]``: AlexeyAB's space-to-depth (src/reorg_layer.c with blas.c ``reorg_cpu``).

AlexeyAB's parser maps ``[reorg3d]`` to its REORG layer (``parse_reorg``) and ``[reorg]`` to
REORG_OLD (pjreddie's YOLOv2 reorg); this file is the former only.

``stride=s`` (default 1), ``reverse=0``: ``C x H x W -> C*s*s x H/s x W/s`` with
``out[(dy*s + dx)*C + c, j, i] = in[c, j*s + dy, i*s + dx]``: the s*s phase planes stacked
offset-major (not ``pixel_unshuffle``'s channel-major order). Darknet floors ``W/s`` and ``H/s``
but indexes the input with rows ``W/s*s`` wide, so a size that ``s`` does not divide is refused.

``reverse=1``: ``reorg_cpu`` is called with the layer's output sizes (``C/s² x H*s x W*s``) and
splits those ``C/s²`` channels by ``s²`` again, so it is not the inverse of the above: reading the
input's buffer as ``C/s² x H*s x W*s`` (index ``(dy*s + dx)*C/s⁴ + c, j, i``) it writes
``big[c, j*s + dy, i*s + dx]`` of a ``C/s⁴ x H*s² x W*s²`` buffer, which the next layer reads as
``C/s² x H*s x W*s``. Reproduced as is; channels must divide by ``s⁴`` (otherwise Darknet's indices
leave the buffer). No weights.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register
from .shortcut import _fmt


@dataclass
class Reorg3dSpec(LayerSpec):
    stride: int = 1
    reverse: bool = False


class Reorg3d(nn.Module):
    def __init__(self, stride: int, reverse: bool = False):
        super().__init__()
        self.stride, self.reverse = stride, reverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = (int(v) for v in x.shape[1:])  # the batch stays symbolic (-1) for a dynamic export
        s = self.stride
        if not self.reverse:
            y = x.reshape(-1, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4)  # (n, dy, dx, c, j, i)
            return y.reshape(-1, c * s * s, h // s, w // s)
        c2 = c // (s * s)  # the layer's output channels, which reorg_cpu splits by s*s once more
        y = x.reshape(-1, s, s, c2 // (s * s), h * s, w * s).permute(0, 3, 4, 1, 5, 2)  # (n, c, j, dy, i, dx)
        return y.reshape(-1, c2, h * s, w * s)


@register
class Reorg3dKind(LayerKind):
    name = "reorg3d"
    keys = ("stride", "reverse")

    @classmethod
    def parse(cls, section, net) -> Reorg3dSpec:
        stride = section.get_int("stride", 1, min=1)
        reverse = section.get_bool("reverse", False)
        return Reorg3dSpec(section.index, section.line, stride, reverse)

    @classmethod
    def out_shape(cls, spec: Reorg3dSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        s = spec.stride
        if spec.reverse:
            if c % (s ** 4):
                raise section.error(f"reverse=1 with stride={s} on layer {spec.index - 1} ({_fmt(in_shapes[0])}): "
                                    f"Darknet's reorg_cpu needs the channels to divide by stride^4 = {s ** 4}",
                                    "reverse")
            return (c // (s * s), h * s, w * s)
        if h % s or w % s:
            raise section.error(f"stride={s} does not divide the {w}x{h} output of layer {spec.index - 1} "
                                f"({_fmt(in_shapes[0])}); Darknet would read the wrong pixels", "stride")
        return (c * s * s, h // s, w // s)

    @classmethod
    def build(cls, spec: Reorg3dSpec, in_shapes: Sequence[Shape]) -> Reorg3d:
        return Reorg3d(spec.stride, spec.reverse)

    @classmethod
    def describe(cls, spec: Reorg3dSpec) -> str:
        return f"{'':13}/{spec.stride:2d}" + (" reverse" if spec.reverse else "")
