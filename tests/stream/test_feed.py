"""darknet_py.stream.feed: decoded photos cross from the worker processes through the shared photo
ring intact (slots reused, photos larger than a slot, workers waiting for a slot), the ring pinned
for CUDA, and workers that start after OpenCV's thread pool ran."""
from __future__ import annotations

import hashlib
import io

import cv2
import numpy as np
import pytest
import torch

from darknet_py.detector import detect_batch, load
from darknet_py.imageio import load_image
from darknet_py.postprocess import Detections
from darknet_py.stream.engine import StreamOptions, run
from darknet_py.stream.feed import RING_MIN_SLOT, PhotoFeed, PhotoRing
from darknet_py.stream.inputs import expand_inputs
from darknet_py.stream.runner import CustomRunner, ModelRunner
from darknet_py.stream.sinks import Outputs
from tests.helpers.stream import CFG, THRESH, WEIGHTS, records

# The decoding worker and the network share the 2 CI cores: the network gets one thread.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _ChecksumRunner(CustomRunner):
    """A runner that takes the photos themselves (no worker-side preparation, so they come through
    the PhotoRing) and keeps only a digest of each, as a runner must (the slot is reused later)."""

    accepts_tensors = True

    def __init__(self):
        self.digests = []

    def detect_batch(self, images, thresh, nms):
        empty = Detections(torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0),
                           torch.zeros(0, dtype=torch.int64))
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
        monkeypatch.setattr(PhotoRing, "for_stream", classmethod(
            lambda cls, batch, in_flight, photos, total: cls(batch + 2, RING_MIN_SLOT)))
    via_ring, shapes = [], set()
    take = PhotoFeed.next

    def counting_next(feed):
        sample = take(feed)
        shapes.add((feed.ring.slots, feed.ring.slot_bytes))
        via_ring.append(feed.ring is not None and torch.is_tensor(sample.get("rgb"))
                        and sample["rgb"].untyped_storage().data_ptr() == feed.ring.buffer.untyped_storage().data_ptr())
        return sample

    monkeypatch.setattr(PhotoFeed, "next", counting_next)
    runner = _ChecksumRunner()
    summary = run(runner, expand_inputs(paths), StreamOptions(batch=batch, workers=workers,
                                                              ring_bytes=slots * RING_MIN_SLOT),
                  Outputs(text=False), ["x"], 1, out=io.StringIO(), err=io.StringIO(), progress=False)
    assert (summary.ok, summary.failed) == (40, 1)
    want = []
    for p in paths:
        if p != str(corrupt):
            rgb = load_image(p)[0]
            want.append((rgb.shape, hashlib.sha1(rgb.tobytes()).hexdigest()))
    assert runner.digests == want
    # every photo but the two large ones (and the corrupt file) came through a slot
    assert [k for k, ring in enumerate(via_ring) if not ring] == [9, 17, 26]
    assert shapes == {(slots, RING_MIN_SLOT)}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_stream_through_pinned_ring(model, names, photos, monkeypatch):
    """On CUDA the command's runner takes the photos from the ring, registered as pinned memory, with
    asynchronous uploads: the results equal the same batches run by detect_batch on the GPU."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    folder, good, _ = photos
    pinned = []
    pin = PhotoRing.pin

    def spy(ring):
        pinned.append(pin(ring))
        return pinned[-1]

    monkeypatch.setattr(PhotoRing, "pin", spy)
    try:
        gpu = load(CFG, WEIGHTS, device="cuda")
        buf = io.StringIO()
        summary = run(ModelRunner(gpu), expand_inputs([str(folder)]), StreamOptions(
            thresh=THRESH, batch=3, workers=2, pin_memory=True), Outputs(json_stdout=True), names, 6,
            out=buf, err=io.StringIO(), progress=False)
        want = [d.to("cpu") for k in range(0, len(good), 3) for d in detect_batch(gpu, good[k:k + 3], THRESH)]
    finally:
        torch.backends.cudnn.allow_tf32 = old
    assert (summary.ok, summary.failed) == (7, 1) and pinned == [True]
    got = [r for r in records(buf.getvalue()) if r.get("detections") is not None]
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
        s = run(ModelRunner(model), expand_inputs(good[:4]), StreamOptions(batch=2, workers=2), Outputs(text=False),
                names, 6, out=io.StringIO(), err=io.StringIO(), progress=False)
    finally:
        cv2.setNumThreads(before)
    assert (s.ok, s.failed) == (4, 0)
