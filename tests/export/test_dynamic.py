"""Dynamic-size exports (dynamic_size=True, darknet_py.export.dynamic): the written file is run by our
own onnxruntime session or torch.jit.load at sizes and batches of the test's choosing (not the
exporter's own second size, 96x128 for a 64 px net) and compared with PyTorch models loaded at those
sizes with darknet_py.load(width=, height=) and the same weights; decoded rows against decode_heads.
Sizes off the stride are refused by the file itself, a size frozen into the graph fails the export,
and the real yolov3-tiny exported at 416 finds PyTorch's detections at 608."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import darknet_py
from darknet_py.errors import ExportError, UsageError
from darknet_py.export import export_onnx, export_torchscript
from darknet_py.export.calibrate import load_photos
from darknet_py.export.dynamic import guard_node
from darknet_py.export.verify import verify_runner
from darknet_py.layers.upsample import Upsample
from darknet_py.layers.yolo import YoloDecode
from tests.helpers.export import RTOL, expected_decoded, photo_input, photo_variants, rel_diff_rows, small_model
from tests.helpers.numeric import rel_err
from tests.helpers.paths import ROOT, ref_path
from tests.helpers.runtimes import onnx_session

pytest.importorskip("onnx", reason="the ONNX export needs onnx")
pytest.importorskip("onnxruntime", reason="the exported ONNX files are run by onnxruntime")

TINY = ROOT / "cfg" / "yolov3-tiny.cfg"
# (width, height, batch): the traced size at batch 2, then a size the exporter's own check does not use
RUNS = [(64, 64, 2), (128, 96, 3)]


def pytorch_at(model, cfg, width, height):
    """The PyTorch model at another size: loaded there, with ``model``'s tensors."""
    other = darknet_py.load(cfg, width=width, height=height)
    other.load_state_dict(model.state_dict())
    return other.eval()


def photos_at(model, photo, n):
    """n different photos letterboxed to the model's size: (n, 3, H, W)."""
    return torch.cat([photo_input(model, p)[0] for p in photo_variants(photo)[:n]])


def assert_matches_pytorch(run, model, cfg, photo, decode, runs=RUNS):
    for width, height, n in runs:
        ref_model = pytorch_at(model, cfg, width, height)
        x = photos_at(ref_model, photo, n)
        got = run(x)
        with torch.no_grad():
            raw = ref_model(x)
        if decode:
            assert rel_diff_rows(got[0], expected_decoded(raw, ref_model)) <= RTOL, (width, height)
        else:
            assert len(got) == len(raw)
            for g, r in zip(got, raw):
                assert g.shape == tuple(r.shape) and r.shape[-2:] != (1, 1)
                assert rel_err(g, r) <= RTOL, (width, height)


def onnx_runner(path):
    sess = onnx_session(path)
    return lambda x: sess.run(None, {"images": x.numpy() if isinstance(x, torch.Tensor) else x})


def torchscript_runner(path):
    loaded = torch.jit.load(str(path))

    def run(x):
        with torch.no_grad():
            out = loaded(torch.as_tensor(x))
        return [o.numpy() for o in ([out] if isinstance(out, torch.Tensor) else out)]
    return run


@pytest.mark.parametrize("decode", [False, True], ids=["raw", "decoded"])
def test_onnx_any_size_and_batch(small_tiny, photo_rgb, tmp_path, decode):
    path = tmp_path / "tiny.onnx"
    report = export_onnx(small_tiny, path, dynamic_size=True, decode=decode)
    assert report.inputs == [("images", ["batch", 3, "height", "width"])]
    expected = ([["batch", "rows", 85]] if decode else
                [["batch", 255, "height/32", "width/32"], ["batch", 255, "height/16", "width/16"]])
    assert [shape for _, shape in report.outputs] == expected
    assert report.checked_sizes == [(64, 64), (96, 128)] and report.checked_batches == [1, 3]
    assert_matches_pytorch(onnx_runner(path), small_tiny, TINY, photo_rgb, decode)


@pytest.mark.parametrize("decode", [False, True], ids=["raw", "decoded"])
def test_torchscript_any_size_and_batch(small_tiny, photo_rgb, tmp_path, decode):
    path = tmp_path / "tiny.pt"
    report = export_torchscript(small_tiny, path, dynamic_size=True, decode=decode, check_size=(96, 64))
    assert report.checked_sizes == [(64, 64), (96, 64)]
    assert_matches_pytorch(torchscript_runner(path), small_tiny, TINY, photo_rgb, decode)


# yolov3-spp's block (maxpools of sizes 5, 9 and 13 at stride 1, concatenated), to put after
# yolov3-tiny's 1024-filter convolution: SPP's padding arithmetic at any size, in a small network
SPP_BLOCK = """
[maxpool]
stride=1
size=5

[route]
layers=-2

[maxpool]
stride=1
size=9

[route]
layers=-4

[maxpool]
stride=1
size=13

[route]
layers=-1,-3,-5,-6
"""


def tiny_spp_cfg(folder):
    lines = (ROOT / "cfg" / "yolov3-tiny.cfg").read_text().splitlines(keepends=True)
    convs = [i for i, line in enumerate(lines) if line.strip() == "[convolutional]"]
    at = convs[7]  # the 1x1 convolution after the 1024-filter one (layer 13)
    path = folder / "yolov3-tiny-spp.cfg"
    path.write_text("".join(lines[:at]) + SPP_BLOCK.lstrip("\n") + "\n" + "".join(lines[at:]))
    return path


def test_deeper_cfg_onnx(photo_rgb, tmp_path):
    """Stride-1 [maxpool]s of sizes 5, 9 and 13 and a four-way [route] (yolov3-spp's block) at
    any size: their padding is fixed in the trace but depends only on the size modulo the stride."""
    cfg = tiny_spp_cfg(tmp_path)
    model = small_model(cfg, photo_rgb, seed=4)
    assert [type(m).__name__ for m in model.layers[13:19]].count("Maxpool") == 3
    path = tmp_path / "spp.onnx"
    export_onnx(model, path, dynamic_size=True, check_size=(96, 64))
    assert_matches_pytorch(onnx_runner(path), model, cfg, photo_rgb, False, runs=[(64, 96, 2)])


def test_sizes_off_the_stride_are_refused(small_tiny, tmp_path):
    onnx_path, ts_path = tmp_path / "tiny.onnx", tmp_path / "tiny.pt"
    export_onnx(small_tiny, onnx_path, dynamic_size=True, decode=True)
    export_torchscript(small_tiny, ts_path, dynamic_size=True, decode=True)
    x = torch.rand(1, 3, 64, 80)  # 80 is not a multiple of 32
    with pytest.raises(Exception, match=guard_node(32, 32)):
        onnx_runner(onnx_path)(x)
    with pytest.raises(Exception, match="input 80x64 .*must be multiples of 32"):
        torchscript_runner(ts_path)(x)
    # and the export's own second size must be one too, checked before anything is written
    for export, path in ((export_onnx, tmp_path / "bad.onnx"), (export_torchscript, tmp_path / "bad.pt")):
        with pytest.raises(UsageError, match="width=80: expected a multiple of 32"):
            export(small_tiny, path, dynamic_size=True, check_size=(80, 64))
        assert not path.exists()
    with pytest.raises(ExportError, match="check_size= applies to dynamic_size=True"):
        export_onnx(small_tiny, tmp_path / "bad.onnx", check_size=(96, 64))


def test_one_size_network_refused_before_writing(tmp_path):
    cfg = (b"[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\n"
           b"activation=leaky\n\n[connected]\noutput=10\nactivation=linear\n")
    model = darknet_py.build_model(cfg).eval()
    path = tmp_path / "fc.onnx"
    with pytest.raises(ExportError, match=r"layer 1 \[connected\] \(cfg line 13\) has weights sized by its input"):
        export_onnx(model, path, dynamic_size=True)
    assert not path.exists()


def freeze_network_size(monkeypatch):
    """The decode with the network size as a constant of the trace (torch.tensor of Python numbers):
    right at the traced 64x64, every box's width and height wrong at any other size."""
    original = YoloDecode.any_size
    monkeypatch.setattr(YoloDecode, "any_size", lambda self, out, net: original(self, out, torch.tensor([64.0, 64.0])))


def freeze_upsample(monkeypatch):
    """[upsample] with its output size read as Python numbers: frozen at the traced size."""
    def frozen(self, x):
        return F.interpolate(x, size=(int(x.shape[2]) * self.stride, int(x.shape[3]) * self.stride), mode="nearest")
    monkeypatch.setattr(Upsample, "forward", frozen)


OUR_CHECK = "at 96x128, the second input size checked for dynamic_size"


@pytest.mark.parametrize("export, freeze, caught_by", [
    (export_onnx, freeze_network_size, OUR_CHECK + ", the export differs from PyTorch"),
    (export_onnx, freeze_upsample, OUR_CHECK + ", onnxruntime failed"),
    # the values alone are wrong: torch.jit's re-trace sees the same constant, only the size check sees it
    (export_torchscript, freeze_network_size, OUR_CHECK + ", the export differs from PyTorch"),
    # a shape: torch.jit's own re-trace at the second size fails first
    (export_torchscript, freeze_upsample, "torch.jit.trace does not reproduce the model"),
], ids=["onnx-decode", "onnx-upsample", "torchscript-decode", "torchscript-upsample"])
def test_a_frozen_size_fails_the_export(small_tiny, tmp_path, monkeypatch, export, freeze, caught_by):
    freeze(monkeypatch)
    with pytest.raises(ExportError, match=caught_by):
        export(small_tiny, tmp_path / "frozen", dynamic_size=True, decode=freeze is freeze_network_size)


def test_real_tiny_weights_at_416_and_608(tmp_path):
    """The official yolov3-tiny exported at 416, run at 416 and at 608 on photos: the same detections
    as PyTorch at each size (darknet_py.export.verify)."""
    weights = ref_path("pretrained", "yolov3-tiny.weights")
    photos = load_photos([ref_path("pjreddie", "data", name) for name in ("dog.jpg", "person.jpg")])
    model = darknet_py.load(TINY, weights)
    path = tmp_path / "tiny.onnx"
    export_onnx(model, path, dynamic_size=True)
    runner = onnx_runner(path)
    for size in (416, 608):
        ref = model if size == 416 else darknet_py.load(TINY, weights, width=size, height=size)
        result = verify_runner(ref, runner, photos)
        assert result.total.matched >= 4, size
        assert result.total.missing == result.total.extra == 0, size
        assert result.max_rel_diff <= RTOL, size
