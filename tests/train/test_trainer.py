"""darknet_py.train.trainer: Darknet's update rule, and training runs: a small network that learns the
generated shapes, resuming the schedule, checkpoints that survive a kill and reload in OpenCV, torchrun,
mixed precision on CUDA."""
from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from darknet_py.detector import load
from darknet_py.graph import build_model
from darknet_py.train.schedule import TrainConfig
from darknet_py.train.trainer import TrainOptions, _optimizer, train
from darknet_py.validate import detector_map
from tests.helpers.opencv import HAS_DARKNET_IMPORTER, opencv_forward
from tests.helpers.processes import child_env
from tests.helpers.train import log_lines, make_overfit_set, train_cfg_text, write_train_cfg

ENV = child_env()


@pytest.fixture(scope="module")
def shapes4(tmp_path_factory):
    """Four generated images; the valid list is the training list (an overfitting set)."""
    return make_overfit_set(tmp_path_factory.mktemp("train"))


# --------------------------------------------------------------------------- the update rule


def test_sgd_is_darknets_update():
    """Darknet's update_convolutional_layer, written out, against the optimizer the trainer builds."""
    torch.manual_seed(0)
    model = build_model(train_cfg_text().encode())
    tc = TrainConfig(learning_rate=0.02, momentum=0.9, decay=0.0005, batch=4)
    opt = _optimizer(model, tc)
    params = [p for g in opt.param_groups for p in g["params"]]
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    conv_weights = {id(layer.conv.weight) for layer in model.layers if hasattr(layer, "conv")}
    assert decayed == conv_weights  # decay on convolution weights only, as Darknet
    w = {id(p): p.detach().double().clone() for p in params}
    v = {id(p): torch.zeros_like(w[id(p)]) for p in params}
    for step in range(3):
        grads = {id(p): torch.randn_like(p) for p in params}
        rate = 0.02 * (step + 1) / 3
        for p in params:  # loss = sum over images / batch: Darknet's weight_updates hold -batch * grad
            p.grad = grads[id(p)].clone()
            upd = v[id(p)] - tc.batch * grads[id(p)].double()
            if id(p) in decayed:
                upd = upd - tc.decay * tc.batch * w[id(p)]
            w[id(p)] = w[id(p)] + rate / tc.batch * upd
            v[id(p)] = tc.momentum * upd
        for g in opt.param_groups:
            g["lr"] = rate
        opt.step()
    for p in params:
        torch.testing.assert_close(p.detach().double(), w[id(p)], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- training runs


def test_overfit_small_set_reaches_ap50(shapes4, tmp_path):
    """A few hundred steps on four images: detection then finds every object (AP50 >= 0.9), in bounded
    work. The bound is this process's CPU time on one torch thread, not wall time: other processes on
    the machine stretch the wall clock (measured 496 s beside three busy workers on 2 cores) but not
    the work, and one thread has no OpenMP spinning to count."""
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, learning_rate=0.003, burn_in=30, max_batches=300, steps="240", scales=".1")
    log = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.process_time()
        res = train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "backup"),
                                                    regions=False, log=log.append, save_every=1000))
        cpu = time.process_time() - start
    finally:
        torch.set_num_threads(threads)
    assert res.final.exists() and res.iterations == 300 and res.seen == 300 * 4
    losses = [float(ln.split(",")[0].split(": ")[1]) for ln in log_lines(log)]
    assert losses[-1] < losses[0] / 5
    report = detector_map(data, cfg, res.final).report
    assert report.map >= 0.9, "\n".join(report.lines())
    assert cpu < 60, f"training took {cpu:.0f} s of CPU"  # measured 8 s (142 s on two spinning threads)


def test_resume_continues_schedule_and_seen(shapes4, tmp_path):
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, max_batches=12, burn_in=4, steps="8", scales=".1")
    full, part, resumed = [], [], []
    train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "a"), regions=False,
                                          log=full.append, save_every=5))
    train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"), regions=False,
                                          log=part.append, save_every=5, max_batches=7))
    last = tmp_path / "b" / "tiny-train_last.weights"
    model = build_model(cfg).load_weights(last)
    assert model.header.seen == 5 * 4  # the checkpoint of iteration 5
    res = train(data, cfg, last, TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"), regions=False,
                                              log=resumed.append, save_every=5))
    assert res.seen == 12 * 4 and res.iterations == 7
    assert build_model(cfg).load_weights(res.final).header.seen == 48

    def rates(lines):  # iteration -> "rate ... size"
        return {int(ln.split(":")[0]): ln.split(", ")[2].split(" rate")[0] + ln.split(" images")[1]
                for ln in log_lines(lines)}
    assert min(rates(resumed)) == 6
    assert {k: v for k, v in rates(full).items() if k >= 6} == rates(resumed)


def test_kill_never_leaves_a_bad_checkpoint(shapes4, tmp_path):
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, max_batches=100000, burn_in=2)
    backup = tmp_path / "backup"
    cmd = [sys.executable, "-m", "darknet_py", "detector", "train", str(data), str(cfg)]
    opts = ["--device", "cpu", "--workers", "0", "--backup", str(backup), "--save-every", "1", "--quiet"]
    rng = np.random.default_rng(0)
    newest_seen = 0
    last = backup / "tiny-train_last.weights"
    for _ in range(3):
        weights = [str(last)] if last.exists() else []
        proc = subprocess.Popen(cmd + weights + opts, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV,
                                text=True)
        # wait until it writes checkpoints, then kill it at a random moment
        seen_lines = [proc.stdout.readline()]
        while seen_lines[-1] and not re.match(r"^\d+: ", seen_lines[-1]):
            seen_lines.append(proc.stdout.readline())
        time.sleep(float(rng.uniform(0.2, 1.5)))
        proc.send_signal(signal.SIGKILL)
        rest = proc.communicate()[0]
        assert proc.returncode == -signal.SIGKILL, "".join(seen_lines) + rest[-2000:]
        files = sorted(backup.iterdir())
        assert all(f.name.endswith(".weights") or ".weights.tmp" in f.name for f in files), files
        for f in files:
            if f.name.endswith(".weights"):
                m = build_model(cfg).load_weights(f, strict=True)  # complete and finite
                assert m.header.seen % 4 == 0
        seen = build_model(cfg).load_weights(backup / "tiny-train_last.weights").header.seen
        assert seen > newest_seen  # the resumed run went on from where the last one stopped
        newest_seen = seen


def test_checkpoint_reloads_identically_and_in_opencv(shapes4, tmp_path):
    pytest.importorskip("cv2")
    if not HAS_DARKNET_IMPORTER:
        pytest.skip("this OpenCV has no Darknet importer (OpenCV 5)")
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, max_batches=6)
    res = train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"), regions=False,
                                                log=lambda s: None))
    model = load(cfg, res.final, channels_last=False)
    again = tmp_path / "again.weights"
    model.save_weights(again)
    assert again.read_bytes() == res.final.read_bytes()
    x = torch.rand(1, 3, 96, 96)
    theirs = opencv_forward(cfg, res.final, x, "unconnected")
    with torch.no_grad():
        ours = model(x)
    # OpenCV returns [yolo] outputs decoded, one row per cell/anchor: x, y, w, h, obj, obj*class scores
    for o, t in zip(ours, theirs):
        a = len(model.yolo_specs[0].mask)
        n, ch, h, w = o.shape
        p = o.view(n, a, ch // a, h, w).permute(0, 3, 4, 1, 2).reshape(-1, ch // a)
        np.testing.assert_allclose(t[:, 4], p[:, 4].numpy(), atol=2e-4)


def test_torchrun_two_processes_gloo(shapes4, tmp_path):
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, max_batches=3, batch=4)
    # --standalone: a local rendezvous on a free port (a fixed port may still be held by another run)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "darknet_py", "detector", "train", str(data), str(cfg),
           "--device", "cpu", "--workers", "0", "--backup", str(tmp_path / "ddp"), "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, "OMP_NUM_THREADS": "1"}, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "x 2 processes" in out.stdout and out.stdout.count("3 iterations in") == 1
    final = tmp_path / "ddp" / "tiny-train_final.weights"
    assert build_model(cfg).load_weights(final).header.seen == 12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_mixed_precision_training(shapes4, tmp_path):
    ds, data = shapes4
    cfg = write_train_cfg(tmp_path, max_batches=30, learning_rate=0.003, burn_in=5, steps="25", scales=".1")
    log = []
    res = train(data, cfg, options=TrainOptions(device="cuda", workers=2, backup=str(tmp_path / "b"),
                                                regions=False, log=log.append))
    assert any("autocast" in line for line in log)
    losses = [float(ln.split(",")[0].split(": ")[1]) for ln in log_lines(log)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert build_model(cfg).load_weights(res.final, strict=True).header.seen == 30 * 4
