"""The single home of what the batch post-processing tests (tests/postprocess) and the fast-path tests
(tests/test_fast.py) share: a set of photos of many sizes, models with calibrated random weights at a
chosen input size, and the two comparisons of Detections lists they make: bit for bit, field by field
(where the arithmetic is the same), and by the IoU of matching clear detections (where it is not)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from darknet_py.imageio import load_image
from darknet_py.synth import render_image
from darknet_py.transforms import letterbox
from tests.helpers.models import random_model
from tests.helpers.numeric import corner_iou
from tests.helpers.paths import REF, sized_cfg_text

FIELDS = ("boxes", "scores", "classes", "objectness", "box_index")


def sample_photos() -> list[np.ndarray]:
    """Reference photos where present (dog, eagle, person, horses) and generated scenes of other
    sizes (two of the same size, so batched letterbox groups are exercised)."""
    out = []
    for name in ("dog", "eagle", "person", "horses"):
        p = REF / "pjreddie" / "data" / f"{name}.jpg"
        if p.exists():
            out.append(load_image(p)[0])
    rng = np.random.default_rng(7)
    for w, h in ((500, 375), (333, 640), (500, 375), (640, 200)):
        out.append(render_image(rng, w, h, 6)[0])
    return out


def calibrated_model(cfg, size: int, calib_rgb: np.ndarray, seed: int = 3):
    """A cfg (a file, sized to ``size`` x ``size``; or a text, as written) with random weights calibrated
    on the letterboxed photo ``calib_rgb``: eval mode, channels_last."""
    text = sized_cfg_text(cfg, size) if isinstance(cfg, Path) else cfg
    return random_model(text, letterbox(calib_rgb, size, size)[0][None], seed=seed).to_channels_last()


def assert_identical(a_list: Sequence, b_list: Sequence) -> None:
    """Two lists of Detections, bit for bit: every field of every image, dtype included (devices may differ)."""
    assert len(a_list) == len(b_list)
    for a, b in zip(a_list, b_list):
        for f in FIELDS:
            ta, tb = getattr(a, f), getattr(b, f)
            assert ta.dtype == tb.dtype and torch.equal(ta.cpu(), tb.cpu()), f


def min_match_iou(ref: Sequence, got: Sequence, thresh: float, margin: float) -> tuple[float, int]:
    """Over the clear detections of ``ref`` (score > thresh + margin): the lowest IoU with a
    detection of ``got`` of the same class and a score within ``margin``; and how many there were."""
    worst, n = 1.0, 0
    for a, b in zip(ref, got):
        rows = list(zip(b.classes.tolist(), b.scores.tolist(), b.boxes.tolist()))
        for c, s, box in zip(a.classes.tolist(), a.scores.tolist(), a.boxes.tolist()):
            if s <= thresh + margin:
                continue
            n += 1
            ious = [corner_iou(box, r[2]) for r in rows if r[0] == c and abs(r[1] - s) < margin]
            worst = min(worst, max(ious or [0.0]))
    return worst, n
