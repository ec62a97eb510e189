"""`darknet-py detector valid / map` (darknet_py.cli.evaluate): map's --plot and --report files, and errors
as one line (a .data file without a valid list, images given to map, a bad label row)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from darknet_py.cli import main
from tests.helpers.validate import make_eval_set, with_data_keys


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_eval_set(tmp_path_factory.mktemp("shapes"))


def test_map_cli_plot_and_report(shapes, tmp_path, capsys):
    ds, cfg, weights = shapes
    pytest.importorskip("matplotlib")
    plot, report = tmp_path / "pr.png", tmp_path / "map.json"
    assert main(["detector", "map", str(ds.data), str(cfg), str(weights), "-iou_thresh", "0.5", "--plot", str(plot),
                 "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "16 images" in out and "mAP" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "coco" in json.loads(report.read_text())


def test_valid_and_map_errors_are_one_line(shapes, tmp_path, capsys):
    ds, cfg, weights = shapes
    bad = with_data_keys(ds, tmp_path, valid=None)
    assert main(["detector", "valid", str(bad), str(cfg), str(weights)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no 'valid' key" in err[0] and bad.name in err[0]
    assert main(["detector", "map", str(ds.data), str(cfg), str(weights), "extra.jpg"]) == 1
    assert "reads its images from the .data file's valid list" in capsys.readouterr().err
    # a bad label row stops map before the detector runs, naming file and line
    label = ds.root / "labels" / "valid" / Path(ds.valid_list.read_text().split()[0]).with_suffix(".txt").name
    saved = label.read_text()
    try:
        label.write_text(saved + "9 0.5 0.5 0.1 0.1\n")
        no_json = with_data_keys(ds, tmp_path, annotations=None)
        assert main(["detector", "map", str(no_json), str(cfg), str(weights)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        n = len(saved.splitlines()) + 1
        assert len(err) == 1 and f"{label.name}:{n}: class id 9 outside 0..5" in err[0]
        assert main(["detector", "map", str(no_json), str(cfg), str(weights), "--on-bad-label", "skip"]) == 0
        assert "skipped 1 bad rows" in capsys.readouterr().err
    finally:
        label.write_text(saved)

