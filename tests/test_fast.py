"""The fast paths (darknet_py.fast, darknet_py.batched) against the exact path.

Bit-identical where the arithmetic is the same: the batch-wide post-processing (against the
per-image oracle, tests.helpers.reference.postprocess_per_image), the fixed-shape post-processing,
the batched letterbox, the float32 network with ``cpu_fusion=False``. Within measured tolerances
where it is not: oneDNN's fused convolutions (summation order), fp16 / bf16 trunks. CUDA tests run
where a GPU is present.
torch.compile is not exercised here: on 2 CPU cores inductor's C++ build of even a small
network takes minutes; tools/bench_gpu.py runs it on the GPU.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import darknet_py
from darknet_py.batched import (GEOMETRY_COLUMNS, StaticPostprocess, batched_nms, correct_boxes_rows, geometry_table,
                                postprocess_batch, postprocess_decoded, to_photo_xyxy_rows)
from darknet_py.layers.head import decode_heads as decode
from darknet_py.detector import detect_batch
from darknet_py.fast import FastDetector, letterbox_u8
from darknet_py.imageio import load_image
from darknet_py.postprocess import darknet_nms
from darknet_py.random_weights import randomize
from darknet_py.synth import render_image
from darknet_py.transforms import (correct_boxes, letterbox, letterbox_info, prepare_batch, stretch, to_photo_xyxy,
                                   u8_to_float)
from tests.helpers.cfgs import cfg, conv, fixture_cfg_text, head_conv, maxpool, route, shortcut, upsample, yolo
from tests.helpers.numeric import corner_iou, outputs_rel_err
from tests.helpers.paths import REF, ROOT
from tests.helpers.reference import postprocess_per_image
from tests.helpers.strategies import draw_candidates

FIELDS = ("boxes", "scores", "classes", "objectness", "box_index")
HAS_CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
# These tests check numbers, not speed: one thread keeps the file fast on a busy 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A small network that touches every path of FastNet: fused (leaky, relu, linear) and unfused
# (mish, logistic) activations, an in-place [shortcut], a [shortcut] over different channel
# counts, a grouped [route] (a non-contiguous view into a conv), [upsample], two heads with
# scale_x_y, and greedynms after the last head.
ANCHORS = "10,14, 23,27, 37,58, 81,82, 135,169, 344,319"
SMALL_CFG = cfg(
    conv(16), maxpool(), conv(32, act="mish"), conv(16, 1), conv(32), shortcut(-3),
    conv(32, stride=2, act="logistic"), conv(16, 1, act="relu"), shortcut(-2, "leaky"),
    route("-1", "groups=2\ngroup_id=1"), conv(16),
    head_conv(21), yolo("3,4,5", ANCHORS, 2, 6, "scale_x_y=1.05"),
    route("-4"), conv(8, 1), upsample(), route("-1,5"), conv(16),
    head_conv(21), yolo("0,1,2", ANCHORS, 2, 6, "nms_kind=greedynms\nbeta_nms=0.6"),
    width=96)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def photos():
    """Reference photos where present (dog, eagle, person, horses) and generated scenes of other
    sizes (two of the same size, so batched letterbox groups are exercised)."""
    out = []
    for name in ("dog", "eagle", "person", "horses"):
        p = REF / "pjreddie" / "data" / f"{name}.jpg"
        if p.exists():
            out.append(load_image(p)[0])
    rng = np.random.default_rng(7)
    for w, h in ((500, 375), (333, 640), (500, 375), (640, 200)):
        out.append(render_image(rng, w, h, 6)[0])
    return out


def _model(cfg, size, calib_rgb, seed=3):
    model = darknet_py.build_model(cfg, width=size, height=size)
    randomize(model, letterbox(calib_rgb, size, size)[0][None], seed=seed)
    return model.eval().to_channels_last()


@pytest.fixture(scope="module")
def tiny(photos):
    return _model(ROOT / "cfg" / "yolov3-tiny.cfg", 416, photos[0])


@pytest.fixture(scope="module")
def small(photos, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("small") / "small.cfg"
    cfg.write_text(SMALL_CFG)
    return _model(cfg, 96, photos[0], seed=5)


@pytest.fixture(scope="module")
def tiny_outputs(tiny, photos):
    x, infos = prepare_batch(photos, 416, 416)
    with torch.no_grad():
        return x, infos, tiny(x)


@pytest.fixture(scope="module")
def shapes_model():
    cfg, weights = ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights"
    if not weights.exists():
        pytest.skip("shipped weights absent")
    return darknet_py.load(cfg, weights)


@pytest.fixture(scope="module")
def shapes_photos():
    rng = np.random.default_rng(11)
    out = [load_image(ROOT / "data" / "shapes.jpg")[0]]
    out += [render_image(rng, int(rng.integers(200, 600)), int(rng.integers(200, 600)), 6)[0] for _ in range(3)]
    return out


def assert_same(a_list, b_list):
    assert len(a_list) == len(b_list)
    for a, b in zip(a_list, b_list):
        for f in FIELDS:
            ta, tb = getattr(a, f), getattr(b, f)
            assert ta.dtype == tb.dtype and torch.equal(ta.cpu(), tb.cpu()), f


def min_match_iou(ref, got, thresh, margin):
    """Over the clear detections of ``ref`` (score > thresh + margin): the lowest IoU with a
    detection of ``got`` of the same class and a score within ``margin``; and how many there were."""
    worst, n = 1.0, 0
    for a, b in zip(ref, got):
        rows = list(zip(b.classes.tolist(), b.scores.tolist(), b.boxes.tolist()))
        for c, s, box in zip(a.classes.tolist(), a.scores.tolist(), a.boxes.tolist()):
            if s <= thresh + margin:
                continue
            n += 1
            ious = [corner_iou(box, r[2]) for r in rows if r[0] == c and abs(r[1] - s) < margin]
            worst = min(worst, max(ious or [0.0]))
    return worst, n


# --------------------------------------------------------------------------- letterbox


@pytest.mark.parametrize("letterboxed", [True, False])
def test_letterbox_u8_equals_per_photo_letterbox(letterboxed):
    rng = np.random.default_rng(0)
    one = letterbox if letterboxed else stretch
    # downscale, upscale, odd paddings, 1-pixel sides, no resize at all
    for h, w in ((576, 768), (37, 53), (1, 50), (50, 1), (416, 416), (417, 415), (3, 1000), (1, 1)):
        batch = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
        got, info = letterbox_u8(torch.from_numpy(batch), 416, 416, letterboxed=letterboxed)
        for k in range(3):
            want, want_info = one(batch[k], 416, 416)
            assert want_info == info
            assert torch.equal(got[k], want), (h, w, k)


def test_prepare_equals_prepare_batch(tiny, photos):
    fd = FastDetector(tiny)
    # mixed sizes, same-size photos not adjacent (row-by-row path) and adjacent (in-place path)
    rgbs = photos + photos[-2:]
    x, infos = fd.prepare(rgbs)
    want_x, want_infos = prepare_batch(rgbs, 416, 416)
    assert infos == want_infos and torch.equal(x, want_x)
    x, _ = fd.prepare([torch.from_numpy(im) for im in rgbs])  # uint8 tensors (the streaming command's frames)
    assert torch.equal(x, want_x)


# --------------------------------------------------------------------------- batched post-processing


def test_geometry_rows_equal_per_image_arithmetic():
    gen = torch.Generator().manual_seed(0)
    sizes = [(768, 576), (576, 768), (417, 301), (1, 1000), (1000, 3), (416, 416), (333, 640), (97, 41)]
    infos = [letterbox_info(w, h, 416, 320) for w, h in sizes]
    img = torch.randint(0, len(infos), (4000,), generator=gen)
    boxes = torch.rand(4000, 4, generator=gen) * torch.tensor([1.2, 1.2, 0.8, 0.8]) - torch.tensor([0.1, 0.1, 0, 0])
    geom = geometry_table(infos, "cpu")
    rel = correct_boxes_rows(boxes, geom[img])
    xyxy = to_photo_xyxy_rows(rel, geom[img])
    for k, info in enumerate(infos):
        rows = img == k
        want = correct_boxes(boxes[rows], info)
        assert torch.equal(rel[rows], want)
        assert torch.equal(xyxy[rows], to_photo_xyxy(want, info))


@pytest.mark.parametrize("thresh,nms", [(0.5, 0.45), (0.25, 0.45), (0.1, 0.3), (0.3, 0.0)])
def test_batched_postprocess_identical(tiny, tiny_outputs, thresh, nms):
    _, infos, outs = tiny_outputs
    want = postprocess_per_image(tiny, outs, infos, thresh, nms)
    got = postprocess_batch(tiny, outs, infos, thresh, nms)
    assert sum(len(d) for d in want) >= 20
    assert_same(want, got)


@pytest.mark.parametrize("kind,beta", [("greedynms", 0.6), ("diounms", 0.9)])
def test_batched_postprocess_identical_diou(tiny, tiny_outputs, kind, beta):
    _, infos, outs = tiny_outputs
    last = tiny.head_specs[-1]
    old = last.nms_kind, last.beta_nms
    try:
        last.nms_kind, last.beta_nms = kind, beta
        want = postprocess_per_image(tiny, outs, infos, 0.25, 0.45)
        got = postprocess_batch(tiny, outs, infos, 0.25, 0.45)
    finally:
        last.nms_kind, last.beta_nms = old
    assert sum(len(d) for d in want) >= 30
    assert_same(want, got)


def test_batched_postprocess_custom_photo_boxes_and_subsets(tiny, tiny_outputs):
    _, infos, outs = tiny_outputs

    def corners(rel, info):  # any other photo_boxes (detector valid passes its own)
        return rel * torch.tensor([info.img_w, info.img_h, 1.0, 2.0])
    assert_same(postprocess_per_image(tiny, outs, infos, 0.3, 0.45, photo_boxes=corners),
                postprocess_batch(tiny, outs, infos, 0.3, 0.45, photo_boxes=corners))
    # one image alone, and an image without any candidate in the batch
    assert_same(postprocess_per_image(tiny, [o[2:3] for o in outs], infos[2:3], 0.5, 0.45),
                postprocess_batch(tiny, [o[2:3] for o in outs], infos[2:3], 0.5, 0.45))
    boxes, obj, cls = decode(outs, tiny.head_specs, 416, 416)
    obj = obj.clone()
    obj[1] = 0
    got = postprocess_decoded(boxes, obj, cls, infos, 0.3, 0.45)
    assert len(got[1]) == 0 and len(got[0]) > 0
    assert postprocess_decoded(boxes, obj, cls, [], 0.3, 0.45) == []


@st.composite
def image_candidates(draw):
    n_img = draw(st.integers(1, 4))
    c = draw(st.integers(1, 4))
    counts = [draw(st.integers(0, 15)) for _ in range(n_img)]
    return (counts, *draw_candidates(draw, sum(counts), c, torch.float32))


@settings(max_examples=150, deadline=None)
@given(image_candidates(), st.sampled_from([0.3, 0.45, 0.7]), st.sampled_from(["default", "greedynms", "diounms"]))
def test_batched_nms_equals_per_image(cand, nms, kind):
    # identical boxes and tied scores across images: they must never interact
    counts, boxes, probs = cand
    img = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    got = batched_nms(boxes, probs, img, len(counts), nms, kind, 0.8)
    want = torch.cat([darknet_nms(b, p, nms, kind, 0.8) for b, p in zip(boxes.split(counts), probs.split(counts))])
    assert torch.equal(got, want)


@pytest.mark.parametrize("thresh,nms,kind", [(0.5, 0.45, "default"), (0.25, 0.45, "default"),
                                             (0.25, 0.45, "diounms"), (0.3, 0.0, "default")])
def test_static_postprocess_identical(tiny, tiny_outputs, thresh, nms, kind):
    _, infos, outs = tiny_outputs
    n = len(infos) - 1
    boxes, obj, cls = decode(outs, tiny.head_specs, 416, 416)
    want = postprocess_decoded(boxes[:n], obj[:n], cls[:n], infos[:n], thresh, nms, kind, 0.6)
    # a padded batch: the last row is real data that n_valid must hide; capacities just large
    # enough for these photos (the sums over the batch are what count)
    keep = obj[:n] > thresh
    n_cand = int(keep.sum())
    n_entries = int(((obj[:n, :, None] * cls[:n] > thresh) & keep[..., None]).sum())
    b = len(infos)
    post = StaticPostprocess(b, boxes.shape[1], cls.shape[2], thresh, nms, kind, 0.6,
                             cand_cap=-(-n_cand // b), entry_cap=-(-n_entries // b))
    geom = geometry_table(infos, "cpu")
    got = post.unpack(post(boxes, obj, cls, geom, torch.tensor(n)), n)
    assert got is not None and sum(len(d) for d in want) >= 20
    assert_same(want, got)


def test_static_postprocess_reports_overflow(tiny, tiny_outputs):
    _, infos, outs = tiny_outputs
    boxes, obj, cls = decode(outs, tiny.head_specs, 416, 416)
    geom = geometry_table(infos, "cpu")
    keep = obj > 0.25
    n_cand = int(keep.sum())
    n_entries = int(((obj[..., None] * cls > 0.25) & keep[..., None]).sum())
    b = len(infos)
    for cand, entries in ((n_cand - 1, n_entries), (n_cand, n_entries - 1)):  # one too few
        post = StaticPostprocess(1, boxes.shape[1] * b, cls.shape[2], 0.25, 0.45, cand_cap=cand, entry_cap=entries)
        flat = boxes.reshape(1, -1, 4), obj.reshape(1, -1), cls.reshape(1, -1, cls.shape[2])
        assert post.unpack(post(*flat, geom[:1], torch.tensor(1)), 1) is None
    post = StaticPostprocess(1, boxes.shape[1] * b, cls.shape[2], 0.25, 0.45, cand_cap=n_cand, entry_cap=n_entries)
    assert post.unpack(post(*flat, geom[:1], torch.tensor(1)), 1) is not None  # exactly enough
    post = StaticPostprocess(b, boxes.shape[1], cls.shape[2], 0.25, 0.45, cand_cap=-(-n_cand // b),
                             entry_cap=-(-n_entries // b), rounds=0)  # the fixed point has not settled
    assert post.unpack(post(boxes, obj, cls, geom, torch.tensor(len(infos))), len(infos)) is None


# --------------------------------------------------------------------------- FastDetector on the CPU


def test_fast_fp32_unfused_is_the_exact_path(tiny, tiny_outputs, photos):
    fd = FastDetector(tiny, cpu_fusion=False)
    x, infos, want = tiny_outputs
    assert all(torch.equal(a, b) for a, b in zip(want, fd.forward(x)))
    assert_same(detect_batch(tiny, photos[:4], 0.3), fd.detect_batch(photos[:4], 0.3))


def test_fast_fp32_fused(tiny, tiny_outputs, photos):
    fd = FastDetector(tiny)
    assert "oneDNN fused convs" in fd.describe()
    x, infos, want = tiny_outputs
    got = fd.forward(x)
    # oneDNN's pre-packed kernels may sum in another order: measured 0 (identical) here, 2e-6 of
    # scale on the shipped trained model
    assert outputs_rel_err(got, want) <= 1e-5
    ref = postprocess_per_image(tiny, want, infos, 0.3, 0.45)
    dets = fd.detect_tensor(x, infos, 0.3, 0.45)
    assert sum(len(d) for d in ref) >= 20
    assert min_match_iou(ref, dets, 0.3, 1e-4)[0] >= 0.9999 and min_match_iou(dets, ref, 0.3, 1e-4)[0] >= 0.9999


@pytest.mark.parametrize("cpu_fusion", [False, True])
def test_small_network_every_layer_path(small, photos, cpu_fusion):
    fd = FastDetector(small, cpu_fusion=cpu_fusion, max_batch=3)  # max_batch: the split path too
    assert any(fd.net.add_inplace) and not all(fd.net.add_inplace)
    x, infos = prepare_batch(photos, 96, 96)
    with torch.no_grad():
        want = small(x)
    got = fd.forward(x)
    if cpu_fusion:
        assert outputs_rel_err(got, want) <= 1e-5
    else:
        assert all(torch.equal(a, b) for a, b in zip(want, got))
        ref = detect_batch(small, photos, 0.3)
        assert sum(len(d) for d in ref) >= 10
        assert_same(ref, fd.detect_batch(photos, 0.3))


def test_yolov3_reduced_size(photos):
    # the deep net: 23 in-place residual adds, routes, upsampling; 96x96 keeps it fast
    model = _model(ROOT / "cfg" / "yolov3.cfg", 96, photos[0], seed=2)
    x, infos = prepare_batch(photos[:2], 96, 96)
    with torch.no_grad():
        want = model(x)
    exact = FastDetector(model, cpu_fusion=False)
    assert sum(exact.net.add_inplace) == 23
    assert all(torch.equal(a, b) for a, b in zip(want, exact.forward(x)))
    ref = postprocess_per_image(model, want, infos, 0.1, 0.45)
    assert sum(len(d) for d in ref) >= 5
    assert_same(ref, exact.detect_tensor(x, infos, 0.1, 0.45))


def test_detect_tensor_uint8_and_stretch(small, photos):
    fd = FastDetector(small, cpu_fusion=False)
    u8 = torch.from_numpy(np.stack([np.asarray(render_image(np.random.default_rng(k), 96, 96, 4)[0])
                                    for k in range(3)]))
    infos = [letterbox_info(96, 96, 96, 96)] * 3
    x = u8_to_float(u8.permute(0, 3, 1, 2))
    with torch.no_grad():
        want = postprocess_per_image(small, small(x), infos, 0.2, 0.45)
    assert_same(want, fd.detect_tensor(u8, infos, 0.2, 0.45))                     # NHWC frames
    assert_same(want, fd.detect_tensor(u8.permute(0, 3, 1, 2), infos, 0.2, 0.45))  # NCHW
    # a network whose last head stretches the photo (YOLOv1-style): both paths stretch
    last = small.head_specs[-1]
    old = last.letterbox
    last.letterbox = False
    try:
        fd = FastDetector(small, cpu_fusion=False)
        assert not fd.letterboxed
        assert_same(detect_batch(small, photos, 0.2), fd.detect_batch(photos, 0.2))
    finally:
        last.letterbox = old


def test_reduced_precision_trained_model(shapes_model, shapes_photos):
    """fp16 / bf16 trunks on the shipped trained model. Measured: head outputs within 4e-3 (fp16)
    and 3.4e-2 (bf16) of their scale; clear detections' IoU >= 0.997 (fp16), >= 0.983 (bf16).
    (FastDetector's post-processing is the exact one, tested above: applied here to its outputs.)"""
    x, infos = prepare_batch(shapes_photos, *shapes_model.input_size)
    with torch.no_grad():
        want = shapes_model(x)
    ref = postprocess_per_image(shapes_model, want, infos, 0.2, 0.45)
    for dtype, tol, min_iou in ((torch.float16, 1e-2, 0.99), (torch.bfloat16, 8e-2, 0.97)):
        got_out = FastDetector(shapes_model, dtype=dtype).forward(x)
        assert all(o.dtype == torch.float32 for o in got_out)  # heads run in float32
        assert outputs_rel_err(got_out, want) <= tol, dtype
        got = postprocess_per_image(shapes_model, got_out, infos, 0.2, 0.45)
        for a, b in ((ref, got), (got, ref)):
            worst, n = min_match_iou(a, b, 0.2, 0.05)
            assert n >= 12 and worst >= min_iou, (dtype, worst)


def test_reduced_precision_random_tiny(tiny, photos):
    """fp16 on random calibrated weights (less forgiving than trained ones): measured head outputs
    within 6.5e-3 of scale, clear detections' IoU >= 0.981 (a 22x22 px box; most >= 0.99)."""
    sub = photos[:2]
    x, infos = prepare_batch(sub, 416, 416)
    with torch.no_grad():
        want = tiny(x)
    fd = FastDetector(tiny, dtype=torch.float16)
    got = fd.forward(x)
    assert outputs_rel_err(got, want) <= 2e-2
    worst, n = min_match_iou(postprocess_per_image(tiny, want, infos, 0.3, 0.45),
                             postprocess_per_image(tiny, got, infos, 0.3, 0.45), 0.3, 0.05)
    assert n >= 10 and worst >= 0.97
    assert len(fd.detect_batch(sub[:1], 0.3)[0]) > 0  # the whole fp16 path runs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_graph_captured_code_has_static_shapes(small, dtype):
    """What a CUDA graph captures (network + decode, StaticPostprocess) runs under FakeTensorMode,
    which refuses every data-dependent operation (nonzero, item, equal, boolean indexing): the
    CPU-side guarantee that the capture needs no host synchronisation."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    fd = FastDetector(small, dtype=dtype, cpu_fusion=False)
    assert fd._in_graph_decode
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.rand(2, 3, 96, 96, dtype=dtype).contiguous(memory_format=torch.channels_last)
        outs, (boxes, obj, cls) = fd._net_decode_eager(x)
        post = StaticPostprocess(2, boxes.shape[1], cls.shape[2], 0.3, 0.45, "diounms", 0.6, cand_cap=8,
                                 entry_cap=8)
        packed = post(boxes, obj, cls, torch.rand(2, GEOMETRY_COLUMNS, dtype=torch.float64), torch.tensor(2))
        assert packed.shape == (2 + 1 + 16 * 8,)
        with pytest.raises(Exception):  # the guard itself works
            torch.nonzero(obj)


def test_rejects_a_half_model(small):
    import copy
    with pytest.raises(ValueError, match="float32"):
        FastDetector(copy.deepcopy(small).half())


def test_bench_gpu_quick_runs_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_gpu.py"), "--quick", "--cpu", "--threads", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert len(rows) >= 4 and all(r["error"] is None for r in rows), rows
    assert len(data["checks"]) >= 3 and all(c["ok"] for c in data["checks"]), data["checks"]
    assert all(r["ms"] > 0 for r in rows)
    assert "img/s" in proc.stdout


# --------------------------------------------------------------------------- CUDA


@pytest.fixture(autouse=True)
def restore_cudnn_benchmark():
    # FastDetector turns cudnn.benchmark on (process-wide): leave the setting as found
    old = torch.backends.cudnn.benchmark
    yield
    torch.backends.cudnn.benchmark = old


@pytest.fixture
def exact_cuda():
    # TF32 off (Darknet computes in full fp32), deterministic cuDNN (so two runs of the same
    # shapes pick the same kernels and a graph replay can be compared bit for bit with eager)
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.deterministic = old


@cuda_only
def test_cuda_letterbox_and_postprocess_bit_identical(tiny, tiny_outputs, photos, exact_cuda):
    rng = np.random.default_rng(1)
    for h, w in ((576, 768), (37, 53), (1, 50), (417, 415)):
        batch = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        got, _ = letterbox_u8(torch.from_numpy(batch).cuda(), 416, 416)
        for k in range(2):
            assert torch.equal(got[k].cpu(), letterbox(batch[k], 416, 416)[0])
    x, infos, outs = tiny_outputs
    outs = [o.cuda() for o in outs]
    gpu = FastDetector(_cuda_copy(tiny))
    for thresh in (0.5, 0.25):
        want = postprocess_per_image(gpu.model, outs, infos, thresh, 0.45)
        assert_same(want, postprocess_batch(gpu.model, outs, infos, thresh, 0.45))
        boxes, obj, cls = decode(outs, gpu.model.head_specs, 416, 416)
        post = StaticPostprocess(len(infos), boxes.shape[1], cls.shape[2], thresh, 0.45, cand_cap=64,
                                 entry_cap=64)
        got = post.unpack(post(boxes, obj, cls, geometry_table(infos, "cuda"),
                               torch.tensor(len(infos), device="cuda")), len(infos))
        assert got is not None
        assert_same(want, got)
    # per-row box correction on CUDA (reciprocal multiplication) against the per-image code there
    gen = torch.Generator().manual_seed(0)
    boxes = torch.rand(3000, 4, generator=gen).cuda()
    img = torch.randint(0, len(infos), (3000,), generator=gen).cuda()
    rel = correct_boxes_rows(boxes, geometry_table(infos, "cuda")[img])
    for k, info in enumerate(infos):
        assert torch.equal(rel[img == k], correct_boxes(boxes[img == k], info))


def _cuda_copy(model):
    import copy
    return copy.deepcopy(model).cuda()


@cuda_only
def test_cuda_fp32_matches_cpu(tiny, photos, exact_cuda):
    gpu = FastDetector(_cuda_copy(tiny))
    x, infos = prepare_batch(photos, 416, 416)
    with torch.no_grad():
        want = tiny(x)
    assert outputs_rel_err(gpu.forward(x.cuda()), want) < 1e-4
    ref = detect_batch(tiny, photos, 0.25)
    got = gpu.detect_batch(photos, 0.25)
    assert got[0].boxes.device.type == "cuda"
    assert min_match_iou(ref, got, 0.25, 1e-3)[0] >= 0.999 and min_match_iou(got, ref, 0.25, 1e-3)[0] >= 0.999


@cuda_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_graph_replay_equals_eager(tiny, photos, dtype, exact_cuda):
    model = _cuda_copy(tiny)
    eager = FastDetector(model, dtype=dtype)
    graph = FastDetector(model, dtype=dtype, cuda_graph=True, max_batch=8)
    x, infos = prepare_batch(photos, 416, 416, device="cuda")
    for n in (1, 2, 4):  # bucket sizes: the graph runs exactly these shapes
        for a, b in zip(eager.forward(x[:n]), graph.forward(x[:n])):
            assert torch.equal(a, b)
        # in-graph post-processing (batch <= 8) against the eager batch-wide path
        assert_same(eager.detect_tensor(x[:n], infos[:n], 0.3), graph.detect_tensor(x[:n], infos[:n], 0.3))
    assert graph.graph_errors == [] and "in-graph postprocess" in graph.describe()
    # a partial batch padded into the bucket of 8: other shapes, so float tolerance only
    assert outputs_rel_err(graph.forward(x[:5]), eager.forward(x[:5])) < (1e-5 if dtype == torch.float32 else 2e-2)
    dets = graph.detect_batch(photos, 0.3)
    assert len(dets) == len(photos) and dets[0].boxes.device.type == "cuda"


@cuda_only
def test_cuda_fp16_trained_model(shapes_model, shapes_photos, exact_cuda):
    gpu32 = FastDetector(_cuda_copy(shapes_model))
    gpu16 = FastDetector(gpu32.model, dtype=torch.float16, cuda_graph=True)
    ref = gpu32.detect_batch(shapes_photos, 0.2)
    got = gpu16.detect_batch(shapes_photos, 0.2)
    worst, n = min_match_iou(ref, got, 0.2, 0.05)
    assert n >= 15 and worst >= 0.99


def test_yolov1_head_ungated_batched_and_fast(photos):
    # YOLOv1's [detection] (softmax=0: class values beyond 1) skips the objectness gate; the
    # batched postprocess and FastDetector must keep exactly the rows the exact path keeps.
    text = fixture_cfg_text("yolov1-small")  # softmax=0, sqrt=1, output=2*2*(3+2*5)
    model = darknet_py.build_model(text.encode())
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    model.eval()
    assert model.head_specs[-1].gate_objectness is False
    x, infos = prepare_batch(photos, 32, 32, letterboxed=False)
    with torch.no_grad():
        outs = model(x)
    for thresh in (0.05, 0.3, 1.1):
        want = postprocess_per_image(model, outs, infos, thresh, 0.4)
        assert_same(want, postprocess_batch(model, outs, infos, thresh, 0.4))
    want = detect_batch(model, photos, 0.3, 0.4)
    assert sum(len(d) for d in want) >= 5
    # (the model runs NCHW here: the fast path must too, to be bit-identical)
    assert_same(want, FastDetector(model, channels_last=False, cpu_fusion=False).detect_batch(photos, 0.3, 0.4))
