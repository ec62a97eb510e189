"""``[convolutional]`` / ``[conv]``: convolution, optional batch norm, activation.

Weights file order (src/parser.c ``load_convolutional_weights``): biases[n]; if
batch_normalize: scales[n], rolling_mean[n], rolling_variance[n]; then the kernels laid out
[n][c/groups][ky][kx] (PyTorch's OIHW). With batch norm the "biases" are BN's beta.

For inference the BN is folded into the convolution once (Darknet's pjreddie CPU formula,
``(x - mean) / (sqrt(var) + 1e-6)``); the original tensors stay the parameters, so saving and
training see exactly what was loaded.

Keys beyond the plain conv (the plain path is unchanged by them):

- ``groups`` (incl. depthwise, groups = channels): grouped convolution, Darknet's per-group GEMM.
- ``dilation`` (AlexeyAB): ``im2col_cpu_ext`` pads by ``padding * dilation``; ignored for size 1 as
  ``parse_convolutional`` does. The layer's output size is Darknet's undilated
  ``(h + 2*padding - size)/stride + 1``, which equals the dilated im2col's only when
  ``2*padding = size - 1``: other paddings are refused (Darknet would misalign its output).
- ``stride_x`` / ``stride_y`` (AlexeyAB): separate strides, default ``stride``.
- ``binary=1``: kernels binarised per filter, ``w > 0 ? mean|w| : -mean|w|`` (``binarize_weights``)
  as both trees' CUDA forward does; their CPU forward skips it for ``binary`` alone (only ``xnor``
  binarises there), which would run the real-valued kernels of a net trained binarised.
- ``xnor=1``: binarised kernels and input ``x > 0 ? 1 : -1`` (pjreddie's CPU ``binarize_cpu``;
  the CUDA kernel tests ``x >= 0``), zero padding kept (im2col pads after binarising), then BN or
  bias and the activation. Followed is pjreddie's float path: AlexeyAB's bit-packed CPU path pads
  with -1 bits and its parser forces ``groups=1`` for xnor (a different weights file), pjreddie
  keeps ``groups``. The weights file is unchanged by either key.
- ``flipped=1``: the file holds the kernel matrix transposed, (c/groups*size*size) x n
  (``transpose_matrix`` after reading, AlexeyAB's ``c/groups``; pjreddie's ``c*size*size`` reads
  past the buffer when groups > 1). It is written back the same way, so a file round-trips
  (Darknet's saver writes it untransposed, which its own loader then misreads).
- ``antialiasing=1|2`` (AlexeyAB): the conv runs at stride 1 and a fixed depthwise blur (3x3
  [1 2 1]x[1 2 1]/16, padding 1; or 2x2 of 1/4, padding 0) follows the activation with the
  layer's stride; the blur owns no bytes in the file.
- ``stopbackward``, ``train_only_bn`` and the other training keys are accepted and kept.

Refused with the line: ``share_index`` (another layer's weights), ``assisted_excitation``,
``coordconv`` (CUDA forward only), ``numload``/``dontload``/``dontloadscales``/``dontsave`` (they
change what the file holds). Not reproduced: pjreddie's CPU forward hands a size-1 conv its input
as the GEMM matrix whatever the stride, so a 1x1 conv with stride > 1 (or with ``padding``) reads
the wrong pixels there; AlexeyAB and both CUDA paths compute the convolution, as here.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..numerics import bn_denominator, train_batchnorm
from .activations import Activation, check_activation
from .registry import LayerKind, LayerSpec, Shape, register


@dataclass
class ConvSpec(LayerSpec):
    filters: int
    size: int
    stride: int  # along x (AlexeyAB's stride_x); Darknet's l.stride
    padding: int
    groups: int
    batch_normalize: bool
    activation: str
    stride_y: int | None = None  # None: the same as stride
    dilation: int = 1
    binary: bool = False
    xnor: bool = False
    flipped: bool = False
    antialiasing: int = 0  # 0 none, 1 a 3x3 blur, 2 a 2x2 blur after the conv (AlexeyAB)

    @property
    def strides(self) -> tuple[int, int]:
        """(y, x)."""
        return (self.stride if self.stride_y is None else self.stride_y, self.stride)


def bn_stats(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(running_mean, running_var) of a torch batch norm that tracks them (Darknet's always do)."""
    return cast(torch.Tensor, bn.running_mean), cast(torch.Tensor, bn.running_var)


def binarize_weights(w: torch.Tensor) -> torch.Tensor:
    """``binarize_weights``: per filter, +mean|w| where w > 0 and -mean|w| elsewhere."""
    mean = w.abs().mean((1, 2, 3), keepdim=True)
    return torch.where(w > 0, mean, -mean)


def binarize_input(x: torch.Tensor) -> torch.Tensor:
    """``binarize_cpu``: 1 where x > 0, else -1 (0 included)."""
    return (x > 0).to(x.dtype) * 2 - 1


def _straight_through(x: torch.Tensor, fn) -> torch.Tensor:
    # Darknet's xnor training: the forward uses the binarised values, the update goes to the real ones.
    return x + (fn(x) - x).detach()


class AntiAliasBlur(nn.Module):
    """AlexeyAB's antialiasing (``make_convolutional_layer``'s ``input_layer``): a fixed depthwise
    blur, linear, no bias, with the stride the host layer gave up."""

    weight: torch.Tensor

    def __init__(self, channels: int, kind: int, stride: tuple[int, int]):
        super().__init__()
        if kind == 2:
            kernel, self.padding = torch.full((2, 2), 0.25), 0
        else:
            row = torch.tensor([1.0, 2.0, 1.0])
            kernel, self.padding = torch.outer(row, row) / 16, 1
        self.channels, self.stride = channels, stride
        # Not a parameter and not in the file: Darknet writes these constants at construction.
        self.register_buffer("weight", kernel.expand(channels, 1, *kernel.shape).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding, 1, self.channels)


def blur_out_shape(spec, out_h: int, out_w: int, w: int, h: int, section) -> tuple[int, int]:
    """(out_h, out_w) after the antialiasing blur that takes the stride of a conv or maxpool
    (``spec.antialiasing``, ``spec.strides``); ``w x h`` is the layer's input, for the error."""
    (sy, sx), (size, pad) = spec.strides, ((2, 0) if spec.antialiasing == 2 else (3, 1))
    out_h, out_w = (out_h + 2 * pad - size) // sy + 1, (out_w + 2 * pad - size) // sx + 1
    if out_h < 1 or out_w < 1:
        raise section.error(f"antialiasing={spec.antialiasing} blur ({size}x{size}) leaves no output on the "
                            f"{w}x{h} input", "antialiasing")
    return out_h, out_w


class ConvBlock(nn.Module):
    """Conv2d (+ BN) + activation with a plain constructor; ``from_spec`` is the cfg bridge."""

    def __init__(self, in_channels: int, filters: int, size: int, stride=1, padding: int = 0,
                 groups: int = 1, batch_normalize: bool = False, activation: str = "logistic", *,
                 dilation: int = 1, binary: bool = False, xnor: bool = False, flipped: bool = False,
                 antialiasing: int = 0):
        super().__init__()
        # With antialiasing the conv itself runs at stride 1 and the blur takes the stride.
        self.conv = nn.Conv2d(in_channels, filters, size, 1 if antialiasing else stride, padding * dilation,
                              dilation=dilation, groups=groups, bias=not batch_normalize)
        # Darknet's rolling statistics move by .01 per batch (rolling = .99*rolling + .01*batch).
        self.bn = nn.BatchNorm2d(filters, eps=1e-5, momentum=0.01) if batch_normalize else None
        self.act = Activation(activation)
        self.binary_weights = bool(binary or xnor)
        self.binarize_input = bool(xnor)
        self.flipped = bool(flipped)
        strides = (stride, stride) if isinstance(stride, int) else tuple(stride)
        self.blur = AntiAliasBlur(filters, antialiasing, strides) if antialiasing else None
        self.register_buffer("fused_weight", None, persistent=False)
        self.register_buffer("fused_bias", None, persistent=False)
        self._fuse_key = None
        # inference BN formula (darknet_py.numerics); DarknetModel.set_numerics sets every layer's
        self.numerics = "pjreddie-cpu"

    @classmethod
    def from_spec(cls, spec: ConvSpec, in_channels: int) -> ConvBlock:
        return cls(in_channels, spec.filters, spec.size, spec.strides, spec.padding, spec.groups,
                   spec.batch_normalize, spec.activation, dilation=spec.dilation, binary=spec.binary,
                   xnor=spec.xnor, flipped=spec.flipped, antialiasing=spec.antialiasing)

    # -- weights file order -------------------------------------------------------------
    def _file_weight(self) -> torch.Tensor:
        w = self.conv.weight
        # flipped: the file holds the (c/groups*size*size) x n transpose; a permuted view is that
        # matrix in C order, so loading copies into and saving reads from the kernels themselves.
        return w.permute(1, 2, 3, 0) if self.flipped else w

    def darknet_tensors(self) -> list[tuple[str, torch.Tensor]]:
        if self.bn is not None:
            mean, var = bn_stats(self.bn)
            return [("bn.bias", self.bn.bias), ("bn.weight", self.bn.weight), ("bn.running_mean", mean),
                    ("bn.running_var", var), ("conv.weight", self._file_weight())]
        return [("conv.bias", cast(torch.Tensor, self.conv.bias)), ("conv.weight", self._file_weight())]

    # -- inference: BN folded into the conv ------------------------------------------------
    def _source_key(self):
        # (storage, in-place version) of each source tensor: a load, an optimiser step or .to()
        # changes it, and the folded kernel is recomputed. Inference tensors carry no version.
        return (self.numerics,) + tuple((t.data_ptr(), t.dtype, -1 if t.is_inference() else t._version)
                                        for _, t in self.darknet_tensors())

    def fuse(self) -> None:
        """Fold BN into (fused_weight, fused_bias), computed in float64 and cast back."""
        with torch.no_grad():
            w = self.conv.weight.double()
            if self.binary_weights:
                w = binarize_weights(w)  # binarised before BN, as forward_convolutional_layer runs them
            if self.bn is not None:
                mean, var = bn_stats(self.bn)
                scale = self.bn.weight.double() / bn_denominator(var.double(), self.numerics)
                b = self.bn.bias.double() - mean.double() * scale
                w = w * scale.view(-1, 1, 1, 1)
            else:
                b = cast(torch.Tensor, self.conv.bias).double()
            dtype = self.conv.weight.dtype
            # keep the kernel's memory format (channels_last when the model was converted to it)
            fmt = torch.channels_last if self.conv.weight.is_contiguous(memory_format=torch.channels_last) \
                and not self.conv.weight.is_contiguous() else torch.contiguous_format
            self.fused_weight = w.to(dtype).contiguous(memory_format=fmt)
            self.fused_bias = b.to(dtype)
        self._fuse_key = self._source_key()

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(kernel, bias) with BN folded in, refolded whenever the weights changed since the last
        fold (a trace cannot follow the check: it folds once)."""
        if self.fused_weight is None or (not torch.jit.is_tracing() and self._fuse_key != self._source_key()):
            self.fuse()
        return self.fused_weight, self.fused_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if self.training:
            if self.binarize_input:
                x = _straight_through(x, binarize_input)
            if self.binary_weights:
                w = _straight_through(conv.weight, binarize_weights)
                y = F.conv2d(x, w, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
            else:
                y = conv(x)
            if self.bn is not None:
                y = train_batchnorm(y, self.bn, self.numerics)  # the tree's training formula
            y = self.act(y, fresh=True)  # neither conv nor BN keeps its output for the backward pass
            return y if self.blur is None else self.blur(y)
        weight, bias = self.folded()
        return folded_forward(x, weight, bias, conv, self.act, self.blur, self.binarize_input)


def folded_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, conv, act: nn.Module,
                   blur: nn.Module | None, binarize: bool) -> torch.Tensor:
    """Inference of a conv block from its folded kernel: (xnor's input binarisation,) the conv with
    ``conv``'s stride, padding, dilation and groups, the activation, (the antialiasing blur)."""
    if binarize:
        x = binarize_input(x)
    y = act(F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups))
    return y if blur is None else blur(y)


# Activations oneDNN applies inside the convolution with exactly Darknet's formula
# (leaky: x > 0 ? x : 0.1x). Others (logistic, mish, ...) run as separate torch ops.
_MKLDNN_UNARY = {"linear": ("none", []), "leaky": ("leaky_relu", [0.1]), "relu": ("relu", [])}


class FoldedConv(nn.Module):
    """A :class:`ConvBlock` for inference only: its folded kernel and bias (``ConvBlock.folded``) in
    a chosen dtype and memory format, then :func:`folded_forward`; the same arithmetic as the
    block's own inference path. The tensors are parameters (frozen), so an exported graph holds them
    as initializers rather than inlined constants, and the block's unfolded tensors are not carried.
    Built from the block, sharing nothing that a later change of the block's weights would update:
    a snapshot. :meth:`pack_for_cpu` makes it one pre-packed oneDNN primitive with the activation
    fused, where the activation allows (float32 on the CPU)."""

    def __init__(self, block: ConvBlock, dtype: torch.dtype | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format):
        super().__init__()
        with torch.no_grad():
            w, b = block.folded()
            dtype = dtype or w.dtype
            self.weight = nn.Parameter(w.detach().to(dtype).contiguous(memory_format=memory_format),
                                       requires_grad=False)
            self.bias = nn.Parameter(b.detach().to(dtype), requires_grad=False)
        conv = block.conv
        self.conv = _ConvGeometry(conv.stride, cast(tuple[int, ...], conv.padding), conv.dilation, conv.groups)
        self.act, self.blur, self.binarize_input = block.act, block.blur, block.binarize_input
        self.packed: torch.Tensor | None = None
        self.unary: tuple[str, list] | None = None

    def pack_for_cpu(self, in_shape: tuple[int, int, int]) -> bool:
        """Pre-pack the kernel for oneDNN with the activation fused (the arithmetic is the same up to
        summation order); False, and the plain path stays, where that is not possible."""
        w = self.weight
        c = self.conv
        if w.device.type != "cpu" or w.dtype != torch.float32 or self.act.name not in _MKLDNN_UNARY \
                or self.blur is not None or self.binarize_input or tuple(c.dilation) != (1, 1) \
                or not torch.backends.mkldnn.is_available():
            return False
        try:
            self.packed = torch.ops.mkldnn._reorder_convolution_weight(
                w.detach(), list(c.padding), list(c.stride), [1, 1], c.groups, [1, *in_shape])
        except (RuntimeError, AttributeError):  # a build without these ops: the plain conv stays
            return False
        self.unary = _MKLDNN_UNARY[self.act.name]
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and self.unary is not None:
            attr, scalars = self.unary
            c = self.conv
            return torch.ops.mkldnn._convolution_pointwise(x, self.packed, self.bias, list(c.padding),
                                                           list(c.stride), [1, 1], c.groups, attr, scalars, "")
        return folded_forward(x, self.weight, self.bias, self.conv, self.act, self.blur, self.binarize_input)


@dataclass(frozen=True)
class _ConvGeometry:
    """What :func:`folded_forward` reads of an ``nn.Conv2d`` besides its tensors."""

    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


@register
class Convolutional(LayerKind):
    name = "convolutional"
    aliases = ("conv",)
    keys = ("filters", "size", "stride", "stride_x", "stride_y", "pad", "padding", "groups", "batch_normalize",
            "activation", "dilation", "binary", "xnor", "bin_output", "flipped", "antialiasing")
    # Keys Darknet accepts on a conv that do not change inference.
    training_keys = ("stopbackward", "train_only_bn", "learning_rate", "burnin_update", "sway", "rotate",
                     "stretch", "stretch_sway")
    # Keys that change the forward pass or the file layout and that this version does not implement:
    # key -> (the value that changes nothing, why).
    unsupported = {
        "share_index": (None, "the conv would reuse another layer's weights (AlexeyAB's trident nets)"),
        "assisted_excitation": ("0", "AlexeyAB's training-time excitation"),
        "coordconv": ("0", "AlexeyAB adds the coordinates in its CUDA forward only"),
        "deform": ("0", ""),
        "numload": (None, "it changes what the .weights file holds"),
        "dontload": ("0", "it changes what the .weights file holds"),
        "dontloadscales": ("0", "it changes what the .weights file holds"),
        "dontsave": ("0", "it changes what the .weights file holds"),
    }

    @classmethod
    def parse(cls, section, net) -> ConvSpec:
        for key, (neutral, why) in cls.unsupported.items():
            value = section.raw(key)
            if value is not None and value != neutral:
                raise section.error(f"{key}={value} is not supported by darknet-py" + (f" ({why})" if why else ""),
                                    key)
        filters = section.get_int("filters", required=True, min=1)
        size = section.get_int("size", required=True, min=1)
        stride = section.get_int("stride", 1, min=1)
        # AlexeyAB's stride_x / stride_y override stride along one axis each.
        stride_x = section.get_int("stride_x", stride, min=1)
        stride_y = section.get_int("stride_y", stride, min=1)
        pad = section.get_bool("pad", False)
        padding = section.get_int("padding", 0, min=0)
        if pad:  # Darknet: pad=1 means "same" padding size/2 and overrides padding=
            padding = size // 2
        groups = section.get_int("groups", 1, min=1)
        bn = section.get_bool("batch_normalize", False)
        dilation = section.get_int("dilation", 1, min=1)
        if size == 1:
            dilation = 1  # parse_convolutional: a 1x1 kernel has nothing to dilate
        if dilation > 1 and 2 * padding != size - 1:
            raise section.error(
                f"dilation={dilation} with size={size} and padding={padding} is not supported: Darknet sizes the "
                f"output (h + 2*padding - size)/stride + 1 but its dilated im2col makes (h + 2*padding*dilation - "
                f"dilation*(size-1) - 1)/stride + 1, equal only for padding = (size-1)/2 (pad=1 with an odd size)",
                "dilation")
        binary = section.get_bool("binary", False)
        xnor = section.get_bool("xnor", False)
        section.get_bool("bin_output", False)  # AlexeyAB's bit-packed xnor output: the same values in float
        flipped = section.get_bool("flipped", False)
        antialiasing = section.get_int("antialiasing", 0, choices=(0, 1, 2))
        if not section.has("activation"):
            warnings.warn(f"{section.path}:{section.line}: [convolutional] (layer {section.index}) has no activation=; "
                          "using Darknet's default 'logistic' (OpenCV reads it as 'linear')", stacklevel=2)
        # Darknet's default activation for a conv is logistic (OpenCV's importer uses linear).
        activation = check_activation(section, default="logistic")
        section.mark_used(cls.training_keys)
        return ConvSpec(section.index, section.line, filters, size, stride_x, padding, groups, bn, activation,
                        stride_y if stride_y != stride_x else None, dilation, binary, xnor, flipped, antialiasing)

    @classmethod
    def _host_shape(cls, spec: ConvSpec, h: int, w: int) -> tuple[int, int]:
        """Output (h, w) of the conv itself: stride 1 when an antialiasing blur takes the stride."""
        sy, sx = (1, 1) if spec.antialiasing else spec.strides
        return (h + 2 * spec.padding - spec.size) // sy + 1, (w + 2 * spec.padding - spec.size) // sx + 1

    @classmethod
    def out_shape(cls, spec: ConvSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        if c % spec.groups or spec.filters % spec.groups:
            raise section.error(f"groups={spec.groups} must divide the input channels ({c}) and filters "
                                f"({spec.filters})")
        out_h, out_w = cls._host_shape(spec, h, w)
        if out_h < 1 or out_w < 1:
            raise section.error(f"size={spec.size} stride={spec.stride} padding={spec.padding} on a {w}x{h} input "
                                f"leaves no output")
        if spec.antialiasing:
            out_h, out_w = blur_out_shape(spec, out_h, out_w, w, h, section)
        return (spec.filters, out_h, out_w)

    @classmethod
    def build(cls, spec: ConvSpec, in_shapes: Sequence[Shape]) -> ConvBlock:
        return ConvBlock.from_spec(spec, in_shapes[0][0])

    @classmethod
    def flops(cls, spec: ConvSpec, in_shapes: Sequence[Shape], out_shape: Shape) -> float:
        # make_convolutional_layer: 2 * n * size*size*c/groups * out_h*out_w (a multiply-add is 2), at the
        # conv's own output size (the antialiasing blur is not counted). AlexeyAB divides xnor layers by
        # 32; pjreddie does not, nor here.
        c, h, w = in_shapes[0]
        out_h, out_w = cls._host_shape(spec, h, w)
        return 2.0 * spec.filters * spec.size * spec.size * c / spec.groups * out_h * out_w

    @classmethod
    def weight_count(cls, spec: ConvSpec, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        # biases (or BN beta), BN scales/mean/variance, kernels n x c/groups x size x size
        n = spec.filters
        return n * (4 if spec.batch_normalize else 1) + n * (in_shapes[0][0] // spec.groups) * spec.size ** 2

    @classmethod
    def describe(cls, spec: ConvSpec) -> str:
        groups = f" g{spec.groups}" if spec.groups > 1 else ""
        sy, sx = spec.strides
        stride = f"{sx:2d}" if sx == sy else f"{sx}x{sy}"
        dilation = f"({spec.dilation})" if spec.dilation > 1 else ""
        xnor = " X" if spec.xnor else (" B" if spec.binary else "")
        return f"{spec.filters:5d}{groups:>4} {spec.size:2d} x{spec.size:2d} /{stride}{dilation}{xnor}"
