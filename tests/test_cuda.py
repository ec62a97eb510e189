"""CUDA gives what the CPU gives (run where a GPU is present; skipped elsewhere)."""
from __future__ import annotations

import pytest
import torch

import darknet_py
from darknet_py.detector import detect_batch
from darknet_py.transforms import letterbox
from tests.helpers.models import write_random_model
from tests.helpers.paths import ROOT, ref_path, sized_cfg_text

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(autouse=True)
def exact_fp32():
    # TF32 convolutions (PyTorch's cuDNN default on Ampere and later) round inputs to 10 bits:
    # Darknet computes in full fp32, so the comparison does too.
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov3", "pjreddie/yolov2-tiny", "alexeyab/yolov4-tiny"])
def test_cuda_matches_cpu(name, photo_rgb, tmp_path):
    if "/" in name:  # a reference cfg: [region] head, or AlexeyAB's groups/scale_x_y/DIoU NMS
        fork, base = name.split("/")
        cfg = ref_path(fork, "cfg", f"{base}.cfg")
    else:
        cfg = ROOT / "cfg" / f"{name}.cfg"
    x = letterbox(photo_rgb, 416, 416)[0][None]
    cfg, weights, _ = write_random_model(tmp_path, "net", sized_cfg_text(cfg, 416), x, seed=4)
    cpu = darknet_py.load(cfg, weights, device="cpu")
    gpu = darknet_py.load(cfg, weights, device="cuda")
    with torch.no_grad():
        for a, b in zip(cpu(x), gpu(x.cuda())):
            # cuDNN and oneDNN sum in different orders: float32 rounding only.
            assert float((a - b.cpu()).abs().max() / a.abs().max()) < 1e-4
    d_cpu = detect_batch(cpu, [photo_rgb, photo_rgb[:, ::-1].copy()], thresh=0.25)
    d_gpu = detect_batch(gpu, [photo_rgb, photo_rgb[:, ::-1].copy()], thresh=0.25)
    for a, b in zip(d_cpu, d_gpu):
        assert b.boxes.device.type == "cuda"  # decode and NMS ran on the GPU
        assert len(a) == len(b) and len(a) > 0
        # Same (class, box, score) rows; near-equal scores may come in another order.
        gpu_rows = list(zip(b.classes.tolist(), b.scores.tolist(), b.boxes.cpu().tolist()))
        for cls, score, box in zip(a.classes.tolist(), a.scores.tolist(), a.boxes.tolist()):
            assert any(c == cls and abs(s - score) < 1e-4 and max(abs(p - q) for p, q in zip(bx, box)) < 0.05
                       for c, s, bx in gpu_rows), (cls, score, box)
