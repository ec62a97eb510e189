"""detector train: Darknet's schedule and update rule, checkpoints (resume, kill, OpenCV), torchrun,
and a small network that learns the generated shapes."""
from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.cli import main
from darknet_py.errors import CfgError
from darknet_py.synth import make_dataset
from darknet_py.train.schedule import TrainConfig, train_config
from darknet_py.train.trainer import TrainOptions, _optimizer, train
from darknet_py.weights import layers_in_file
from tests.helpers.paths import ROOT
from tests.helpers.cfgs import fixture_cfg_text
from tests.helpers.opencv import HAS_DARKNET_IMPORTER, opencv_forward

ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def train_cfg_text(size: int = 96, **net) -> str:
    """The small 6-class network (tests/fixtures/cfg/tiny-shapes.cfg) with a training [net] section."""
    keys = {"batch": 4, "subdivisions": 1, "learning_rate": 0.01, "momentum": 0.9, "decay": 0.0005,
            "burn_in": 10, "max_batches": 40, "policy": "steps", "steps": "30", "scales": ".1",
            "hue": 0, "saturation": 1, "exposure": 1, "flip": 0}
    keys.update(net)
    head = "[net]\n" + "".join(f"{k}={v}\n" for k, v in keys.items()) + f"width={size}\nheight={size}\nchannels=3\n"
    body = fixture_cfg_text("tiny-shapes").split("channels=3\n", 1)[1]
    return head + body.replace("num=6\n", "num=6\njitter=0\nrandom=0\n")


@pytest.fixture(scope="module")
def shapes4(tmp_path_factory):
    """Four generated images; the valid list is the training list (an overfitting set)."""
    root = tmp_path_factory.mktemp("train")
    ds = make_dataset(root / "data", train=4, valid=1, seed=3, min_side=96, max_side=128, max_objects=3)
    data = ds.root / "overfit.data"
    data.write_text(ds.data.read_text().replace("valid = valid.txt", "valid = train.txt")
                    .replace("annotations = instances_valid.json", "annotations = instances_train.json"))
    return ds, data


def _write_cfg(tmp_path, name="tiny-train.cfg", **net) -> Path:
    p = tmp_path / name
    p.write_text(train_cfg_text(**net))
    return p


# --------------------------------------------------------------------------- [net] and the schedule


def test_yolov3_schedule_values():
    # yolov3.cfg: learning_rate=0.001 burn_in=1000 policy=steps steps=400000,450000 scales=.1,.1
    c = TrainConfig(learning_rate=0.001, burn_in=1000, power=4, policy="steps", steps=[400000, 450000],
                    scales=[0.1, 0.1], max_batches=500200)
    assert c.rate(0) == 0 and c.rate(500) == pytest.approx(0.001 * 0.5 ** 4, rel=1e-12)
    assert c.rate(1000) == 0.001 and c.rate(399999) == 0.001
    assert c.rate(400000) == pytest.approx(1e-4) and c.rate(449999) == pytest.approx(1e-4)  # steps[i] > n
    assert c.rate(450000) == pytest.approx(1e-5)


@pytest.mark.parametrize("policy, extra, n, expected", [
    ("constant", {}, 77, 0.01),
    ("step", {"step": 10, "scale": 0.5}, 35, 0.01 * 0.5 ** 3),
    ("exp", {"gamma": 0.99}, 20, 0.01 * 0.99 ** 20),
    ("poly", {"power": 2, "max_batches": 100}, 25, 0.01 * 0.75 ** 2),
    ("sigmoid", {"gamma": 0.1, "step": 50}, 60, 0.01 / (1 + math.exp(0.1 * 10))),
    ("sgdr", {"sgdr_cycle": 10, "sgdr_mult": 2, "learning_rate_min": 0.0}, 15,
     0.01 * 0.5 * (1 + math.cos(5 * math.pi / 20))),  # second cycle: 10..30, 5 into it
])
def test_policies(policy, extra, n, expected):
    assert TrainConfig(learning_rate=0.01, policy=policy, **extra).rate(n) == pytest.approx(expected, rel=1e-12)


def test_train_config_from_cfg_and_errors(tmp_path):
    net = darknet_py.graph.parse_network(train_cfg_text(batch=8, subdivisions=2, policy="steps", steps="5,9",
                                                        scales=".1,.5").encode()).net
    c = train_config(net)
    assert (c.batch, c.subdivisions, c.minibatch, c.steps, c.scales) == (8, 2, 4, [5, 9], [0.1, 0.5])
    for keys, pattern in [({"steps": "5,9", "scales": ".1"}, "steps and scales of equal length"),
                          ({"batch": 6, "subdivisions": 4}, "positive multiple of subdivisions"),
                          ({"policy": "cosine"}, "policy=cosine: expected one of"),
                          ({"adam": 1}, "adam=1: Darknet's Adam update is not supported"),
                          ({"mosaic": 1}, "mosaic=1"),
                          ({"learning_rate": "fast"}, "learning_rate=fast: expected a number")]:
        with pytest.raises(CfgError, match=pattern):
            train_config(darknet_py.graph.parse_network(train_cfg_text(**keys).encode()).net)


def test_sgd_is_darknets_update():
    """Darknet's update_convolutional_layer, written out, against the optimizer the trainer builds."""
    torch.manual_seed(0)
    model = darknet_py.build_model(train_cfg_text().encode())
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


def _log_lines(lines):
    return [ln for ln in lines if re.match(r"^\d+: ", ln)]


def test_overfit_small_set_reaches_ap50(shapes4, tmp_path):
    """A few hundred steps on four images: detection then finds every object (AP50 >= 0.9)."""
    ds, data = shapes4
    cfg = _write_cfg(tmp_path, learning_rate=0.003, burn_in=30, max_batches=300, steps="240", scales=".1")
    log = []
    start = time.perf_counter()
    res = train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "backup"),
                                                regions=False, log=log.append, save_every=1000))
    elapsed = time.perf_counter() - start
    assert res.final.exists() and res.iterations == 300 and res.seen == 300 * 4
    losses = [float(ln.split(",")[0].split(": ")[1]) for ln in _log_lines(log)]
    assert losses[-1] < losses[0] / 5
    from darknet_py.validate import detector_map
    report = detector_map(data, cfg, res.final).report
    assert report.map >= 0.9, "\n".join(report.lines())
    assert elapsed < 120


def test_resume_continues_schedule_and_seen(shapes4, tmp_path):
    ds, data = shapes4
    cfg = _write_cfg(tmp_path, max_batches=12, burn_in=4, steps="8", scales=".1")
    full, part, resumed = [], [], []
    train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "a"), regions=False,
                                          log=full.append, save_every=5))
    train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"), regions=False,
                                          log=part.append, save_every=5, max_batches=7))
    last = tmp_path / "b" / "tiny-train_last.weights"
    model = darknet_py.build_model(cfg).load_weights(last)
    assert model.header.seen == 5 * 4  # the checkpoint of iteration 5
    res = train(data, cfg, last, TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"), regions=False,
                                              log=resumed.append, save_every=5))
    assert res.seen == 12 * 4 and res.iterations == 7
    assert darknet_py.build_model(cfg).load_weights(res.final).header.seen == 48

    def rates(lines):  # iteration -> "rate ... size"
        return {int(ln.split(":")[0]): ln.split(", ")[2].split(" rate")[0] + ln.split(" images")[1]
                for ln in _log_lines(lines)}
    assert min(rates(resumed)) == 6
    assert {k: v for k, v in rates(full).items() if k >= 6} == rates(resumed)


def test_kill_never_leaves_a_bad_checkpoint(shapes4, tmp_path):
    ds, data = shapes4
    cfg = _write_cfg(tmp_path, max_batches=100000, burn_in=2)
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
                m = darknet_py.build_model(cfg).load_weights(f, strict=True)  # complete and finite
                assert m.header.seen % 4 == 0
        seen = darknet_py.build_model(cfg).load_weights(backup / "tiny-train_last.weights").header.seen
        assert seen > newest_seen  # the resumed run went on from where the last one stopped
        newest_seen = seen


def test_checkpoint_reloads_identically_and_in_opencv(shapes4, tmp_path):
    pytest.importorskip("cv2")
    if not HAS_DARKNET_IMPORTER:
        pytest.skip("this OpenCV has no Darknet importer (OpenCV 5)")
    ds, data = shapes4
    cfg = _write_cfg(tmp_path, max_batches=6)
    res = train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"), regions=False,
                                                log=lambda s: None))
    model = darknet_py.load(cfg, res.final, channels_last=False)
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


def test_backbone_partial_then_train(shapes4, tmp_path, capsys):
    ds, data = shapes4
    cfg = _write_cfg(tmp_path, max_batches=3)
    full = train(data, cfg, options=TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"),
                                                 regions=False, log=lambda s: None)).final
    backbone = tmp_path / "backbone.weights"
    assert main(["partial", str(cfg), str(full), str(backbone), "6"]) == 0
    model = darknet_py.build_model(cfg)
    assert layers_in_file(model, backbone) == 6 and layers_in_file(model, full) == len(model.layers)
    assert model.load_weights(backbone, upto=6).header.seen == 0  # Darknet's partial clears seen
    capsys.readouterr()
    assert main(["detector", "train", str(data), str(cfg), str(backbone), "--device", "cpu", "--workers", "0",
                 "--backup", str(tmp_path / "c"), "--quiet", "--max-batches", "2"]) == 0
    out = capsys.readouterr().out
    assert f"Loading weights from {backbone}: 6 of {len(model.layers)} layers (a backbone)" in out
    assert "2 iterations" in out


def test_torchrun_two_processes_gloo(shapes4, tmp_path):
    ds, data = shapes4
    cfg = _write_cfg(tmp_path, max_batches=3, batch=4)
    # --standalone: a local rendezvous on a free port (a fixed port may still be held by another run)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "darknet_py", "detector", "train", str(data), str(cfg),
           "--device", "cpu", "--workers", "0", "--backup", str(tmp_path / "ddp"), "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, "OMP_NUM_THREADS": "1"}, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "x 2 processes" in out.stdout and out.stdout.count("3 iterations in") == 1
    final = tmp_path / "ddp" / "tiny-train_final.weights"
    assert darknet_py.build_model(cfg).load_weights(final).header.seen == 12


def test_train_cli_errors(shapes4, tmp_path, capsys):
    ds, data = shapes4
    cfg = _write_cfg(tmp_path, max_batches=0)
    assert main(["detector", "train", str(data), str(cfg), "--device", "cpu"]) == 1
    assert "max_batches is 0" in capsys.readouterr().err
    assert main(["detector", "train", str(data), str(cfg), "--gpus", "0,1"]) == 1
    assert "torchrun" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_mixed_precision_training(shapes4, tmp_path):
    ds, data = shapes4
    cfg = _write_cfg(tmp_path, max_batches=30, learning_rate=0.003, burn_in=5, steps="25", scales=".1")
    log = []
    res = train(data, cfg, options=TrainOptions(device="cuda", workers=2, backup=str(tmp_path / "b"),
                                                regions=False, log=log.append))
    assert any("autocast" in line for line in log)
    losses = [float(ln.split(",")[0].split(": ")[1]) for ln in _log_lines(log)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert darknet_py.build_model(cfg).load_weights(res.final, strict=True).header.seen == 30 * 4
