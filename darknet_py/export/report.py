"""One conversion report for every backend: what a user attaches when a conversion goes wrong.

For each converted file: the backend, its precision and runtime, and, on the given photos, the
largest difference of the raw heads from PyTorch and the detections matched / missing / extra
against PyTorch's at the given thresholds (darknet_py.export.verify); with a ``.data`` file, mAP@0.5
and COCO AP of PyTorch and of the converted model on its ``valid`` list (darknet_py.export.accuracy).
Printed as a table (:meth:`ConversionReport.lines`) and written as JSON (:func:`write_report`).
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..files import write_bytes
from .verify import Verification


@dataclass
class ConversionReport:
    backend: str                   # onnx, torchscript, openvino, ncnn, tflite, tensorrt, pt
    files: list[str]
    precision: str                 # float32, float16, int8, bf16
    runtime: str                   # what ran the converted file
    file_bytes: int
    verification: Verification
    accuracy: dict | None = None   # {"data", "images", "pytorch": {...}, "converted": {...}}
    notes: list[str] = field(default_factory=list)

    @property
    def matched_fraction(self) -> float:
        return self.verification.total.matched_fraction

    def as_dict(self) -> dict:
        v = self.verification
        total = v.total
        return _finite({
            "backend": self.backend, "files": list(self.files), "precision": self.precision,
            "runtime": self.runtime, "file_bytes": self.file_bytes, "thresh": v.thresh, "nms": v.nms,
            "match_iou": v.iou,
            "max_head_abs_diff": v.max_abs_diff, "max_head_rel_diff": v.max_rel_diff,
            "detections": {"matched": total.matched, "missing": total.missing, "extra": total.extra,
                           "reference": total.reference_count, "matched_fraction": total.matched_fraction,
                           "max_score_diff": total.max_score_diff},
            "photos": [{"photo": p.name, "max_head_abs_diff": p.max_abs_diff, "max_head_rel_diff": p.max_rel_diff,
                        "matched": p.match.matched, "missing": p.match.missing, "extra": p.match.extra,
                        "max_score_diff": p.match.max_score_diff} for p in v.photos],
            "accuracy": self.accuracy, "notes": list(self.notes)})

    def lines(self) -> list[str]:
        v = self.verification
        out = [f"{self.backend} ({self.precision}, {self.runtime}): {', '.join(self.files)} "
               f"({self.file_bytes / 1e6:.1f} MB)",
               f"  against PyTorch at thresh {v.thresh:g}, nms {v.nms:g} (same class, IoU >= {v.iou:g}):",
               f"  {'photo':<28} {'heads rel':>10} {'matched':>9} {'missing':>8} {'extra':>6} {'score diff':>11}"]
        for p in v.photos:
            m = p.match
            out.append(f"  {_short(p.name):<28} {_num(p.max_rel_diff):>10} {f'{m.matched}/{m.reference_count}':>9} "
                       f"{m.missing:>8} {m.extra:>6} {m.max_score_diff:>11.2g}")
        t = v.total
        out.append(f"  {f'all {len(v.photos)} photos':<28} {_num(v.max_rel_diff):>10} "
                   f"{f'{t.matched}/{t.reference_count}':>9} {t.missing:>8} {t.extra:>6} {t.max_score_diff:>11.2g}"
                   f"   ({100 * t.matched_fraction:.1f} % matched)")
        if self.accuracy:
            a = self.accuracy
            before, after = a["pytorch"], a["converted"]
            out.append(f"  on {a['images']} photos of {a['data']}: mAP@0.5 {_pct(before.get('map50'))} -> "
                       f"{_pct(after.get('map50'))}, COCO AP {_pct(before.get('coco_ap'))} -> "
                       f"{_pct(after.get('coco_ap'))} (PyTorch -> {self.backend})")
        out += [f"  note: {n}" for n in self.notes]
        return out


def _short(name: str, width: int = 28) -> str:
    base = os.path.basename(name) or name
    return base if len(base) <= width else "..." + base[-(width - 3):]


def _num(v: float) -> str:
    """A head difference; '-' where the heads were not compared (an end-to-end graph)."""
    return "-" if math.isnan(v) else f"{v:.2g}"


def _pct(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f} %"


def _finite(x):
    """JSON without NaN/Infinity (not JSON): they become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def accuracy_entry(model, runner, data) -> dict:
    """mAP@0.5 and COCO AP of PyTorch and of ``runner`` on the valid list of ``data``, computed by
    ``detector map``'s own code (darknet_py.export.accuracy), as the report's ``accuracy``."""
    from .accuracy import compare_accuracy
    cmp = compare_accuracy(model, runner, data)

    def numbers(a) -> dict:
        return {"map50": a.map50, "coco_ap": a.coco_ap, "detections": a.detections}
    return {"data": os.fspath(data), "images": cmp.before.images, "pytorch": numbers(cmp.before),
            "converted": numbers(cmp.after), "map50_change_points": -cmp.map50_drop}


def write_report(path, reports: Sequence[ConversionReport]) -> None:
    """The reports as one JSON document (a list, one entry per converted file)."""
    text = json.dumps([r.as_dict() for r in reports], indent=2) + "\n"
    write_bytes(os.fspath(path), text.encode())


__all__ = ["ConversionReport", "accuracy_entry", "write_report"]
