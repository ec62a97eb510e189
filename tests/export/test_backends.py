"""Every format of the backends table, through the table: written, opened again in its runtime,
and judged by darknet_py's own post-process on photos (darknet_py.export.verify)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from darknet_py.export.backends import BACKENDS, ExportOptions, companions
from darknet_py.export.verify import verify_runner
from darknet_py.imageio import load_image
from darknet_py.synth import render_image
from tests.helpers.paths import ROOT

# the module each format's runtime needs (tensorrt needs a GPU as well: tests/export/test_tensorrt.py)
RUNTIME = {"onnx": "onnxruntime", "torchscript": "torch", "pt": "torch", "openvino": "openvino", "ncnn": "ncnn",
           "tflite": "ai_edge_litert"}


def installed(fmt: str) -> bool:
    return importlib.util.find_spec(RUNTIME[fmt]) is not None


@pytest.mark.parametrize("fmt", sorted(RUNTIME))
def test_every_format_through_the_table(fmt, tmp_path):
    """The shipped shapes model (trained weights, small): every detection PyTorch makes on its
    photo and on a generated one, in every runtime that installs here, at float32, through the
    table's write_file and open_file (the official yolov3-tiny on the seven sample photos is in
    each format's own tests)."""
    if not installed(fmt):
        pytest.skip(f"the {fmt} runtime ({RUNTIME[fmt]}) is not installed")
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights",
                            channels_last=False)
    rng = np.random.default_rng(5)
    photos = [("shapes.jpg", load_image(ROOT / "data" / "shapes.jpg")[0]),
              ("generated", render_image(rng, 320, 256, 5)[0])]
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
