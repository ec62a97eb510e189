"""``[maxpool]`` (src/maxpool_layer.c).

Darknet's ``padding`` is a *total* (default ``size-1``); window ``i`` starts at
``i*stride - padding/2`` and taps outside the input are skipped (as if -inf), so
``out = (in + padding - size)/stride + 1``. That is why yolov3-tiny's size-2 stride-1 pool
keeps 13x13: it pads one column on the right only. A zero-padding port differs wherever
inputs are negative. ``size`` defaults to ``stride`` (``parse_maxpool``). No weights.

AlexeyAB's keys:

- ``stride_x`` / ``stride_y``: separate strides, default ``stride``.
- ``maxpool_depth=1`` with ``out_channels=G`` (default 1): a max across channels instead of space;
  output channel g is the max of input channels g, g+G, g+2G, ... at each pixel
  (``forward_maxpool_layer``); width and height are kept and size/stride/padding ignored.
  ``out_channels`` above the input's channels is refused (Darknet would output -FLT_MAX there).
- ``antialiasing=1|2``: the pool runs at stride 1, then a fixed depthwise blur (3x3
  [1 2 1]x[1 2 1]/16 with padding 1, or 2x2 of 1/4 with padding 0) takes the stride.

Refused: ``maxpool_zero_nonmax=1`` (AlexeyAB's CUDA forward only), ``antialiasing`` with
``maxpool_depth`` (Darknet's forward returns before the blur while the next layer is sized
for it). ``[maxpool]`` has no average mode; AlexeyAB's ``[local_avgpool]`` is its own kind.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .convolutional import AntiAliasBlur, blur_out_shape
from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class MaxpoolSpec(LayerSpec):
    size: int
    stride: int  # along x (Darknet's l.stride = stride_x)
    padding: int
    stride_y: int = 0  # 0: the same as stride
    maxpool_depth: bool = False
    out_channels: int = 1
    antialiasing: int = 0

    @property
    def strides(self) -> tuple[int, int]:
        """(y, x)."""
        return (self.stride_y or self.stride, self.stride)


class Maxpool(nn.Module):
    def __init__(self, size: int, stride, padding: int, *, channels: int = 0, antialiasing: int = 0):
        super().__init__()
        strides = (stride, stride) if isinstance(stride, int) else tuple(stride)
        self.size, self.padding = size, padding
        # With antialiasing the pool runs at stride 1 and the blur takes the stride.
        self.stride = (1, 1) if antialiasing else strides
        self.blur = AntiAliasBlur(channels, antialiasing, strides) if antialiasing else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        (sy, sx), size, before = self.stride, self.size, self.padding // 2
        out_h = (h + self.padding - size) // sy + 1
        out_w = (w + self.padding - size) // sx + 1
        # Pad after so that an unpadded pool yields exactly Darknet's output size (negative = crop).
        # That is padding - before - (w + padding - size) % sx: it depends on w modulo the stride only,
        # so the numbers a dynamic-size export traces hold at every multiple of the network's stride.
        pad = (before, (out_w - 1) * sx + size - w - before, before, (out_h - 1) * sy + size - h - before)
        if any(pad):
            x = F.pad(x, pad, value=float("-inf"))  # Darknet skips out-of-range taps: -inf padding
        y = F.max_pool2d(x, size, (sy, sx))
        return y if self.blur is None else self.blur(y)


class MaxpoolDepth(nn.Module):
    """AlexeyAB's ``maxpool_depth``: output channel g = max over input channels k with k % G == g."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = (int(d) for d in x.shape[1:])  # the batch stays symbolic (-1) for a dynamic export
        g = self.out_channels
        full = c // g * g
        y = x[:, :full].reshape(-1, c // g, g, h, w).amax(1)  # channel k = j*G + g
        if full < c:  # the last, shorter round covers output channels 0 .. c-full-1
            y = torch.cat((torch.maximum(y[:, :c - full], x[:, full:]), y[:, c - full:]), 1)
        return y


@register
class MaxpoolKind(LayerKind):
    name = "maxpool"
    aliases = ("max",)
    keys = ("size", "stride", "stride_x", "stride_y", "padding", "maxpool_depth", "out_channels", "antialiasing",
            "maxpool_zero_nonmax")

    @classmethod
    def parse(cls, section, net) -> MaxpoolSpec:
        if section.get_bool("maxpool_zero_nonmax", False):
            raise section.error("maxpool_zero_nonmax=1 is not supported by darknet-py (AlexeyAB applies it in its CUDA "
                                "forward only)", "maxpool_zero_nonmax")
        stride = section.get_int("stride", 1, min=1)
        stride_x = section.get_int("stride_x", stride, min=1)
        stride_y = section.get_int("stride_y", stride, min=1)
        size = section.get_int("size", stride, min=1)  # parse_maxpool: size defaults to stride
        padding = section.get_int("padding", size - 1, min=0)
        depth = section.get_bool("maxpool_depth", False)
        out_channels = section.get_int("out_channels", 1, min=1)
        antialiasing = section.get_int("antialiasing", 0, choices=(0, 1, 2))
        if depth and antialiasing:
            raise section.error(f"antialiasing={antialiasing} with maxpool_depth=1 is not supported: Darknet's forward "
                                "returns before the blur while the next layer is sized for it", "antialiasing")
        if section.has("out_channels") and not depth:
            warnings.warn(f"{section.path}:{section.options['out_channels'].line}: [maxpool] out_channels= has no "
                          "effect without maxpool_depth=1 (as in Darknet)", stacklevel=2)
        return MaxpoolSpec(section.index, section.line, size, stride_x, padding,
                           stride_y if stride_y != stride_x else 0, depth, out_channels, antialiasing)

    @classmethod
    def _host_shape(cls, spec: MaxpoolSpec, h: int, w: int) -> tuple[int, int]:
        """Output (h, w) of the pool itself: stride 1 when an antialiasing blur takes the stride."""
        sy, sx = (1, 1) if spec.antialiasing else spec.strides
        return (h + spec.padding - spec.size) // sy + 1, (w + spec.padding - spec.size) // sx + 1

    @classmethod
    def out_shape(cls, spec: MaxpoolSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        if spec.maxpool_depth:
            if spec.out_channels > c:
                raise section.error(f"out_channels={spec.out_channels} exceeds the {c} input channels: Darknet's "
                                    "maxpool_depth would output -FLT_MAX in the channels no input reaches",
                                    "out_channels")
            return (spec.out_channels, h, w)
        out_h, out_w = cls._host_shape(spec, h, w)
        if out_h < 1 or out_w < 1:
            raise section.error(f"size={spec.size} on a {w}x{h} input leaves no output")
        if spec.padding // 2 >= spec.size:
            raise section.error(f"padding={spec.padding} puts whole windows outside the input (size={spec.size})",
                                "padding")
        if spec.antialiasing:
            out_h, out_w = blur_out_shape(spec, out_h, out_w, w, h, section)
        return (c, out_h, out_w)

    @classmethod
    def build(cls, spec: MaxpoolSpec, in_shapes: Sequence[Shape]) -> nn.Module:
        if spec.maxpool_depth:
            return MaxpoolDepth(spec.out_channels)
        return Maxpool(spec.size, spec.strides, spec.padding, channels=in_shapes[0][0], antialiasing=spec.antialiasing)

    @classmethod
    def describe(cls, spec) -> str:
        sy, sx = spec.strides
        stride = f"{sx:2d}" if sx == sy else f"{sx}x{sy}"
        depth = f" depth {spec.out_channels}" if spec.maxpool_depth else ""
        return f"{'':5} {spec.size:2d} x{spec.size:2d} /{stride}{depth}"

    @classmethod
    def flops(cls, spec, in_shapes: Sequence[Shape], out_shape: Shape) -> float:
        # AlexeyAB's make_maxpool_layer counts size*size*c*out_h*out_w (pjreddie's table shows none),
        # with the input's c and the pool's own output (stride 1 under antialiasing; width and height
        # kept under maxpool_depth).
        c, h, w = in_shapes[0]
        out_h, out_w = (h, w) if spec.maxpool_depth else cls._host_shape(spec, h, w)
        return float(spec.size * spec.size * c * out_h * out_w)
