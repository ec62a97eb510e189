"""What the streaming-detect tests share, built once: the shipped shapes model, its class names and a
folder of generated photos with a truncated JPEG among them."""
from __future__ import annotations

import shutil

import pytest

from darknet_py.config.names import read_names
from darknet_py.detector import load
from darknet_py.synth import make_dataset
from tests.helpers.stream import CFG, NAMES, WEIGHTS


@pytest.fixture(scope="session")
def model():
    return load(CFG, WEIGHTS)


@pytest.fixture(scope="session")
def names():
    return read_names(NAMES, 6)


@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    """A folder of 7 generated photos (JPEG, different sizes) with a truncated JPEG in the middle."""
    d = tmp_path_factory.mktemp("photos")
    ds = make_dataset(d / "ds", train=0, valid=7, seed=5, min_side=96, max_side=224)
    folder = d / "in"
    folder.mkdir()
    for i, src in enumerate(sorted((ds.root / "images" / "valid").glob("*.jpg"))):
        shutil.copy(src, folder / f"p{i:02d}.jpg")
    good = sorted(folder.glob("*.jpg"))
    corrupt = folder / "p03b.jpg"  # sorts between p03 and p04
    data = good[0].read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    (folder / "notes.md").write_text("not a photo: skipped in folders")
    (folder / "._p00.jpg").write_bytes(b"\0\5\26\7 AppleDouble")  # hidden: skipped in folders
    return folder, [str(p) for p in good], corrupt
