"""ONNX and TorchScript export (darknet_py.export), checked against PyTorch and Darknet's detections.

Expected values come from code the exporter does not use: ``layers.head.decode_heads`` (boxes),
the per-image post-processing oracle (tests/helpers/reference.py) on PyTorch's raw outputs (final
detections), a hand computation of the paper's formulas (DecodedHeads), and our own onnxruntime /
torch.jit.load runs (not the exporter's built-in check, which is itself tested by making it fail).
"""
from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import darknet_py  # noqa: E402
from darknet_py.layers.head import decode_heads as decode  # noqa: E402
from darknet_py.errors import DarknetPyError  # noqa: E402
from darknet_py.export import OPSET, DecodedHeads, ExportError, export_onnx, export_torchscript  # noqa: E402
from darknet_py.layers.activations import ACTIVATIONS  # noqa: E402
from darknet_py.postprocess import darknet_nms  # noqa: E402
from darknet_py.random_weights import randomize  # noqa: E402
from darknet_py.transforms import correct_boxes, letterbox, to_photo_xyxy  # noqa: E402
from tests.helpers.numeric import rel_err  # noqa: E402
from tests.helpers.paths import REF, ROOT  # noqa: E402
from tests.helpers.reference import Candidates, detections_of, postprocess_per_image  # noqa: E402
from tests.helpers.runtimes import onnx_session  # noqa: E402

RTOL = 1e-4          # max|export - PyTorch| / max|PyTorch|, per output (float32)
RTOL_FP16 = 5e-2     # float16 runtimes round at different places (see darknet_py/export.py)
THRESH, NMS = 0.25, 0.45
SMALL = 64
# Control flow or sequences would mean a Python loop leaked into the graph.
FORBIDDEN_OPS = {"Loop", "If", "Scan", "SequenceConstruct", "SequenceInsert", "SequenceAt", "SequenceEmpty",
                 "SequenceLength", "ConcatFromSequence", "SplitToSequence", "SequenceMap"}


# --------------------------------------------------------------------------- helpers


def rel_diff_rows(got, ref) -> float:
    """Decoded rows: boxes, objectness and class scores each against their own scale."""
    return max(rel_err(np.asarray(got)[..., cols], np.asarray(ref)[..., cols])
               for cols in (slice(0, 4), slice(4, 5), slice(5, None)))


def photo_input(model, photo):
    x, info = letterbox(photo, *model.input_size)
    return x[None], info


def photo_variants(photo):
    """Five different photos (flips, crops of other aspect ratios)."""
    h, w, _ = photo.shape
    return [photo, np.ascontiguousarray(photo[:, ::-1]), np.ascontiguousarray(photo[h // 4:, : w // 2]),
            np.ascontiguousarray(photo[::-1, w // 3:]), np.ascontiguousarray(255 - photo[: h // 2])]


def expected_decoded(raw, model) -> torch.Tensor:
    """decode() (independent of DecodedHeads) -> x1, y1, x2, y2 network pixels, obj, obj*sigma(cls)."""
    net_w, net_h = model.input_size
    boxes, obj, cls = decode(raw, model.yolo_specs, net_w, net_h)
    cx, cy, w, h = boxes.double().unbind(-1)
    corners = torch.stack(((cx - w / 2) * net_w, (cy - h / 2) * net_h, (cx + w / 2) * net_w, (cy + h / 2) * net_h), -1)
    return torch.cat((corners, obj.double()[..., None], (obj[..., None] * cls).double()), -1)


def detections_from_rows(rows: torch.Tensor, info, net_w: int, net_h: int):
    """Darknet's thresholds + correct_yolo_boxes + do_nms_sort on one image's decoded rows."""
    rows = rows.float()
    x1, y1, x2, y2 = rows[:, :4].unbind(-1)
    boxes = torch.stack(((x1 + x2) / 2 / net_w, (y1 + y2) / 2 / net_h, (x2 - x1) / net_w, (y2 - y1) / net_h), -1)
    obj, probs = rows[:, 4], rows[:, 5:]
    keep = obj > THRESH
    p = probs[keep]
    cand = Candidates(boxes[keep], obj[keep], torch.where(p > THRESH, p, torch.zeros_like(p)))
    rel = correct_boxes(cand.boxes, info)
    return detections_of(cand.objectness, darknet_nms(rel, cand.probs, NMS), to_photo_xyxy(rel, info))


# Largest |box corner difference| in photo pixels between two runs' detections. 1e-3 px where the
# runtimes agree that closely (yolov3-tiny, and TorchScript, which runs PyTorch's own kernels).
# onnxruntime's convolutions sum in another order, and 75 random layers amplify that: yolov3's raw
# heads differ by up to 5e-5 of their scale (within RTOL), and w = anchor * exp(tw) turns it into
# 2.8e-3 px measured on a 360 px box; 1e-2 px keeps that margin, far below any real decode error
# (a half-pixel offset, a wrong anchor or stride).
BOX_TOL_PX = {"yolov3-tiny": 1e-3, "yolov3": 1e-2, "yolov3-spp": 1e-2}


def assert_same_detections(got, ref, box_tol=1e-3):
    """One-to-one: every reference detection has its own counterpart of the same class, with box
    corners within ``box_tol`` photo pixels and score within 1e-4."""
    assert len(ref) > 0, "no detections: the comparison would prove nothing"
    assert len(got) == len(ref)
    ok = ((ref.classes[:, None] == got.classes[None, :])
          & ((ref.boxes[:, None, :].double() - got.boxes[None, :, :].double()).abs().amax(-1) <= box_tol)
          & ((ref.scores[:, None].double() - got.scores[None, :].double()).abs() <= 1e-4)).numpy()
    used = np.zeros(len(got), bool)
    for i in range(len(ref)):
        match = np.flatnonzero(ok[i] & ~used)
        assert match.size, f"reference detection {i} (class {int(ref.classes[i])}, box {ref.boxes[i].tolist()}, " \
                           f"score {float(ref.scores[i])}) has no counterpart"
        used[match[0]] = True


def assert_plain_graph(proto, model, per_layer: int = 4, per_head: int = 25):
    ops = Counter(n.op_type for n in proto.graph.node)
    assert not FORBIDDEN_OPS & set(ops), ops
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    # A conv layer is Conv + activation; route/shortcut/pool/upsample a handful; the decode a fixed
    # few per head. Anything unrolled per image or per cell would blow this bound. (Constant
    # nodes are data: the index vectors of the Slice/Reshape ops.)
    compute = sum(c for op, c in ops.items() if op != "Constant")
    assert compute <= per_layer * len(model.layers) + per_head * len(model.heads) + 10, ops


def head_tensor_names(proto, heads):
    """The [yolo] layer outputs inside a graph: the last node the exporter scoped to that layer."""
    names = []
    for idx in heads:
        scoped = [n for n in proto.graph.node if n.name.startswith(f"/model/layers.{idx}/")]
        assert scoped, f"no node of layer {idx} in the graph"
        names.append(scoped[-1].output[0])
    return names


def spread_weights(model, seed=0, std=6.0):
    """Plain random weights, no calibration: batch-normalised convs keep roughly the input's scale
    (about 0.5 for a photo in [0, 1]), convs without batch norm multiply it by ``std``, so a
    branch conv after the trunk sees pre-activations of std ~3: the activations' kinks and tails
    (relu6 at 6, plse at +-4, hard_mish at -2, stair's steps) are all reached."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, darknet_py.layers.convolutional.ConvBlock):
                w = block.conv.weight
                n, fan_in = w.shape[0], w.shape[1] * w.shape[2] * w.shape[3]
                if block.bn is not None:
                    w.copy_(torch.randn(w.shape, generator=gen) / fan_in ** 0.5)
                    block.bn.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                    block.bn.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                    block.bn.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
                    block.bn.bias.copy_(0.3 * torch.randn(n, generator=gen))
                else:
                    w.copy_(torch.randn(w.shape, generator=gen) * std / fan_in ** 0.5)
                    block.conv.bias.copy_(0.5 * torch.randn(n, generator=gen))
    return model


CALIB = 160  # calibration size for the small models


def small_model(cfg, photo, seed, size=SMALL):
    """``cfg`` at size x size with calibrated random weights, calibrated on the photo at 160 px (the
    layers run at any multiple of 32). At 64 px the deepest layers are 2x2: BN statistics measured
    there amplify float32 rounding (and NHWC/NCHW kernel differences) to ~1e-4 of scale in the
    240 MB nets, as large as the tolerance; calibrated at 160 they stay near 1e-5."""
    model = darknet_py.load(cfg, width=size, height=size)
    return randomize(model, letterbox(photo, CALIB, CALIB)[0][None], seed=seed)


@pytest.fixture(scope="module")
def tiny(photo_rgb):
    """yolov3-tiny at 416 with calibrated random weights (channels_last, load()'s default)."""
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny.cfg")
    x, info = photo_input(model, photo_rgb)
    return randomize(model, x, seed=3), x, info


@pytest.fixture(scope="module")
def small_tiny(photo_rgb):
    return small_model(ROOT / "cfg" / "yolov3-tiny.cfg", photo_rgb, seed=10)


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
                    expected.append([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2, v[4], v[4] * v[5], v[4] * v[6]])
    expected = torch.tensor(expected, dtype=torch.float64)
    assert got.shape == expected.shape == (4 * 6 * 2 + 8 * 12, 7)
    np.testing.assert_allclose(got[:, :4].double(), expected[:, :4], rtol=0, atol=1e-4)
    np.testing.assert_allclose(got[:, 4:].double(), expected[:, 4:], rtol=0, atol=1e-6)
    # forward() is the model followed by decode(), for a real input
    x = torch.rand(2, 3, 64, 96, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(DecodedHeads(model)(x), DecodedHeads(model).decode(model(x)))


# --------------------------------------------------------------------------- TorchScript


def test_torchscript_decoded_matches_pytorch(tiny, photo_rgb, tmp_path):
    model, _, _ = tiny
    path = tmp_path / "tiny.pt"
    report = export_torchscript(model, path, decode=True, sample=photo_rgb)
    assert report.format == "torchscript" and report.opset is None and report.max_rel_diff <= RTOL
    assert report.inputs == [("images", ["batch", 3, 416, 416])]
    photos = photo_variants(photo_rgb)[:3]
    xs = [photo_input(model, p)[0] for p in photos]
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        batch = loaded(torch.cat(xs))
        singles = [loaded(x) for x in xs]
        raw = model(torch.cat(xs))
    assert isinstance(batch, torch.Tensor)
    assert report.outputs == [("detections", ["batch", *batch.shape[1:]])]
    assert rel_diff_rows(batch, expected_decoded(raw, model)) <= RTOL
    for i in range(3):
        assert rel_diff_rows(batch[i:i + 1], singles[i]) <= 1e-5
    infos = [photo_input(model, p)[1] for p in photos]
    refs = postprocess_per_image(model, raw, infos, THRESH, NMS)
    for i in range(3):
        assert_same_detections(detections_from_rows(batch[i], infos[i], 416, 416), refs[i])


def test_torchscript_raw_heads(small_tiny, photo_rgb, tmp_path):
    model = small_tiny
    path = tmp_path / "raw.pt"
    report = export_torchscript(model, path, batch=2, sample=photo_rgb)
    assert report.checked_batches == [2, 3]
    xs = [photo_input(model, p)[0] for p in photo_variants(photo_rgb)[:3]]
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        batch = loaded(torch.cat(xs))
        singles = [loaded(x) for x in xs]
        raw = model(torch.cat(xs))
    assert isinstance(batch, tuple) and len(batch) == len(raw) == len(report.outputs)
    for k, (got, ref) in enumerate(zip(batch, raw)):
        assert report.outputs[k] == (f"yolo_{model.heads[k]}", ["batch", *ref.shape[1:]])
        assert rel_err(got, ref) <= RTOL
        for i in range(3):
            assert rel_err(got[i:i + 1], singles[i][k]) <= 1e-5


def test_torchscript_loads_without_darknet_py(small_tiny, tmp_path, photo_rgb):
    """The file is self-contained: a fresh, isolated interpreter (-I, cwd outside the repo, the
    editable install's finder removed and darknet_py blocked) loads and runs it with torch alone."""
    model = small_tiny
    x, _ = photo_input(model, photo_rgb)
    export_torchscript(model, tmp_path / "model.pt", decode=True)
    np.save(tmp_path / "x.npy", x.numpy())
    code = textwrap.dedent("""
        import sys
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.modules["darknet_py"] = None  # any import of it now fails
        import numpy as np, torch
        m = torch.jit.load("model.pt")
        with torch.no_grad():
            y = m(torch.from_numpy(np.load("x.npy")))
        np.save("y.npy", y.numpy())
        try:
            import darknet_py
        except ImportError:
            print("darknet_py not importable")
        print("loaded:", sorted(k for k in sys.modules if k.startswith("darknet_py.")))
    """)
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "darknet_py not importable" in proc.stdout and "loaded: []" in proc.stdout
    y = np.load(tmp_path / "y.npy")
    with torch.no_grad():
        assert rel_diff_rows(y, expected_decoded(model(x), model)) <= RTOL


# --------------------------------------------------------------------------- every cfg, every layer kind

# Cfgs that do not load or export, with the reason; each is asserted to still fail that way.
EXCEPTIONS: dict = {}
# The 240 MB networks get one export each (about 8 s apiece on 2 cores): the 416 px export in
# test_onnx_heads_decode_and_detections. These files define exactly those networks; the test
# below parses each one and asserts that, layer by layer, instead of exporting it again.
EXPORTED_AS = {
    "ours/yolov3.cfg": "yolov3", "ours/yolov3-spp.cfg": "yolov3-spp",
    "pjreddie/yolov3.cfg": "yolov3", "pjreddie/yolov3-spp.cfg": "yolov3-spp",
}


def _cfg_params():
    params = [pytest.param(f"ours/{p.name}", p, id=f"ours/{p.name}") for p in sorted((ROOT / "cfg").glob("*.cfg"))]
    for fork in ("pjreddie", "alexeyab"):
        for p in sorted((REF / fork / "cfg").glob("yolov3*.cfg")):
            params.append(pytest.param(f"{fork}/{p.name}", p, id=f"{fork}/{p.name}"))
    return params


def _network(cfg):
    netdef = darknet_py.parse_network(cfg, width=SMALL, height=SMALL)
    return [{k: v for k, v in vars(s).items() if k != "line"} | {"kind": type(s).__name__} for s in netdef.specs], \
        netdef.shapes


def _check_export(model, x, path, **kw):
    report = export_onnx(model, path, **kw)
    sess = onnx_session(path)
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(names, {"images": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    if kw.get("decode"):
        ref = [expected_decoded(ref, model)]
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert (rel_diff_rows if kw.get("decode") else rel_err)(g, r) <= RTOL
    assert report.max_rel_diff <= RTOL
    graph = onnx.load(str(path))
    Path(path).unlink()  # up to 250 MB (pytest keeps the last 3 runs' tmp dirs)
    return report, graph


@pytest.mark.parametrize("key, cfg", _cfg_params())
def test_every_cfg_exports(key, cfg, photo_rgb, tmp_path):
    if key in EXCEPTIONS:
        err, pattern, _reason = EXCEPTIONS[key]
        with pytest.raises(err, match=pattern):
            darknet_py.load(cfg, width=SMALL, height=SMALL)
        return
    if key in EXPORTED_AS:
        assert _network(cfg) == _network(ROOT / "cfg" / f"{EXPORTED_AS[key]}.cfg")
        return
    model = small_model(cfg, photo_rgb, seed=4)
    x, _ = photo_input(model, photo_rgb)
    _, graph = _check_export(model, x, tmp_path / "net.onnx")
    assert_plain_graph(graph, model)


def test_cfg_lists_are_current():
    """Every entry of EXCEPTIONS / EXPORTED_AS names a cfg the parametrization collects (where the
    reference folder is present), and every cfg of ours is exported: none drops out unnoticed."""
    keys = {p.values[0] for p in _cfg_params()}
    assert {f"ours/{p.name}" for p in (ROOT / "cfg").glob("*.cfg")} <= keys
    for key in list(EXCEPTIONS) + list(EXPORTED_AS):
        fork, name = key.split("/")
        if fork == "ours" or (REF / fork / "cfg" / name).exists():
            assert key in keys, key
    if REF.exists():
        assert {"pjreddie/yolov3-voc.cfg", "pjreddie/yolov3-openimages.cfg", "alexeyab/yolov3-tiny_3l.cfg"} <= keys


LAYERS_CFG = """
[net]
width=96
height=64
channels=3

# 0: 8 x 64 x 96
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

# 1: maxpool 2/2 -> 32 x 48
[maxpool]
size=2
stride=2

# 2: grouped conv, no batch norm
[convolutional]
filters=8
size=3
stride=1
pad=1
groups=2
activation=relu

# 3: maxpool 2/1 (Darknet pads one column/row after only)
[maxpool]
size=2
stride=1

# 4: maxpool 5/1 (spp)
[maxpool]
size=5
stride=1

# 5: route of 4 inputs -> 32 channels
[route]
layers=-1,-2,-3,-4

# 6: stride 2 with explicit padding -> 16 x 24
[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
padding=1
activation=mish

# 7
[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
activation=swish

# 8: residual with an activation
[shortcut]
from=-2
activation=leaky

# 9: maxpool 3/2 -> 8 x 12
[maxpool]
size=3
stride=2

# 10/11: head 1 (2 anchors, 3 classes)
[convolutional]
size=1
stride=1
pad=1
filters=16
activation=linear

[yolo]
mask=0,1
anchors=10,13, 16,30, 33,23
classes=3
num=3

# 12: route of 1 input (layer 8)
[route]
layers=-4

# 13: upsample with Darknet's scale -> 32 x 48
[upsample]
stride=2
scale=0.5

# 14: route of 2 inputs (layers 13 and 2)
[route]
layers=-1,2

# 15/16: head 2
[convolutional]
size=3
stride=1
pad=1
filters=8
activation=linear

[yolo]
mask=2
anchors=10,13, 16,30, 33,23
classes=3
num=3
"""


def activations_cfg() -> str:
    """A trunk, then per activation a branch conv with that activation feeding its own [yolo]:
    each activation's output is compared on its own head (w, h channels hold it unchanged)."""
    parts = ["[net]\nwidth=64\nheight=64\nchannels=3\n",
             "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=linear\n"]
    for i, name in enumerate(sorted(ACTIVATIONS)):
        if i:
            parts.append("[route]\nlayers=0\n")
        parts.append(f"[convolutional]\nfilters=6\nsize=3\nstride=2\npad=1\nactivation={name}\n")
        parts.append("[yolo]\nmask=0\nanchors=10,13\nclasses=1\nnum=1\n")
    return "\n".join(parts)


def test_generated_cfg_every_layer_kind(photo_rgb, tmp_path):
    model = darknet_py.load(LAYERS_CFG.encode())
    kinds = Counter(type(s).__name__ for s in model.netdef.specs)
    assert {"ConvSpec", "MaxpoolSpec", "RouteSpec", "ShortcutSpec", "UpsampleSpec", "YoloSpec"} <= set(kinds)
    assert sorted(len(s.layers) for s in model.netdef.specs if type(s).__name__ == "RouteSpec") == [1, 2, 4]
    x, _ = photo_input(model, photo_rgb)
    spread_weights(model, seed=6, std=1.5)
    for decoded in (False, True):
        _, graph = _check_export(model, x, tmp_path / f"layers{decoded}.onnx", decode=decoded, dynamic=True)
        assert_plain_graph(graph, model, per_layer=8)


def test_generated_cfg_every_activation(photo_rgb, tmp_path):
    model = darknet_py.load(activations_cfg().encode(), channels_last=False)
    acts = [s.activation for s in model.netdef.specs if type(s).__name__ == "ConvSpec"][1:]
    assert sorted(acts) == sorted(ACTIVATIONS) and len(model.heads) == len(ACTIVATIONS)
    x, _ = photo_input(model, photo_rgb)
    spread_weights(model, seed=7)
    with torch.no_grad():
        # Each branch conv rescaled so its pre-activations are centred and span about [-8, 8] per
        # channel: every activation's kinks and tails (relu6's 6, plse's +-4, hard_mish's -2) are hit.
        trunk = model.layers[0](x)
        for block in [layer for layer in model.layers if type(layer).__name__ == "ConvBlock"][1:]:
            w, b = block.conv.weight, block.conv.bias
            pre = torch.nn.functional.conv2d(trunk, w, None, 2, 1)
            med = pre.flatten(2).median(2).values[0]
            scale = 8.0 / (pre - med.view(1, -1, 1, 1)).abs().amax((0, 2, 3))
            w.mul_(scale.view(-1, 1, 1, 1))
            b.copy_(-med * scale)
            pre = torch.nn.functional.conv2d(trunk, w, b, 2, 1)
            assert float(pre.min()) < -4.5 and float(pre.max()) > 6.5, block.act.name
    _, graph = _check_export(model, x, tmp_path / "acts.onnx")
    assert_plain_graph(graph, model, per_layer=20)


# --------------------------------------------------------------------------- float16


def test_onnx_half(small_tiny, photo_rgb, tmp_path):
    model = small_tiny
    x, _ = photo_input(model, photo_rgb)
    path = tmp_path / "half.onnx"
    report = export_onnx(model, path, decode=True, half=True, sample=photo_rgb)
    assert report.dtype == "float16" and report.max_rel_diff <= RTOL_FP16 and report.fp32_rel_diff is not None
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer if t.dims)
    got = onnx_session(path).run(None, {"images": x.half().numpy()})[0]
    assert got.dtype == np.float16
    half_model = copy.deepcopy(model).to_channels_last(False).half()
    with torch.no_grad():
        ref16 = DecodedHeads(half_model)(x.half())
        ref32 = DecodedHeads(model)(x)
    assert rel_diff_rows(got, ref16.float()) <= RTOL_FP16
    assert rel_diff_rows(got, ref32) <= RTOL_FP16
    assert rel_diff_rows(got, ref32) > 1e-5  # it did compute in float16
    assert "float16" in "\n".join(report.lines())


def test_torchscript_half(small_tiny, photo_rgb, tmp_path):
    model = small_tiny
    x, _ = photo_input(model, photo_rgb)
    report = export_torchscript(model, tmp_path / "half.pt", half=True)
    assert report.dtype == "float16" and report.max_rel_diff <= RTOL_FP16
    loaded = torch.jit.load(str(tmp_path / "half.pt"))
    with torch.no_grad():
        got = loaded(x.half())
        ref = model(x)
    for g, r in zip(got, ref):
        assert g.dtype == torch.float16
        assert rel_err(g.float(), r) <= RTOL_FP16


# --------------------------------------------------------------------------- errors


def test_missing_onnx_is_a_clear_error(small_tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ExportError, match="pip install onnx onnxruntime") as exc:
        export_onnx(small_tiny, tmp_path / "x.onnx")
    assert isinstance(exc.value, DarknetPyError)
    assert not (tmp_path / "x.onnx").exists()


def test_onnx_difference_above_tolerance_raises(small_tiny, tmp_path, monkeypatch):
    run = ort.InferenceSession.run
    monkeypatch.setattr(ort.InferenceSession, "run", lambda self, *a, **k: [o * 1.001 for o in run(self, *a, **k)])
    with pytest.raises(ExportError, match="tolerance"):
        export_onnx(small_tiny, tmp_path / "x.onnx")


def test_decoded_scores_are_checked_on_their_own_scale(small_tiny, tmp_path, monkeypatch):
    """A 1e-3 error in the class scores is 1e-3 of their scale, though a few 1e-6 of the pixel
    coordinates beside them: the check must still see it."""
    run = ort.InferenceSession.run

    def off_scores(self, *a, **k):
        out = run(self, *a, **k)
        out[0][..., 5:] += 1e-3
        return out

    # (unperturbed, the same export passes: test_export_leaves_the_model_alone)
    monkeypatch.setattr(ort.InferenceSession, "run", off_scores)
    with pytest.raises(ExportError, match="tolerance"):
        export_onnx(small_tiny, tmp_path / "x.onnx", decode=True)


def test_half_without_cpu_kernels_says_use_cuda(small_tiny, tmp_path, monkeypatch):
    """Where the CPU runtimes have no float16 convolution (older torch / onnxruntime builds; both
    have one here), the error says so and points to CUDA."""
    conv2d = torch.nn.functional.conv2d

    def no_half_conv(x, *a, **k):
        if x.dtype == torch.float16 and x.device.type == "cpu":
            raise RuntimeError('"slow_conv2d_cpu" not implemented for \'Half\'')
        return conv2d(x, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(torch.nn.functional, "conv2d", no_half_conv)
        with pytest.raises(ExportError, match="float16 on the CPU.*CUDA"):
            export_torchscript(small_tiny, tmp_path / "h.pt", half=True)

    def no_half_ort(self, names, feeds, *a, **k):
        raise RuntimeError("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
                           "Conv(11) node with name '/model/layers.0/Conv'")

    monkeypatch.setattr(ort.InferenceSession, "run", no_half_ort)
    with pytest.raises(ExportError, match="float16 kernel.*CUDA"):
        export_onnx(small_tiny, tmp_path / "h.onnx", half=True)


def test_bad_arguments_are_clear_errors(small_tiny, tmp_path):
    for call, pattern in [(lambda: export_onnx("yolov3.cfg", tmp_path / "x.onnx"), "DarknetModel"),
                          (lambda: export_onnx(small_tiny, tmp_path / "x.onnx", opset=13), "opset 13"),
                          (lambda: export_torchscript(small_tiny, tmp_path / "x.pt", batch=0), "batch"),
                          (lambda: export_onnx(small_tiny, tmp_path / "no" / "x.onnx"), "cannot write"),
                          (lambda: export_torchscript(small_tiny, tmp_path / "no" / "x.pt"), "cannot write")]:
        with pytest.raises(ExportError, match=pattern):
            call()


def test_float16_model_is_refused(small_tiny, tmp_path):
    with pytest.raises(ExportError, match="float32"):
        export_onnx(copy.deepcopy(small_tiny).half(), tmp_path / "x.onnx")


def test_torchscript_difference_above_tolerance_raises(small_tiny, tmp_path, monkeypatch):
    load = torch.jit.load

    class Off:
        def __init__(self, m):
            self.m = m

        def eval(self):
            return self

        def __call__(self, x):
            return tuple(o * 1.001 for o in self.m(x))

    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: Off(load(*a, **k)))
    with pytest.raises(ExportError, match="tolerance"):
        export_torchscript(small_tiny, tmp_path / "x.pt")


def test_export_leaves_the_model_alone(small_tiny, tmp_path):
    """Export works on a copy: same outputs, same memory format and mode afterwards."""
    x = torch.rand(1, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = [o.clone() for o in small_tiny(x)]
    cl, training = small_tiny.channels_last, small_tiny.training
    export_onnx(small_tiny, tmp_path / "a.onnx", decode=True)
    export_torchscript(small_tiny, tmp_path / "a.pt")
    with torch.no_grad():
        after = small_tiny(x)
    assert small_tiny.channels_last == cl and small_tiny.training == training
    for a, b in zip(before, after):
        assert torch.equal(a, b)
