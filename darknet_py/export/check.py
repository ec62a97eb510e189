"""How every export is checked: run the written file, compare it with PyTorch, report.

Right after writing, the file is run (onnxruntime, ``torch.jit.load`` or ``torch.load``) on a
letterboxed sample photo and compared with the PyTorch model; a difference above the tolerance
raises :class:`~darknet_py.errors.ExportError` (the file is left in place for inspection).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch
import torch.nn as nn

from ..checks import check_count
from ..errors import ExportError
from ..graph import DarknetModel
from ..transforms import letterbox
from .graphs import DECODED_NAME, prepared, target

# Largest accepted max|export - PyTorch| / max|PyTorch| per output.
# float32: measured 5e-5 on yolov3-416 with calibrated random weights (onnxruntime's conv
# kernels sum in another order than oneDNN's); 1e-4 keeps that margin and catches any real bug.
RTOL_FP32 = 1e-4
# float16: the reference is the PyTorch model in float16 on the same device. Both runtimes round
# every intermediate tensor to 11 significant bits but at different places (fused kernels,
# accumulation order), and a 100-layer net amplifies that: yolov3-416 with random weights measured
# 2.7e-2 between onnxruntime-fp16 and torch-fp16 (and 8e-2 between either and float32). A wrong
# graph is off by O(1), so 5e-2 still separates a faithful export from a broken one.
RTOL_FP16 = 5e-2

Shape = list[Union[int, str]]


_FORMAT_NAMES = {"onnx": "ONNX", "torchscript": "TorchScript", "pt": "PyTorch checkpoint"}


@dataclass
class ExportReport:
    """What an export wrote and how far its file's outputs are from PyTorch's."""

    path: str
    format: str                      # "onnx", "torchscript" or "pt"
    opset: int | None             # ONNX only
    inputs: list[tuple[str, Shape]]  # (name, shape with 'batch' for a dynamic batch)
    outputs: list[tuple[str, Shape]]
    file_bytes: int
    max_abs_diff: float              # against PyTorch on the sample image, all outputs and checked batches
    max_rel_diff: float              # max|diff| / max|reference| per output (decoded: per column group), largest
    dtype: str                       # "float32" or "float16"
    checked_batches: list[int] = field(default_factory=list)
    runtime: str = ""                # what ran the file for the check
    reference: str = ""              # what it was compared with
    tolerance: float = 0.0           # the relative tolerance that applied
    fp32_rel_diff: float | None = None  # half only: largest relative difference to the float32 model
    notes: list[str] = field(default_factory=list)  # what else the file holds, one line each
    sample_name: str = ""            # the photo compared on, as the caller names it ("": the sample given)
    checked_sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height): dynamic-size exports

    def lines(self) -> list[str]:
        head = f"wrote {self.path} ({_FORMAT_NAMES[self.format]}"
        if self.opset is not None:
            head += f", opset {self.opset}"
        head += f", {self.dtype}, {self.file_bytes / 1e6:.1f} MB)"
        out = [head]
        for kind, items in (("input ", self.inputs), ("output", self.outputs)):
            for name, shape in items:
                out.append(f"  {kind} {name}: {' x '.join(str(d) for d in shape)}")
        batches = ", ".join(str(b) for b in self.checked_batches)
        if self.checked_sizes:
            batches += "; input " + ", ".join(f"{w}x{h}" for w, h in self.checked_sizes)
        out += [f"  {note}" for note in self.notes]
        sample = self.sample_name or "the sample image"
        out.append(f"  largest difference from {self.reference or 'PyTorch'} on {sample} "
                   f"({self.runtime}, batch {batches}): {self.max_abs_diff:.3g} absolute, "
                   f"{self.max_rel_diff:.3g} relative (tolerance {self.tolerance:g})")
        if self.fp32_rel_diff is not None:
            out.append(f"  largest relative difference from the float32 PyTorch model: {self.fp32_rel_diff:.3g}")
        return out


def synthetic_image(width: int = 640, height: int = 480) -> np.ndarray:
    """A deterministic HxWx3 uint8 RGB test picture: gradients, rectangles and a disc."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), (xx * 3 + yy * 5) % 256],
                   -1).astype(np.uint8)
    rng = np.random.default_rng(1234)
    for _ in range(10):
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        w, h = int(rng.integers(width // 16, width // 4)), int(rng.integers(height // 16, height // 4))
        img[y0:y0 + h, x0:x0 + w] = rng.integers(0, 256, 3)
    disc = (xx - width * 0.6) ** 2 + (yy - height * 0.4) ** 2 < (min(width, height) * 0.15) ** 2
    img[disc] = (240, 200, 30)
    return img


def sample_input(model: DarknetModel, sample: np.ndarray | None = None,
                 size: tuple[int, int] | None = None) -> torch.Tensor:
    """(1, C, H, W) float32: the sample (or the synthetic picture) letterboxed to the network (to
    ``size``, (width, height), when given)."""
    img = synthetic_image() if sample is None else np.asarray(sample)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ExportError(f"sample must be an HxWx3 uint8 RGB array, got {img.dtype} {tuple(img.shape)}")
    net_w, net_h = size or model.input_size
    x, _ = letterbox(img, net_w, net_h, device="cpu")
    channels = model.netdef.net.channels
    if channels != 3:  # not an RGB network: the grey picture on every channel
        x = x.mean(0, keepdim=True).expand(channels, -1, -1)
    return x[None].contiguous()


def batch_of(x: torch.Tensor, n: int) -> torch.Tensor:
    """n different images from one (flips and inversions), so batch-mixing bugs show."""
    variants = [x, torch.flip(x, [3]), 1.0 - x, torch.flip(x, [2]), torch.flip(1.0 - x, [2, 3])]
    return torch.cat([variants[i % len(variants)] for i in range(n)], 0)


@contextlib.contextmanager
def writing(path: str):
    """A file that cannot be written is an ExportError naming it."""
    try:
        yield
    except (OSError, RuntimeError) as e:  # torch.jit.save reports a missing folder as a RuntimeError
        raise ExportError(f"{path}: cannot write the export: {e}") from e


def check_batch(batch: int) -> int:
    """``batch`` an integer >= 1 (a UsageError naming ``batch=``)."""
    return check_count("batch", batch, 1)


# The oldest ONNX opset the exporter writes (ELU's CastLike needs 15).
MIN_OPSET = 15


def check_export_options(*, batch: int | None = None, opset: int | None = None) -> None:
    """The numeric export arguments, checked before any model is loaded or traced."""
    check_count("batch", batch, 1)
    check_count("opset", opset, MIN_OPSET, what="the ONNX opset; ELU needs CastLike")


@contextlib.contextmanager
def half_on_cpu_errors(x: torch.Tensor):
    """Older CPU builds of PyTorch have no float16 convolution: say so, and what to do."""
    try:
        yield
    except RuntimeError as e:
        if x.dtype == torch.float16 and x.device.type == "cpu":
            raise ExportError(f"PyTorch cannot run this model in float16 on the CPU ({e}); export with "
                              "half=True from a CUDA model (load(..., device='cuda'))") from e
        raise


def reference(module: nn.Module, x: torch.Tensor) -> list[np.ndarray]:
    """What PyTorch gives for ``x``: the outputs the export must reproduce."""
    with torch.no_grad(), half_on_cpu_errors(x):
        out = module(x)
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    return [o.detach().float().cpu().numpy() for o in outs]


def column_groups(name: str, array: np.ndarray):
    """What is compared at one scale: the decoded rows' boxes (pixels), objectness and class
    scores each on their own (one relative error over all columns would let a wrong score hide
    under pixel coordinates in the hundreds); a raw head as a whole."""
    if name == DECODED_NAME:
        return [(f"{name}[x1..y2]", array[..., :4]), (f"{name}[objectness]", array[..., 4:5]),
                (f"{name}[class scores]", array[..., 5:])]
    return [(name, array)]


def compare(got: Sequence[np.ndarray], ref: Sequence[np.ndarray], names: Sequence[str]) -> tuple[float, float]:
    if len(got) != len(ref):
        raise ExportError(f"the export returned {len(got)} outputs, PyTorch {len(ref)}")
    max_abs = max_rel = 0.0
    pairs = []
    for g, r, name in zip(got, ref, names):
        g = np.asarray(g, dtype=np.float32)
        if g.shape != r.shape:
            raise ExportError(f"output {name}: the export gives shape {g.shape}, PyTorch {r.shape}")
        pairs += [(part, gp, rp) for (part, gp), (_, rp) in zip(column_groups(name, g), column_groups(name, r))]
    for _, g, r in pairs:
        both = np.isfinite(g) & np.isfinite(r)
        if (~both & ~(g == r)).any():  # a NaN, or an infinity on one side only (same infinities are equal)
            diff = math.inf
        else:
            diff = float(np.abs(g[both] - r[both]).max()) if both.any() else 0.0
        scale = float(np.abs(r[both]).max()) if both.any() else 0.0
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf))
    return max_abs, max_rel


def check_tolerance(report: ExportReport) -> ExportReport:
    if not report.max_rel_diff <= report.tolerance:
        raise ExportError(f"{report.path}: the export differs from PyTorch by {report.max_rel_diff:.3g} relative "
                          f"({report.max_abs_diff:.3g} absolute) on the sample image, above the tolerance "
                          f"{report.tolerance:g}; the file was left in place for inspection")
    return report


def dtype_name(half: bool) -> str:
    return "float16" if half else "float32"


def fp32_rel(model: DarknetModel, x: torch.Tensor, decode: bool, got: Sequence[np.ndarray]) -> float:
    m, _ = prepared(model, half=False)
    ref = reference(target(m, decode), x.float())
    names = [DECODED_NAME] if decode else [str(i) for i in range(len(ref))]
    return compare(got, ref, names)[1]


__all__ = ["ExportReport", "MIN_OPSET", "RTOL_FP16", "RTOL_FP32", "batch_of", "check_batch", "check_export_options",
           "check_tolerance", "compare", "dtype_name", "fp32_rel", "half_on_cpu_errors", "reference", "sample_input",
           "synthetic_image", "writing"]
