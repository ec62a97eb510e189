"""End-to-end exports (darknet_py.export.e2e): the written file, run by our own onnxruntime session or
torch.jit.load, against darknet_py.detect on photos of several sizes; the in-graph letterbox against
darknet_py.transforms' letterbox; the refusals, raised before anything is written."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.detector import detect_batch, letterboxed
from darknet_py.errors import ExportError, UsageError
from darknet_py.export import export_onnx, export_torchscript, net_boxes_to_photo
from darknet_py.export.e2e import OUTPUT_NAMES, PhotoLetterbox
from darknet_py.export.verify import Match, match_detections
from darknet_py.imageio import load_image
from darknet_py.synth import make_dataset
from darknet_py.transforms import letterbox, prepare_batch, stretch
from tests.helpers.paths import ROOT, ref_path

onnx = pytest.importorskip("onnx", reason="the ONNX end-to-end graph is checked with onnx and onnxruntime")
ort = pytest.importorskip("onnxruntime", reason="the ONNX end-to-end graph is run by onnxruntime")

SHAPES_CFG = ROOT / "cfg" / "yolov3-tiny-shapes.cfg"
SHAPES_WEIGHTS = ROOT / "weights" / "yolov3-tiny-shapes.weights"


@pytest.fixture(scope="module")
def shapes():
    return darknet_py.load(SHAPES_CFG, SHAPES_WEIGHTS)


@pytest.fixture(scope="module")
def shapes_photo():
    return load_image(ROOT / "data" / "shapes.jpg")[0]


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def detections_of(outputs, k):
    num, boxes, scores, classes = outputs
    n = int(num[k, 0])
    return boxes[k, :n], scores[k, :n], classes[k, :n]


def assert_all_match(model, photos, run, letterbox_input, thresh=0.5, nms=0.45, max_det=100) -> Match:
    """Each photo through ``run`` (the file) and through darknet_py.detect; every detection matched."""
    total = Match()
    net_w, net_h = model.input_size
    for rgb in photos:
        ref = detect_batch(model, [rgb], thresh, nms)[0]
        if letterbox_input:
            boxes, scores, classes = detections_of(run(rgb[None]), 0)
        else:
            x, infos = prepare_batch([torch.from_numpy(rgb)], net_w, net_h, letterboxed=letterboxed(model))
            boxes, scores, classes = detections_of(run(x.numpy()), 0)
            boxes = net_boxes_to_photo(boxes, infos[0]).numpy()
        m = match_detections((ref.boxes[:max_det], ref.scores[:max_det], ref.classes[:max_det]),
                             (boxes, scores, classes))
        assert (m.missing, m.extra) == (0, 0), (rgb.shape, m)
        assert len(scores) == min(len(ref), max_det)
        assert np.all(np.diff(scores) <= 0)  # best first
        total += m
    return total


# ------------------------------------------------------------------------------------ the letterbox


@pytest.mark.parametrize("size", [(640, 480), (333, 517)])
@pytest.mark.parametrize("fit", ["letterbox", "stretch"])
def test_in_graph_letterbox_is_darknet_py_letterbox(tmp_path, size, fit):
    """PhotoLetterbox eager and in onnxruntime (one file, dynamic H and W, run at two photo sizes)
    against darknet_py.transforms.letterbox / stretch, bit for bit."""
    w, h = size
    rng = np.random.default_rng(w)
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (h // 3 + 1, w // 2 + 7, 3), dtype=np.uint8)
    module = PhotoLetterbox(96, 64, fit == "letterbox")
    path = tmp_path / "letterbox.onnx"
    with torch.no_grad():
        torch.onnx.export(module, (torch.from_numpy(photo)[None],), str(path), dynamo=False, opset_version=17,
                          input_names=["photos"], output_names=["x", "geometry"],
                          dynamic_axes={"photos": {0: "n", 1: "h", 2: "w"}})
    sess = session(path)
    for img in (photo, other):
        expected = (letterbox if fit == "letterbox" else stretch)(img, 96, 64)[0].numpy()
        eager = module(torch.from_numpy(img)[None])[0][0].numpy()
        got = sess.run(["x"], {"photos": img[None]})[0][0]
        np.testing.assert_array_equal(eager, expected)
        np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------------------------ ONNX


@pytest.mark.parametrize("letterbox_input", [False, True])
def test_onnx_e2e_matches_detect(tmp_path, shapes, shapes_photo, letterbox_input):
    path = tmp_path / "e2e.onnx"
    report = export_onnx(shapes, path, nms=True, letterbox=letterbox_input, sample=shapes_photo)
    assert [name for name, _ in report.outputs] == list(OUTPUT_NAMES)
    graph = onnx.load(str(path)).graph
    assert sum(n.op_type == "NonMaxSuppression" for n in graph.node) == 1
    sess = session(path)
    in_name = "photos" if letterbox_input else "images"
    types = {o.name: o.type for o in sess.get_outputs()}
    assert types["num_dets"] == types["det_classes"] == "tensor(int32)"
    h, w = shapes_photo.shape[:2]
    photos = [shapes_photo, np.ascontiguousarray(shapes_photo[h // 5:, : w * 2 // 3]),
              np.ascontiguousarray(shapes_photo[::-1, ::-1][: h // 2])]
    m = assert_all_match(shapes, photos, lambda x: sess.run(list(OUTPUT_NAMES), {in_name: x}), letterbox_input)
    assert m.matched >= 5


def test_onnx_e2e_batch_of_photos_pads_with_zeros(tmp_path, shapes, shapes_photo):
    """Two photos of one size in one call: each gets its own detections, zeros past num_dets."""
    path = tmp_path / "e2e.onnx"
    export_onnx(shapes, path, nms=True, letterbox=True, max_det=7, sample=shapes_photo)
    pair = np.stack([shapes_photo, np.ascontiguousarray(shapes_photo[:, ::-1])])
    out = session(path).run(list(OUTPUT_NAMES), {"photos": pair})
    assert out[1].shape == (2, 7, 4)
    refs = detect_batch(shapes, list(pair), 0.5, 0.45)
    for k, ref in enumerate(refs):
        n = int(out[0][k, 0])
        assert n == min(len(ref), 7)
        m = match_detections((ref.boxes[:7], ref.scores[:7], ref.classes[:7]), detections_of(out, k))
        assert (m.missing, m.extra) == (0, 0)
        assert not out[1][k, n:].any() and not out[2][k, n:].any() and not out[3][k, n:].any()


def test_onnx_e2e_on_a_generated_validation_set(tmp_path, shapes):
    data = make_dataset(tmp_path / "shapes", train=0, valid=12, seed=5)
    photos = [load_image(data.root / line.strip())[0] for line in open(data.valid_list) if line.strip()]
    path = tmp_path / "e2e.onnx"
    export_onnx(shapes, path, nms=True, letterbox=True, thresh=0.25, sample=photos[0])
    sess = session(path)
    m = assert_all_match(shapes, photos, lambda x: sess.run(list(OUTPUT_NAMES), {"photos": x}), True, thresh=0.25)
    assert m.matched >= 20


def test_onnx_e2e_without_nms_and_low_threshold(tmp_path, shapes, shapes_photo):
    """iou=0 is Darknet's "no NMS" (test_detector skips do_nms_sort); a low threshold fills max_det."""
    path = tmp_path / "e2e.onnx"
    export_onnx(shapes, path, nms=True, letterbox=True, iou=0.0, thresh=0.05, max_det=300, sample=shapes_photo)
    assert not any(n.op_type == "NonMaxSuppression" for n in onnx.load(str(path)).graph.node)
    sess = session(path)
    assert_all_match(shapes, [shapes_photo], lambda x: sess.run(list(OUTPUT_NAMES), {"photos": x}), True,
                     thresh=0.05, nms=0.0, max_det=300)


def test_onnx_e2e_real_weights_sample_photos(tmp_path):
    """Official yolov3-tiny COCO weights on Darknet's sample photos (several sizes and aspects)."""
    weights = ref_path("pretrained", "yolov3-tiny.weights")
    photos = [load_image(p)[0] for p in sorted(ref_path("pjreddie", "data").glob("*.jpg"))]
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny.cfg", weights)
    path = tmp_path / "coco.onnx"
    export_onnx(model, path, nms=True, letterbox=True, sample=photos[0])
    sess = session(path)
    m = assert_all_match(model, photos, lambda x: sess.run(list(OUTPUT_NAMES), {"photos": x}), True)
    assert m.matched >= 10


# ------------------------------------------------------------------------------------ TorchScript


@pytest.mark.parametrize("letterbox_input", [False, True])
def test_torchscript_e2e_matches_detect(tmp_path, shapes, shapes_photo, letterbox_input):
    path = tmp_path / "e2e.pt"
    export_torchscript(shapes, path, nms=True, letterbox=letterbox_input, max_det=50, sample=shapes_photo)
    loaded = torch.jit.load(str(path))
    h, w = shapes_photo.shape[:2]
    photos = [shapes_photo, np.ascontiguousarray(shapes_photo[: h * 3 // 4, w // 7:])]
    run = lambda x: [o.numpy() for o in loaded(torch.from_numpy(x))]  # noqa: E731
    assert_all_match(shapes, photos, run, letterbox_input, max_det=50)


DIOU = re.compile(r"(?m)^\[yolo\]\s*$")


def diou_cfg(tmp_path, kind="greedynms"):
    text = DIOU.sub(f"[yolo]\nnms_kind={kind}", SHAPES_CFG.read_text())
    path = tmp_path / "diou.cfg"
    path.write_text(text)
    return path


def test_diou_nms_refused_for_onnx_before_writing(tmp_path):
    model = darknet_py.load(diou_cfg(tmp_path), SHAPES_WEIGHTS)
    path = tmp_path / "e2e.onnx"
    with pytest.raises(ExportError, match=r"layer \d+ \(cfg line \d+\).*nms_kind=greedynms.*ONNX"):
        export_onnx(model, path, nms=True)
    assert not path.exists()


def test_diou_nms_carried_by_torchscript(tmp_path, shapes_photo):
    """TorchScript carries darknet_py's own NMS, DIoU included; the model may stretch (AlexeyAB's tree
    without letter_box=1), and the graph stretches too."""
    model = darknet_py.load(diou_cfg(tmp_path, "diounms"), SHAPES_WEIGHTS)
    path = tmp_path / "e2e.pt"
    export_torchscript(model, path, nms=True, letterbox=True, iou=0.3, sample=shapes_photo)
    loaded = torch.jit.load(str(path))
    photos = [shapes_photo, np.ascontiguousarray(shapes_photo[::2])]
    assert_all_match(model, photos, lambda x: [o.numpy() for o in loaded(torch.from_numpy(x))], True, nms=0.3)


# ------------------------------------------------------------------------------------ refusals


def test_bad_options_refused_before_writing(tmp_path, shapes):
    path = tmp_path / "x.onnx"
    with pytest.raises(UsageError, match="letterbox.*nms=True"):
        export_onnx(shapes, path, letterbox=True)
    with pytest.raises(UsageError, match="choose one"):
        export_onnx(shapes, path, nms=True, decode=True)
    with pytest.raises(UsageError, match="max_det"):
        export_onnx(shapes, path, nms=True, max_det=0)
    with pytest.raises(UsageError, match="iou"):
        export_torchscript(shapes, path, nms=True, iou=1.5)
    with pytest.raises(ExportError, match="float32 only"):
        export_onnx(shapes, path, nms=True, half=True)
    assert not path.exists()


def test_onnx_nms_operator_is_do_nms_sort_on_adversarial_boxes():
    """The operator as the ONNX export emits it (center_point_box=1, removed scores at -1, threshold 0,
    no per-class cap) against darknet_py's do_nms_sort, on boxes quantised so that many overlaps sit
    on or beside the threshold and on tied scores: the same (box, class) entries survive."""
    from onnx import TensorProto, helper

    from darknet_py.postprocess import darknet_nms
    node = helper.make_node("NonMaxSuppression", ["b", "s", "m", "i", "t"], ["o"], center_point_box=1)
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (("b", [1, None, 4]),
                                                                             ("s", [1, None, None]))]
    io += [helper.make_tensor_value_info("m", TensorProto.INT64, [1])]
    io += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("i", "t")]
    graph = helper.make_graph([node], "nms", io, [helper.make_tensor_value_info("o", TensorProto.INT64, [None, 3])])
    sess = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                .SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for trial in range(40):
        n, c = 200, 3
        boxes = np.stack([rng.uniform(.3, .7, n), rng.uniform(.3, .7, n), rng.uniform(.05, .3, n),
                          rng.uniform(.05, .3, n)], 1)
        boxes = (np.round(boxes * 64) / 64).astype(np.float32)
        scores = rng.uniform(.5, 1, (n, c))
        scores[rng.random((n, c)) < .5] = 0
        scores = (np.round(scores * 8) / 8 if trial % 2 else scores).astype(np.float32)
        live = (scores > 0).any(1)
        boxes, scores = boxes[live], scores[live]
        ref = darknet_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.45).numpy() > 0
        feed = {"b": boxes[None], "s": np.where(scores > 0, scores, -1).T[None].astype(np.float32).copy(),
                "m": np.array([len(boxes)]), "i": np.array([.45], np.float32), "t": np.array([0.], np.float32)}
        sel = sess.run(None, feed)[0]
        got = np.zeros_like(ref)
        got[sel[:, 2], sel[:, 1]] = True
        np.testing.assert_array_equal(got, ref)
