"""What a conversion costs in accuracy: mAP of a converted model next to the PyTorch model's.

A converted model is a *runner* (darknet_py.export.verify.Runner: letterboxed NCHW float32 batch ->
raw heads). :func:`evaluate_runner` runs it over the ``valid`` list of a Darknet ``.data`` file
through ``detector map`` itself (darknet_py.validate.detector_map with the runner as its
``forward``): the same photo preparation, decode, thresholds, NMS, label reading and AP
(darknet_py.evaluation), so the runner's number and the PyTorch model's differ only by the
converted file. :func:`compare_accuracy` gives both ("before" and "after") on the same photos.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..defaults import MAP_IOU, VALID_NMS, VALID_THRESH
from ..evaluation import EvaluationReport
from ..validate import detector_map
from .verify import Runner


@dataclass
class Accuracy:
    """One model's numbers on a ``.data`` file's valid photos."""

    map50: float         # mAP at IoU ``iou`` (all-point, VOC2010+: detector map's first number)
    coco_ap: float       # AP@[.5:.95] by pycocotools on the same detections (NaN without it)
    images: int
    detections: int
    report: EvaluationReport

    def line(self, what: str) -> str:
        ap = "-" if math.isnan(self.coco_ap) else f"{100 * self.coco_ap:.2f} %"
        return (f"{what}: mAP@{self.report.iou:g} = {100 * self.map50:.2f} %, AP@[.5:.95] = {ap} "
                f"({self.images} photos, {self.detections} detections)")


@dataclass
class AccuracyComparison:
    before: Accuracy     # the PyTorch model
    after: Accuracy      # the converted model (the runner)

    @property
    def map50_drop(self) -> float:
        """Points (percent) of mAP the conversion lost; negative when it gained."""
        return 100 * (self.before.map50 - self.after.map50)

    def lines(self, what: str = "converted") -> list[str]:
        return [self.before.line("PyTorch"), self.after.line(what),
                f"mAP@{self.before.report.iou:g} change: {-self.map50_drop:+.2f} points"]


def runner_forward(runner: Runner):
    """A runner as ``detector map``'s ``forward``: torch batch in, torch heads (CPU float32) out."""
    def forward(x: torch.Tensor) -> list[torch.Tensor]:
        heads = runner(np.ascontiguousarray(x.detach().float().cpu().numpy()))
        return [torch.from_numpy(np.asarray(h, dtype=np.float32)) for h in heads]
    return forward


def _accuracy(result) -> Accuracy:
    rep = result.report
    coco = rep.coco.AP if rep.coco is not None else float("nan")
    return Accuracy(rep.map, coco, rep.num_images, rep.num_detections, rep)


def evaluate_runner(model, runner: Runner | None, data, *, limit: int | None = None, batch: int = 1,
                    thresh: float = VALID_THRESH, nms: float = VALID_NMS, iou: float = MAP_IOU,
                    workers: int | None = 0) -> Accuracy:
    """mAP@``iou`` and COCO AP of ``runner`` (None: the PyTorch ``model`` itself) on the ``valid``
    list of ``data``, exactly as ``detector map`` computes them for the model (its defaults:
    ``thresh`` .005, ``nms`` .45, IoU > .5). ``limit``: that many photos spread over the list;
    ``batch``: photos per runner call (1 suits every backend; a file with a fixed batch needs its own)."""
    forward = None if runner is None else runner_forward(runner)
    with torch.inference_mode():
        result = detector_map(data, None, None, model=model, forward=forward, limit=limit, batch=batch,
                              thresh=thresh, nms=nms, iou=iou, workers=workers)
    return _accuracy(result)


def compare_accuracy(model, runner: Runner, data, **kwargs) -> AccuracyComparison:
    """:func:`evaluate_runner` for the PyTorch model (before) and the runner (after), same photos."""
    return AccuracyComparison(evaluate_runner(model, None, data, **kwargs),
                              evaluate_runner(model, runner, data, **kwargs))


__all__ = ["Accuracy", "AccuracyComparison", "compare_accuracy", "evaluate_runner", "runner_forward"]
