"""TorchScript export (darknet_py.export.torchscript), loaded back with our own torch.jit.load: decoded
rows and final detections against PyTorch, raw heads, a batch whose rows are the single runs, and a
file that runs without darknet_py."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import torch

from darknet_py.export import export_torchscript
from tests.helpers.export import (NMS, RTOL, THRESH, assert_same_detections, detections_from_rows, expected_decoded,
                                  photo_input, photo_variants, rel_diff_rows)
from tests.helpers.numeric import rel_err
from tests.helpers.reference import postprocess_per_image


def test_torchscript_decoded_matches_pytorch(tiny, photo_rgb, tmp_path):
    model, _, _ = tiny
    path = tmp_path / "tiny.pt"
    report = export_torchscript(model, path, decode=True, sample=photo_rgb)
    assert report.format == "torchscript" and report.opset is None and report.max_rel_diff <= RTOL
    assert report.inputs == [("images", ["batch", 3, 416, 416])]
    photos = photo_variants(photo_rgb)[:3]
    xs = [photo_input(model, p)[0] for p in photos]
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        batch = loaded(torch.cat(xs))
        singles = [loaded(x) for x in xs]
        raw = model(torch.cat(xs))
    assert isinstance(batch, torch.Tensor)
    assert report.outputs == [("detections", ["batch", *batch.shape[1:]])]
    assert rel_diff_rows(batch, expected_decoded(raw, model)) <= RTOL
    for i in range(3):
        assert rel_diff_rows(batch[i:i + 1], singles[i]) <= 1e-5
    infos = [photo_input(model, p)[1] for p in photos]
    refs = postprocess_per_image(model, raw, infos, THRESH, NMS)
    for i in range(3):
        assert_same_detections(detections_from_rows(batch[i], infos[i], 416, 416), refs[i])


def test_torchscript_raw_heads(small_tiny, photo_rgb, tmp_path):
    model = small_tiny
    path = tmp_path / "raw.pt"
    report = export_torchscript(model, path, batch=2, sample=photo_rgb)
    assert report.checked_batches == [2, 3]
    xs = [photo_input(model, p)[0] for p in photo_variants(photo_rgb)[:3]]
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        batch = loaded(torch.cat(xs))
        singles = [loaded(x) for x in xs]
        raw = model(torch.cat(xs))
    assert isinstance(batch, tuple) and len(batch) == len(raw) == len(report.outputs)
    for k, (got, ref) in enumerate(zip(batch, raw)):
        assert report.outputs[k] == (f"yolo_{model.heads[k]}", ["batch", *ref.shape[1:]])
        assert rel_err(got, ref) <= RTOL
        for i in range(3):
            assert rel_err(got[i:i + 1], singles[i][k]) <= 1e-5


def test_torchscript_loads_without_darknet_py(small_tiny, tmp_path, photo_rgb):
    """The file is self-contained: a fresh, isolated interpreter (-I, cwd outside the repo, the
    editable install's finder removed and darknet_py blocked) loads and runs it with torch alone."""
    model = small_tiny
    x, _ = photo_input(model, photo_rgb)
    export_torchscript(model, tmp_path / "model.pt", decode=True)
    np.save(tmp_path / "x.npy", x.numpy())
    code = textwrap.dedent("""
        import sys
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.modules["darknet_py"] = None  # any import of it now fails
        import numpy as np, torch
        m = torch.jit.load("model.pt")
        with torch.no_grad():
            y = m(torch.from_numpy(np.load("x.npy")))
        np.save("y.npy", y.numpy())
        try:
            import darknet_py
        except ImportError:
            print("darknet_py not importable")
        print("loaded:", sorted(k for k in sys.modules if k.startswith("darknet_py.")))
    """)
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "darknet_py not importable" in proc.stdout and "loaded: []" in proc.stdout
    y = np.load(tmp_path / "y.npy")
    with torch.no_grad():
        assert rel_diff_rows(y, expected_decoded(model(x), model)) <= RTOL
