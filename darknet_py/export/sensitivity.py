"""Which layers an int8 file keeps in float: the per-layer sensitivity pass both int8 backends use.

Each candidate layer is quantised *alone* (every other layer float) and the signal-to-quantisation-
noise ratio of the heads against the float network is measured on a few calibration photos
(:func:`heads_sqnr`: ``10 log10(sum ref^2 / sum (q - ref)^2)``, all heads); a layer below
``min_layer_db`` stays float (:func:`sensitivity_pass`). The backend supplies how to run the
network with one layer int8 (a runner, see darknet_py.export.verify): onnxruntime's quantiser
for ONNX (darknet_py.export.int8), the TFLite writer for TFLite (darknet_py.export.tflite).
The threshold and its measurements: darknet_py.export.int8's docstring.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .verify import Runner

# dB below which a layer stays float; photos of the calibration set the pass runs on
DEFAULT_MIN_LAYER_DB = 25.0
DEFAULT_SENSITIVITY_IMAGES = 8


@dataclass
class LayerSensitivity:
    """One layer quantised alone: how far the heads move (dB, higher is closer)."""

    layer: int            # Darknet layer index
    sqnr_db: float
    kept_float: bool
    nodes: list[str] = field(default_factory=list)  # ONNX: the graph nodes of the layer


def heads_sqnr(got: Sequence[Sequence[np.ndarray]], ref: Sequence[Sequence[np.ndarray]]) -> float:
    """10 log10(sum ref^2 / sum (got - ref)^2) over every head of every photo (inf when equal)."""
    signal = noise = 0.0
    for g, r in zip(got, ref):
        for a, b in zip(g, r):
            b64 = np.asarray(b, np.float64)
            signal += float((b64 ** 2).sum())
            noise += float(((np.asarray(a, np.float64) - b64) ** 2).sum())
    if noise == 0:
        return math.inf
    return 10 * math.log10(signal / noise) if signal > 0 else -math.inf


def probe_batches(batches: Sequence[np.ndarray], n: int = DEFAULT_SENSITIVITY_IMAGES) -> list[np.ndarray]:
    """``n`` of the calibration batches, spread evenly over them."""
    step = max(1, len(batches) // n)
    return list(batches[::step][:n])


def run_all(runner: Runner, batches: Iterable[np.ndarray]) -> list[list[np.ndarray]]:
    return [[np.asarray(h) for h in runner(x)] for x in batches]


def sensitivity_pass(layers: Iterable[int], alone: Callable[[int], Runner], probe: Sequence[np.ndarray],
                     reference: Sequence[Sequence[np.ndarray]], min_layer_db: float = DEFAULT_MIN_LAYER_DB
                     ) -> list[LayerSensitivity]:
    """Each of ``layers`` int8 alone (``alone(layer)``: a runner of the network with only that
    layer int8), its heads SQNR on ``probe`` against ``reference`` (the float heads of the same
    batches); kept float when below ``min_layer_db``."""
    out = []
    for layer in layers:
        db = heads_sqnr(run_all(alone(layer), probe), reference)
        out.append(LayerSensitivity(int(layer), db, db < min_layer_db))
    return out


def float_choice(scores: Iterable[LayerSensitivity], asked: Iterable[int] = ()) -> list[int]:
    """The layers kept float: the sensitive ones and the asked ones."""
    return sorted({s.layer for s in scores if s.kept_float} | {int(i) for i in asked})


__all__ = ["DEFAULT_MIN_LAYER_DB", "DEFAULT_SENSITIVITY_IMAGES", "LayerSensitivity", "float_choice", "heads_sqnr",
           "probe_batches", "run_all", "sensitivity_pass"]
