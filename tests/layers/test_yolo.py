"""AlexeyAB's ``[yolo]`` keys on a small YOLOv4-tiny-like network (tests/helpers/heads.py):
``scale_x_y`` and ``new_coords`` against OpenCV 4.x's independent importer and a plain float64 decode
of the head's input written from AlexeyAB's C (forward_yolo_layer, get_yolo_box); Darknet's l.output;
the refusals of bad values (and of training with scale_x_y); the decoded ONNX export of both keys.
(The reference YOLOv4-family networks: tests/parity/test_yolov4.py.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.errors import DataError
from darknet_py.export import DecodedHeads, export_onnx
from darknet_py.random_weights import randomize
from darknet_py.train.trainer import TrainOptions, train
from darknet_py.transforms import letterbox
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.heads import (YOLOV4_SMALL as SMALL, assert_same_yolo_detections, decoded_yolo_rows, sigmoid,
                                 yolov4_small_cfg)
from tests.helpers.models import write_random_model
from tests.helpers.numeric import compare_rows, rel_err
from tests.helpers.opencv import needs_darknet_importer, opencv_yolo_rows
from tests.helpers.runtimes import onnx_session

# head key lines, activation of the conv before the head
SMALL_CASES = {
    "plain": ("", "linear"),
    "scale_x_y": ("scale_x_y=1.3", "linear"),
    "new_coords": ("scale_x_y=2.0\nnew_coords=1", "logistic"),
    "new_coords_no_scale": ("new_coords=1", "logistic"),
}


def _reference_rows(raw: np.ndarray, spec, net_w: int, net_h: int) -> np.ndarray:
    """AlexeyAB's forward_yolo_layer + get_yolo_box, float64 numpy, from a head's input (A*(5+C), h, w)
    -> (h*w*A, 5+C) rows as OpenCV gives them: x, y, w, h relative, objectness, objectness*class."""
    a, c, s = len(spec.mask), spec.classes, spec.scale_x_y
    _, h, w = raw.shape
    p = raw.astype(np.float64).reshape(a, 5 + c, h, w).transpose(2, 3, 0, 1)  # (h, w, A, 5+C)
    act = p.copy() if spec.new_coords else sigmoid(p)  # new_coords: the conv before applied the logistic
    col = np.arange(w).reshape(1, w, 1)
    row = np.arange(h).reshape(h, 1, 1)
    anchors = np.array(spec.masked_anchors, np.float64)
    bx = (col + act[..., 0] * s - (s - 1) / 2) / w
    by = (row + act[..., 1] * s - (s - 1) / 2) / h
    if spec.new_coords:
        bw = p[..., 2] ** 2 * 4 * anchors[:, 0] / net_w
        bh = p[..., 3] ** 2 * 4 * anchors[:, 1] / net_h
    else:
        bw = np.exp(p[..., 2]) * anchors[:, 0] / net_w
        bh = np.exp(p[..., 3]) * anchors[:, 1] / net_h
    obj = act[..., 4]
    rows = np.concatenate([np.stack([bx, by, bw, bh, obj], -1), obj[..., None] * act[..., 5:]], -1)
    return rows.reshape(h * w * a, 5 + c)


@needs_darknet_importer
@pytest.mark.parametrize("case", list(SMALL_CASES))
def test_generated_cfg_matches_opencv_and_reference_decode(case, photo_rgb, tmp_path):
    head, act = SMALL_CASES[case]
    cfg_text = yolov4_small_cfg(head, head_act=act)
    x, _ = letterbox(photo_rgb, SMALL, SMALL)
    x = x[None]
    _, weights, model = write_random_model(tmp_path, "small", cfg_text, x, seed=3)
    # OpenCV's importer normalises with sqrt(var + 1e-6), within 1e-6 of pjreddie's formula: the
    # comparison runs in pjreddie's arithmetic (each tree against its own: tests/test_numerics.py)
    model.set_darknet("pjreddie")
    shapes = model.netdef.shapes
    assert [shapes[i][0] for i in (1, 3, 5, 7, 9)] == [4, 12, 6, 2, 2]

    ours = decoded_yolo_rows(model, x)
    theirs = opencv_yolo_rows(cfg_text, weights, x, tmp_path)
    compare_rows(ours, theirs, 1e-4, case)  # measured <= 1e-5

    # The plain float64 decode of the head's input (our trunk, checked above) against both.
    spec = model.yolo_specs[0]
    with torch.no_grad():
        raw = model(x, raw=True)[0][0].numpy()
    ref = _reference_rows(raw, spec, SMALL, SMALL)
    compare_rows(theirs, ref, 1e-5, f"{case} OpenCV vs plain decode")
    compare_rows(ours, ref, 1e-5, f"{case} ours vs plain decode")
    assert_same_yolo_detections(model, photo_rgb, ref, 1e-4)

    # model(x) is Darknet's l.output: logistic (unless new_coords), then x, y scaled.
    with torch.no_grad():
        out = model(x)[0][0].numpy().reshape(3, 7, -1)
    s = spec.scale_x_y
    act_raw = raw.reshape(3, 7, -1) if spec.new_coords else sigmoid(raw.reshape(3, 7, -1).astype(np.float64))
    np.testing.assert_allclose(out[:, :2], act_raw[:, :2] * s - (s - 1) / 2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[:, 2:4], raw.reshape(3, 7, -1)[:, 2:4], rtol=0, atol=0)
    np.testing.assert_allclose(out[:, 4:], act_raw[:, 4:], rtol=0, atol=1e-6)


@pytest.mark.parametrize("head, needle", [
    ("new_coords=2", "new_coords=2"),
    ("scale_x_y=0", "scale_x_y=0"),
    ("scale_x_y=-1.5", "scale_x_y=-1.5"),
    ("scale_x_y=abc", "scale_x_y=abc"),
])
def test_bad_yolo_values_name_the_line(head, needle):
    text = yolov4_small_cfg(head)
    expect_cfg_error(text, line_of(text, needle))


def test_training_refuses_scale_x_y(tmp_path):
    cfg = tmp_path / "s.cfg"
    text = yolov4_small_cfg("scale_x_y=1.3")
    cfg.write_text(text)
    data = tmp_path / "s.data"
    data.write_text(f"classes=2\ntrain={tmp_path / 'train.txt'}\nnames={tmp_path / 'n.names'}\n")
    (tmp_path / "n.names").write_text("a\nb\n")
    (tmp_path / "train.txt").write_text("")
    with pytest.raises(DataError, match=f"cfg line {line_of(text, '[yolo]')}.*scale_x_y=1.3"):
        train(data, cfg, None, TrainOptions(device="cpu", workers=0, log=lambda s: None))


def test_decoded_onnx_export_of_scale_x_y_and_new_coords(photo_rgb, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    for case in ("scale_x_y", "new_coords"):
        head, act = SMALL_CASES[case]
        model = darknet_py.build_model(yolov4_small_cfg(head, head_act=act).encode())
        x, _ = letterbox(photo_rgb, SMALL, SMALL)
        x = x[None]
        randomize(model, x, seed=4)
        model.eval()
        path = tmp_path / f"{case}.onnx"
        report = export_onnx(model, path, decode=True)
        assert report.max_rel_diff <= 1e-4
        sess = onnx_session(path)
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            want = DecodedHeads(model)(x).numpy()
        # and the decoded graph is the decode of Darknet's l.output: x1 = (cx - w/2) * net_w
        rows = decoded_yolo_rows(model, x)
        xyxy = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, :2] + rows[:, 2:4] / 2], 1) * SMALL
        np.testing.assert_allclose(want[0, :, :4], xyxy, rtol=0, atol=1e-4)
        np.testing.assert_allclose(want[0, :, 4:], rows[:, 4:], rtol=0, atol=1e-6)
        for cols in (slice(0, 4), slice(4, 5), slice(5, None)):
            assert rel_err(got[..., cols], want[..., cols]) <= 1e-4  # onnxruntime's float32 conv order
