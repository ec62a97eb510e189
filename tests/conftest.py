"""Shared test fixtures (the photo); the paths and reference-file helpers live in tests/helpers/paths.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.paths import REF

import os  # noqa: E402

# The CI machine has 2 cores; more threads only thrash. Under pytest-xdist (`make test` runs two
# workers when it is installed) each worker takes one core.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(scope="session")
def photo_rgb() -> np.ndarray:
    """dog.jpg decoded once (or, without the reference folder, a synthetic 768x576 scene)."""
    from darknet_py.imageio import load_image

    p = REF / "pjreddie" / "data" / "dog.jpg"
    if p.exists():
        return load_image(p)[0]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:576, 0:768]
    img = np.stack([(xx * 255 // 767), (yy * 255 // 575), ((xx + yy) % 256)], -1).astype(np.uint8)
    for _ in range(12):
        x0, y0 = rng.integers(0, 600), rng.integers(0, 450)
        img[y0:y0 + rng.integers(40, 160), x0:x0 + rng.integers(40, 160)] = rng.integers(0, 256, 3)
    return img


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module (request it with pytest.mark.usefixtures). On the shared 2-core
    machine OpenMP's spinning threads stall whenever another process holds a core: measured, yolov3's
    randomize 8.7 s with 2 threads against 1.4 s with 1 under load, and forward passes 5-10x slower
    beside a decoding worker."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
