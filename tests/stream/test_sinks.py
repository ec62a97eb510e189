"""darknet_py.stream.sinks: YOLO label files and drawn photos, and for a video the JSON lines of
every frame, its label files, Darknet's lines and an annotated copy; each against the per-photo path,
darknet_py.detect."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from darknet_py.cli import main
from darknet_py.detector import detect
from darknet_py.imageio import load_image
from darknet_py.postprocess import Detections
from darknet_py.stream.inputs import Item
from darknet_py.stream.sinks import Result, json_record, yolo_lines
from darknet_py.synth import render_image
from tests.helpers.stream import BASE, OPTS, THRESH, expected_record, records

# The decoding worker and the network share the 2 CI cores: the network gets one thread.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


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


def test_yolo_labels_leave_out_boxes_clipped_to_a_line_json_keeps_them():
    # Darknet clips boxes to the photo, so one past the edge can end up a line (x1 == x2 = width - 1):
    # faithful in the JSON, but a zero-size object as a training label
    boxes = torch.tensor([[10.0, 20.0, 110.0, 220.0],     # an ordinary box
                          [639.0, 50.0, 639.0, 150.0],    # a vertical line at the right edge
                          [30.0, 479.0, 90.0, 479.0],     # a horizontal line at the bottom
                          [200.0, 100.0, 200.6, 300.0],   # under a pixel wide
                          [300.0, 100.0, 301.0, 101.0]])  # one pixel square: kept
    n = len(boxes)
    dets = Detections(boxes, torch.linspace(0.9, 0.5, n), torch.arange(n), torch.full((n,), 0.9),
                      torch.arange(n))
    rows = [line.split() for line in yolo_lines(dets, 640, 480).splitlines()]
    assert [r[0] for r in rows] == ["0", "4"]
    assert all(float(v) > 0 for r in rows for v in r[3:5])
    rec = json_record(Result(0, Item("image", "p.jpg"), width=640, height=480, dets=dets), [str(i) for i in range(n)])
    assert [d["box"] for d in rec["detections"]] == [[round(v, 2) for v in b] for b in boxes.tolist()]


# ------------------------------------------------------------------------------------ videos

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
    recs = records(jsonl.read_text())
    assert [r["frame"] for r in recs] == list(range(7)) and all(r["image"] == str(video) for r in recs)
    assert sum(len(r["detections"]) for r in recs) > 5
    for rec, rgb in zip(recs, frames):  # batched (3, 3, 1): equal to per-frame detect up to rounding
        want = expected_record(model, names, rgb, str(video), frame=rec["frame"])
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
    assert [r["frame"] for r in records(cap.out)] == [0, 1]
    err = cap.err.strip().splitlines()
    assert len(err) == 2 and str(bad) in err[0] and "cannot open the video" in err[0]
