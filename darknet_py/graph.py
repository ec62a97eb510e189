"""From parsed sections to a checked layer graph, then to a ``torch.nn.Module``.

``parse_network`` turns a cfg into typed specs and infers every layer's output shape before
any tensor exists, so a route over mismatched shapes or a wrong ``filters`` before a
``[yolo]`` is reported with both layers. ``DarknetModel`` runs the graph and keeps only the
outputs that later routes/shortcuts read.
"""
from __future__ import annotations

import difflib
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import torch
import torch.nn as nn

from .config.reader import CfgDocument, Section, parse_cfg_text, read_cfg
from . import limits as budgets
from .checks import check_count, option_error
from .errors import CfgError
from .numerics import Choice, choose
from .layers import LAYERS, LayerKind, LayerSpec, Shape
from .layers.head import DetectionHead
from .layers.net import NET_TRAINING_KEYS, NetSpec, parse_net
from .layers.yolo import YoloSpec


@dataclass
class NetworkDef:
    """A cfg, validated: what each layer is, reads and outputs."""

    path: str | None
    net: NetSpec
    sections: list[Section]
    specs: list[LayerSpec]
    kinds: list[type[LayerKind]]
    shapes: list[Shape]  # output (C, H, W) of each layer
    input_shape: Shape
    cfg_text: str = ""  # the cfg as read, so a checkpoint can carry its own network definition
    weight_counts: list[int] = field(default_factory=list)  # floats of each layer in a .weights file

    @property
    def weight_floats(self) -> int:
        return sum(self.weight_counts)

    @property
    def activation_bytes(self) -> int:
        """float32 outputs of every layer for one image: what Darknet allocates (one l.output each)."""
        return 4 * sum(c * h * w for c, h, w in self.shapes)

    @property
    def yolo_indices(self) -> list[int]:
        return [s.index for s in self.specs if isinstance(s, YoloSpec)]

    @property
    def yolo_specs(self) -> list[YoloSpec]:
        return [s for s in self.specs if isinstance(s, YoloSpec)]

    @property
    def head_indices(self) -> list[int]:
        """Layers whose outputs ``detect`` decodes: every kind with a DetectionHead spec."""
        return [s.index for s in self.specs if isinstance(s, DetectionHead)]

    @property
    def head_specs(self) -> list[DetectionHead]:
        return [s for s in self.specs if isinstance(s, DetectionHead)]

    @property
    def classes(self) -> int:
        heads = self.head_specs
        return heads[0].classes if heads else 0

    @cached_property
    def strides(self) -> tuple[int, int]:
        """(x, y): what the input width and height must be multiples of for every layer to see a
        whole number of pixels, from the layers themselves (32 for yolov3 and yolov3-tiny, 64 for
        a net that halves the size six times, 1 for a net that never downsamples).

        Measured, not looked up by kind: the layer shapes are inferred again at two probe sizes
        (P and 2P, P a multiple of every usual stride); a layer whose size grows with the input
        scales it by P/size, and the strides are the least common multiples of those factors'
        numerators. Layers of a fixed size (global average pooling, [connected]) do not count."""
        probe = 2 ** 8 * 3 ** 2 * 5 * 7  # 80640
        try:
            small, large = self._shapes_at(probe, probe), self._shapes_at(2 * probe, 2 * probe)
        except CfgError:  # a layer that takes one input size only: nothing to scale
            return 1, 1
        sx = sy = 1
        for (_, h1, w1), (_, h2, w2) in zip(small, large):
            if w2 > w1 > 0:
                sx = math.lcm(sx, Fraction(probe, w1).limit_denominator(16).numerator)
            if h2 > h1 > 0:
                sy = math.lcm(sy, Fraction(probe, h1).limit_denominator(16).numerator)
        return sx, sy

    @property
    def stride(self) -> int:
        """The largest of :attr:`strides`: the network's downsampling factor."""
        return max(self.strides)

    def _shapes_at(self, width: int, height: int) -> list[Shape]:
        input_shape: Shape = (self.net.channels, height, width)
        shapes: list[Shape] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, (spec, kind) in enumerate(zip(self.specs, self.kinds)):
                in_shapes = [input_shape if j < 0 else shapes[j] for j in spec.input_layers()]
                shapes.append(kind.out_shape(spec, in_shapes, self.sections[i + 1], self.specs[:i]))
        return shapes

    def check_input_size(self, width: int | None, height: int | None) -> None:
        """An input size asked for (None: the cfg's own) is positive and a multiple of
        :attr:`strides`: otherwise the layers round their sizes and the boxes land in the wrong
        place without any error."""
        for keyword, value, stride in (("width", width, self.strides[0]), ("height", height, self.strides[1])):
            if value is None:
                continue
            check_count(keyword, value, 1)
            if value % stride:
                down, up = value // stride * stride, (value // stride + 1) * stride
                near = f"{up}" if down == 0 else f"{down} or {up}"
                raise option_error(keyword, value, f"a multiple of {stride}, the network's stride (e.g. {near})")


def _check_heads(specs: Sequence[LayerSpec], sections: Sequence[Section]) -> None:
    heads = [s for s in specs if isinstance(s, DetectionHead)]
    for head in heads[1:]:
        if head.classes != heads[0].classes:
            sec = sections[head.index + 1]
            first = sections[heads[0].index + 1]
            raise sec.error(f"classes={head.classes} differs from classes={heads[0].classes} of the [{first.kind}] at "
                            f"layer {heads[0].index} (cfg line {heads[0].line})", "classes")


# Keys AlexeyAB's parser reads on every layer (parse_network_cfg_custom): training controls, kept
# and ignored at inference; those that change which bytes the weights file holds are refused.
COMMON_TRAINING_KEYS = ("clip", "onlyforward", "dont_update", "burnin_update", "stopbackward", "train_only_bn",
                        "learning_rate")
WEIGHT_FILE_KEYS = ("dontload", "dontloadscales", "dontsave")


def _check_common_keys(section: Section) -> None:
    section.mark_used(COMMON_TRAINING_KEYS)
    for key in WEIGHT_FILE_KEYS:
        value = section.raw(key)
        if value is not None and value.strip() not in ("0", ""):
            raise section.error(f"{key}={value} is not supported: it changes which layers the .weights file holds "
                                "(remove it, or use `darknet-py partial`)", key)


def _check_ranges(section: Section) -> None:
    """Integer values that no network means (a 65536-pixel side, a 20001-wide kernel), with the
    line; checked before the layer parses them (darknet_py.limits.KEY_RANGES)."""
    for key, opt in section.options.items():
        value = opt.value.strip()
        if not value.lstrip("+-").isdigit() or len(value) > 40:
            continue  # not an integer (the layer's parse says so), or too long to be one
        problem = budgets.range_problem(section.kind, key, int(value))
        if problem:
            raise section.error(problem, key)


# The key whose line a budget error points at: the one that sizes the layer.
_SIZING_KEYS = ("filters", "output", "size", "stride", "atoms", "classes", "num")


def _check_budget(section: Section, what: str, layer_bytes: int, total: int, budget: int) -> None:
    if total > budget:
        key = next((k for k in _SIZING_KEYS if k in section.options), None)
        err = CfgError(f"the network's {what} reach {budgets.gib(total)} by this layer ({budgets.gib(layer_bytes)} "
                       f"here), above the budget of {budgets.gib(budget)} (darknet_py.limits); pass limits=False "
                       "to go past it", path=section.path,
                       line=section.options[key].line if key else section.line, section=section.kind,
                       index=section.index)
        err.option = ("limits", "False")
        raise err


def parse_network(cfg: str | os.PathLike | CfgDocument | bytes, *, width: int | None = None,
                  height: int | None = None, limits: bool | None = None) -> NetworkDef:
    """Validate a cfg (path, bytes or parsed document); ``width``/``height`` override ``[net]``.

    With ``limits`` (default: on, see darknet_py.limits.enforced) a network whose weights or
    activations (batch 1, float32) would exceed darknet_py.limits' budgets is refused, naming
    the layer where the total crosses it; the estimate comes from the specs alone.
    """
    if isinstance(cfg, CfgDocument):
        doc = cfg
    elif isinstance(cfg, bytes):
        doc = parse_cfg_text(cfg)
    else:
        doc = read_cfg(cfg)
    net_section = doc.sections[0]
    net_section.check_duplicates(NET_TRAINING_KEYS)
    _check_ranges(net_section)
    check_count("width", width, 1)
    check_count("height", height, 1)
    net = parse_net(net_section)
    if width is not None:
        net.width = int(width)
    if height is not None:
        net.height = int(height)
    for key, side in (("width", net.width), ("height", net.height)):
        if not 1 <= side <= budgets.MAX_INPUT_SIDE:
            raise CfgError(f"{key}={side}: expected 1..{budgets.MAX_INPUT_SIDE} (a side beyond any network input)",
                           path=doc.path, line=net_section.line, section=net_section.kind)
    enforce = budgets.enforced(limits)
    param_bytes = activation_bytes = 0
    weight_counts: list[int] = []
    if len(doc.sections) < 2:
        raise CfgError("the cfg defines no layers after [net]", path=doc.path, line=net_section.line)
    specs: list[LayerSpec] = []
    kinds: list[type[LayerKind]] = []
    shapes: list[Shape] = []
    input_shape: Shape = (net.channels, net.height, net.width)
    try:
        for section in doc.layers:
            kind = LAYERS.get(section)
            section.check_duplicates(kind.training_keys)
            _check_common_keys(section)
            _check_ranges(section)
            try:
                spec = kind.parse(section, net)
            except CfgError:
                _raise_typo_of_missing_key(section, kind)
                raise
            section.check_all_used(_known_keys(kind))
            in_shapes = [input_shape if j < 0 else shapes[j] for j in spec.input_layers()]
            out = kind.out_shape(spec, in_shapes, section, specs)
            weight_counts.append(kind.weight_count(spec, in_shapes, out))
            shapes.append(out)
            specs.append(spec)
            kinds.append(kind)
            param_bytes += 4 * weight_counts[-1]
            activation_bytes += 4 * out[0] * out[1] * out[2]
            if enforce:
                _check_budget(section, "weights", 4 * weight_counts[-1], param_bytes, budgets.MAX_PARAM_BYTES)
                _check_budget(section, "activations for one image", 4 * out[0] * out[1] * out[2], activation_bytes,
                              budgets.MAX_ACTIVATION_BYTES)
    except CfgError as exc:
        if width is None and height is None:
            raise
        # a size asked for that the layers cannot take: say so as a size error when the cfg at
        # its own size is fine and the size is not a multiple of the network's stride
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                own = parse_network(doc)
        except CfgError:
            raise exc from None
        own.check_input_size(width, height)
        raise
    _check_heads(specs, doc.sections)
    netdef = NetworkDef(doc.path, net, doc.sections, specs, kinds, shapes, input_shape, doc.text, weight_counts)
    netdef.check_input_size(width, height)
    return netdef


def _raise_typo_of_missing_key(section: Section, kind: type[LayerKind]) -> None:
    # A misspelt required key (filter=255) makes parse fail with "missing required key 'filters'"
    # before check_all_used can name the typo; an unread unknown key close to a known key that the
    # section lacks is that typo, so report it with its did-you-mean instead.
    known = _known_keys(kind)
    for opt in section.unused():
        close = difflib.get_close_matches(opt.key, known, n=1) if opt.key not in known else []
        if close and close[0] not in section.options:
            raise CfgError(f"unknown key '{opt.key}' (value '{opt.value}'); did you mean '{close[0]}'?",
                           path=section.path, line=opt.line, section=section.kind, index=section.index) from None


def _known_keys(kind: type[LayerKind]) -> tuple[str, ...]:
    return tuple(kind.keys) + tuple(kind.training_keys) + COMMON_TRAINING_KEYS + WEIGHT_FILE_KEYS


class DarknetModel(nn.Module):
    """The network a cfg defines. ``forward(x)`` takes N x C x H x W RGB in [0, 1] and returns one
    tensor per ``[yolo]`` layer, N x A*(5+C) x h x w, holding Darknet's ``l.output``."""

    def __init__(self, netdef: NetworkDef, darknet: str | None = None):
        """``darknet``: the Darknet tree to follow, pjreddie, alexeyab or auto (None: auto; see
        darknet_py.numerics.choose)."""
        super().__init__()
        self.netdef = netdef
        layers = []
        for spec, kind in zip(netdef.specs, netdef.kinds):
            in_shapes = [netdef.input_shape if j < 0 else netdef.shapes[j] for j in spec.input_layers()]
            layers.append(kind.build(spec, in_shapes))
        self.layers = nn.ModuleList(layers)
        self.inputs: list[list[int]] = [spec.input_layers() for spec in netdef.specs]
        # Detectors return their heads' outputs; a network without heads (a classifier) its last layer's.
        self.heads: list[int] = netdef.head_indices or [len(netdef.specs) - 1]
        needed = {j for i, ins in enumerate(self.inputs) for j in ins if j != i - 1 and j >= 0}
        self.keep = sorted(needed | set(self.heads))  # outputs held past the next layer
        self.header = None  # set by load_weights: (major, minor, revision, seen, seen_bytes)
        self.channels_last = False
        self.set_darknet(darknet)

    def set_darknet(self, darknet: str | None) -> Choice:
        """Follow ``darknet``'s tree (pjreddie, alexeyab, auto/None): its batch-norm arithmetic in
        every layer (folded kernels are refolded) and, through darknet_py.detector.letterboxed, its
        letterbox-or-stretch rule. Returns the :class:`~darknet_py.numerics.Choice`."""
        self.darknet = choose(darknet, self.netdef.sections)
        for module in self.modules():
            if module is not self and hasattr(module, "numerics"):
                module.numerics = self.darknet.numerics
        return self.darknet

    @property
    def numerics(self) -> str:
        """``pjreddie-cpu`` or ``darknet-gpu`` (darknet_py.numerics)."""
        return self.darknet.numerics

    def to_channels_last(self, enable: bool = True) -> DarknetModel:
        """NHWC kernels and activations: faster convolutions on CPU (oneDNN) and for fp16 on GPU.
        Outputs stay NCHW; the weights file is unaffected."""
        self.to(memory_format=torch.channels_last if enable else torch.contiguous_format)
        self.channels_last = enable
        return self

    @property
    def yolo_specs(self) -> list[YoloSpec]:
        return self.netdef.yolo_specs

    @property
    def head_specs(self) -> list[DetectionHead]:
        return self.netdef.head_specs

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the network input."""
        return self.netdef.net.width, self.netdef.net.height

    def forward(self, x: torch.Tensor, raw: bool = False) -> list[torch.Tensor]:
        """``raw=True`` returns what enters each head layer (logits, no logistic): the training
        loss works on those for numerically safe log-sigmoids."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        cache: list[torch.Tensor | None] = [None] * len(self.layers)
        keep = set(self.keep)
        heads = set(self.heads) if raw else ()
        inp = x
        for i, layer in enumerate(self.layers):
            args = [x if j == i - 1 else (inp if j < 0 else cache[j]) for j in self.inputs[i]]
            x = args[0].contiguous() if i in heads else layer(*args)
            if i in keep:
                cache[i] = x
        return [cache[i] for i in self.heads]

    # -- Darknet weights ---------------------------------------------------------------------
    def load_weights(self, path, upto: int | None = None, **kwargs) -> DarknetModel:
        from .weights import load_weights
        load_weights(self, path, upto=upto, **kwargs)
        return self

    def save_weights(self, path, upto: int | None = None) -> None:
        from .weights import save_weights
        save_weights(self, path, upto=upto)


def build_model(cfg, *, width: int | None = None, height: int | None = None,
                limits: bool | None = None, darknet: str | None = None) -> DarknetModel:
    """cfg (path / bytes / CfgDocument / NetworkDef) -> DarknetModel with freshly initialised weights
    (``limits``: see :func:`parse_network`; ``darknet``: see :meth:`DarknetModel.set_darknet`)."""
    netdef = cfg if isinstance(cfg, NetworkDef) else parse_network(cfg, width=width, height=height, limits=limits)
    return DarknetModel(netdef, darknet)
