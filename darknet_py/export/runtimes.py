"""What the backends that convert a model for another runtime share (OpenVINO, ncnn).

Such a backend writes more than one file (OpenVINO's ``.xml`` + ``.bin``, ncnn's ``.param`` +
``.bin``), runs them in their own runtime right after conversion and proves them with
:func:`darknet_py.export.verify.verify_runner` (raw heads against PyTorch, then the same decode and
post-process, detections matched). The files are written under temporary names beside their
targets (:class:`StagedOutputs`, built on :class:`darknet_py.files.TempPath`), the runtime loads
those, and they are renamed into place only when the check passes: a failed conversion or check
leaves nothing.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ExportError, OutputError
from ..files import TempPath
from ..imageio import load_image
from ..postprocess import DEFAULT_NMS, DEFAULT_THRESH
from .check import ExportReport, synthetic_image, writing
from .verify import Runner, Verification, verify_runner

def import_extra(modules: Sequence[str], extra: str, what: str) -> list:
    """Import ``modules`` or raise an ExportError naming the pip extra that installs them."""
    out = []
    for name in modules:
        try:
            out.append(importlib.import_module(name))
        except ImportError as e:
            raise ExportError(f"{what} needs the {' and '.join(modules)} package{'s' if len(modules) > 1 else ''} "
                              f"({e}); pip install darknet-py-yolov3[{extra}]") from e
    return out


def layer_where(model, index: int) -> str:
    """``layer 16 ([yolo], cfg line 177)``: a layer as a user finds it in the cfg."""
    spec = model.netdef.specs[index]
    kind = next((s.kind for s in model.netdef.sections if s.index == index), type(spec).__name__)
    return f"layer {index} ([{kind}], {os.fspath(model.netdef.path or '<cfg>')} line {spec.line})"


def check_photos(sample: np.ndarray | None, photos: Sequence) -> list[tuple[str, np.ndarray]]:
    """The photos a conversion is checked on: the sample (the synthetic picture when None), then each
    of ``photos`` (paths, or (name, HxWx3 uint8 RGB) pairs)."""
    first = synthetic_image() if sample is None else np.asarray(sample)
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ExportError(f"sample must be an HxWx3 uint8 RGB array, got {first.dtype} {tuple(first.shape)}")
    out = [("the sample image" if sample is None else "the sample", first)]
    for p in photos:
        if isinstance(p, tuple):
            out.append((str(p[0]), np.asarray(p[1])))
        else:
            out.append((os.fspath(p), load_image(p)[0]))
    return out


class StagedOutputs:
    """Several output files written under temporary names beside their targets (one
    :class:`~darknet_py.files.TempPath` each: the targets checked, each name locked) and renamed
    into place together by :meth:`commit`; :meth:`discard` (or a failed commit) leaves none of them."""

    def __init__(self, targets: Sequence[str | os.PathLike]):
        self.targets = [os.fspath(t) for t in targets]
        self.temps: list[TempPath] = []
        try:
            for t in self.targets:
                with writing(t):
                    try:
                        self.temps.append(TempPath(t))
                    except OutputError as e:  # a missing folder, a target that is not a file, an input
                        raise ExportError(f"{t}: cannot write the export: {e}") from e
        except BaseException:
            self.discard()
            raise

    @property
    def paths(self) -> list[str]:
        """The temporary names, in the targets' order (each with its target's extension)."""
        return [t.tmp for t in self.temps]

    def commit(self) -> None:
        done: list[str] = []
        try:
            for t, target in zip(self.temps, self.targets):
                with writing(target):
                    t.commit()
                done.append(target)
        except BaseException:
            # a half-published pair would pass for a model: the ones already renamed go too
            for target in done:
                try:
                    os.unlink(target)
                except OSError:
                    pass
            self.discard()
            raise

    def discard(self) -> None:
        for t in self.temps:
            t.discard()

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.discard()


@dataclass
class RuntimeReport(ExportReport):
    """An :class:`ExportReport` for a conversion checked in its own runtime: the files written, the
    arithmetic the check ran at, and the check on photos (:class:`~darknet_py.export.verify.Verification`)."""

    files: list[str] = field(default_factory=list)
    precision: str = "f32"                     # what the runtime computed in for the check
    verification: Verification | None = None
    format_name: str = ""

    @property
    def matched(self) -> int:
        return self.verification.total.matched if self.verification else 0

    @property
    def missing(self) -> int:
        return self.verification.total.missing if self.verification else 0

    @property
    def extra(self) -> int:
        return self.verification.total.extra if self.verification else 0

    def lines(self) -> list[str]:
        size = sum(os.path.getsize(f) for f in self.files if os.path.exists(f)) or self.file_bytes
        out = [f"wrote {' + '.join(self.files)} ({self.format_name}, {self.dtype} weights, {size / 1e6:.1f} MB)"]
        for kind, items in (("input ", self.inputs), ("output", self.outputs)):
            for name, shape in items:
                out.append(f"  {kind} {name}: {' x '.join(str(d) for d in shape)}")
        out += [f"  {note}" for note in self.notes]
        v = self.verification
        n = len(v.photos) if v else 0
        out.append(f"  checked in {self.runtime} at {self.precision} on {n} photo{'s' if n != 1 else ''}: heads differ "
                   f"from {self.reference or 'PyTorch'} by {self.max_abs_diff:.3g} absolute, {self.max_rel_diff:.3g} "
                   f"relative (tolerance {self.tolerance:g})")
        if v is not None:
            t = v.total
            out.append(f"  detections (thresh {v.thresh:g}, nms {v.nms:g}): {t.matched} of PyTorch's "
                       f"{t.reference_count} matched, {t.missing} missing, {t.extra} extra; largest score "
                       f"difference {t.max_score_diff:.3g}")
        return out


def verify_files(model, runner: Runner, photos, *, what: str, tolerance: float, thresh: float = DEFAULT_THRESH,
                 nms: float = DEFAULT_NMS) -> Verification:
    """Run the converted files on ``photos`` (verify_runner) and refuse them above ``tolerance``
    (largest relative head difference)."""
    v = verify_runner(model, runner, photos, thresh=thresh, nms=nms)
    if not v.max_rel_diff <= tolerance:
        t = v.total
        raise ExportError(f"{what}: its heads differ from PyTorch by {v.max_rel_diff:.3g} relative "
                          f"({v.max_abs_diff:.3g} absolute), above the tolerance {tolerance:g} "
                          f"(detections: {t.matched} matched, {t.missing} missing, {t.extra} extra); nothing was "
                          "written")
    return v


def weights_beside(path: str, graph_suffix: str) -> str:
    """OpenVINO's and ncnn's weights file: ``NAME.bin`` beside ``NAME<graph_suffix>``."""
    return path[:-len(graph_suffix)] + ".bin"


__all__ = ["RuntimeReport", "StagedOutputs", "check_photos", "import_extra", "layer_where", "verify_files",
           "weights_beside"]
