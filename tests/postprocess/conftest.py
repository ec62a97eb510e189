"""The models and photos the batch and fixed-shape post-processing tests share, built once for the folder."""
from __future__ import annotations

import pytest
import torch

from darknet_py.transforms import prepare_batch
from tests.helpers.detections import calibrated_model, sample_photos
from tests.helpers.paths import ROOT


@pytest.fixture(scope="package")
def photos():
    return sample_photos()


@pytest.fixture(scope="package")
def tiny(photos):
    """yolov3-tiny at 416 with random weights calibrated on the first photo."""
    return calibrated_model(ROOT / "cfg" / "yolov3-tiny.cfg", 416, photos[0])


@pytest.fixture(scope="package")
def tiny_outputs(tiny, photos):
    """All the photos letterboxed in one batch, and tiny's head outputs on it: (x, infos, outputs)."""
    x, infos = prepare_batch(photos, 416, 416)
    with torch.no_grad():
        return x, infos, tiny(x)
