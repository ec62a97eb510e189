"""OpenVINO IR export (darknet_py.export.openvino): the written .xml + .bin loaded by our own OpenVINO
session (not the exporter's runner) and compared with PyTorch; the shapes model's and the COCO
yolov3-tiny's detections matched on photos; a failed check, a missing package and a precision the CPU
cannot compute in leave no file."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.export import ExportError
from darknet_py.imageio import load_image
from tests.export.test_every_cfg import LAYERS_CFG, spread_weights
from tests.helpers.export import RTOL, RTOL_FP16, photo_input
from tests.helpers.numeric import rel_err
from tests.helpers.paths import ROOT, ref_path

ov = pytest.importorskip("openvino", reason="the OpenVINO backend is an optional extra (darknet-py-yolov3[openvino])")

from darknet_py.export.openvino import cpu_precisions, export_openvino  # noqa: E402

# four of the seven sample photos (tools/bench_export.py uses all seven)
SAMPLES = ("dog", "giraffe", "horses", "person")


def run_ir(xml, x, precision="f32"):
    """The IR as a user deploys it: read, compiled for the CPU with the precision hint, run."""
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    result = compiled.create_infer_request().infer({"images": x.numpy()})
    return [np.array(result[o]) for o in compiled.outputs]


def only_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_small_tiny_ir_matches_pytorch(small_tiny, photo_rgb, tmp_path):
    report = export_openvino(small_tiny, tmp_path / "m.xml", sample=photo_rgb)
    assert only_files(tmp_path) == ["m.bin", "m.xml"]
    assert report.precision == "f32" and report.format == "openvino" and report.dtype == "float32"
    x, _ = photo_input(small_tiny, photo_rgb)
    with torch.no_grad():
        ref = small_tiny(x)
    got = run_ir(tmp_path / "m.xml", x)
    assert [g.shape for g in got] == [tuple(r.shape) for r in ref]
    for g, r in zip(got, ref):
        assert rel_err(g, r) <= RTOL
    assert report.max_rel_diff <= RTOL and report.missing == report.extra == 0
    assert any("INFERENCE_PRECISION_HINT=f32" in line for line in report.lines())


def test_every_layer_kind(photo_rgb, tmp_path):
    """Grouped convs, Darknet's odd maxpool paddings, 1/2/4-input routes, a shortcut with an
    activation, upsample with a scale, mish and swish (test_every_cfg's generated cfg)."""
    model = spread_weights(darknet_py.load(LAYERS_CFG.encode()), seed=6, std=1.5)
    export_openvino(model, tmp_path / "layers.xml", sample=photo_rgb)
    x, _ = photo_input(model, photo_rgb)
    with torch.no_grad():
        ref = model(x)
    for g, r in zip(run_ir(tmp_path / "layers.xml", x), ref):
        assert rel_err(g, r) <= RTOL


def test_shapes_model_with_float16_weights(tmp_path):
    """float16 weights (float32 arithmetic) keep every detection of the shipped shapes model, in a
    file about half the size (float32: tests/export/test_backends.py, through the table)."""
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights")
    rgb = load_image(ROOT / "data" / "shapes.jpg")[0]
    full = export_openvino(model, tmp_path / "shapes.xml", sample=rgb)
    half = export_openvino(model, tmp_path / "half.xml", sample=rgb, half=True)
    assert full.matched > 0 and half.matched == full.matched and half.missing == half.extra == 0
    assert half.max_rel_diff <= RTOL_FP16
    assert (tmp_path / "half.bin").stat().st_size < 0.6 * (tmp_path / "shapes.bin").stat().st_size


def test_coco_tiny_on_the_sample_photos(tmp_path):
    """Every PyTorch detection of the real yolov3-tiny matched at f32 (float16 weights: on the shapes
    model above; all seven photos: tools/bench_export.py)."""
    weights = ref_path("pretrained", "yolov3-tiny.weights")
    photos = [ref_path("pjreddie", "data", f"{n}.jpg") for n in SAMPLES]
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny.cfg", weights)
    full = export_openvino(model, tmp_path / "t.xml", photos=photos)
    assert full.matched >= 12 and full.missing == full.extra == 0 and full.max_rel_diff <= RTOL


def test_bf16_is_checked_at_bf16(small_tiny, photo_rgb, tmp_path):
    if "bf16" not in cpu_precisions():
        pytest.skip("this CPU has no bf16 arithmetic under OpenVINO")
    report = export_openvino(small_tiny, tmp_path / "b.xml", sample=photo_rgb, precision="bf16")
    x, _ = photo_input(small_tiny, photo_rgb)
    with torch.no_grad():
        ref = small_tiny(x)
    worst = max(rel_err(g, r) for g, r in zip(run_ir(tmp_path / "b.xml", x, "bf16"), ref))
    assert 1e-4 < worst <= report.tolerance  # really bf16 (not float32), and within its tolerance
    assert report.precision == "bf16"


def test_precision_the_cpu_lacks_is_refused(small_tiny, tmp_path):
    missing = [p for p in ("bf16", "f16") if p not in cpu_precisions()]
    if not missing:
        pytest.skip("this CPU computes in every precision")
    with pytest.raises(ExportError, match=f"no {missing[-1]} arithmetic"):
        export_openvino(small_tiny, tmp_path / "m.xml", precision=missing[-1])
    assert only_files(tmp_path) == []


def test_failed_check_leaves_nothing_and_keeps_old_files(small_tiny, tmp_path, monkeypatch):
    import darknet_py.export.openvino as mod

    (tmp_path / "m.xml").write_text("old xml")
    (tmp_path / "m.bin").write_bytes(b"old bin")
    real = mod.runner_of

    def off(compiled):
        run = real(compiled)
        return lambda x: [o * 1.01 for o in run(x)]

    monkeypatch.setattr(mod, "runner_of", off)
    with pytest.raises(ExportError, match="above the tolerance.*nothing was written"):
        export_openvino(small_tiny, tmp_path / "m.xml")
    assert only_files(tmp_path) == ["m.bin", "m.xml"]
    assert (tmp_path / "m.xml").read_text() == "old xml" and (tmp_path / "m.bin").read_bytes() == b"old bin"


def test_missing_openvino_names_the_extra(small_tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ExportError, match=r"pip install darknet-py-yolov3\[openvino\]"):
        export_openvino(small_tiny, tmp_path / "m.xml")
    assert only_files(tmp_path) == []


def test_bad_arguments(small_tiny, tmp_path):
    for kw, pattern in [({"precision": "int8"}, "precision='int8'"), ({}, "NAME.xml")]:
        with pytest.raises(ExportError, match=pattern):
            export_openvino(small_tiny, tmp_path / ("m.xml" if kw else "m.onnx"), **kw)
    with pytest.raises(ExportError, match="cannot write"):
        export_openvino(small_tiny, tmp_path / "no" / "m.xml")
    assert only_files(tmp_path) == []
