"""Streaming detect (darknet_py.stream, `darknet-py detect` over folders, globs, lists, videos,
torchrun): every output is checked against the independent per-photo path, darknet_py.detect."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import darknet_py
from darknet_py import stream
from darknet_py.cli import main
from darknet_py.detector import detect, detect_batch
from darknet_py.imageio import load_image
from darknet_py.config.names import read_names
from darknet_py.synth import make_dataset, render_image
from tests.helpers.numeric import corner_iou
from tests.helpers.paths import ROOT

CFG = ROOT / "cfg" / "yolov3-tiny-shapes.cfg"
WEIGHTS = ROOT / "weights" / "yolov3-tiny-shapes.weights"
NAMES = ROOT / "cfg" / "shapes.names"
THRESH = 0.25
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
BASE = [str(CFG), str(WEIGHTS)]
OPTS = ["--names", str(NAMES), "--thresh", str(THRESH), "--no-progress"]
# The decoding worker and the network share the 2 CI cores: the network gets one thread.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return darknet_py.load(CFG, WEIGHTS)


@pytest.fixture(scope="module")
def names():
    return read_names(NAMES, 6)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of 7 generated photos (JPEG, different sizes) with a truncated JPEG in the middle."""
    d = tmp_path_factory.mktemp("photos")
    ds = make_dataset(d / "ds", train=0, valid=7, seed=5, min_side=96, max_side=224)
    folder = d / "in"
    folder.mkdir()
    for i, src in enumerate(sorted((ds.root / "images" / "valid").glob("*.jpg"))):
        shutil.copy(src, folder / f"p{i:02d}.jpg")
    good = sorted(folder.glob("*.jpg"))
    corrupt = folder / "p03b.jpg"  # sorts between p03 and p04
    data = good[0].read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    (folder / "notes.md").write_text("not a photo: skipped in folders")
    (folder / "._p00.jpg").write_bytes(b"\0\5\26\7 AppleDouble")  # hidden: skipped in folders
    return folder, [str(p) for p in good], corrupt


def _expected(model, names, path_or_rgb, name, **extra):
    """The record the stream must write, from the per-photo path: darknet_py.detect."""
    dets = detect(model, path_or_rgb, thresh=THRESH)
    h, w = (load_image(path_or_rgb)[0] if isinstance(path_or_rgb, str) else path_or_rgb).shape[:2]
    return {"image": name, **extra, "width": w, "height": h,
            "detections": [{"class_id": int(c), "name": names[int(c)], "score": float(s),
                            "box": [round(v, 2) for v in b]}
                           for c, s, b in zip(dets.classes.tolist(), dets.scores.tolist(), dets.boxes.tolist())]}


def _records(text: str):
    recs = [json.loads(line) for line in text.splitlines() if line.strip()]
    for r in recs:
        assert r.pop("seconds") >= 0
    return recs


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
    want = [_expected(model, names, p, p) for p in good]
    assert sum(len(r["detections"]) for r in want) > 10
    assert _records(out.read_text()) == want  # bit-exact scores, in input order
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
    got = _records(out.read_text())
    chunks = [good[i:i + 3] for i in range(0, len(good), 3)]
    want = [d for chunk in chunks for d in detect_batch(model, chunk, THRESH)]
    assert [r["image"] for r in got] == good
    for rec, d in zip(got, want):
        assert [x["class_id"] for x in rec["detections"]] == d.classes.tolist()
        assert [x["score"] for x in rec["detections"]] == d.scores.tolist()
        boxes = np.array([x["box"] for x in rec["detections"]], dtype=np.float64).reshape(-1, 4)
        assert np.allclose(boxes, d.boxes.numpy(), atol=0.006)
    single = [_expected(model, names, p, p) for p in good]
    for rec, s in zip(got, single):
        assert [x["class_id"] for x in rec["detections"]] == [x["class_id"] for x in s["detections"]]
        assert np.allclose([x["score"] for x in rec["detections"]], [x["score"] for x in s["detections"]],
                           atol=1e-5)
    assert "1 failed" in capsys.readouterr().err


def test_glob_list_stdin_and_folder_inputs_agree(model, names, photos, tmp_path, capsys, monkeypatch):
    folder, good, corrupt = photos
    ok = good
    # a list beside its photos, with relative entries (resolved against the list's folder, as
    # darknet_py.dataset does) and one missing entry, reported with its line number
    lst = folder / "some.txt"
    lst.write_text("".join(f"{Path(p).name}\n" for p in ok[:3]) + "gone.jpg\n" + f"{ok[3]}\r\n\n")
    runs = {}
    for form, inputs in (("glob", [str(folder / "p0[0-9].jpg")]), ("list", [str(lst)]),
                         ("files", ok[:4])):
        out = tmp_path / f"{form}.jsonl"
        code = main(["detect", *BASE, *inputs, *OPTS, "--json-out", str(out)])
        runs[form] = (code, _records(out.read_text()), capsys.readouterr().err)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(ok[:4]) + "\n"))
    assert main(["detect", *BASE, *OPTS, "--json-out", str(tmp_path / "stdin.jsonl")]) == 0
    runs["stdin"] = (0, _records((tmp_path / "stdin.jsonl").read_text()), capsys.readouterr().err)

    want = {p: _expected(model, names, p, p) for p in ok}
    assert runs["glob"][0] == 0 and runs["glob"][1] == [want[p] for p in ok]  # the corrupt p03b does not match
    code, recs, err = runs["list"]
    assert code == 1 and f"{lst}:4: 'gone.jpg' not found" in err and "4 ok, 1 failed" in err
    assert [r["image"] for r in recs] == [str(folder / Path(p).name) for p in ok[:4]]
    assert [r["detections"] for r in recs] == [want[p]["detections"] for p in ok[:4]]
    assert runs["files"][1] == runs["stdin"][1] == [want[p] for p in ok[:4]]


def test_yolo_txt_and_drawn_photos(model, names, photos, tmp_path, capsys):
    folder, good, corrupt = photos
    txt, drawn = tmp_path / "labels", tmp_path / "drawn"
    assert main(["detect", *BASE, str(folder), *OPTS, "--save-txt", str(txt), "--save-conf",
                 "--save-dir", str(drawn)]) == 1
    capsys.readouterr()
    assert sorted(p.name for p in txt.iterdir()) == [Path(p).stem + ".txt" for p in good]  # none for the corrupt
    for p in good:
        dets = detect(model, p, thresh=THRESH)
        rgb, meta = load_image(p)
        rows = [line.split() for line in (txt / (Path(p).stem + ".txt")).read_text().splitlines()]
        assert len(rows) == len(dets)
        if not rows:
            continue
        cls = [int(r[0]) for r in rows]
        cx, cy, w, h, conf = np.array([[float(v) for v in r[1:]] for r in rows]).T
        back = np.stack([(cx - w / 2) * meta.width, (cy - h / 2) * meta.height,
                         (cx + w / 2) * meta.width, (cy + h / 2) * meta.height], 1)
        assert cls == dets.classes.tolist()
        assert np.allclose(back, dets.boxes.numpy(), atol=1e-3 * max(meta.width, meta.height))
        assert np.allclose(conf, dets.scores.numpy(), atol=1e-6)
        out = load_image(drawn / Path(p).name)[0]
        assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb.astype(int)).max() > 50  # boxes drawn


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """7 frames of generated scenes, MJPG in AVI (an encoder every OpenCV build has), 12 fps."""
    d = tmp_path_factory.mktemp("video")
    path = d / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (192, 160))
    assert writer.isOpened()
    rng = np.random.default_rng(11)
    for _ in range(7):
        writer.write(np.ascontiguousarray(render_image(rng, 192, 160, 4)[0][:, :, ::-1]))
    writer.release()
    return path


def _frames(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def test_video_frames_in_batches_and_annotated_copy(model, names, video, tmp_path, capsys):
    out_video, jsonl, txt = tmp_path / "annotated.avi", tmp_path / "v.jsonl", tmp_path / "vt"
    code = main(["detect", *BASE, str(video), *OPTS, "--batch", "3", "-o", str(out_video), "--json-out", str(jsonl),
                 "--save-txt", str(txt)])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    frames, fps = _frames(video)
    assert len(frames) == 7
    recs = _records(jsonl.read_text())
    assert [r["frame"] for r in recs] == list(range(7)) and all(r["image"] == str(video) for r in recs)
    assert sum(len(r["detections"]) for r in recs) > 5
    for rec, rgb in zip(recs, frames):  # batched (3, 3, 1): equal to per-frame detect up to rounding
        want = _expected(model, names, rgb, str(video), frame=rec["frame"])
        assert (rec["width"], rec["height"]) == (192, 160)
        assert [x["class_id"] for x in rec["detections"]] == [x["class_id"] for x in want["detections"]]
        assert np.allclose([x["score"] for x in rec["detections"]], [x["score"] for x in want["detections"]],
                           atol=1e-5)
    assert sorted(p.name for p in txt.iterdir()) == [f"clip_{i:06d}.txt" for i in range(7)]
    assert cap.out.count(f"{video} frame ") == 7
    drawn, drawn_fps = _frames(out_video)
    assert len(drawn) == 7 and drawn[0].shape == frames[0].shape and drawn_fps == pytest.approx(fps)
    assert max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(drawn, frames)) > 50  # boxes drawn

    # --max-frames, and a video that cannot be opened: one line, the rest run
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    code = main(["detect", *BASE, str(bad), str(video), *OPTS, "--max-frames", "2", "--json"])
    cap = capsys.readouterr()
    assert code == 1
    assert [r["frame"] for r in _records(cap.out)] == [0, 1]
    err = cap.err.strip().splitlines()
    assert len(err) == 2 and str(bad) in err[0] and "cannot open the video" in err[0]


class _NumpyRunner(stream.CustomRunner):
    """A runner with only FastDetector's interface (numpy photos in, Detections out)."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def detect_batch(self, images, thresh, nms):
        self.calls.append([type(im).__name__ for im in images])
        return detect_batch(self.model, images, thresh, nms)


def test_any_runner_with_detect_batch_and_fast_flags(model, names, photos, tmp_path, capsys, monkeypatch):
    folder, good, _ = photos
    items = stream.expand_inputs([str(folder)])
    runner = _NumpyRunner(model)
    buf, err = io.StringIO(), io.StringIO()
    summary = stream.run(runner, items, stream.StreamOptions(thresh=THRESH, batch=4, workers=1),
                         stream.Outputs(json_stdout=True), names, 6, out=buf, err=err, progress=False)
    assert (summary.ok, summary.failed) == (7, 1)
    assert runner.calls == [["ndarray"] * 4, ["ndarray"] * 3]
    chunks = [good[:4], good[4:]]
    want = [d for c in chunks for d in detect_batch(model, c, THRESH)]
    got = _records(buf.getvalue())
    assert [[x["score"] for x in r["detections"]] for r in got] == [d.scores.tolist() for d in want]

    # --half & co. run darknet_py.fast.FastDetector: fp16 on the trained model keeps every clear
    # detection (score beyond THRESH + .05) with the same class and a box of IoU >= .99
    monkeypatch.chdir(tmp_path)  # image files given alone are also drawn, as predictions-<stem>.jpg
    capsys.readouterr()
    assert main(["detect", *BASE, *good, *OPTS, "--json"]) == 0
    exact = _records(capsys.readouterr().out)
    assert main(["detect", *BASE, *good, *OPTS, "--half", "--json"]) == 0
    half = _records(capsys.readouterr().out)
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
    fast = _records(capsys.readouterr().out)
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


class _ChecksumRunner(stream.CustomRunner):
    """A runner that takes the photos themselves (no worker-side preparation, so they come through
    the PhotoRing) and keeps only a digest of each, as a runner must (the slot is reused later)."""

    accepts_tensors = True

    def __init__(self):
        self.digests = []

    def detect_batch(self, images, thresh, nms):
        empty = darknet_py.Detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64),
                                      torch.zeros(0), torch.zeros(0, dtype=torch.int64))
        for im in images:
            a = np.asarray(im)
            self.digests.append((a.shape, hashlib.sha1(a.tobytes()).hexdigest()))
        return [empty] * len(images)


@pytest.mark.parametrize("tight", [False, True], ids=["sized", "workers-wait"])
def test_photo_ring_hands_every_photo_over_intact(photos, tmp_path, monkeypatch, tight):
    """Decoded photos cross from the workers through the shared ring's slots: 40 photos of many sizes
    through 11 slots (each reused several times), two photos larger than a slot (the default
    hand-over), a corrupt file. ``workers-wait``: fewer slots than photos requested ahead, so that
    workers must wait for the main process to release a slot before writing it."""
    _, good, corrupt = photos
    rng = np.random.default_rng(3)
    paths = []
    for k in range(40):
        w, h = (800, 600) if k in (9, 25) else (int(rng.integers(64, 300)), int(rng.integers(64, 300)))
        path = tmp_path / f"q{k:02d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(str(path))
    paths.insert(17, str(corrupt))
    batch, workers = 3, 2
    in_flight = workers * max(2, -(-batch // workers) + 1)
    slots = batch + 2 if tight else in_flight + batch + 2
    assert slots == (5 if tight else 11)
    if tight:
        monkeypatch.setattr(stream.PhotoRing, "for_stream", classmethod(
            lambda cls, batch, in_flight, photos, total: cls(batch + 2, stream.RING_MIN_SLOT)))
    via_ring, shapes = [], set()
    take = stream.PhotoFeed.next

    def counting_next(feed):
        sample = take(feed)
        shapes.add((feed.ring.slots, feed.ring.slot_bytes))
        via_ring.append(feed.ring is not None and torch.is_tensor(sample.get("rgb"))
                        and sample["rgb"].untyped_storage().data_ptr() == feed.ring.buffer.untyped_storage().data_ptr())
        return sample

    monkeypatch.setattr(stream.PhotoFeed, "next", counting_next)
    runner = _ChecksumRunner()
    summary = stream.run(runner, stream.expand_inputs(paths), stream.StreamOptions(
        batch=batch, workers=workers, ring_bytes=slots * stream.RING_MIN_SLOT), stream.Outputs(text=False),
        ["x"], 1, out=io.StringIO(), err=io.StringIO(), progress=False)
    assert (summary.ok, summary.failed) == (40, 1)
    want = []
    for p in paths:
        if p != str(corrupt):
            rgb = load_image(p)[0]
            want.append((rgb.shape, hashlib.sha1(rgb.tobytes()).hexdigest()))
    assert runner.digests == want
    # every photo but the two large ones (and the corrupt file) came through a slot
    assert [k for k, ring in enumerate(via_ring) if not ring] == [9, 17, 26]
    assert shapes == {(slots, stream.RING_MIN_SLOT)}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_stream_through_pinned_ring(model, names, photos, monkeypatch):
    """On CUDA the command's runner takes the photos from the ring, registered as pinned memory, with
    asynchronous uploads: the results equal the same batches run by detect_batch on the GPU."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    folder, good, _ = photos
    pinned = []
    pin = stream.PhotoRing.pin

    def spy(ring):
        pinned.append(pin(ring))
        return pinned[-1]

    monkeypatch.setattr(stream.PhotoRing, "pin", spy)
    try:
        gpu = darknet_py.load(CFG, WEIGHTS, device="cuda")
        buf = io.StringIO()
        summary = stream.run(stream.ModelRunner(gpu), stream.expand_inputs([str(folder)]), stream.StreamOptions(
            thresh=THRESH, batch=3, workers=2, pin_memory=True), stream.Outputs(json_stdout=True), names, 6,
            out=buf, err=io.StringIO(), progress=False)
        want = [d.to("cpu") for k in range(0, len(good), 3) for d in detect_batch(gpu, good[k:k + 3], THRESH)]
    finally:
        torch.backends.cudnn.allow_tf32 = old
    assert (summary.ok, summary.failed) == (7, 1) and pinned == [True]
    got = [r for r in _records(buf.getvalue()) if r.get("detections") is not None]
    assert [r["image"] for r in got] == good
    assert sum(len(d) for d in want) > 0
    for rec, dets in zip(got, want):
        assert [d["class_id"] for d in rec["detections"]] == dets.classes.tolist()
        assert np.allclose([d["score"] for d in rec["detections"]], dets.scores.numpy(), atol=1e-5)
        assert np.allclose([d["box"] for d in rec["detections"]], np.round(dets.boxes.numpy(), 2), atol=0.02)


def test_workers_start_after_opencv_threads_ran(model, names, photos):
    """Workers are forked: cv2.setNumThreads in a worker of a process whose OpenCV thread pool had
    run segfaulted (2 cores) or hung (16 cores). The library entry point must survive any OpenCV use."""
    folder, good, _ = photos
    before = cv2.getNumThreads()
    cv2.setNumThreads(8)
    try:
        big = np.zeros((2000, 2000, 3), np.uint8)
        for _ in range(3):
            cv2.cvtColor(cv2.resize(big, (1500, 1500)), cv2.COLOR_BGR2RGB)
        s = stream.run(stream.ModelRunner(model), stream.expand_inputs(good[:4]), stream.StreamOptions(batch=2,
                       workers=2), stream.Outputs(text=False), names, 6, out=io.StringIO(), err=io.StringIO(),
                       progress=False)
    finally:
        cv2.setNumThreads(before)
    assert (s.ok, s.failed) == (4, 0)


def test_inputs_and_refusals(photos, tmp_path, capsys):
    folder, good, _ = photos
    nested = tmp_path / "nested"
    (nested / "sub").mkdir(parents=True)
    shutil.copy(good[0], nested / "sub" / "a.jpg")
    shutil.copy(good[1], nested / "b.png.jpg")
    items = stream.expand_inputs([str(nested)])
    assert [i.rel for i in items] == ["b.png.jpg"]
    items = stream.expand_inputs([str(nested)], recursive=True)
    assert [i.rel for i in items] == ["b.png.jpg", "sub/a.jpg"] and all(i.kind == "image" for i in items)
    (empty := tmp_path / "empty" / "deeper").mkdir(parents=True)
    [e] = stream.expand_inputs([str(empty.parent)])
    assert e.kind == "error" and "recursive=True" in e.error  # the library names its argument...
    assert main(["detect", *BASE, str(empty.parent), *OPTS]) == 1
    assert "--recursive" in capsys.readouterr().err  # ...the command line its option
    [e] = stream.expand_inputs([str(tmp_path / "*.nothing")])
    assert e.kind == "error" and "no image or video files match" in e.error
    cams = stream.expand_inputs(["0"], cameras=[2])
    assert [(c.kind, c.camera) for c in cams] == [("camera", 0), ("camera", 2)]
    assert stream.expand_inputs(["clip.mp4"])[0].kind == "video"

    # two inputs that would write the same label file, or a drawn photo over its source: refused up front
    shutil.copy(good[2], nested / "sub" / "b.png.png")
    assert main(["detect", *BASE, str(nested / "b.png.jpg"), str(nested / "sub" / "b.png.png"), *OPTS,
                 "--save-txt", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would both be written" in err[0]
    assert main(["detect", *BASE, str(nested), *OPTS, "--save-dir", str(nested)]) == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert main(["detect", *BASE, good[0], *OPTS, "--save-video", str(tmp_path / "v.avi")]) == 1
    assert "needs a video or camera input" in capsys.readouterr().err
    assert main(["detect", *BASE, good[0], *OPTS, "--batch", "0"]) == 1
    assert "--batch must be >= 1" in capsys.readouterr().err


class _FakeDist(stream.Distributed):
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
    monkeypatch.setattr(stream.engine, "ROUND_ITEMS", 2)
    items = stream.expand_inputs([str(folder), str(folder / "missing.jpg"), good[0]])
    opts = dict(thresh=THRESH, batch=2, workers=0)

    def run(dist):
        out, err = io.StringIO(), io.StringIO()
        s = stream.run(stream.ModelRunner(model), items, stream.StreamOptions(**opts), stream.Outputs(), names, 6,
                       out=out, err=err, progress=False, dist=dist)
        return s, out.getvalue(), err.getvalue()

    rank1 = _FakeDist(1)
    run(rank1)
    assert len(rank1.sent) == 4  # 10 items, 4 per round: 3 rounds, then the counts
    merged = run(_FakeDist(0, rank1.sent))
    single = run(None)
    assert (merged[0].ok, merged[0].failed) == (single[0].ok, single[0].failed) == (8, 2)

    def strip(text):  # the timing differs
        return [line for line in text.splitlines() if "Predicted in" not in line]

    heads = [line.split(": Predicted")[0] for line in merged[1].splitlines() if "Predicted in" in line]
    assert heads == good + [good[0]]
    assert strip(merged[1]) == strip(single[1]) and merged[2] == single[2]


def test_torchrun_two_processes_merge_equals_one(photos, tmp_path):
    folder, good, corrupt = photos
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    # one network thread here (one_network_thread) as in each torchrun process (OMP_NUM_THREADS=1):
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
    assert _records(two.read_text()) == _records(one.read_text())
    assert len(_records(two.read_text())) == 7 and torch.distributed.is_available()


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
