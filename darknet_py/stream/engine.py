"""The streaming engine of ``darknet-py detect``:

    INPUT strings --inputs.expand_inputs--> items (photos, videos, cameras, errors met listing them)
      -> photos decoded, and on the CPU prepared, by the feed's workers (feed.PhotoFeed); frames
         read ahead by a thread (feed.FrameReader)
      -> batches of ``batch`` photos or frames -> the runner (runner.Runner) -> Detections
      -> results in input order -> sinks: Darknet's lines, JSON lines, YOLO txt, drawn photos, videos

Under ``torchrun`` (WORLD_SIZE > 1) process r takes items r, r+W, r+2W, ... of the list rank 0
expanded; every ``ROUND_ITEMS * W`` items the text outputs are gathered to rank 0, which writes
them in input order, so the merged output equals a single process's.

This module prints nothing itself: the command line passes the streams to write to.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import cv2
import numpy as np
import torch

from ..checks import check_count, check_thresholds
from ..device import Distributed
from ..errors import UsageError
from ..postprocess import Detections, detections_to
from ..postprocess.thresholds import DEFAULT_NMS, DEFAULT_THRESH
from .feed import RING_BYTES, FrameReader, PhotoFeed, open_capture
from .inputs import Item
from .runner import Runner
from .sinks import FileSink, Outputs, Result, TextRecord, TextWriter, needs_rgb, plan_outputs, text_record

# Items each process runs between two merges of the text outputs under torchrun.
ROUND_ITEMS = 256


@dataclass
class StreamOptions:
    thresh: float = DEFAULT_THRESH
    nms: float = DEFAULT_NMS
    batch: int = 1
    workers: int = 0               # photo decoding processes (0: in this process)
    exif_orientation: bool = True
    max_frames: int | None = None  # per video or camera
    keep_rgb: bool = False         # results carry the photo (a drawn output needs it)
    pin_memory: bool = False       # decoded photos in pinned memory (model on CUDA)
    ring_bytes: int = RING_BYTES   # the shared photo ring's budget (PhotoRing.for_stream); 0: no ring
    # How workers start: None is the platform's default (fork on Linux: fast, and the workers never
    # touch CUDA, so a model already on the GPU is fine; measured on an H200); "forkserver"/"spawn"
    # need the caller's script to be import-safe (if __name__ == "__main__").
    mp_context: str | None = None

    def __post_init__(self) -> None:
        check_thresholds(thresh=self.thresh, nms=self.nms)
        check_count("batch", self.batch, 1)
        check_count("workers", self.workers, 0)
        check_count("max_frames", self.max_frames, 1)


def _run_batch(runner: Runner, samples: Sequence[dict], opts: StreamOptions) -> tuple[list[Detections], float]:
    start = time.perf_counter()
    if runner.host_prepare is not None:
        x = torch.stack([s["x"] for s in samples])
        dets = runner.detect_prepared(x, [s["info"] for s in samples], opts.thresh, opts.nms)
    else:
        images = [s["rgb"] if runner.accepts_tensors else _as_numpy(s["rgb"]) for s in samples]
        dets = runner.detect_batch(images, opts.thresh, opts.nms)
    dets = detections_to(dets, "cpu")  # waits for the device, so the time is the real one
    return dets, (time.perf_counter() - start) / max(1, len(samples))


def _as_numpy(rgb) -> np.ndarray:
    return rgb.numpy() if torch.is_tensor(rgb) else rgb


def _rgb_array(sample: dict) -> np.ndarray | None:
    rgb = sample.get("rgb")
    return None if rgb is None else _as_numpy(rgb)


class _Pending:
    """Photos and failures waiting for their batch: output keeps input order, so a failure
    waits behind the photos before it."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, Item, dict]] = []
        self.ready = 0

    def add(self, index: int, item: Item, sample: dict) -> None:
        self.entries.append((index, item, sample))
        self.ready += "error" not in sample

    def flush(self, runner: Runner, opts: StreamOptions) -> list[Result]:
        good = [s for _, _, s in self.entries if "error" not in s]
        dets, seconds = _run_batch(runner, good, opts) if good else ([], 0.0)
        it = iter(dets)
        out = []
        for index, item, s in self.entries:
            if "error" in s:
                out.append(Result(index, item, error=s["error"]))
            else:
                out.append(Result(index, item, width=int(s["width"]), height=int(s["height"]), dets=next(it),
                                  seconds=seconds, rgb=_rgb_array(s) if opts.keep_rgb else None))
        self.entries, self.ready = [], 0
        return out


def _video_results(runner: Runner, index: int, item: Item, opts: StreamOptions, bar) -> Iterator[list[Result]]:
    cap, error = open_capture(item)
    if error:
        yield [Result(index, item, error=error)]
        return
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and math.isfinite(fps) and 0 < fps < 1000 else 25.0  # cameras may not say
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if bar is not None and frames > 0 and item.kind == "video":
        bar.total = (bar.total or 0) + (min(frames, opts.max_frames) if opts.max_frames else frames)
        bar.refresh()
    reader = FrameReader(cap, runner.host_prepare, opts.pin_memory, 2 * opts.batch, opts.max_frames)
    reader.start()
    count = 0
    try:
        done = False
        while not done:
            chunk: list[tuple[int, dict]] = []
            while len(chunk) < opts.batch:
                got = reader.queue.get()
                if isinstance(got, BaseException):
                    raise got
                if got is None:
                    done = True
                    break
                chunk.append(got)
            if not chunk:
                break
            dets, seconds = _run_batch(runner, [s for _, s in chunk], opts)
            count += len(chunk)
            yield [Result(index, item, frame=n, width=int(s["width"]), height=int(s["height"]), dets=d,
                          seconds=seconds, rgb=_rgb_array(s) if opts.keep_rgb else None, fps=fps)
                   for (n, s), d in zip(chunk, dets)]
    except KeyboardInterrupt:
        if item.kind != "camera":
            raise
        # Ctrl-C is how a camera run ends: what ran is kept, the next inputs still run.
    finally:
        reader.close()
    if count == 0:
        yield [Result(index, item, error=f"{item.name}: no frames could be read")]


def stream(runner: Runner, items: Sequence[Item], opts: StreamOptions, *, positions: Sequence[int] | None = None,
           round_of: Sequence[int] | None = None, rounds: int = 1, bar=None) -> Iterator[list[Result] | None]:
    """Run ``items[p]`` for p in ``positions`` (default: all) and yield lists of Results in input
    order; ``None`` marks the end of each of ``rounds`` rounds (``round_of[k]``: the round of
    ``positions[k]``), after every result of that round was yielded."""
    check_count("batch", opts.batch, 1)  # (options changed after they were made)
    positions = list(range(len(items))) if positions is None else list(positions)
    round_of = [0] * len(positions) if round_of is None else list(round_of)
    photos = PhotoFeed([items[p].path for p in positions if items[p].kind == "image"], runner.host_prepare,
                       workers=opts.workers, batch=opts.batch, exif_orientation=opts.exif_orientation,
                       keep_rgb=opts.keep_rgb, pin_memory=opts.pin_memory, ring_bytes=opts.ring_bytes,
                       mp_context=opts.mp_context)
    pending = _Pending()

    def flush() -> list[Result]:
        out = pending.flush(runner, opts)
        photos.release()  # every photo taken was in that batch, which ran: its ring slot is free
        return out

    current = 0
    try:
        for p, r in zip(positions, round_of):
            item = items[p]
            while current < r:  # this process's items of the earlier rounds are all out
                if pending.entries:
                    yield flush()
                yield None
                current += 1
            if item.kind == "image":
                pending.add(p, item, photos.next())
                if pending.ready >= opts.batch:
                    yield flush()
            elif item.kind == "error":
                pending.add(p, item, {"error": item.error})
            else:
                if pending.entries:
                    yield flush()
                yield from _video_results(runner, p, item, opts, bar)
        if pending.entries:
            yield flush()
        while current < rounds:
            yield None
            current += 1
    finally:
        photos.close()


@dataclass
class Summary:
    ok: int = 0           # photos and frames detected
    failed: int = 0       # inputs that could not be read
    seconds: float = 0.0  # wall time of the stream (model loading excluded)
    images_per_second: float = 0.0
    main: bool = True     # this process writes the summary


def _progress(total: int, enabled: bool | None, err: IO[str]):
    from tqdm import tqdm

    # disable=None: a bar on a terminal, nothing in pipes and logs
    return tqdm(total=total or None, desc="detect", unit="img", file=err, dynamic_ncols=True,
                disable=None if enabled is None else not enabled)


def run(runner: Runner, items: Sequence[Item], opts: StreamOptions, outputs: Outputs, names: Sequence[str],
        classes: int, *, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr, progress: bool | None = None,
        dist: Distributed | None = None) -> Summary:
    """Run every item through ``runner`` and write the outputs. Under torchrun (``dist.active``)
    ``items`` must be the same list in every process (broadcast it from rank 0)."""
    dist = dist or Distributed()
    if dist.active and any(it.kind == "camera" for it in items):
        raise UsageError("a camera cannot be shared by several torchrun processes; run it in one process")
    opts.keep_rgb = opts.keep_rgb or needs_rgb(outputs)
    if dist.main:
        plan_outputs(items, outputs)  # before any work: nothing the run writes may replace what it must not
    n = len(items)
    positions = list(range(dist.rank, n, dist.world))
    per_round = ROUND_ITEMS * dist.world if dist.active else max(1, n)
    rounds = max(1, math.ceil(n / per_round))
    round_of = [p // per_round for p in positions]
    bar = _progress(sum(items[p].kind == "image" for p in positions), progress if dist.main else False, err)
    writer = TextWriter(outputs, out, err, bar) if dist.main else None
    try:
        files = FileSink(outputs, names, classes, main=dist.main)
    except BaseException:
        bar.close()
        if writer is not None:
            writer.close()
        raise
    ok = failed = 0
    records: list[TextRecord] = []  # the current batch's lines, not yet written
    buffer: list[TextRecord] = []
    seq: dict[int, int] = {}
    start = time.perf_counter()
    try:
        for chunk in stream(runner, items, opts, positions=positions, round_of=round_of, rounds=rounds, bar=bar):
            if chunk is None:  # end of a round: rank 0 writes everyone's records in input order
                if dist.active:
                    parts = dist.gather(buffer)
                    if writer is not None:
                        writer.write(sorted((rec for part in parts for rec in part), key=lambda rec: rec.key))
                    buffer = []
                continue
            for r in chunk:
                k = seq[r.index] = seq.get(r.index, -1) + 1
                records.append(text_record(r, k, outputs, names))  # the line first: a frame drawn has one
                files.handle(r)
                if r.error is None:
                    ok += 1
                else:
                    failed += 1
            bar.update(len(chunk))
            if dist.active:
                buffer, records = buffer + records, []
            else:
                done, records = records, []
                writer.write(done)
    finally:  # outputs are finished however the run ends (an error, Ctrl-C, SIGTERM): what ran is kept
        try:
            try:
                if records and writer is not None and not dist.active:
                    writer.write(records)  # the lines of a batch the interruption cut short
            finally:
                files.close()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
    seconds = time.perf_counter() - start
    totals = dist.all_gather((ok, failed))
    ok, failed = sum(t[0] for t in totals), sum(t[1] for t in totals)
    return Summary(ok, failed, seconds, ok / seconds if seconds > 0 else 0.0, dist.main)


__all__ = ["ROUND_ITEMS", "StreamOptions", "Summary", "run", "stream"]
