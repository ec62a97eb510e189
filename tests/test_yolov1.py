"""YOLOv1: the ``[detection]`` head and pjreddie's yolov1.cfg end to end.

- The reference cfg parses at 448 (197,328,243 weight floats, counted on the meta device and by an
  independent walker) and runs at 96, where the trunk ends on a 2x2 grid (the ``[connected]``
  input shrinks with the input, the ``[detection]`` head does not).
- ``[detection]``'s forward (softmax per cell) against float64; its decode + the generic strict
  thresholds against a plain-Python ``get_detection_detections``, bit for bit, for several
  thresholds, including the raw (``softmax=0``) class values outside [0, 1] that YOLOv1 emits.
- ``darknet_py.detect`` on a photo against a plain-Python ``get_detection_detections`` +
  ``do_nms_sort`` on the stretched photo (examples/yolo.c ``test_yolo``: thresh .2, nms .4).
- Refusals name the cfg line (and, for a wrong ``[connected]`` size, both layers).
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
from tests.helpers.cfgs import fixture_cfg_text, with_keys
from tests.helpers.errors import expect_cfg_error
from tests.helpers.paths import ref_path, sized_cfg_text
from tests.helpers.reference import candidates, cfg_sections, do_nms_sort, local_reference, reported

pytestmark = pytest.mark.filterwarnings("ignore:.*multiples of 32")

F32 = np.float32
YOLOV1_FLOATS = 197_328_243  # the reference README's figure


# --------------------------------------------------------------------- plain-Python Darknet post-processing

def get_detection_detections(flat: np.ndarray, side: int, num: int, classes: int, sqrt: bool, thresh: float):
    """src/detection_layer.c get_detection_detections with w = h = 1 (test_yolo), float32 as the C."""
    flat = flat.astype(F32)
    dets = []
    for i in range(side * side):
        row, col = i // side, i % side
        for n in range(num):
            scale = flat[side * side * classes + i * num + n]
            bi = side * side * (classes + num) + (i * num + n) * 4
            x = (flat[bi] + F32(col)) / F32(side) * F32(1)
            y = (flat[bi + 1] + F32(row)) / F32(side) * F32(1)
            # pow() in double, times the int w, rounded once when stored in the float box
            bw = F32(float(flat[bi + 2]) ** (2 if sqrt else 1))
            bh = F32(float(flat[bi + 3]) ** (2 if sqrt else 1))
            probs = []
            for j in range(classes):
                prob = F32(scale * flat[i * classes + j])
                probs.append(prob if prob > thresh else F32(0))
            dets.append({"row": i * num + n, "box": (x, y, bw, bh), "objectness": scale, "prob": probs})
    return dets


def nms_reported(dets, nms: float, img_w: int, img_h: int):
    """do_nms_sort in float32 (as the C) on get_detection_detections' boxes, then what draw_detections
    reports: (class, prob, left, top, right, bottom), by class, then by decreasing prob."""
    dets = [d for d in dets if d["objectness"] != 0]  # do_nms_sort leaves objectness 0 out first
    boxes, probs = [d["box"] for d in dets], [d["prob"] for d in dets]
    do_nms_sort(boxes, probs, nms, dtype=F32)
    return sorted(((k, float(p), *corners) for k, p, corners in reported(boxes, probs, img_w, img_h)),
                  key=lambda r: (r[0], -r[1]))


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
    # at 96 the trunk ends on 2x2: the [connected] input shrinks, the head does not
    small = parse_network(path, width=96, height=96)
    assert small.shapes[-5:] == [(1024, 2, 2), (256, 2, 2), (256, 2, 2), (1715, 1, 1), (1715, 1, 1)]
    assert _walk_floats(text, 96, 96) == summarize(small).floats


# ------------------------------------------------------------------------------------ [detection] forward

def small(output: int = 52, softmax: int = 0, sqrt: int = 1) -> str:
    """tests/fixtures/cfg/yolov1-small.cfg with [connected] output and [detection] softmax, sqrt set."""
    text = with_keys(fixture_cfg_text("yolov1-small"), "connected", output=output)
    return with_keys(text, "detection", softmax=softmax, sqrt=sqrt)


@pytest.mark.parametrize("softmax", [0, 1])
def test_detection_forward_against_float64(softmax):
    nd = parse_network(small(output=52, softmax=softmax, sqrt=1).encode())
    layer = build_model(nd).layers[2]
    x = torch.randn(3, 52, 1, 1, generator=torch.Generator().manual_seed(softmax)) * 3
    with torch.no_grad():
        ours = layer(x).reshape(3, -1).double().numpy()
    ref = x.reshape(3, -1).double().numpy().copy()
    if softmax:  # softmax over the classes of each of the side*side cells, first block only
        cls = ref[:, :12].reshape(3, 4, 3)
        e = np.exp(cls - cls.max(-1, keepdims=True))
        ref[:, :12] = (e / e.sum(-1, keepdims=True)).reshape(3, 12)
    assert np.abs(ours - ref).max() <= 1e-6
    assert nd.shapes[2] == (52, 1, 1)


def _synthetic_output(side, num, classes, seed):
    """A [detection] output with every case: class values in and out of [0, 1], negative scales."""
    g = np.random.default_rng(seed)
    cells = side * side
    cls = g.uniform(-0.4, 1.6, (cells, classes))
    cls[::3] = g.uniform(0, 1, (len(cls[::3]), classes))  # some cells entirely regular
    scale = g.uniform(-0.8, 1.3, cells * num)
    box = g.uniform(-0.2, 1.1, cells * num * 4)
    return np.concatenate([cls.ravel(), scale, box]).astype(F32)


@pytest.mark.parametrize("sqrt", [0, 1])
def test_decode_and_generic_thresholds_equal_get_detection_detections(sqrt):
    side, num, classes = 3, 2, 4
    spec = DetectionSpec(0, 1, classes, 4, side, num, False, bool(sqrt))
    flat = _synthetic_output(side, num, classes, sqrt)
    out = torch.from_numpy(flat).view(1, -1, 1, 1)
    boxes, obj, cls = spec.decode(out, 448, 448)
    rows = side * side * num
    assert boxes.shape == (1, rows, 4) and obj.shape == (1, rows) and cls.shape == (1, rows, classes)
    ref = get_detection_detections(flat, side, num, classes, bool(sqrt), -np.inf)
    assert np.array_equal(boxes[0].numpy(), np.array([d["box"] for d in ref], F32))
    # objectness is the box confidence, class values the raw p (softmax=0): Darknet's prob = scale * p
    assert np.array_equal(obj[0].numpy(), np.array([d["objectness"] for d in ref], F32))
    assert np.array_equal(cls[0].numpy(), flat[:side * side * classes].reshape(-1, 1, classes).repeat(
        num, 1).reshape(rows, classes))
    assert spec.gate_objectness is False
    naive_differs = False
    for thresh in (0.0, 0.05, 0.2, 0.5, 0.9, 1.2):
        darknet = np.array([d["prob"] for d in get_detection_detections(flat, side, num, classes, bool(sqrt), thresh)])
        # generic pipeline, boxes replaced by the row index to see which rows it keeps
        cand = candidates(torch.arange(rows, dtype=torch.float32)[:, None].expand(rows, 4), obj[0], cls[0], thresh,
                         gate=spec.gate_objectness)
        ours = np.zeros((rows, classes), F32)
        ours[cand.boxes[:, 0].long().numpy()] = cand.probs.numpy()
        assert np.array_equal(ours, darknet), thresh  # bit for bit: same float32 products, same set
        naive = candidates(boxes[0], torch.from_numpy(flat[36:54].copy()),
                          torch.from_numpy(flat[:36].copy()).view(9, 1, 4).expand(9, 2, 4).reshape(18, 4), thresh)
        naive_differs |= int((naive.probs > 0).sum()) != int((darknet > 0).sum())
    # the objectness gate of the other heads would drop boxes Darknet reports: the data exercises it
    assert naive_differs


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


# -------------------------------------------------------------------------------------------- refusals

def _line(text: str, pattern: str) -> int:
    return next(i + 1 for i, line in enumerate(text.split("\n")) if re.fullmatch(pattern, line))


def test_wrong_connected_size_names_both_layers(tmp_path):
    text = small(output=50, softmax=0, sqrt=1)
    expect_cfg_error(text, _line(text, r"\[detection\]"), "(layer 2)",
                     f"layer 1 [connected] (cfg line {_line(text, r'.connected.')})", "gives 50 values",
                     "2*2*((1+4)*2+3) = 52", "set output=52 there", path=tmp_path / "bad.cfg")


def test_reference_yolov1_with_a_wrong_connected_size(tmp_path):
    text = ref_path("pjreddie", "cfg", "yolov1.cfg").read_text().replace("output= 1715", "output= 1470")
    expect_cfg_error(text, _line(text, r"\[detection\]"), "layer 30 [connected]",
                     f"cfg line {_line(text, r'.connected.')}", "1470", "= 1715", "set output=1715",
                     path=tmp_path / "bad.cfg")


def test_detection_after_a_convolution_counts_values(tmp_path):
    # Darknet checks only the number of inputs: 2x2x13 from a convolution is 52 values too
    text = small(output=52, softmax=1, sqrt=0).replace("[connected]\noutput=52\nactivation=linear\n",
                                                       "[convolutional]\nfilters=13\nsize=1\nstride=8\n"
                                                       "activation=linear\n")
    assert parse_network(text.encode()).shapes[-2:] == [(13, 2, 2), (52, 1, 1)]
    bad = text.replace("filters=13", "filters=12")
    err = expect_cfg_error(bad, _line(bad, r"\[detection\]"), "layer 1 (cfg line", "gives 48 values (2x2x12)",
                           path=tmp_path / "bad.cfg")
    assert "set output" not in str(err)


@pytest.mark.parametrize("old, new, key, needles", [
    ("coords=4\n", "coords=2\n", "coords=2", ["coords=2", "only coords=4"]),
    ("coords=4\n", "", r"\[detection\]", ["coords=1 (Darknet default)", "only coords=4"]),
    ("softmax=0\n", "softmax=2\n", "softmax=2", ["softmax=2", "expected one of 0, 1"]),
    ("side=2\n", "side=0\n", "side=0", ["side=0", ">= 1"]),
    ("num=2\n", "num=0\n", "num=0", ["num=0", ">= 1"]),
    ("classes=3\n", "classes=0\n", "classes=0", ["classes=0", ">= 1"]),
    ("classes=3\n", "clases=3\n", "clases=3", ["unknown key 'clases'", "did you mean 'classes'"]),
    ("rescore=1\n", "rescore=1\nobject_scale=big\n", "object_scale=big", ["object_scale=big", "expected a number"]),
])
def test_detection_bad_values_name_the_line(tmp_path, old, new, key, needles):
    text = small(output=52, softmax=0, sqrt=1).replace(old, new)
    expect_cfg_error(text, _line(text, key), *needles, path=tmp_path / "bad.cfg")


def test_detection_training_keys_are_kept():
    text = small(output=52, softmax=0, sqrt=1) + ("jitter=.3\nobject_scale=2\nnoobject_scale=.5\nclass_scale=3\n"
                                                  "coord_scale=5\nforced=1\nrandom=1\nreorg=0\n"
                                                  "only_objectness=1\nmax=30\nresize=1.5\n")
    spec = parse_network(text.encode()).specs[-1]
    assert (spec.rescore, spec.jitter, spec.object_scale, spec.noobject_scale, spec.class_scale, spec.coord_scale,
            spec.forced, spec.random, spec.reorg, spec.only_objectness, spec.max_boxes, spec.resize) == \
        (True, 0.3, 2.0, 0.5, 3.0, 5.0, True, 1.0, False, True, 30, 1.5)


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
