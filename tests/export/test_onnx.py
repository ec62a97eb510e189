"""ONNX export (darknet_py.export.onnx) of real networks, run by our own onnxruntime sessions (not the
exporter's built-in check, which tests/export/test_errors.py makes fail): raw heads, decoded rows and
final detections against PyTorch, a dynamic batch, a graph that does not grow with it; and the decoded
heads (DecodedHeads) against the paper's formulas computed by hand."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.export import OPSET, DecodedHeads, export_onnx
from darknet_py.random_weights import randomize
from tests.helpers.export import (NMS, RTOL, SMALL, THRESH, assert_plain_graph, assert_same_detections,
                                  detections_from_rows, expected_decoded, photo_input, photo_variants, rel_diff_rows)
from tests.helpers.numeric import rel_err
from tests.helpers.paths import ROOT
from tests.helpers.reference import postprocess_per_image
from tests.helpers.runtimes import onnx_session

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

# The absolute part of the largest |box corner difference| in photo pixels between two runs' detections
# (assert_same_detections adds BOX_RTOL of the box's side, for the exp in its size). 1e-3 px where the
# runtimes agree that closely (yolov3-tiny, and TorchScript, which runs PyTorch's own kernels).
# onnxruntime's convolutions sum in another order, and 75 random layers amplify that: yolov3's raw
# heads differ by up to 5e-5 of their scale (within RTOL), and w = anchor * exp(tw) turns it into
# 2.8e-3 px measured on a 360 px box; 1e-2 px keeps that margin, far below any real decode error
# (a half-pixel offset, a wrong anchor or stride).
BOX_TOL_PX = {"yolov3-tiny": 1e-3, "yolov3": 1e-2, "yolov3-spp": 1e-2}


def head_tensor_names(proto, heads):
    """The [yolo] layer outputs inside a graph: the last node the exporter scoped to that layer."""
    names = []
    for idx in heads:
        scoped = [n for n in proto.graph.node if n.name.startswith(f"/model/layers.{idx}/")]
        assert scoped, f"no node of layer {idx} in the graph"
        names.append(scoped[-1].output[0])
    return names


# --------------------------------------------------------------------------- the real networks


@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov3", "yolov3-spp"])
def test_onnx_heads_decode_and_detections(name, photo_rgb, tmp_path):
    """One decoded export per network: its raw heads (exposed from inside the same graph), its
    decoded tensor and the detections after Darknet's thresholds + NMS all match PyTorch."""
    model = darknet_py.load(ROOT / "cfg" / f"{name}.cfg")
    x, info = photo_input(model, photo_rgb)
    randomize(model, x, seed=1)
    path = tmp_path / f"{name}.onnx"
    dynamic = name == "yolov3-tiny"  # the small one also carries the dynamic-batch check of decoded rows
    report = export_onnx(model, path, decode=True, dynamic=dynamic, sample=photo_rgb)
    size = path.stat().st_size

    with torch.no_grad():
        raw = model(x)
    ours = DecodedHeads(model).decode(raw)  # DecodedHeads in PyTorch
    expected = expected_decoded(raw, model)
    rows, cols = expected.shape[1], expected.shape[2]
    assert float((ours[..., :4].double() - expected[..., :4]).abs().max()) < 1e-3  # network pixels
    assert float((ours[..., 4:].double() - expected[..., 4:]).abs().max()) < 1e-6

    proto = onnx.load(str(path))
    assert_plain_graph(proto, model)
    heads = head_tensor_names(proto, model.heads)
    for h in heads:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(h, onnx.TensorProto.FLOAT, None))
    onnx.save(proto, str(tmp_path / "with-heads.onnx"))  # (a session from a path starts faster than from bytes)
    del proto
    sess = onnx_session(tmp_path / "with-heads.onnx")
    det, *ort_raw = sess.run(["detections", *heads], {"images": x.numpy()})
    for f in (path, tmp_path / "with-heads.onnx"):  # 250 MB each for yolov3: pytest keeps 3 runs' tmp dirs
        f.unlink()
    for got, ref in zip(ort_raw, raw):
        assert rel_err(got, ref) <= RTOL
    assert det.shape == (1, rows, cols)
    assert rel_diff_rows(det, ours) <= RTOL

    net_w, net_h = model.input_size
    assert_same_detections(detections_from_rows(torch.from_numpy(det[0]), info, net_w, net_h),
                           postprocess_per_image(model, raw, [info], THRESH, NMS)[0], BOX_TOL_PX[name])

    lead = "batch" if dynamic else 1
    assert report.format == "onnx" and report.opset == OPSET and report.dtype == "float32"
    assert report.inputs == [("images", [lead, 3, net_h, net_w])]
    assert report.outputs == [("detections", [lead, rows, cols])]
    assert report.file_bytes == size
    assert report.max_rel_diff <= RTOL and report.checked_batches == ([1, 3] if dynamic else [1])
    text = "\n".join(report.lines())
    assert str(path) in text and f"detections: {lead} x" in text and f"opset {OPSET}" in text

    if dynamic:  # three photos in one run: each row of the batch is that photo alone, detections too
        photos = photo_variants(photo_rgb)[1:4]
        xs, infos = zip(*(photo_input(model, p) for p in photos))
        batch = sess.run(["detections"], {"images": torch.cat(xs).numpy()})[0]
        with torch.no_grad():
            raw3 = model(torch.cat(xs))
        assert rel_diff_rows(batch, expected_decoded(raw3, model)) <= RTOL
        refs = postprocess_per_image(model, raw3, list(infos), THRESH, NMS)
        for i, xi in enumerate(xs):
            assert rel_diff_rows(batch[i:i + 1], sess.run(["detections"], {"images": xi.numpy()})[0]) <= 1e-5
            assert_same_detections(detections_from_rows(torch.from_numpy(batch[i]), infos[i], net_w, net_h),
                                   refs[i], BOX_TOL_PX[name])


def test_onnx_dynamic_batch_raw_heads(tiny, photo_rgb, tmp_path):
    """Raw heads with a dynamic batch: batch 1 and 3 from one file, rows equal to the single runs.
    (The decoded rows' dynamic batch is checked with the yolov3-tiny export above.)"""
    model, _, _ = tiny
    path = tmp_path / "tiny-dyn.onnx"
    report = export_onnx(model, path, dynamic=True, sample=photo_rgb)
    names = [f"yolo_{i}" for i in model.heads]
    assert report.inputs == [("images", ["batch", 3, 416, 416])]
    assert report.outputs == [(n, ["batch", *model.netdef.shapes[i]]) for n, i in zip(names, model.heads)]
    assert report.checked_batches == [1, 3]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert_plain_graph(proto, model)
    assert [o.name for o in proto.graph.output] == names
    xs = [photo_input(model, p)[0] for p in photo_variants(photo_rgb)[:3]]
    sess = onnx_session(path)
    singles = [sess.run(names, {"images": x.numpy()}) for x in xs]
    batch = sess.run(names, {"images": torch.cat(xs).numpy()})
    with torch.no_grad():
        raw = model(torch.cat(xs))
    for k, ref in enumerate(raw):
        assert batch[k].shape == tuple(ref.shape) and batch[k].shape[0] == 3
        assert rel_err(batch[k], ref) <= RTOL
        for i in range(3):
            assert rel_err(batch[k][i:i + 1], singles[i][k]) <= 1e-5  # row i of the batch == image i alone


def test_graph_does_not_grow_with_batch(tmp_path):
    """A static batch of 3 gives the same graph as batch 1 (nothing is unrolled per image); the
    static file refuses another batch size."""
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny.cfg", width=SMALL, height=SMALL)
    randomize(model, torch.rand(4, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(0)), seed=0)
    counts = []
    for b in (1, 3):
        report = export_onnx(model, tmp_path / f"b{b}.onnx", batch=b, decode=True)
        assert report.inputs[0][1] == [b, 3, SMALL, SMALL] and report.outputs[0][1][0] == b
        counts.append(Counter(n.op_type for n in onnx.load(str(tmp_path / f"b{b}.onnx")).graph.node))
    assert counts[0] == counts[1]
    with pytest.raises(Exception, match="(?i)dimension|shape|invalid"):
        onnx_session(tmp_path / "b1.onnx").run(None, {"images": np.zeros((2, 3, SMALL, SMALL), np.float32)})


# --------------------------------------------------------------------------- DecodedHeads by hand

HAND_CFG = b"""
[net]
width=96
height=64
channels=3

[convolutional]
filters=14
size=1
stride=16
activation=linear

[yolo]
mask=0,2
anchors=10,14, 23,27, 37,58
classes=2
num=3

[route]
layers=-2

[upsample]
stride=2

[convolutional]
filters=7
size=1
stride=1
activation=linear

[yolo]
mask=1
anchors=10,14, 23,27, 37,58
classes=2
num=3
"""


def test_decoded_heads_hand_computed():
    """Hand-made head outputs on a 6x4 and a 12x8 grid (non-square, so w/h swaps show) against
    the paper's formulas computed per cell in plain Python."""
    model = darknet_py.load(HAND_CFG, channels_last=False)
    anchors = [(10, 14), (23, 27), (37, 58)]
    heads = [((4, 6), [0, 2]), ((8, 12), [1])]  # ((h, w), mask)
    gen = torch.Generator().manual_seed(5)
    raw = []
    for (h, w), mask in heads:
        t = torch.rand(1, len(mask) * 7, h, w, generator=gen)               # sigma(.) values in (0, 1)
        t.view(1, len(mask), 7, h, w)[:, :, 2:4] = torch.randn(1, len(mask), 2, h, w, generator=gen)  # tw, th
        raw.append(t)
    got = DecodedHeads(model).decode(raw)[0]
    expected = []
    for t, ((h, w), mask) in zip(raw, heads):
        for row in range(h):
            for col in range(w):
                for a, m in enumerate(mask):
                    v = [float(t[0, a * 7 + k, row, col]) for k in range(7)]
                    bx = (col + v[0]) / w * 96
                    by = (row + v[1]) / h * 64
                    bw = anchors[m][0] * np.exp(v[2])
                    bh = anchors[m][1] * np.exp(v[3])
                    expected.append([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2,
                                     v[4], v[4] * v[5], v[4] * v[6]])
    expected = torch.tensor(expected, dtype=torch.float64)
    assert got.shape == expected.shape == (4 * 6 * 2 + 8 * 12, 7)
    np.testing.assert_allclose(got[:, :4].double(), expected[:, :4], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got[:, 4:].double(), expected[:, 4:], rtol=0, atol=1e-6)
    # forward() is the model followed by decode(), for a real input
    x = torch.rand(2, 3, 64, 96, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(DecodedHeads(model)(x), DecodedHeads(model).decode(model(x)))
