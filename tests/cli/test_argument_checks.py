"""Every command's numeric options are checked before any work, and the error names the flag.

One table row per (command, flag): adding an option without a check shows up as a missing row, and
a row whose check is lost fails. Where the check must come before loading, the cfg or weights
given do not exist: the flag's error proves the check ran first.
"""
from __future__ import annotations

import pytest

from darknet_py.cli.main import main
from tests.helpers.paths import ROOT

CFG = str(ROOT / "cfg" / "yolov3-tiny-shapes.cfg")
WEIGHTS = str(ROOT / "weights" / "yolov3-tiny-shapes.weights")
PHOTO = str(ROOT / "data" / "shapes.jpg")
NO = "missing.weights"  # never read: the check comes first
DETECT = ["detect", "missing.cfg", NO, PHOTO]
TEST = ["detector", "test", "missing.data", "missing.cfg", NO, PHOTO]
MAP = ["detector", "map", "missing.data", "missing.cfg", NO]
VALID = ["detector", "valid", "missing.data", "missing.cfg", NO]
RECALL = ["detector", "recall", "missing.data", "missing.cfg", NO]
TRAIN = ["detector", "train", "missing.data", "missing.cfg", "--device", "cpu"]
ANCHORS = ["detector", "calc_anchors", "missing.data"]

# (argv, what the one error line must contain)
CASES = [
    # thresholds: [0, 1], not NaN; --iou_thresh [0, 1)
    (DETECT + ["--thresh", "-1"], "--thresh -1: expected a number in [0, 1]"),
    (DETECT + ["--thresh", "1.5"], "--thresh 1.5: expected a number in [0, 1]"),
    (DETECT + ["--thresh", "nan"], "--thresh nan: expected a number in [0, 1]"),
    (DETECT + ["--nms", "-0.1"], "--nms -0.1: expected a number in [0, 1]"),
    (DETECT + ["--nms", "inf"], "--nms inf: expected a number in [0, 1]"),
    (DETECT + ["--hier", "2"], "--hier 2: expected a number in [0, 1]"),
    (TEST + ["--thresh", "-1"], "--thresh -1: expected"),
    (TEST + ["--nms", "nan"], "--nms nan: expected"),
    (TEST + ["--hier", "-1"], "--hier -1: expected"),
    (MAP + ["--iou_thresh", "-1"], "--iou_thresh -1: expected a number in [0, 1)"),
    (MAP + ["--iou_thresh", "1"], "--iou_thresh 1: expected a number in [0, 1)"),
    (MAP + ["--iou_thresh", "nan"], "--iou_thresh nan: expected"),
    (MAP + ["--thresh", "-1"], "--thresh -1: expected a number in [0, 1]"),
    (MAP + ["--nms", "2"], "--nms 2: expected"),
    (MAP + ["--conf-thresh", "1.1"], "--conf-thresh 1.1: expected a number in [0, 1]"),
    (VALID + ["--thresh", "nan"], "--thresh nan: expected"),
    (VALID + ["--nms", "-1"], "--nms -1: expected"),
    (RECALL + ["--thresh", "2"], "--thresh 2: expected"),
    (RECALL + ["--nms", "-1"], "--nms -1: expected"),
    (RECALL + ["--iou_thresh", "1"], "--iou_thresh 1: expected a number in [0, 1)"),
    # counts
    (DETECT + ["--batch", "0"], "--batch 0: expected an integer >= 1"),
    (DETECT + ["--workers", "-1"], "--workers -1: expected an integer >= 0"),
    (DETECT + ["--max-frames", "0"], "--max-frames 0: expected an integer >= 1"),
    (TEST + ["--batch", "0"], "--batch 0: expected an integer >= 1"),
    (TEST + ["--workers", "-2"], "--workers -2: expected an integer >= 0"),
    (TEST + ["--max-frames", "-1"], "--max-frames -1: expected an integer >= 1"),
    (MAP + ["--batch", "0"], "--batch 0: expected an integer >= 1"),
    (MAP + ["--workers", "-1"], "--workers -1: expected an integer >= 0"),
    (VALID + ["--batch", "-3"], "--batch -3: expected an integer >= 1"),
    (RECALL + ["--batch", "0"], "--batch 0: expected an integer >= 1"),
    (TRAIN + ["--max-batches", "0"], "--max-batches 0: expected an integer >= 1"),
    (TRAIN + ["--save-every", "0"], "--save-every 0: expected an integer >= 1"),
    (TRAIN + ["--seed", "-1"], "--seed -1: expected an integer >= 0"),
    (TRAIN + ["--workers", "-1"], "--workers -1: expected an integer >= 0"),
    (TRAIN + ["--time-limit", "0"], "--time-limit 0: expected a finite number > 0"),
    (ANCHORS + ["--num_of_clusters", "0"], "--num_of_clusters 0: expected an integer >= 1"),
    (ANCHORS + ["--width", "0"], "--width 0: expected an integer >= 1"),
    (ANCHORS + ["--height", "-416"], "--height -416: expected an integer >= 1"),
    (["classifier", "predict", "missing.data", "missing.cfg", NO, "--top", "0"], "--top 0: expected an integer >= 1"),
    (["synth", "out", "--train", "-1"], "--train -1: expected an integer >= 0"),
    (["synth", "out", "--valid", "-1"], "--valid -1: expected an integer >= 0"),
    (["synth", "out", "--seed", "-1"], "--seed -1: expected an integer >= 0"),
    (["synth", "out", "--min-side", "8"], "--min-side 8: expected an integer >= 32"),
    (["synth", "out", "--max-side", "8"], "--max-side 8: expected an integer >= 32"),
    (["synth", "out", "--min-side", "600", "--max-side", "500"], "--min-side 600: expected at most max_side=500"),
    (["synth", "out", "--max-objects", "0"], "--max-objects 0: expected an integer >= 1"),
    (["export", "missing.cfg", NO, "--batch", "0"], "--batch 0: expected an integer >= 1"),
    (["export", "missing.cfg", NO, "--opset", "0"], "--opset 0: expected an integer >= 15"),
    (["partial", "missing.cfg", NO, "out.weights", "0"], "N=0: expected an integer >= 1"),
    (["partial", CFG, NO, "out.weights", "25"], "N=25: expected an integer in 1..24"),
    (["inspect-weights", "missing.cfg", NO, "--partial", "0"], "--partial 0: expected an integer >= 1"),
    (["inspect-weights", CFG, NO, "--partial", "99"], "--partial 99: expected an integer in 1..24"),
    # sizes: positive multiples of the network's stride (32 here, measured from the cfg)
    (["validate-cfg", CFG, "--size", "31"], "--size 31: expected a multiple of 32, the network's stride"),
    (["validate-cfg", CFG, "--size", "0"], "--size 0: expected an integer >= 1"),
    (["validate-cfg", CFG, "--size", "416", "400"], "--size 400: expected a multiple of 32"),
    (["summary", CFG, "--size", "-32"], "--size -32: expected an integer >= 1"),
    (["summary", CFG, "--size", "100"], "--size 100: expected a multiple of 32, the network's stride (e.g. 96 or 128)"),
    (["export", CFG, NO, "--size", "31"], "--size 31: expected a multiple of 32"),
    (["detector", "test", "missing.data", CFG, NO, PHOTO, "--size", "31"], "--size 31: expected a multiple of 32"),
    (["detector", "map", "missing.data", CFG, NO, "--size", "0"], "--size 0: expected an integer >= 1"),
]


def _id(case) -> str:
    argv, _ = case
    flag = next((a for a in argv if a.startswith("--") and a not in ("--device",)), argv[-2])
    action = argv[1] if argv[0] in ("detector", "classifier") else ""
    return " ".join(filter(None, (argv[0], action, flag, argv[-1])))


@pytest.mark.parametrize("argv, expected", CASES, ids=[_id(c) for c in CASES])
def test_bad_number_is_one_line_naming_the_flag(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if argv[:2] == ["detector", "test"]:
        (tmp_path / "missing.data").write_text("classes = 3\n")
    assert main(argv) == 1
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("darknet-py: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in out.err
    # nothing was written: the synth folder, partial's output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.weights").exists()


@pytest.mark.parametrize("thresh", ["0", "1"])
def test_edge_thresholds_still_run(thresh, capsys):
    assert main(["detect", CFG, WEIGHTS, PHOTO, "--thresh", thresh, "--nms", thresh, "--hier", thresh,
                 "--json"]) == 0
    out = capsys.readouterr().out
    assert out.strip()
    if thresh == "1":
        assert '"detections": []' in out.replace(" ", "").replace('"detections":[]', '"detections": []')


def test_edge_sizes_and_counts_still_run(capsys, tmp_path):
    assert main(["validate-cfg", CFG, "--size", "64"]) == 0
    assert main(["summary", CFG, "--size", "608", "320"]) == 0
    assert main(["partial", CFG, WEIGHTS, str(tmp_path / "all.weights"), "24"]) == 0
    assert main(["inspect-weights", CFG, WEIGHTS, "--partial", "1"]) == 0
    assert main(["detect", CFG, WEIGHTS, PHOTO, "--batch", "1", "--workers", "0", "--json"]) == 0
    capsys.readouterr()
