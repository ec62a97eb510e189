"""What the command-line tests share, built once: yolov3-tiny with calibrated random weights and a photo."""
from __future__ import annotations

import pytest

from darknet_py.imageio import save_image
from darknet_py.transforms import letterbox
from tests.helpers.models import random_model
from tests.helpers.paths import ROOT


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, photo_rgb):
    """yolov3-tiny with calibrated random weights, and a PNG photo (lossless, so the CLI's decode
    gives exactly the pixels the expected detections were computed from)."""
    d = tmp_path_factory.mktemp("tiny")
    cfg = ROOT / "cfg" / "yolov3-tiny.cfg"
    x = letterbox(photo_rgb, 416, 416)[0][None]
    weights = d / "tiny.weights"
    random_model(cfg, x, seed=3, objectness_rate=0.01).save_weights(weights)
    photo = d / "dog photo.png"  # a space in the name on purpose: paths are never split on blanks
    save_image(photo, photo_rgb)
    return cfg, weights, photo
