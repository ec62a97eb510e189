"""The registry of layer kinds: ``[section]`` name -> the class that parses, shapes and builds it.

Unknown names fail loudly with the cfg line, a did-you-mean and the supported list; Darknet
kinds we know of but do not run get their own "recognised but not supported" message.
"""
from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from ..config.reader import Section
from ..errors import CfgError

Shape = tuple[int, int, int]  # (channels, height, width), batch excluded

# Section kinds that exist in Darknet's parsers but that this version does not run.
DARKNET_KINDS_NOT_SUPPORTED = (
    "deconvolutional", "deconv", "rnn", "gru", "lstm", "crnn", "conv_lstm", "history",
    "iseg", "l2norm", "logistic", "activation", "empty", "silence",
)


@dataclass
class LayerSpec:
    """What every layer spec carries: where it came from. Subclasses add their typed keys."""

    index: int
    line: int

    def input_layers(self) -> list[int]:
        """Absolute indices of the layers this one reads (-1 = the network input)."""
        return [self.index - 1]


class LayerKind:
    """One section kind. Subclasses implement parse / out_shape / build (see convolutional.py)."""

    name: str = ""
    aliases: tuple[str, ...] = ()
    # Keys this kind reads for inference (for did-you-mean hints on typos).
    keys: tuple[str, ...] = ()
    # Keys Darknet reads that only matter to training or data loading: accepted and kept.
    training_keys: tuple[str, ...] = ()

    @classmethod
    def parse(cls, section: Section, net) -> LayerSpec:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def out_shape(cls, spec, in_shapes: Sequence[Shape], section: Section, specs=None) -> Shape:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def build(cls, spec, in_shapes: Sequence[Shape]):  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def flops(cls, spec, in_shapes: Sequence[Shape], out_shape: Shape) -> float:
        """Floating-point operations per image as Darknet's layer table counts them (0: not counted)."""
        return 0.0

    @classmethod
    def weight_count(cls, spec, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        """Floats this layer holds in a .weights file, from its spec alone (no tensor is made):
        the sizes of the module's ``darknet_tensors()``, which tests compare with this."""
        return 0

    @classmethod
    def describe(cls, spec) -> str:
        """The filters / size / stride columns of Darknet's layer table."""
        return ""


class Registry:
    def __init__(self, what: str):
        self.what = what
        self._kinds: dict[str, type[LayerKind]] = {}

    def register(self, cls: type[LayerKind]) -> type[LayerKind]:
        for name in (cls.name, *cls.aliases):
            if name in self._kinds:
                raise ValueError(f"{self.what} '{name}' registered twice ({self._kinds[name].__name__}, "
                                 f"{cls.__name__})")
            self._kinds[name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def get(self, section: Section) -> type[LayerKind]:
        kind = self._kinds.get(section.kind)
        if kind is not None:
            return kind
        supported = ", ".join(f"[{n}]" for n in self.names() if n not in ("net", "network"))
        if section.kind in DARKNET_KINDS_NOT_SUPPORTED:
            raise section.error(f"[{section.kind}] is a Darknet layer kind that darknet-py does not support yet; "
                                f"supported: {supported}")
        close = difflib.get_close_matches(section.kind, self.names() + list(DARKNET_KINDS_NOT_SUPPORTED), n=1)
        hint = f"did you mean [{close[0]}]? " if close else ""
        raise section.error(f"unknown section [{section.kind}]; {hint}supported: {supported}")


LAYERS = Registry("darknet layer kind")
register = LAYERS.register


def resolve_index(section: Section, key: str, value: int) -> int:
    """Darknet's rule: negative = relative to this layer, otherwise absolute."""
    index = section.index + value if value < 0 else value
    if not 0 <= index < section.index:
        raise CfgError(f"{key}={value} refers to layer {index}; valid layers are 0..{section.index - 1} "
                       f"(negative values count back from this layer)",
                       path=section.path, line=section.options[key].line if key in section.options else section.line,
                       section=section.kind, index=section.index)
    return index
