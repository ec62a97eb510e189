"""``[shortcut]``: residual add ``act(previous + layers[from])`` (src/shortcut_layer.c).

The output has the previous layer's shape. With one ``from`` layer and no weights (pjreddie's
``shortcut_cpu``; AlexeyAB agrees wherever it accepts the inputs):

- different channel counts (yolov3-tiny-prn): the first ``min(c1, c2)`` channels are added and
  the rest of the previous layer's output is kept as is;
- different width/height (resnet50.cfg's downsampling blocks): with ``stride = w_from/w`` and
  ``sample = w/w_from`` (integer divisions, each at least 1), output pixel ``(j*sample, i*sample)``
  gets ``from[j*stride, i*stride]`` for ``j, i`` below the smaller height/width; so a larger
  ``from`` layer is sub-sampled, a smaller one is added at every sample-th pixel and the other
  pixels pass through. Darknet asserts ``w_from/w == h_from/h`` and ``w/w_from == h/h_from``
  (it aborts otherwise); those shapes are refused here.

AlexeyAB's additions (``shortcut_multilayer_cpu``), which need every input of the same width and
height (``parse_shortcut`` asserts it):

- several layers, ``from=-2,-5``: all are added (pjreddie's ``atoi`` would read only the first);
  each input's channels as above;
- ``weights_type=per_feature`` (alias ``per_layer``): one weight per input, (n_from+1) floats in
  the file; ``per_channel``: one per input and output channel, (n_from+1)*c floats laid out
  [input][channel]; input 0 is the previous layer, then the ``from`` layers in cfg order. Darknet
  initialises them to 1.
- ``weights_normalization=relu`` (alias ``avg_relu``): each weight becomes ``relu(w)/(eps + sum of
  relu(w) over the inputs)``; ``softmax``: ``exp(w - max)/(eps + sum exp(w - max))``, eps = 1e-4.
  Without ``weights_type`` it has no effect (as in Darknet; a warning says so).

``alpha``/``beta`` (pjreddie's input scales, default 1) are refused when not 1: AlexeyAB ignores
them and no cfg of either tree sets them.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .activations import Activation, check_activation
from .registry import LayerKind, LayerSpec, Shape, register, resolve_index

# parse_shortcut's spellings -> ours
WEIGHTS_TYPES = {"none": "none", "per_feature": "per_feature", "per_layer": "per_feature", "per_channel": "per_channel"}
NORMALIZATIONS = {"none": "none", "relu": "relu", "avg_relu": "relu", "softmax": "softmax"}
# shortcut_multilayer_cpu: the eps that starts the sum of normalised weights.
WEIGHTS_EPS = 1e-4


@dataclass
class ShortcutSpec(LayerSpec):
    sources: list[int]  # absolute indices of the layers added to the previous one, in cfg order
    activation: str
    weights_type: str = "none"  # none | per_feature | per_channel
    weights_normalization: str = "none"  # none | relu | softmax

    @property
    def source(self) -> int:
        """The first ``from`` layer (pjreddie's only one)."""
        return self.sources[0]

    def input_layers(self) -> list[int]:
        return [self.index - 1, *self.sources]


def _sampling(out_hw: tuple[int, int], add_hw: tuple[int, int]) -> tuple[int, int]:
    """shortcut_cpu's (stride, sample) from the widths, each at least 1."""
    (_, w), (_, wa) = out_hw, add_hw
    return max(1, wa // w), max(1, w // wa)


class Shortcut(nn.Module):
    def __init__(self, activation: str = "linear", weights_type: str = "none", normalization: str = "none",
                 n_from: int = 1, channels: int = 0):
        super().__init__()
        self.act = Activation(activation)
        self.weights_type, self.normalization = weights_type, normalization
        if weights_type == "none":
            self.register_parameter("weights", None)
        else:
            shape = (n_from + 1,) if weights_type == "per_feature" else (n_from + 1, channels)
            self.weights = nn.Parameter(torch.ones(shape))  # make_shortcut_layer's initial weights

    # -- weights file -------------------------------------------------------------------
    def darknet_tensors(self) -> list[tuple[str, torch.Tensor]]:
        return [] if self.weights is None else [("weights", self.weights)]

    @torch.no_grad()
    def randomize_(self, *inputs: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Random weights in [-0.5, 1.5): mostly positive (a residual sum), some cut by relu."""
        if self.weights is not None:
            self.weights.copy_(torch.rand(self.weights.shape, generator=generator) * 2 - 0.5)

    # -- forward ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *others: torch.Tensor) -> torch.Tensor:
        if self.weights is None and len(others) == 1:
            other = others[0]
            if other.shape[-2:] != x.shape[-2:]:
                other = _resample(other, (int(x.shape[-2]), int(x.shape[-1])))
            return self.act(_add_channels(x, other))
        return self.act(self._weighted(x, others))

    def _normalized_weights(self) -> torch.Tensor | None:
        w = self.weights
        if w is None or self.normalization == "none":
            return w
        if self.normalization == "relu":
            r = F.relu(w)
        else:
            r = torch.exp(w - w.amax(0, keepdim=True))
        return r / (r.sum(0, keepdim=True) + WEIGHTS_EPS)

    def _weighted(self, x: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
        # shortcut_multilayer_cpu: out = in * w[0], then out += add_i * w[i+1] for each from layer
        wn = self._normalized_weights()

        def weight(i: int, channels: int) -> torch.Tensor:
            assert wn is not None
            if self.weights_type == "per_feature":
                return wn[i]
            return wn[i, :channels].view(1, channels, 1, 1)

        out = x if wn is None else x * weight(0, x.shape[1])
        for i, other in enumerate(others, 1):
            c = min(int(x.shape[1]), int(other.shape[1]))
            term = other[:, :c] if wn is None else other[:, :c] * weight(i, c)
            out = out + term if c == x.shape[1] else torch.cat((out[:, :c] + term, out[:, c:]), 1)
        return out


def _add_channels(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """x + other over the channels both have; x's further channels pass through."""
    c, c2 = x.shape[1], other.shape[1]
    if c2 == c:
        return x + other
    if c2 > c:  # the extra channels of the `from` layer are ignored
        return x + other[:, :c]
    return torch.cat((x[:, :c2] + other, x[:, c2:]), 1)  # channels past c2 pass through


def _resample(other: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """The `from` layer laid on the output grid as shortcut_cpu indexes it: out[j*sample, i*sample]
    += add[j*stride, i*stride] for j, i below the smaller size; zeros where nothing is added."""
    h, w = out_hw
    ha, wa = int(other.shape[-2]), int(other.shape[-1])
    stride, sample = _sampling(out_hw, (ha, wa))
    min_h, min_w = min(h, ha), min(w, wa)
    a = other[:, :, :min_h * stride:stride, :min_w * stride:stride]
    if sample > 1:  # every sample-th pixel: pad each value with sample-1 zeros along both axes
        a = F.pad(a[:, :, :, None, :, None], (0, sample - 1, 0, 0, 0, sample - 1))
        a = a.reshape(-1, int(other.shape[1]), min_h * sample, min_w * sample)
    return F.pad(a, (0, w - int(a.shape[-1]), 0, h - int(a.shape[-2])))


@register
class ShortcutKind(LayerKind):
    name = "shortcut"
    keys = ("from", "activation", "weights_type", "weights_normalization", "alpha", "beta")

    @classmethod
    def parse(cls, section, net) -> ShortcutSpec:
        if section.index == 0:
            raise section.error("[shortcut] cannot be the first layer: it adds the previous layer's output")
        sources = [resolve_index(section, "from", v) for v in section.get_int_list("from", required=True)]
        weights_type = cls._choice(section, "weights_type", WEIGHTS_TYPES)
        normalization = cls._choice(section, "weights_normalization", NORMALIZATIONS)
        if normalization != "none" and weights_type == "none":
            warnings.warn(f"{section.path}:{section.options['weights_normalization'].line}: [shortcut] "
                          "weights_normalization has no effect without weights_type (as in Darknet)", stacklevel=2)
        # pjreddie scales the two inputs by alpha/beta (both 1 by default); AlexeyAB ignores them.
        for key in ("alpha", "beta"):
            if section.has(key) and section.get_float(key) != 1.0:
                raise section.error(f"{key}={section.options[key].value} is not supported by darknet-py yet", key)
        activation = check_activation(section, default="linear")
        return ShortcutSpec(section.index, section.line, sources, activation, weights_type, normalization)

    @staticmethod
    def _choice(section, key: str, table) -> str:
        value = section.get_str(key, "none")
        if value not in table:
            raise section.error(f"{key}={value} is not supported: expected one of {', '.join(table)}", key)
        return table[value]

    @classmethod
    def out_shape(cls, spec: ShortcutSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        prev, *others = in_shapes
        if len(others) == 1 and spec.weights_type == "none":
            other = others[0]
            if prev[1:] != other[1:]:
                (_, h, w), (_, ha, wa) = prev, other
                if wa // w != ha // h or w // wa != h // ha:
                    raise section.error(
                        f"adds layer {spec.source} of shape {_fmt(other)} to layer {spec.index - 1} of shape "
                        f"{_fmt(prev)}: not supported, the width and height ratios differ (Darknet's shortcut_cpu "
                        f"asserts w1/w2 == h1/h2 and w2/w1 == h2/h1 and aborts)")
            return prev
        for idx, other in zip(spec.sources, others):
            if other[1:] != prev[1:]:
                what = "several from layers" if len(others) > 1 else f"weights_type={spec.weights_type}"
                raise section.error(
                    f"adds layer {idx} of shape {_fmt(other)} to layer {spec.index - 1} of shape {_fmt(prev)}: with "
                    f"{what} the shapes must be equal in width x height (AlexeyAB's parse_shortcut asserts it); "
                    "not supported otherwise", "from")
        return prev

    @classmethod
    def build(cls, spec: ShortcutSpec, in_shapes: Sequence[Shape]) -> Shortcut:
        return Shortcut(spec.activation, spec.weights_type, spec.weights_normalization, len(spec.sources),
                        in_shapes[0][0])

    @classmethod
    def weight_count(cls, spec: ShortcutSpec, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        # one weight per input (per_feature), or per input and channel (per_channel)
        if spec.weights_type == "none":
            return 0
        return (len(spec.sources) + 1) * (1 if spec.weights_type == "per_feature" else in_shapes[0][0])

    @classmethod
    def describe(cls, spec: ShortcutSpec) -> str:
        weights = f" {spec.weights_type}" if spec.weights_type != "none" else ""
        return "  " + ",".join(str(s) for s in spec.sources) + weights


def _fmt(shape: Shape) -> str:
    c, h, w = shape
    return f"{w}x{h}x{c}"
