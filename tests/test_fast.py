"""darknet_py.fast: FastDetector against the exact path.

Bit-identical where the arithmetic is the same: the float32 network with ``cpu_fusion=False`` and
its post-processing (held to the per-image oracle, tests.helpers.reference.postprocess_per_image,
on the model's own outputs). Within measured tolerances where it is not: oneDNN's fused
convolutions (summation order), fp16 / bf16 trunks. CUDA tests run where a GPU is present. (The
batch post-processing itself is tested in tests/postprocess, the batched letterbox in
tests/test_transforms.py.)
torch.compile is not exercised here: on 2 CPU cores inductor's C++ build of even a small
network takes minutes; tools/bench_gpu.py runs it on the GPU.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.fast import FastDetector
from darknet_py.imageio import load_image
from darknet_py.layers.head import decode_heads
from darknet_py.postprocess import StaticPostprocess, postprocess
from darknet_py.synth import render_image
from darknet_py.transforms import (GEOMETRY_COLUMNS, correct_boxes, correct_boxes_rows, geometry_table, letterbox,
                                   letterbox_info, letterbox_u8, prepare_batch, u8_to_float)
from tests.helpers.cfgs import cfg, conv, fixture_cfg_text, head_conv, maxpool, route, shortcut, upsample, yolo
from tests.helpers.detections import assert_identical, calibrated_model, min_match_iou, sample_photos
from tests.helpers.numeric import outputs_rel_err
from tests.helpers.paths import ROOT
from tests.helpers.reference import postprocess_per_image

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
    return sample_photos()


@pytest.fixture(scope="module")
def tiny(photos):
    return calibrated_model(ROOT / "cfg" / "yolov3-tiny.cfg", 416, photos[0])


@pytest.fixture(scope="module")
def small(photos):
    # pjreddie's letterbox, which prepare_batch below gives the reference (the cfg's AlexeyAB keys
    # would otherwise have auto stretch the photos)
    model = calibrated_model(SMALL_CFG, 96, photos[0], seed=5)
    model.set_darknet("pjreddie")
    return model


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


def per_image_reference(model, photos, thresh, nms=0.45, letterboxed=True):
    """The exact path, written out: the photos prepared in one batch, the model's forward pass, then
    the per-image post-processing oracle (independent of the batch post-processing both detectors run)."""
    x, infos = prepare_batch(photos, *model.input_size, letterboxed=letterboxed)
    with torch.no_grad():
        return postprocess_per_image(model, model(x), infos, thresh, nms)


# --------------------------------------------------------------------------- FastDetector on the CPU


def test_prepare_equals_prepare_batch(tiny, photos):
    fd = FastDetector(tiny)
    # mixed sizes, same-size photos not adjacent (row-by-row path) and adjacent (in-place path)
    rgbs = photos + photos[-2:]
    x, infos = fd.prepare(rgbs)
    want_x, want_infos = prepare_batch(rgbs, 416, 416)
    assert infos == want_infos and torch.equal(x, want_x)
    x, _ = fd.prepare([torch.from_numpy(im) for im in rgbs])  # uint8 tensors (the streaming command's frames)
    assert torch.equal(x, want_x)


def test_fast_fp32_unfused_is_the_exact_path(tiny, tiny_outputs, photos):
    fd = FastDetector(tiny, cpu_fusion=False)
    x, infos, want = tiny_outputs
    assert all(torch.equal(a, b) for a, b in zip(want, fd.forward(x)))
    assert_identical(per_image_reference(tiny, photos[:4], 0.3), fd.detect_batch(photos[:4], 0.3))


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
        ref = postprocess_per_image(small, want, infos, 0.3, 0.45)
        assert sum(len(d) for d in ref) >= 10
        assert_identical(ref, fd.detect_batch(photos, 0.3))


def test_yolov3_reduced_size(photos):
    # the deep net: 23 in-place residual adds, routes, upsampling; 96x96 keeps it fast
    model = calibrated_model(ROOT / "cfg" / "yolov3.cfg", 96, photos[0], seed=2)
    x, infos = prepare_batch(photos[:2], 96, 96)
    with torch.no_grad():
        want = model(x)
    exact = FastDetector(model, cpu_fusion=False)
    assert sum(exact.net.add_inplace) == 23
    assert all(torch.equal(a, b) for a, b in zip(want, exact.forward(x)))
    ref = postprocess_per_image(model, want, infos, 0.1, 0.45)
    assert sum(len(d) for d in ref) >= 5
    assert_identical(ref, exact.detect_tensor(x, infos, 0.1, 0.45))


def test_detect_tensor_uint8_and_stretch(small, photos):
    fd = FastDetector(small, cpu_fusion=False)
    u8 = torch.from_numpy(np.stack([np.asarray(render_image(np.random.default_rng(k), 96, 96, 4)[0])
                                    for k in range(3)]))
    infos = [letterbox_info(96, 96, 96, 96)] * 3
    x = u8_to_float(u8.permute(0, 3, 1, 2))
    with torch.no_grad():
        want = postprocess_per_image(small, small(x), infos, 0.2, 0.45)
    assert_identical(want, fd.detect_tensor(u8, infos, 0.2, 0.45))                     # NHWC frames
    assert_identical(want, fd.detect_tensor(u8.permute(0, 3, 1, 2), infos, 0.2, 0.45))  # NCHW
    # a network whose last head stretches the photo (YOLOv1-style): both paths stretch
    last = small.head_specs[-1]
    old = last.letterbox
    last.letterbox = False
    try:
        fd = FastDetector(small, cpu_fusion=False)
        assert not fd.letterboxed
        assert_identical(per_image_reference(small, photos, 0.2, letterboxed=False), fd.detect_batch(photos, 0.2))
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
    from torch._subclasses.fake_tensor import DynamicOutputShapeException, FakeTensorMode
    fd = FastDetector(small, dtype=dtype, cpu_fusion=False)
    assert fd._in_graph_decode
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.rand(2, 3, 96, 96, dtype=dtype).contiguous(memory_format=torch.channels_last)
        outs, (boxes, obj, cls) = fd._net_decode_eager(x)
        post = StaticPostprocess(2, boxes.shape[1], cls.shape[2], 0.3, 0.45, "diounms", 0.6, cand_cap=8,
                                 entry_cap=8)
        packed = post(boxes, obj, cls, torch.rand(2, GEOMETRY_COLUMNS, dtype=torch.float64), torch.tensor(2))
        assert packed.shape == (2 + 1 + 16 * 8,)
        with pytest.raises(DynamicOutputShapeException):  # the guard itself works
            torch.nonzero(obj)


def test_rejects_a_half_model(small):
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
        assert_identical(want, postprocess(model, outs, infos, thresh, 0.4))
    want = postprocess_per_image(model, outs, infos, 0.3, 0.4)
    assert sum(len(d) for d in want) >= 5
    # (the model runs NCHW here: the fast path must too, to be bit-identical)
    assert_identical(want, FastDetector(model, channels_last=False, cpu_fusion=False).detect_batch(photos, 0.3, 0.4))


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


def _cuda_copy(model):
    return copy.deepcopy(model).cuda()


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
        assert_identical(want, postprocess(gpu.model, outs, infos, thresh, 0.45))
        boxes, obj, cls = decode_heads(outs, gpu.model.head_specs, 416, 416)
        post = StaticPostprocess(len(infos), boxes.shape[1], cls.shape[2], thresh, 0.45, cand_cap=64,
                                 entry_cap=64)
        got = post.unpack(post(boxes, obj, cls, geometry_table(infos, "cuda"),
                               torch.tensor(len(infos), device="cuda")), len(infos))
        assert got is not None
        assert_identical(want, got)
    # per-row box correction on CUDA (reciprocal multiplication) against the per-image code there
    gen = torch.Generator().manual_seed(0)
    boxes = torch.rand(3000, 4, generator=gen).cuda()
    img = torch.randint(0, len(infos), (3000,), generator=gen).cuda()
    rel = correct_boxes_rows(boxes, geometry_table(infos, "cuda")[img])
    for k, info in enumerate(infos):
        assert torch.equal(rel[img == k], correct_boxes(boxes[img == k], info))


@cuda_only
def test_cuda_fp32_matches_cpu(tiny, photos, exact_cuda):
    gpu = FastDetector(_cuda_copy(tiny))
    x, infos = prepare_batch(photos, 416, 416)
    with torch.no_grad():
        want = tiny(x)
    assert outputs_rel_err(gpu.forward(x.cuda()), want) < 1e-4
    ref = postprocess_per_image(tiny, want, infos, 0.25, 0.45)
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
        assert_identical(eager.detect_tensor(x[:n], infos[:n], 0.3), graph.detect_tensor(x[:n], infos[:n], 0.3))
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
