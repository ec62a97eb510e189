"""Exports whose input height and width are free: ``dynamic_size=True`` of
:func:`~darknet_py.export.onnx.export_onnx` and :func:`~darknet_py.export.torchscript.export_torchscript`.

The graph's input is ``images``: ``batch x C x height x width`` with all three symbolic; height
and width must be multiples of the network's stride (:attr:`darknet_py.graph.NetworkDef.strides`,
measured from the cfg: 32 for yolov3 and yolov3-tiny). Raw outputs are ``batch x A*(5+C) x
height/s x width/s`` for a head of stride s (ONNX dim_params ``height/32``, ``width/32``...);
the decoded output is ``batch x rows x (5+C)``, rows = the sum over heads of
``A * (height/s) * (width/s)``, boxes in pixels of the input as given. Without ``dynamic_size``
nothing changes: the input size is the network's, fixed in the graph.

What keeps a size out of the graph:

- the decoded graph decodes with ``YoloDecode.any_size`` (grids from the heads' shapes, the
  network size from the input's) instead of the buffers made for one size; the same arithmetic;
- a guard on the input refuses other sizes, where the layers would round their sizes and the
  boxes land in the wrong place without an error. ONNX: a Reshape of the input into
  stride-sized blocks (and back), which onnxruntime cannot do when the stride does not divide
  the size, named :func:`guard_node` (``images_height_and_width_must_be_multiples_of_32``) so
  that its error says why. TorchScript: a scripted check that raises ``input 100x64 (width x
  height): height and width must be multiples of 32 ...``;
- the layers trace with their shapes as shape operations ([upsample], [route], the heads); a
  padded [maxpool]'s padding is a number in the trace, but it depends on the size modulo the
  pool's stride only, the same at every multiple of the network's stride.

What proves it: right after writing, the file is run at the traced size (at ``batch`` and 3) and
at a second size (``check_size``; default one stride wider and two strides higher, so a
width/height mix-up shows) and compared with PyTorch at each, the second time against a model
built at that size from the same cfg and tensors (:func:`model_at_size`): a size left frozen in
the graph fails the export (ExportError; the file is left in place for inspection, as for any
failed check). Networks whose weights depend on the input size ([connected], [local]) or that
cannot run at the second size are refused before anything is written.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn as nn

from ..config.reader import CfgDocument
from ..errors import CfgError, DarknetPyError, ExportError
from ..graph import DarknetModel, NetworkDef, parse_network
from .check import ExportReport, compare, reference

Size = tuple[int, int]  # (width, height)

INPUT_DIMS = ("height", "width")


def guard_node(sx: int, sy: int) -> str:
    """The name of the ONNX node that refuses a size: onnxruntime's error names it."""
    if sx == sy:
        return f"images_height_and_width_must_be_multiples_of_{sx}"
    return f"images_height_must_be_a_multiple_of_{sy}_and_width_of_{sx}"


@torch.jit.script_if_tracing
def _check_multiple(x: torch.Tensor, sx: int, sy: int) -> torch.Tensor:
    h, w = x.shape[-2], x.shape[-1]
    if h % sy != 0 or w % sx != 0:
        need = f"multiples of {sx}" if sx == sy else f"a multiple of {sy} (height) and {sx} (width)"
        raise ValueError(f"input {w}x{h} (width x height): height and width must be {need}, the network's "
                         "stride (other sizes would misplace every box)")
    return x


class SizeGuard(nn.Module):
    """Refuses an input whose height/width are not multiples of the strides (see the module
    docstring); passes the input on unchanged."""

    def __init__(self, strides: Size, backend: str):
        super().__init__()
        self.sx, self.sy = (int(s) for s in strides)
        self.scripted = backend == "torchscript"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scripted:
            return _check_multiple(x, self.sx, self.sy)
        n, c, h, w = x.shape  # recorded shape values when traced: the reshape sizes stay symbolic
        blocks = x.reshape(n, c, h // self.sy, self.sy, w // self.sx, self.sx)
        return blocks.reshape(n, c, h, w)


def second_size(netdef: NetworkDef, check_size: Size | None = None) -> Size:
    """The second (width, height) a dynamic export is checked at: ``check_size`` when given
    (multiples of the strides, a UsageError otherwise), else one stride wider and two higher."""
    sx, sy = netdef.strides
    if check_size is not None:
        try:
            width, height = check_size
        except (TypeError, ValueError):
            raise ExportError(f"check_size={check_size!r}: expected (width, height)") from None
        netdef.check_input_size(width, height)
        return int(width), int(height)
    return netdef.net.width + sx, netdef.net.height + 2 * sy


def netdef_at(netdef: NetworkDef, size: Size) -> NetworkDef:
    """The same cfg at another input size (the sizes of every layer inferred again)."""
    doc = CfgDocument(netdef.path, netdef.sections, netdef.cfg_text)
    return parse_network(doc, width=size[0], height=size[1], limits=False)


def check_dynamic_size(model: DarknetModel, backend: str, size: Size) -> NetworkDef:
    """Refuse, before anything is written, a network that cannot run at every multiple of its
    stride; returns its definition at ``size`` (the second checked size)."""
    netdef = model.netdef
    try:
        other = netdef_at(netdef, size)
    except (CfgError, DarknetPyError) as e:
        raise ExportError(f"{backend}: dynamic_size: the network cannot run at {size[0]}x{size[1]}, a multiple of "
                          f"its stride: {e}") from e
    for spec, kind, a, b in zip(netdef.specs, netdef.kinds, netdef.weight_counts, other.weight_counts):
        if a != b:
            raise ExportError(f"{backend}: dynamic_size: layer {spec.index} [{kind.name}] (cfg line {spec.line}) has "
                              f"weights sized by its input ({a} floats at {netdef.net.width}x{netdef.net.height}, {b} "
                              f"at {size[0]}x{size[1]}): this network takes one input size; export it without "
                              "dynamic_size")
    return other


def model_at_size(model: DarknetModel, netdef: NetworkDef) -> DarknetModel:
    """The comparison model at another size: built from ``netdef`` (the same cfg at that size),
    with ``model``'s tensors, tree, dtype, device and memory format; a layer that keeps a size of
    its own is built for the new one, so it cannot hide a size frozen in the export."""
    other = DarknetModel(netdef, model.darknet.tree)
    other.darknet = model.darknet
    param = next(model.parameters())
    other.to(device=param.device, dtype=param.dtype)
    other.load_state_dict(model.state_dict())
    other.header = model.header
    other.to_channels_last(model.channels_last)
    return other.eval()


def _scaled(dim: str, n: int, net: int) -> str | int:
    """``height/32`` for a layer ``n`` high in a network ``net`` high (its size at any input)."""
    r = Fraction(n, net)
    if r == 1:
        return dim
    if r.numerator == 1:
        return f"{dim}/{r.denominator}"
    return f"{dim}*{r.numerator}/{r.denominator}"


def raw_dims(netdef: NetworkDef, index: int, lead: str) -> list[str | int]:
    """A head's output shape with symbolic height and width (ONNX dim_params)."""
    c, h, w = netdef.shapes[index]
    return [lead, c, _scaled("height", h, netdef.net.height), _scaled("width", w, netdef.net.width)]


def input_dims(netdef: NetworkDef) -> list[str | int]:
    return ["batch", netdef.net.channels, *INPUT_DIMS]


@dataclass
class SizeCheck:
    """What a dynamic-size export is checked at: the traced size, the second size and the
    network's definition there."""

    strides: Size
    sizes: tuple[Size, Size]
    netdef: NetworkDef

    def guard(self, backend: str) -> SizeGuard:
        return SizeGuard(self.strides, backend)

    def failed(self, path: str, what: str) -> ExportError:
        (w0, h0), (w, h) = self.sizes
        return ExportError(f"{path}: at {w}x{h}, the second input size checked for dynamic_size, {what}; it matched "
                           f"at the traced {w0}x{h0}: the graph holds a size it should take from its input (the file "
                           "was left in place for inspection)")


def plan_sizes(model: DarknetModel, backend: str, dynamic_size: bool, check_size: Size | None) -> SizeCheck | None:
    """None for a fixed-size export; else the sizes to check, the network refused (ExportError)
    before anything is written when it cannot take them."""
    if not dynamic_size:
        if check_size is not None:
            raise ExportError("check_size= applies to dynamic_size=True exports only")
        return None
    size = second_size(model.netdef, check_size)
    return SizeCheck(model.netdef.strides, (model.input_size, size), check_dynamic_size(model, backend, size))


def check_second_size(report: ExportReport, sizes: SizeCheck, make: Callable[[], tuple[torch.Tensor, nn.Module]],
                      run: Callable[[torch.Tensor], Sequence[np.ndarray]], names: Sequence[str]) -> ExportReport:
    """Run the written file at the second size (``make()`` gives the input and the reference
    module there) and compare; anything but a match within the report's tolerance is an
    ExportError that says a size was left in the graph. Adds the size and its difference to the report."""
    x, ref_module = make()
    (w, h) = sizes.sizes[1]
    try:
        got = run(x)
        a, r = compare(got, reference(ref_module, x), names)
    except ExportError as e:
        raise sizes.failed(report.path, str(e).removeprefix(f"{report.path}: ")) from e
    if not r <= report.tolerance:
        raise sizes.failed(report.path, f"the export differs from PyTorch by {r:.3g} relative ({a:.3g} absolute), "
                                        f"above the tolerance {report.tolerance:g}")
    report.checked_sizes = list(sizes.sizes)
    sx, sy = sizes.strides
    multiples = f"multiples of {sx}" if sx == sy else f"height a multiple of {sy}, width of {sx}"
    w0, h0 = sizes.sizes[0]
    report.notes.append(f"input height and width: any {multiples} (checked at {w0}x{h0} and {w}x{h}; at {w}x{h}, "
                        f"batch {x.shape[0]}: {a:.3g} absolute, {r:.3g} relative)")
    report.max_abs_diff, report.max_rel_diff = max(report.max_abs_diff, a), max(report.max_rel_diff, r)
    return report


__all__ = ["INPUT_DIMS", "Size", "SizeCheck", "SizeGuard", "check_dynamic_size", "check_second_size", "guard_node",
           "input_dims", "model_at_size", "netdef_at", "plan_sizes", "raw_dims", "second_size"]
