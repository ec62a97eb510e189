"""Every format of the backends table, through the table: written, opened again in its runtime,
and judged by darknet_py's own post-process on photos (darknet_py.export.verify)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import darknet_py
from darknet_py.export.backends import BACKENDS, ExportOptions, companions
from darknet_py.export.verify import verify_runner
from darknet_py.imageio import load_image
from tests.helpers.paths import ROOT, ref_path

# the module each format's runtime needs (tensorrt needs a GPU as well: tests/export/test_tensorrt.py)
RUNTIME = {"onnx": "onnxruntime", "torchscript": "torch", "pt": "torch", "openvino": "openvino", "ncnn": "ncnn",
           "tflite": "ai_edge_litert"}


def installed(fmt: str) -> bool:
    return importlib.util.find_spec(RUNTIME[fmt]) is not None


@pytest.mark.parametrize("fmt", sorted(RUNTIME))
def test_real_weights_through_the_table(fmt, tmp_path):
    """The official yolov3-tiny: every detection PyTorch makes on two sample photos, in every
    runtime that installs here, at float32."""
    if not installed(fmt):
        pytest.skip(f"the {fmt} runtime ({RUNTIME[fmt]}) is not installed")
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny.cfg", ref_path("pretrained", "yolov3-tiny.weights"),
                            channels_last=False)
    photos = [(n, load_image(ref_path("pjreddie", "data", n))[0]) for n in ("dog.jpg", "person.jpg")]
    be = BACKENDS[fmt]
    opts = ExportOptions(sample=photos[0][1])
    path = tmp_path / f"m{be.suffix}"
    be.write_file(model, path, opts)
    assert path.exists() and all(Path(f).exists() for f in companions(fmt, str(path)))
    loaded = be.open_file(path, model, opts)
    v = verify_runner(model, loaded.runner, photos)
    t = v.total
    assert t.reference_count >= 5 and t.matched == t.reference_count and t.extra == 0, (fmt, t)
    assert v.max_rel_diff < 1e-3


def test_the_table_names_what_each_format_takes():
    """Each format's options are refused by name unless it offers them (the CLI relies on it)."""
    for be in BACKENDS.values():
        for option, value in (("dynamic", True), ("nms", True), ("calibration", "x.data")):
            opts = ExportOptions(precision=be.precisions[0], **{option: value})
            if option in be.offers:
                continue
            with pytest.raises(darknet_py.errors.UsageError, match=option):
                be.check(opts)
