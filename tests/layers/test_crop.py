"""[crop] outside training: the centre crop and Darknet's input*2 - 1 (unless noadjust), against
OpenCV 4.x's Darknet importer (the only pjreddie-era kind of these it reads) and float64 NumPy
written from ``forward_crop_layer``; the augmentation keys kept; and the refused values.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.detector import load
from tests.helpers.cfgs import cfg
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.opencv import HAS_DARKNET_IMPORTER, opencv_forward

pytestmark = pytest.mark.filterwarnings("ignore:.*multiples of 32")


def crop_reference(x: np.ndarray, ch: int, cw: int, noadjust: bool) -> np.ndarray:
    """forward_crop_layer outside training: dh=(h-ch)/2, dw=(w-cw)/2, input*scale + trans."""
    _, _, h, w = x.shape
    dh, dw = (h - ch) // 2, (w - cw) // 2
    scale, trans = (1.0, 0.0) if noadjust else (2.0, -1.0)
    out = np.empty(x.shape[:2] + (ch, cw))
    for i in range(ch):
        for j in range(cw):
            out[:, :, i, j] = x[:, :, i + dh, j + dw] * scale + trans
    return out


@pytest.mark.parametrize("h, w, ch, cw, noadjust", [(8, 9, 5, 4, 0), (8, 9, 5, 4, 1), (7, 7, 7, 7, 0),
                                                    (10, 6, 1, 3, 0), (6, 11, 3, 8, 1)])
def test_crop_against_opencv_and_float64(tmp_path, h, w, ch, cw, noadjust):
    pytest.importorskip("cv2")
    text = cfg(f"[crop]\ncrop_height={ch}\ncrop_width={cw}\nflip=1\nangle=7\nsaturation=1.5\nexposure=1.5\n"
               f"shift=.2\nnoadjust={noadjust}\n", width=w, height=h)
    cfg_path = tmp_path / "crop.cfg"
    cfg_path.write_text(text)
    model = load(cfg_path, channels_last=False)
    spec = model.netdef.specs[0]
    assert (spec.flip, spec.angle, spec.saturation, spec.exposure, spec.shift) == (True, 7.0, 1.5, 1.5, 0.2)
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
    with torch.no_grad():
        ours = model(x)[0].numpy()
    ref = crop_reference(x.double().numpy(), ch, cw, bool(noadjust))
    assert ours.shape == (2, 3, ch, cw)
    assert np.abs(ours - ref).max() <= 1e-6
    if HAS_DARKNET_IMPORTER:
        theirs = opencv_forward(cfg_path, None, x)
        assert np.abs(ours - theirs).max() <= 1e-6


@pytest.mark.parametrize("body, key, needles", [
    ("crop_height=9\ncrop_width=4\n", "crop_height=9", ["crop_height=9", "larger than the input height 8"]),
    ("crop_height=4\ncrop_width=10\n", "crop_width=10", ["crop_width=10", "larger than the input width 9"]),
    ("crop_height=0\ncrop_width=4\n", "crop_height=0", ["crop_height=0", ">= 1"]),
    ("crop_height=4\ncrop_width=4\nnoadjust=2\n", "noadjust=2", ["noadjust=2", "expected one of 0, 1"]),
    ("crop_height=4\ncrop_width=4\nflip=yes\n", "flip=yes", ["flip=yes", "integer"]),
    ("crop_height=4\ncrop_width=4\ncrop_size=3\n", "crop_size=3", ["unknown key 'crop_size'"]),
])
def test_crop_bad_values_name_the_line(tmp_path, body, key, needles):
    text = cfg("[crop]\n" + body, width=9, height=8)
    expect_cfg_error(text, line_of(text, key), *needles, path=tmp_path / "bad.cfg")
