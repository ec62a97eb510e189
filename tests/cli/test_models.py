"""darknet_py.cli.models: what `validate-cfg` (run as `python -m darknet_py`) and `export` print."""
from __future__ import annotations

import subprocess
import sys

import pytest

from darknet_py.cli import main
from tests.helpers.paths import ROOT


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "darknet_py", "validate-cfg", str(ROOT / "cfg" / "yolov3.cfg")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "107 layers, 3 [yolo] heads, 62001757 weight floats (248007048 bytes" in res.stdout


@pytest.mark.parametrize("fmt, extra, outputs", [
    # --dynamic: batch, height and width symbolic; the decoded rows follow the size
    ("onnx", ["--dynamic", "--decode"], ["input  images: batch x 3 x height x width",
                                         "output detections: batch x rows x 85", "checked at 96x96 and 128x160"]),
    # 96x96 input: 3x3 and 6x6 grids
    ("torchscript", [], ["output yolo_16: batch x 255 x 3 x 3", "output yolo_23: batch x 255 x 6 x 6"]),
])
def test_export_prints_what_it_wrote(tiny, tmp_path, capsys, fmt, extra, outputs):
    cfg, weights, photo = tiny
    out = tmp_path / f"m.{fmt}"
    assert main(["export", str(cfg), str(weights), "--format", fmt, "--size", "96", "--image", str(photo),
                 "-o", str(out), *extra]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and out.exists()
    for line in outputs:
        assert line in text
    assert "largest difference from PyTorch" in text
