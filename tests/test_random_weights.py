"""tools/make_random_weights.py: weights whose boxes look like a detector's on ordinary photos (a few
dozen at 0.25, not hundreds or thousands), on the sample photos or, without them, synthetic scenes
other than the ones the tool calibrates on."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import darknet_py
from darknet_py.detector import detect
from darknet_py.imageio import load_image
from darknet_py.synth import render_image
from tests.helpers.paths import REF, ROOT, sized_cfg_text

SAMPLES = ("dog", "person", "horses", "eagle", "giraffe", "kite", "scream")


def _photos() -> list[np.ndarray]:
    folder = REF / "pjreddie" / "data"
    if all((folder / f"{n}.jpg").exists() for n in SAMPLES):
        return [load_image(folder / f"{n}.jpg")[0] for n in SAMPLES]
    rng = np.random.default_rng(1234)  # not the tool's calibration scenes
    return [render_image(rng, 768, 576, 6)[0] for _ in range(4)]


def _make(cfg, out) -> None:
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_random_weights.py"), str(cfg), str(out)],
                   check=True, capture_output=True, timeout=600)


# yolov3 itself takes minutes on a shared CPU (and spreads wider: 43 to 206 rows at 416 on the samples)
@pytest.mark.parametrize("name, size", [("yolov3-tiny", 416)])
def test_tool_weights_give_a_few_dozen_boxes(tmp_path, name, size):
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(sized_cfg_text(ROOT / "cfg" / f"{name}.cfg", size))
    weights = tmp_path / f"{name}.weights"
    _make(cfg, weights)
    model = darknet_py.load(cfg, weights)
    counts = [len(detect(model, rgb, thresh=0.25)) for rgb in _photos()]
    assert all(5 <= n <= 100 for n in counts), counts
