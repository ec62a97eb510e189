"""``[crop]``: a centre crop at inference, with Darknet's input rescaling (src/crop_layer.c).

``forward_crop_layer`` outside training: rows ``dh = (h - crop_height)/2``, columns
``dw = (w - crop_width)/2`` (integer division, the odd pixel left at the bottom/right), no flip,
and every value mapped ``x*2 - 1`` ([0, 1] pixels to [-1, 1]) unless ``noadjust=1``. No weights.

Training-only keys (accepted and kept): ``flip``, ``angle``, ``saturation``, ``exposure``,
``shift`` (random crop position, mirror, rotation and colour jitter while training). Darknet's
GPU kernel crops at the half-pixel centre ``(w - crop_width)/2.f`` with bilinear sampling; we
follow the CPU code, which the two agree with whenever ``w - crop_width`` is even.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class CropSpec(LayerSpec):
    crop_height: int
    crop_width: int
    noadjust: bool
    # Training keys, kept for a trainer (they do not change inference).
    flip: bool = False
    angle: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    shift: float = 0.0


class Crop(nn.Module):
    def __init__(self, in_h: int, in_w: int, crop_height: int, crop_width: int, noadjust: bool):
        super().__init__()
        self.dh, self.dw = (in_h - crop_height) // 2, (in_w - crop_width) // 2
        self.crop_height, self.crop_width, self.noadjust = crop_height, crop_width, noadjust

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Darknet's random crop position and flip while training are left to the data loader.
        y = x[:, :, self.dh:self.dh + self.crop_height, self.dw:self.dw + self.crop_width]
        if self.noadjust:
            return y.contiguous()
        return y * 2.0 - 1.0  # input*scale + trans with scale 2, trans -1


@register
class CropKind(LayerKind):
    name = "crop"
    keys = ("crop_height", "crop_width", "noadjust")
    training_keys = ("flip", "angle", "saturation", "exposure", "shift")

    @classmethod
    def parse(cls, section, net) -> CropSpec:
        # parse_crop's defaults: crop_height 1, crop_width 1, noadjust 0
        crop_height = section.get_int("crop_height", 1, min=1)
        crop_width = section.get_int("crop_width", 1, min=1)
        noadjust = section.get_bool("noadjust", False)
        return CropSpec(section.index, section.line, crop_height, crop_width, noadjust,
                        flip=section.get_bool("flip", False), angle=section.get_float("angle", 0.0),
                        saturation=section.get_float("saturation", 1.0, min=0.0),
                        exposure=section.get_float("exposure", 1.0, min=0.0), shift=section.get_float("shift", 0.0))

    @classmethod
    def out_shape(cls, spec: CropSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        for key, crop, n, axis in (("crop_height", spec.crop_height, h, "height"),
                                   ("crop_width", spec.crop_width, w, "width")):
            if crop > n:
                # Darknet computes rand() % (h - crop_height + 1): a division by zero or a negative offset
                raise section.error(f"{key}={crop} is larger than the input {axis} {n} ({w}x{h}x{c})", key)
        return (c, spec.crop_height, spec.crop_width)

    @classmethod
    def build(cls, spec: CropSpec, in_shapes: Sequence[Shape]) -> Crop:
        _, h, w = in_shapes[0]
        return Crop(h, w, spec.crop_height, spec.crop_width, spec.noadjust)

    @classmethod
    def describe(cls, spec: CropSpec) -> str:
        return f"{spec.crop_width:5d} x{spec.crop_height:4d}"
