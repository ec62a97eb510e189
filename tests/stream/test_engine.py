"""darknet_py.stream.engine: runs over a folder with a failing photo, batches, any runner with
detect_batch (and the --half / --fast runners), input order, torchrun's merge of the ranks' results;
and the streaming benchmark tool. Every output is checked against the independent per-photo path,
darknet_py.detect."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from darknet_py.cli import main
from darknet_py.detector import detect_batch
from darknet_py.device import Distributed
from darknet_py.stream import engine
from darknet_py.stream.engine import StreamOptions, run
from darknet_py.stream.inputs import expand_inputs
from darknet_py.stream.runner import CustomRunner, ModelRunner
from darknet_py.stream.sinks import Outputs
from tests.helpers.numeric import corner_iou
from tests.helpers.paths import ROOT
from tests.helpers.processes import child_env
from tests.helpers.stream import BASE, OPTS, THRESH, all_records, expected_record, records

ENV = child_env(OMP_NUM_THREADS="1")
# The decoding worker and the network share the 2 CI cores: the network gets one thread.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------ runs and batches

def test_folder_with_corrupt_photo_equals_per_photo_detect(model, names, photos, tmp_path, capsys, monkeypatch):
    folder, good, corrupt = photos
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "dets.jsonl"
    code = main(["detect", *BASE, str(folder), *OPTS, "--json-out", str(out), "--workers", "1", "--batch", "1"])
    cap = capsys.readouterr()
    assert code == 1  # one photo failed
    err = cap.err.strip().splitlines()
    assert len(err) == 2, err  # the corrupt photo, named once, and the summary
    assert str(corrupt) in err[0] and "truncated JPEG" in err[0]
    assert err[1].startswith("darknet-py: 7 ok, 1 failed (")
    want = [expected_record(model, names, p, p) for p in good]
    assert sum(len(r["detections"]) for r in want) > 10
    assert records(out.read_text()) == want  # bit-exact scores, in input order
    # and the corrupt photo has its line, in its place, with the error stderr gave
    every = all_records(out.read_text())
    assert [r["image"] for r in every] == sorted(good + [str(corrupt)])
    failed = [r for r in every if "error" in r]
    assert len(failed) == 1 and failed[0]["image"] == str(corrupt) and "truncated JPEG" in failed[0]["error"]
    # Darknet's lines on stdout, in the same order; the corrupt photo is not among them
    heads = [line.split(": Predicted in")[0] for line in cap.out.splitlines() if ": Predicted in" in line]
    assert heads == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dets.jsonl"]  # a folder is not Darknet's -out form


def test_batches_equal_detect_batch_of_the_same_photos(model, names, photos, tmp_path, capsys):
    """--batch 3 runs photos 3 at a time, skipping the corrupt one: the same as detect_batch over
    those chunks, and per-photo detect up to float rounding (batched convolutions round differently)."""
    folder, good, _ = photos
    out = tmp_path / "b3.jsonl"
    assert main(["detect", *BASE, str(folder), *OPTS, "--json-out", str(out), "--workers", "2", "--batch", "3"]) == 1
    got = records(out.read_text())
    chunks = [good[i:i + 3] for i in range(0, len(good), 3)]
    want = [d for chunk in chunks for d in detect_batch(model, chunk, THRESH)]
    assert [r["image"] for r in got] == good
    for rec, d in zip(got, want):
        assert [x["class_id"] for x in rec["detections"]] == d.classes.tolist()
        assert [x["score"] for x in rec["detections"]] == d.scores.tolist()
        boxes = np.array([x["box"] for x in rec["detections"]], dtype=np.float64).reshape(-1, 4)
        assert np.allclose(boxes, d.boxes.numpy(), atol=0.006)
    single = [expected_record(model, names, p, p) for p in good]
    for rec, s in zip(got, single):
        assert [x["class_id"] for x in rec["detections"]] == [x["class_id"] for x in s["detections"]]
        assert np.allclose([x["score"] for x in rec["detections"]], [x["score"] for x in s["detections"]],
                           atol=1e-5)
    assert "1 failed" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ runners

class _NumpyRunner(CustomRunner):
    """A runner with only FastDetector's interface (numpy photos in, Detections out)."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def detect_batch(self, images, thresh, nms):
        self.calls.append([type(im).__name__ for im in images])
        return detect_batch(self.model, images, thresh, nms)


def test_any_runner_with_detect_batch_and_fast_flags(model, names, photos, tmp_path, capsys, monkeypatch):
    folder, good, _ = photos
    items = expand_inputs([str(folder)])
    runner = _NumpyRunner(model)
    buf, err = io.StringIO(), io.StringIO()
    summary = run(runner, items, StreamOptions(thresh=THRESH, batch=4, workers=1), Outputs(json_stdout=True), names,
                  6, out=buf, err=err, progress=False)
    assert (summary.ok, summary.failed) == (7, 1)
    assert runner.calls == [["ndarray"] * 4, ["ndarray"] * 3]
    chunks = [good[:4], good[4:]]
    want = [d for c in chunks for d in detect_batch(model, c, THRESH)]
    got = records(buf.getvalue())
    assert [[x["score"] for x in r["detections"]] for r in got] == [d.scores.tolist() for d in want]

    # --half & co. run darknet_py.fast.FastDetector: fp16 on the trained model keeps every clear
    # detection (score beyond THRESH + .05) with the same class and a box of IoU >= .99
    monkeypatch.chdir(tmp_path)  # image files given alone are also drawn, as predictions-<stem>.jpg
    capsys.readouterr()
    assert main(["detect", *BASE, *good, *OPTS, "--json"]) == 0
    exact = records(capsys.readouterr().out)
    assert main(["detect", *BASE, *good, *OPTS, "--half", "--json"]) == 0
    half = records(capsys.readouterr().out)
    assert [r["image"] for r in half] == [r["image"] for r in exact]
    clear = 0
    for a, b in zip(exact, half):
        for d in a["detections"]:
            if d["score"] > THRESH + 0.05:
                clear += 1
                assert any(e["class_id"] == d["class_id"] and corner_iou(e["box"], d["box"]) >= 0.99
                           for e in b["detections"]), (a["image"], d)
    assert clear >= 5

    # --fast: FastDetector in float32 (BN folded, fused oneDNN convs): the same detections up to
    # float32 summation order
    assert main(["detect", *BASE, *good, *OPTS, "--fast", "--json"]) == 0
    fast = records(capsys.readouterr().out)
    assert [r["image"] for r in fast] == [r["image"] for r in exact]
    for a, b in zip(exact, fast):
        assert [d["class_id"] for d in a["detections"]] == [d["class_id"] for d in b["detections"]]
        for d, e in zip(a["detections"], b["detections"]):
            assert abs(d["score"] - e["score"]) < 1e-4 and max(abs(p - q) for p, q in zip(d["box"], e["box"])) <= 0.05

    # without the module (a trimmed install): one clear line
    monkeypatch.setitem(sys.modules, "darknet_py.fast", None)
    assert main(["detect", *BASE, good[0], *OPTS, "--half", "--json"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--half" in err[0] and "darknet_py.fast" in err[0]


# ------------------------------------------------------------------------------------ torchrun

class _FakeDist(Distributed):
    """Two ranks run one after the other in this process: rank 1 records what it sends each round;
    rank 0 gets those records back at the same rounds."""

    def __init__(self, rank, sent=None):
        self.world, self.rank, self.local_rank = 2, rank, 0
        self.sent = sent if sent is not None else []
        self.round = 0

    def gather(self, obj):
        if self.rank == 1:
            self.sent.append(list(obj))
            return None
        self.round += 1
        return [obj, self.sent[self.round - 1]]

    def all_gather(self, obj):
        if self.rank == 1:
            self.sent.append(obj)
            return [obj, obj]
        return [obj, self.sent[-1]]


def test_rounds_merge_in_input_order(model, names, photos, monkeypatch):
    """The torchrun merge with several rounds (2 items per process per round) and failures spread
    over both ranks: rank 0's output equals one process's."""
    folder, good, _ = photos
    monkeypatch.setattr(engine, "ROUND_ITEMS", 2)
    items = expand_inputs([str(folder), str(folder / "missing.jpg"), good[0]])
    opts = dict(thresh=THRESH, batch=2, workers=0)

    def run_as(dist):
        out, err = io.StringIO(), io.StringIO()
        s = run(ModelRunner(model), items, StreamOptions(**opts), Outputs(), names, 6, out=out, err=err,
                progress=False, dist=dist)
        return s, out.getvalue(), err.getvalue()

    rank1 = _FakeDist(1)
    run_as(rank1)
    assert len(rank1.sent) == 4  # 10 items, 4 per round: 3 rounds, then the counts
    merged = run_as(_FakeDist(0, rank1.sent))
    single = run_as(None)
    assert (merged[0].ok, merged[0].failed) == (single[0].ok, single[0].failed) == (8, 2)

    def strip(text):  # the timing differs
        return [line for line in text.splitlines() if "Predicted in" not in line]

    heads = [line.split(": Predicted")[0] for line in merged[1].splitlines() if "Predicted in" in line]
    assert heads == good + [good[0]]
    assert strip(merged[1]) == strip(single[1]) and merged[2] == single[2]


def test_torchrun_two_processes_merge_equals_one(photos, tmp_path):
    folder, good, corrupt = photos
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    # one network thread here (the one_torch_thread fixture) as in each torchrun process (OMP_NUM_THREADS=1):
    # oneDNN's sums, so the last bits of the scores, depend on the thread count
    assert torch.get_num_threads() == 1
    assert main(["detect", *BASE, str(folder), *OPTS, "--json-out", str(one), "--workers", "0"]) == 1
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "darknet_py", "detect", *BASE, str(folder), *OPTS, "--json-out", str(two), "--workers", "0",
           "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=240)
    assert res.returncode != 0  # the corrupt photo fails the run, as in one process
    assert res.stderr.count(f"darknet-py: {corrupt}:") == 1, res.stderr[-3000:]
    assert "darknet-py: 7 ok, 1 failed" in res.stderr
    assert res.stdout.count(": Predicted in") == 7  # rank 0 alone writes the merged lines
    assert records(two.read_text()) == records(one.read_text())
    assert len(records(two.read_text())) == 7 and torch.distributed.is_available()


# ------------------------------------------------------------------------------------ the benchmark tool

def test_bench_stream_quick_runs(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench_stream.py"), "--quick", "--cpu", "--threads",
                           "1", "--json", str(out)], capture_output=True, text=True, timeout=240, env=ENV)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [r["what"].split(":")[0] for r in rows[:2]] == ["baseline", "host pipeline only"]
    assert len(rows) >= 4 and all(r["error"] is None and r["img_s"] > 0 for r in rows), rows
    assert rows[0]["dets"] > 0  # the equality check below compared real detections
    assert len(data["checks"]) >= 2 and all(c["ok"] for c in data["checks"]), data["checks"]
    assert "img/s" in proc.stdout
