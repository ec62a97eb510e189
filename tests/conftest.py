"""Shared test fixtures: the Darknet reference files (skipped cleanly when absent) and a photo."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

# The Darknet reference folder beside the checkout; DARKNET_PY_REFERENCE points elsewhere (a path that
# does not exist runs the suite as a fresh clone without it does).
REF = Path(os.environ.get("DARKNET_PY_REFERENCE",
                          Path(__file__).resolve().parents[2] / "shared" / "darknet-reference"))
ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)  # the CI machine has 2 cores; more threads only thrash


def ref_path(*parts: str) -> Path:
    p = REF.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"Darknet reference file {p} not present")
    return p


def sized_cfg_text(path: Path, size: int) -> str:
    """The cfg text with [net] width/height set to `size` (reference cfgs carry 608 training headers)."""
    text = path.read_text()
    text = re.sub(r"(?m)^width\s*=\s*\d+", f"width={size}", text, count=1)
    return re.sub(r"(?m)^height\s*=\s*\d+", f"height={size}", text, count=1)


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
