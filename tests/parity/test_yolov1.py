"""YOLOv1: pjreddie's yolov1.cfg end to end ([local] -> [dropout] -> [connected] -> [detection]).

- The reference cfg parses at 448 (197,328,243 weight floats, counted on the meta device and by an
  independent walker) and runs at 96, where the trunk ends on a 2x2 grid (the ``[connected]``
  input shrinks with the input, the ``[detection]`` head does not).
- The tail ([local], [connected]) against float64.
- ``darknet_py.detect`` on a photo against a plain-Python ``get_detection_detections`` +
  ``do_nms_sort`` on the stretched photo (examples/yolo.c ``test_yolo``: thresh .2, nms .4).
- A wrong ``[connected]`` size in the reference cfg names both layers.
(The [detection] head on its own: tests/layers/test_detection.py.)
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.detector import detect, letterboxed
from darknet_py.graph import build_model, parse_network
from darknet_py.imageio import load_image
from darknet_py.layers.detection import DetectionSpec
from darknet_py.random_weights import randomize
from darknet_py.summary import summarize
from darknet_py.transforms import letterbox, stretch
from darknet_py.weights import count_floats
from tests.helpers.errors import expect_cfg_error
from tests.helpers.heads import get_detection_detections, nms_reported
from tests.helpers.paths import ref_path, sized_cfg_text
from tests.helpers.reference import cfg_sections, local_reference

pytestmark = pytest.mark.filterwarnings("ignore:.*multiples of 32")

YOLOV1_FLOATS = 197_328_243  # the reference README's figure


# --------------------------------------------------------------------------------------- reference cfg

def _walk_floats(text: str, width: int, height: int) -> int:
    """Weight floats by Darknet's shape rules, independent of darknet_py's layer code."""
    c, h, w, total = 3, height, width, 0
    for kind, s, _ in cfg_sections(text)[1:]:
        if kind == "convolutional":
            n, size, stride = int(s["filters"]), int(s["size"]), int(s.get("stride", 1))
            pad = size // 2 if s.get("pad") == "1" else 0
            total += n * (4 if s.get("batch_normalize") == "1" else 1) + n * c * size * size
            c, h, w = n, (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
        elif kind == "maxpool":
            size, stride = int(s["size"]), int(s["stride"])
            c, h, w = c, (h + size - 1 - size) // stride + 1, (w + size - 1 - size) // stride + 1
        elif kind == "local":
            n, size, stride = int(s["filters"]), int(s["size"]), int(s["stride"])
            oh = (h - 1 if s.get("pad", "0") != "0" else h - size) // stride + 1
            ow = (w - 1 if s.get("pad", "0") != "0" else w - size) // stride + 1
            total += n * oh * ow + size * size * c * n * oh * ow
            c, h, w = n, oh, ow
        elif kind == "connected":
            out = int(s["output"])
            total += out + out * c * h * w
            c, h, w = out, 1, 1
        elif kind not in ("dropout", "detection"):
            raise AssertionError(kind)
    return total


def test_yolov1_cfg_parses_counts_and_summarises():
    path = ref_path("pjreddie", "cfg", "yolov1.cfg")
    nd = parse_network(path)
    kinds = [s.kind for s in nd.sections[1:]]
    assert kinds[-4:] == ["local", "dropout", "connected", "detection"] and len(kinds) == 32
    assert nd.shapes[-5:] == [(1024, 7, 7), (256, 7, 7), (256, 7, 7), (1715, 1, 1), (1715, 1, 1)]
    head = nd.head_specs[-1]
    assert isinstance(head, DetectionSpec) and nd.head_indices == [31]
    assert (head.classes, head.coords, head.side, head.num, head.softmax, head.sqrt) == (20, 4, 7, 3, False, True)
    assert (head.rescore, head.jitter, head.object_scale, head.noobject_scale, head.class_scale, head.coord_scale) == \
        (True, 0.2, 1.0, 0.5, 1.0, 5.0)
    assert head.letterbox is False and head.inputs == 1715
    text = path.read_text()
    assert _walk_floats(text, 448, 448) == YOLOV1_FLOATS
    with torch.device("meta"):  # shapes only: no 790 MB of parameters
        assert count_floats(build_model(nd)) == YOLOV1_FLOATS
        s = summarize(nd)
    assert s.floats == YOLOV1_FLOATS and s.weights_bytes() == 20 + 4 * YOLOV1_FLOATS
    local = s.rows[28]
    assert local.kind == "local" and local.flops == 2 * 256 * 9 * 1024 * 7 * 7
    assert local.describe.split() == ["256", "3", "x", "3", "/", "1"]
    assert s.rows[31].kind == "detection" and s.rows[31].floats == 0
    # at 96 the trunk ends on 2x2: the [connected] input shrinks, the head does not. 96 is not a
    # multiple of the net's stride 64, so it is the cfg's own size (Darknet warns), not width=
    assert nd.strides == (64, 64)
    small = parse_network(sized_cfg_text(path, 96).encode())
    assert small.shapes[-5:] == [(1024, 2, 2), (256, 2, 2), (256, 2, 2), (1715, 1, 1), (1715, 1, 1)]
    assert _walk_floats(text, 96, 96) == summarize(small).floats


def _line(text: str, pattern: str) -> int:
    return next(i + 1 for i, line in enumerate(text.split("\n")) if re.fullmatch(pattern, line))


def test_reference_yolov1_with_a_wrong_connected_size(tmp_path):
    text = ref_path("pjreddie", "cfg", "yolov1.cfg").read_text().replace("output= 1715", "output= 1470")
    expect_cfg_error(text, _line(text, r"\[detection\]"), "layer 30 [connected]",
                     f"cfg line {_line(text, r'.connected.')}", "1470", "= 1715", "set output=1715",
                     path=tmp_path / "bad.cfg")


# -------------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def yolov1_96():
    path = ref_path("pjreddie", "cfg", "yolov1.cfg")
    photo = ref_path("pjreddie", "data", "person.jpg")  # 640x424: a stretch and a letterbox differ
    torch.manual_seed(0)  # [connected] keeps PyTorch's default initialisation
    model = build_model(sized_cfg_text(path, 96).encode())
    rgb = load_image(photo)[0]
    x, _ = stretch(rgb, 96, 96)
    randomize(model, x[None])
    return model, photo, rgb, x[None]


def test_yolov1_tail_against_float64(yolov1_96):
    # the trunk's output through [local] -> [dropout] -> [connected] -> [detection] in float64
    model, _, _, x = yolov1_96
    with torch.no_grad():
        t = x
        for layer in model.layers[:28]:
            t = layer(t)
        ours = model(x)[0].reshape(-1).double().numpy()
    local = model.layers[28]
    floats = np.concatenate([v.detach().reshape(-1).numpy() for _, v in local.darknet_tensors()])
    h = local_reference(t[0].double().numpy(), floats, 256, 3, 1, 1, "leaky").reshape(-1)
    fc = model.layers[30].fc
    ref = fc.weight.detach().double().numpy() @ h + fc.bias.detach().double().numpy()
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max(), np.abs(ours - ref).max() / np.abs(ref).max()


def test_yolov1_detect_equals_darknet_test_yolo(yolov1_96):
    model, photo, rgb, x = yolov1_96
    thresh, nms = 0.2, 0.4  # examples/yolo.c: run_yolo's -thresh default and test_yolo's nms
    assert letterboxed(model) is False
    img_h, img_w = rgb.shape[:2]
    with torch.no_grad():
        flat = model(x)[0].reshape(-1).numpy()  # the [detection] layer's l.output for the stretched photo
    got = detect(model, photo, thresh=thresh, nms=nms)
    ref = nms_reported(get_detection_detections(flat, 7, 3, 20, True, thresh), nms, img_w, img_h)
    assert 5 <= len(ref) < 7 * 7 * 3 * 20, len(ref)
    ours = sorted(((int(c), float(s), *map(float, b)) for c, s, b in zip(got.classes, got.scores, got.boxes)),
                  key=lambda r: (r[0], -r[1]))
    assert [r[:2] for r in ours] == [r[:2] for r in ref]  # classes and float32 scores, exactly
    assert np.abs(np.array([r[2:] for r in ours]) - np.array([r[2:] for r in ref])).max() < 1e-3
    # the letterboxed photo (pjreddie's later test_detector) gives other detections: the test sees the stretch
    lb, _ = letterbox(rgb, 96, 96)
    with torch.no_grad():
        flat_lb = model(lb[None])[0].reshape(-1).numpy()
    other = nms_reported(get_detection_detections(flat_lb, 7, 3, 20, True, thresh), nms, img_w, img_h)
    assert [r[:2] for r in other] != [r[:2] for r in ref]


def test_small_detector_runs_through_load_and_detect(tmp_path, photo_rgb):
    # a generated cfg with YOLOv1's section sequence, written and read back through a weights file
    text = ("[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\n"
            "stride=2\npad=1\nactivation=leaky\n\n[maxpool]\nsize=2\nstride=2\n\n[local]\nsize=3\nstride=2\npad=1\n"
            "filters=6\nactivation=leaky\n\n[dropout]\nprobability=.5\n\n[connected]\noutput=52\nactivation=linear\n\n"
            "[detection]\nclasses=3\ncoords=4\nside=2\nnum=2\nsoftmax=1\nsqrt=1\n")
    cfg = tmp_path / "v1.cfg"
    cfg.write_text(text)
    torch.manual_seed(1)
    model = randomize(build_model(cfg), stretch(photo_rgb, 64, 64)[0][None])
    model.save_weights(tmp_path / "v1.weights")
    loaded = darknet_py.load(cfg, tmp_path / "v1.weights")
    loaded.save_weights(tmp_path / "again.weights")
    assert (tmp_path / "v1.weights").read_bytes() == (tmp_path / "again.weights").read_bytes()
    got = detect(loaded, photo_rgb, thresh=0.05, nms=0.4)
    x, _ = stretch(photo_rgb, 64, 64)
    with torch.no_grad():
        flat = loaded(x[None])[0].reshape(-1).numpy()  # l.output of the loaded (channels_last) model
    h, w = photo_rgb.shape[:2]
    ref = nms_reported(get_detection_detections(flat, 2, 2, 3, True, 0.05), 0.4, w, h)
    ours = sorted(((int(c), float(s)) for c, s in zip(got.classes, got.scores)), key=lambda r: (r[0], -r[1]))
    assert len(ref) > 0 and ours == [r[:2] for r in ref]
