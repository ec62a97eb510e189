"""The models the export tests share, each built once for the folder."""
from __future__ import annotations

import pytest
import torch

import darknet_py
from darknet_py.random_weights import randomize
from tests.helpers.export import photo_input, small_model
from tests.helpers.paths import ROOT


@pytest.fixture(scope="package", autouse=True)
def export_on_one_torch_thread():
    """The whole folder on one torch thread, as tests/conftest.py's one_torch_thread does for a module:
    yolov3's export test measured 10 s of CPU and 19 s wall on one thread against 23 s and 66 s on two
    beside other busy processes (OpenMP's spinning threads)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="package")
def tiny(photo_rgb):
    """yolov3-tiny at 416 with calibrated random weights (channels_last, load()'s default): (model, x, info)."""
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny.cfg")
    x, info = photo_input(model, photo_rgb)
    return randomize(model, x, seed=3), x, info


@pytest.fixture(scope="package")
def small_tiny(photo_rgb):
    """yolov3-tiny at 64 px (calibrated at 160)."""
    return small_model(ROOT / "cfg" / "yolov3-tiny.cfg", photo_rgb, seed=10)
