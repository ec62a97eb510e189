"""ncnn export (darknet_py.export.ncnn): the written .param + .bin loaded by our own ncnn Net (not the
exporter's runner) and compared with PyTorch; every activation ncnn is said to run, each on its own
head; the shapes model's and the COCO yolov3-tiny's detections matched on photos; refusals named by
layer and cfg line before anything is written; a failed check and a missing package leave no file."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.export import ExportError
from darknet_py.imageio import load_image
from darknet_py.layers.activations import ACTIVATIONS
from tests.export.test_every_cfg import LAYERS_CFG, spread_weights
from tests.helpers import cfgs
from tests.helpers.export import RTOL, RTOL_FP16, photo_input
from tests.helpers.numeric import rel_err
from tests.helpers.paths import ROOT, ref_path

ncnn = pytest.importorskip("ncnn", reason="the ncnn backend is an optional extra (darknet-py-yolov3[ncnn])")
pytest.importorskip("pnnx", reason="the ncnn backend converts with pnnx (darknet-py-yolov3[ncnn])")

from darknet_py.export.ncnn import NCNN_ACTIVATIONS, check_ncnn, export_ncnn  # noqa: E402

# four of the seven sample photos (tools/bench_export.py uses all seven)
SAMPLES = ("dog", "giraffe", "horses", "person")


def run_ncnn(param, x, n_outputs):
    """The files as a user deploys them: a Net in float32 (ncnn's fp16 defaults off), one photo."""
    net = ncnn.Net()
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = False
    net.opt.num_threads = 1
    assert net.load_param(str(param)) == 0 and net.load_model(str(param)[:-6] + ".bin") == 0
    ex = net.create_extractor()
    ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0].numpy())))
    outs = []
    for i in range(n_outputs):
        ret, out = ex.extract(f"out{i}")
        assert ret == 0
        outs.append(np.array(out)[None])
    return outs


def only_files(folder):
    return sorted(p.name for p in folder.iterdir())


def assert_runs_like_pytorch(model, param, photo, tol=RTOL):
    x, _ = photo_input(model, photo)
    with torch.no_grad():
        ref = model(x)
    got = run_ncnn(param, x, len(ref))
    assert [g.shape for g in got] == [tuple(r.shape) for r in ref]
    return [rel_err(g, r) for g, r in zip(got, ref)]


def test_small_tiny_matches_pytorch(small_tiny, photo_rgb, tmp_path):
    report = export_ncnn(small_tiny, tmp_path / "m.param", sample=photo_rgb)
    assert only_files(tmp_path) == ["m.bin", "m.param"]
    assert report.precision == "f32" and report.format == "ncnn" and report.dtype == "float32"
    assert max(assert_runs_like_pytorch(small_tiny, tmp_path / "m.param", photo_rgb)) <= RTOL
    assert report.max_rel_diff <= RTOL and report.missing == report.extra == 0


def test_every_layer_kind(photo_rgb, tmp_path):
    """Grouped convs, Darknet's odd maxpool paddings (-inf in PyTorch, edge replication in ncnn),
    1/2/4-input routes, a shortcut with an activation, upsample with a scale, mish and swish."""
    model = spread_weights(darknet_py.load(LAYERS_CFG.encode()), seed=6, std=1.5)
    export_ncnn(model, tmp_path / "layers.param", sample=photo_rgb)
    assert max(assert_runs_like_pytorch(model, tmp_path / "layers.param", photo_rgb)) <= RTOL


def test_every_supported_activation_on_its_own_head(photo_rgb, tmp_path):
    """One branch conv per activation ncnn is said to run, each feeding its own [yolo]: spread
    weights put the pre-activations around +-3, across every kink and tail."""
    names = sorted(NCNN_ACTIVATIONS)
    layers = [cfgs.conv(8, stride=2, act="linear")]
    for i, name in enumerate(names):
        if i:
            layers.append(cfgs.route("0"))
        layers += [cfgs.conv(6, stride=2, act=name, bn=False), cfgs.yolo("0", "10,13", 1, 1)]
    model = spread_weights(darknet_py.load(cfgs.cfg(*layers, width=64).encode(), channels_last=False), seed=7)
    export_ncnn(model, tmp_path / "acts.param", sample=photo_rgb)
    errs = assert_runs_like_pytorch(model, tmp_path / "acts.param", photo_rgb)
    assert {n: e for n, e in zip(names, errs) if e > RTOL} == {}


@pytest.mark.parametrize("name", sorted(set(ACTIVATIONS) - NCNN_ACTIVATIONS))
def test_other_activations_are_refused_by_layer_and_line(name, tmp_path):
    model = darknet_py.load(cfgs.cfg(cfgs.conv(8, stride=2, act="linear"), cfgs.conv(6, stride=2, act=name),
                                     cfgs.yolo("0", "10,13", 1, 1), width=64).encode())
    line = model.netdef.specs[1].line
    with pytest.raises(ExportError, match=rf"layer 1 \(\[convolutional\], .* line {line}\): ncnn cannot run "
                                          rf"activation={name}.*nothing was written"):
        export_ncnn(model, tmp_path / "m.param")
    assert only_files(tmp_path) == []


def test_shapes_model_with_float16_weights(tmp_path):
    """float16 weights (float32 arithmetic) keep every detection of the shipped shapes model, in a
    file about half the size (float32: tests/export/test_backends.py, through the table)."""
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights")
    rgb = load_image(ROOT / "data" / "shapes.jpg")[0]
    full = export_ncnn(model, tmp_path / "shapes.param", sample=rgb)
    half = export_ncnn(model, tmp_path / "half.param", sample=rgb, half=True)
    assert full.matched > 0 and half.matched == full.matched and half.missing == half.extra == 0
    assert half.max_rel_diff <= RTOL_FP16
    assert (tmp_path / "half.bin").stat().st_size < 0.6 * (tmp_path / "shapes.bin").stat().st_size


def test_coco_tiny_on_the_sample_photos(tmp_path):
    """Every PyTorch detection of the real yolov3-tiny matched at f32 (float16 weights: on the shapes
    model above; all seven photos: tools/bench_export.py)."""
    weights = ref_path("pretrained", "yolov3-tiny.weights")
    photos = [ref_path("pjreddie", "data", f"{n}.jpg") for n in SAMPLES]
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny.cfg", weights)
    full = export_ncnn(model, tmp_path / "t.param", photos=photos)
    assert full.matched >= 12 and full.missing == full.extra == 0 and full.max_rel_diff <= RTOL


def test_failed_check_leaves_nothing_and_keeps_old_files(small_tiny, tmp_path, monkeypatch):
    import darknet_py.export.ncnn as mod

    (tmp_path / "m.param").write_text("old param")
    (tmp_path / "m.bin").write_bytes(b"old bin")
    real = mod.runner_of

    def off(*a):
        run = real(*a)
        return lambda x: [o * 1.01 for o in run(x)]

    monkeypatch.setattr(mod, "runner_of", off)
    with pytest.raises(ExportError, match="above the tolerance.*nothing was written"):
        export_ncnn(small_tiny, tmp_path / "m.param")
    assert only_files(tmp_path) == ["m.bin", "m.param"]
    assert (tmp_path / "m.param").read_text() == "old param" and (tmp_path / "m.bin").read_bytes() == b"old bin"


@pytest.mark.parametrize("package", ["ncnn", "pnnx"])
def test_missing_package_names_the_extra(package, small_tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ExportError, match=r"pip install darknet-py-yolov3\[ncnn\]"):
        export_ncnn(small_tiny, tmp_path / "m.param")
    assert only_files(tmp_path) == []


def test_refusals_before_writing(small_tiny, tmp_path):
    reverse = darknet_py.load(cfgs.cfg(cfgs.conv(8, stride=1, act="leaky"), "[upsample]\nstride=-2\n",
                                       cfgs.conv(6, stride=1, act="linear"), cfgs.yolo("0", "10,13", 1, 1),
                                       width=64).encode())
    with pytest.raises(ExportError, match=r"layer 1 \(\[upsample\].*reverse mode"):
        check_ncnn(reverse)
    reorg = darknet_py.load(cfgs.cfg(cfgs.conv(8, stride=1, act="leaky"), "[reorg]\nstride=2\n",
                                     cfgs.conv(6, stride=1, act="linear"), cfgs.yolo("0", "10,13", 1, 1),
                                     width=64).encode())
    with pytest.raises(ExportError, match=r"layer 1 \(\[reorg\], .* line \d+\): ncnn cannot run a \[reorg\] layer"):
        check_ncnn(reorg)
    for kw, pattern in [({"precision": "int8"}, "precision='int8'"), ({}, "NAME.param")]:
        with pytest.raises(ExportError, match=pattern):
            export_ncnn(small_tiny, tmp_path / ("m.param" if kw else "m.ncnn"), **kw)
    with pytest.raises(ExportError, match="cannot write"):
        export_ncnn(small_tiny, tmp_path / "no" / "m.param")
    assert only_files(tmp_path) == []
