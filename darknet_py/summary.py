"""Darknet's layer table: index, kind, filters / size / stride, input -> output, BFLOPs, and the
totals, plus the size of the ``.weights`` file the cfg implies.

BFLOPs are Darknet's (``make_convolutional_layer``): 2 * filters * size^2 * c/groups * out_h*out_w
per convolution, nothing for the other kinds. Weight counts come from each kind's
``weight_count`` rule on its spec (NetworkDef.weight_counts): no layer is built and no tensor
made, so a table of a network too large to build still prints (tests compare the rule with the
tensors each built layer writes to a ``.weights`` file).
"""
from __future__ import annotations

from dataclasses import dataclass

from .graph import NetworkDef, parse_network
from .weights import Header

# Darknet's short names in its table (parse_network_cfg's prints).
_SHORT = {"convolutional": "conv", "maxpool": "max", "shortcut": "res", "route": "route", "upsample": "upsample",
          "yolo": "yolo", "scale_channels": "scale", "local_avgpool": "avg", "Gaussian_yolo": "Gaussian",
          "contrastive": "contrast", "normalization": "norm", "batchnorm": "bn", "connected": "conn",
          "detection": "det", "region": "detection"}


@dataclass
class LayerRow:
    index: int
    kind: str
    line: int
    describe: str
    input: tuple   # (c, h, w)
    output: tuple
    flops: float
    floats: int    # weight floats in a .weights file


@dataclass
class Summary:
    path: str | None
    rows: list[LayerRow]
    input_shape: tuple

    @property
    def bflops(self) -> float:
        return sum(r.flops for r in self.rows) / 1e9

    @property
    def floats(self) -> int:
        return sum(r.floats for r in self.rows)

    def weights_bytes(self, header: Header | None = None) -> int:
        return (header or Header()).size + 4 * self.floats

    def lines(self, cfg_lines: bool = False) -> list[str]:
        """The table; ``cfg_lines`` adds the cfg line each layer comes from."""
        def fmt(s):  # Darknet prints w x h x c
            return f"{s[2]:4d} x{s[1]:4d} x{s[0]:4d}"
        where = f"{'line':>5} " if cfg_lines else ""
        out = [f"layer {where}{'':6}filters    size/strd         input                output"]
        for r in self.rows:
            flops = f"  {r.flops / 1e9:6.3f} BF" if r.flops else ""
            where = f"{r.line:5d} " if cfg_lines else ""
            out.append(f"{r.index:5d} {where}{_SHORT.get(r.kind, r.kind):<8} {r.describe:<24}{fmt(r.input)} -> "
                       f"{fmt(r.output)}{flops}")
        out.append(f"Total BFLOPS {self.bflops:.3f}")
        out.append(f"{len(self.rows)} layers, {self.floats} weight floats: a .weights file of "
                   f"{self.weights_bytes()} bytes (20-byte header)")
        return out


def _describe(kind, spec) -> str:
    text = kind.describe(spec)
    if text:
        return text
    if getattr(spec, "layers", None) is not None:  # route: the layers it reads
        return "  " + " ".join(str(i) for i in spec.layers)
    if getattr(spec, "source", None) is not None:  # shortcut: the layer it adds
        return f"  {spec.source}"
    return ""


def summarize(cfg, *, width: int | None = None, height: int | None = None, limits: bool | None = None) -> Summary:
    """The table for a cfg (path, bytes or parsed NetworkDef) at its own or the given size, from the
    specs alone (``limits``: see darknet_py.graph.parse_network)."""
    netdef: NetworkDef = (cfg if isinstance(cfg, NetworkDef)
                          else parse_network(cfg, width=width, height=height, limits=limits))
    rows = []
    for spec, kind, section, out, floats in zip(netdef.specs, netdef.kinds, netdef.sections[1:], netdef.shapes,
                                                netdef.weight_counts):
        ins = [netdef.input_shape if j < 0 else netdef.shapes[j] for j in spec.input_layers()]
        rows.append(LayerRow(spec.index, section.kind, spec.line, _describe(kind, spec), ins[0] if ins else
                             netdef.input_shape, out, kind.flops(spec, ins, out), floats))
    return Summary(netdef.path, rows, netdef.input_shape)


__all__ = ["LayerRow", "Summary", "summarize"]
