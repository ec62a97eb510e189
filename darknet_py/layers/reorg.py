"""``[reorg]``: pjreddie's reorganisation layer (src/reorg_layer.c, ``reorg_cpu`` in src/blas.c).

YOLOv2 uses it to bring the 26x26 features next to the 13x13 ones. The output is labelled
``(C*s^2, H/s, W/s)`` but it is **not** a space-to-depth of the input: ``forward_reorg_layer``
calls ``reorg_cpu(input, w, h, c, batch, stride, forward=0, output)`` with the *input*'s size,
and ``reorg_cpu`` treats those as the small side, so the flat input buffer is read as a
``(C/s^2, H*s, W*s)`` image and ``output[k, j, i] = that[k % (C/s^2), j*s + (k / (C/s^2)) / s,
i*s + (k / (C/s^2)) % s]`` with k, j, i ranging over (C, H, W) and the result relabelled. Rows of
different channels end up mixed. OpenCV's ReorgLayer reproduces the same mapping, and AlexeyAB's
parser maps ``[reorg]`` to this one too (its REORG_OLD); its ``[reorg3d]`` is the true
space-to-depth (darknet_py/layers/reorg3d.py).

Keys (parse_reorg):

- ``stride`` (Darknet's default 1; OpenCV's importer assumes 2, so a cfg without it is two nets).
- ``reverse=1``: ``reorg_cpu(..., forward=1)``: the inverse scatter, ``(C, H, W)`` read as
  ``(s, s, C/s^2, H, W)`` and written as the ``(C/s^2, H*s, W*s)`` image.
- ``flatten=1``: a CHW -> HWC transpose of the buffer (HWC -> CHW with reverse), labelled with the
  stride's shape as above.
- ``extra=N`` (a flat output with N more values and no image shape) is refused.

C must be a multiple of s^2 and, without reverse, H and W multiples of s: otherwise ``reorg_cpu``
reads or writes outside its buffers. No weights.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class ReorgSpec(LayerSpec):
    stride: int
    reverse: bool = False
    flatten: bool = False


class Reorg(nn.Module):
    def __init__(self, stride: int, reverse: bool = False, flatten: bool = False):
        super().__init__()
        self.stride, self.reverse, self.flatten = stride, reverse, flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = (int(v) for v in x.shape)
        s = self.stride
        x = x.contiguous()  # the mapping is defined on Darknet's NCHW buffer
        if self.flatten:
            # flatten(): the buffer's C x (H*W) block transposed (HWC <-> CHW), then relabelled
            y = x.reshape(n, h * w, c) if self.reverse else x.reshape(n, c, h * w)
            y = y.transpose(1, 2)
        elif self.reverse:
            # reorg_cpu forward=1: input (k, j, i), k = (oy*s + ox)*(C/s^2) + c2 -> image (c2, j*s+oy, i*s+ox)
            y = x.reshape(n, s, s, c // (s * s), h, w).permute(0, 3, 4, 1, 5, 2)
        else:
            # reorg_cpu forward=0 on the input's own size: the buffer read as (C/s^2, H*s, W*s), i.e.
            # (c2, j, oy, i, ox), written as (oy, ox, c2, j, i): the flat (C, H, W) buffer, relabelled
            y = x.reshape(n, c // (s * s), h, s, w, s).permute(0, 3, 5, 1, 2, 4)
        if self.reverse:
            return y.reshape(n, c // (s * s), h * s, w * s)
        return y.reshape(n, c * s * s, h // s, w // s)


@register
class ReorgKind(LayerKind):
    name = "reorg"
    keys = ("stride", "reverse", "flatten", "extra")

    @classmethod
    def parse(cls, section, net) -> ReorgSpec:
        extra = section.get_int("extra", 0, min=0)
        if extra:
            raise section.error(f"extra={extra} is not supported by darknet-py (Darknet then outputs a flat vector "
                                "of input+extra values with no image shape)", "extra")
        if not section.has("stride"):
            warnings.warn(f"{section.path}:{section.line}: [reorg] (layer {section.index}) has no stride=; using "
                          "Darknet's default 1 (OpenCV's importer assumes 2)", stacklevel=2)
        stride = section.get_int("stride", 1, min=1)
        reverse = section.get_bool("reverse", False)
        flatten = section.get_bool("flatten", False)
        return ReorgSpec(section.index, section.line, stride, reverse, flatten)

    @classmethod
    def out_shape(cls, spec: ReorgSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        s = spec.stride
        prev = f"layer {spec.index - 1}" if spec.index > 0 else "the network input"
        if specs and 0 < spec.index <= len(specs):
            prev += f" (cfg line {specs[spec.index - 1].line})"
        if spec.reverse:
            if c % (s * s):
                raise section.error(f"reverse=1 stride={s}: the {c} channels of {prev} ({w}x{h}x{c}) are not a "
                                    f"multiple of stride^2 = {s * s}", "stride")
            return (c // (s * s), h * s, w * s)
        if h % s or w % s:
            raise section.error(f"stride={s} does not divide the {w}x{h} output of {prev}; is [net] width/height "
                                "a multiple of 32?", "stride")
        if c % (s * s) and not spec.flatten:
            # reorg_cpu reads the input as (C/s^2, H*s, W*s): a remainder would read past the buffer
            raise section.error(f"stride={s}: the {c} channels of {prev} are not a multiple of stride^2 = {s * s} "
                                "(Darknet's reorg would read past its input)", "stride")
        return (c * s * s, h // s, w // s)

    @classmethod
    def build(cls, spec: ReorgSpec, in_shapes: Sequence[Shape]) -> Reorg:
        return Reorg(spec.stride, spec.reverse, spec.flatten)

    @classmethod
    def describe(cls, spec: ReorgSpec) -> str:
        return f"{'':5} {'':7} /{spec.stride:2d}"
