"""``[convolutional]`` / ``[conv]``: convolution, optional batch norm, activation.

Weights file order (src/parser.c ``load_convolutional_weights``): biases[n]; if
batch_normalize: scales[n], rolling_mean[n], rolling_variance[n]; then the kernels laid out
[n][c/groups][ky][kx] (PyTorch's OIHW). With batch norm the "biases" are BN's beta.

For inference the BN is folded into the convolution once (Darknet's pjreddie CPU formula,
``(x - mean) / (sqrt(var) + 1e-6)``); the original tensors stay the parameters, so saving and
training see exactly what was loaded.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .activations import Activation, check_activation
from .registry import LayerKind, LayerSpec, Shape, register

# pjreddie's normalize_cpu adds this to sqrt(var) (GPU builds and AlexeyAB use sqrt(var + 1e-5)).
BN_EPS = 1e-6


@dataclass
class ConvSpec(LayerSpec):
    filters: int
    size: int
    stride: int
    padding: int
    groups: int
    batch_normalize: bool
    activation: str


class ConvBlock(nn.Module):
    """Conv2d (+ BN) + activation with a plain constructor; ``from_spec`` is the cfg bridge."""

    def __init__(self, in_channels: int, filters: int, size: int, stride: int = 1, padding: int = 0,
                 groups: int = 1, batch_normalize: bool = False, activation: str = "logistic"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, filters, size, stride, padding, groups=groups, bias=not batch_normalize)
        # Darknet's rolling statistics move by .01 per batch (rolling = .99*rolling + .01*batch).
        self.bn = nn.BatchNorm2d(filters, eps=1e-5, momentum=0.01) if batch_normalize else None
        self.act = Activation(activation)
        self.register_buffer("fused_weight", None, persistent=False)
        self.register_buffer("fused_bias", None, persistent=False)
        self._fuse_key = None

    @classmethod
    def from_spec(cls, spec: ConvSpec, in_channels: int) -> "ConvBlock":
        return cls(in_channels, spec.filters, spec.size, spec.stride, spec.padding, spec.groups,
                   spec.batch_normalize, spec.activation)

    # -- weights file order -------------------------------------------------------------
    def darknet_tensors(self) -> List[Tuple[str, torch.Tensor]]:
        if self.bn is not None:
            return [("bn.bias", self.bn.bias), ("bn.weight", self.bn.weight), ("bn.running_mean", self.bn.running_mean),
                    ("bn.running_var", self.bn.running_var), ("conv.weight", self.conv.weight)]
        return [("conv.bias", self.conv.bias), ("conv.weight", self.conv.weight)]

    # -- inference: BN folded into the conv ------------------------------------------------
    def _source_key(self):
        # (storage, in-place version) of each source tensor: a load, an optimiser step or .to()
        # changes it, and the folded kernel is recomputed. Inference tensors carry no version.
        return tuple((t.data_ptr(), t.dtype, -1 if t.is_inference() else t._version)
                     for _, t in self.darknet_tensors())

    def fuse(self) -> None:
        """Fold BN into (fused_weight, fused_bias), computed in float64 and cast back."""
        with torch.no_grad():
            w = self.conv.weight.double()
            if self.bn is not None:
                scale = self.bn.weight.double() / (self.bn.running_var.double().sqrt() + BN_EPS)
                b = self.bn.bias.double() - self.bn.running_mean.double() * scale
                w = w * scale.view(-1, 1, 1, 1)
            else:
                b = self.conv.bias.double()
            dtype = self.conv.weight.dtype
            # keep the kernel's memory format (channels_last when the model was converted to it)
            fmt = torch.channels_last if self.conv.weight.is_contiguous(memory_format=torch.channels_last) \
                and not self.conv.weight.is_contiguous() else torch.contiguous_format
            self.fused_weight = w.to(dtype).contiguous(memory_format=fmt)
            self.fused_bias = b.to(dtype)
        self._fuse_key = self._source_key()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            y = self.conv(x)
            if self.bn is not None:
                y = self.bn(y)
            return self.act(y)
        if self.fused_weight is None or (not torch.jit.is_tracing() and self._fuse_key != self._source_key()):
            self.fuse()
        y = F.conv2d(x, self.fused_weight, self.fused_bias, self.conv.stride, self.conv.padding, 1, self.conv.groups)
        return self.act(y)


@register
class Convolutional(LayerKind):
    name = "convolutional"
    aliases = ("conv",)
    keys = ("filters", "size", "stride", "pad", "padding", "groups", "batch_normalize", "activation")
    # Keys Darknet accepts on a conv that do not change inference.
    training_keys = ("stopbackward", "train_only_bn", "learning_rate", "burnin_update", "sway", "rotate",
                     "stretch", "stretch_sway")
    # Keys that change the forward pass or the file layout and that this version does not implement.
    unsupported = {"binary": "0", "xnor": "0", "flipped": "0", "dilation": "1", "antialiasing": "0",
                   "share_index": None, "deform": "0", "numload": None, "dontload": "0", "dontloadscales": "0",
                   "dontsave": "0", "stride_x": None, "stride_y": None, "assisted_excitation": "0", "coordconv": "0"}

    @classmethod
    def parse(cls, section, net) -> ConvSpec:
        for key, neutral in cls.unsupported.items():
            value = section.raw(key)
            if value is not None and value != neutral:
                raise section.error(f"{key}={value} is not supported by darknet-py yet", key)
        filters = section.get_int("filters", required=True, min=1)
        size = section.get_int("size", required=True, min=1)
        stride = section.get_int("stride", 1, min=1)
        pad = section.get_bool("pad", False)
        padding = section.get_int("padding", 0, min=0)
        if pad:  # Darknet: pad=1 means "same" padding size/2 and overrides padding=
            padding = size // 2
        groups = section.get_int("groups", 1, min=1)
        bn = section.get_bool("batch_normalize", False)
        if not section.has("activation"):
            warnings.warn(f"{section.path}:{section.line}: [convolutional] (layer {section.index}) has no activation=; "
                          "using Darknet's default 'logistic' (OpenCV reads it as 'linear')", stacklevel=2)
        # Darknet's default activation for a conv is logistic (OpenCV's importer uses linear).
        activation = check_activation(section, default="logistic")
        section.mark_used(cls.training_keys)
        return ConvSpec(section.index, section.line, filters, size, stride, padding, groups, bn, activation)

    @classmethod
    def out_shape(cls, spec: ConvSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        if c % spec.groups or spec.filters % spec.groups:
            raise section.error(f"groups={spec.groups} must divide the input channels ({c}) and filters ({spec.filters})")
        out_h = (h + 2 * spec.padding - spec.size) // spec.stride + 1
        out_w = (w + 2 * spec.padding - spec.size) // spec.stride + 1
        if out_h < 1 or out_w < 1:
            raise section.error(f"size={spec.size} stride={spec.stride} padding={spec.padding} on a {w}x{h} input "
                                f"leaves no output")
        return (spec.filters, out_h, out_w)

    @classmethod
    def build(cls, spec: ConvSpec, in_shapes: Sequence[Shape]) -> ConvBlock:
        return ConvBlock.from_spec(spec, in_shapes[0][0])

    @classmethod
    def flops(cls, spec: ConvSpec, in_shapes: Sequence[Shape], out_shape: Shape) -> float:
        # make_convolutional_layer: 2 * n * size*size*c/groups * out_h*out_w (a multiply-add is 2)
        c = in_shapes[0][0]
        return 2.0 * spec.filters * spec.size * spec.size * c / spec.groups * out_shape[1] * out_shape[2]

    @classmethod
    def describe(cls, spec: ConvSpec) -> str:
        groups = f" g{spec.groups}" if spec.groups > 1 else ""
        return f"{spec.filters:5d}{groups:>4} {spec.size:2d} x{spec.size:2d} /{spec.stride:2d}"
