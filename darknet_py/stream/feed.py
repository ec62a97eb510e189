"""Decoded photos and video frames, in order, ready for a runner: the feed of ``detect`` and of
``detector valid/map/recall``.

Photos are decoded strictly (darknet_py.imageio) in DataLoader worker processes, and prepared
there too when the caller gives a ``prepare`` function (on the CPU: Darknet's letterbox, so that
decoding and resizing overlap the network). Photos decoded for the runner itself (no worker-side
preparation) cross from the workers through a shared ring of slots (:class:`PhotoRing`,
page-locked on CUDA); they are views of the ring, valid until :meth:`PhotoFeed.release` (a runner
copies what it keeps). Video frames are read ahead by a thread (:class:`FrameReader`).
"""
from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import cv2
import numpy as np
import torch

from ..errors import DarknetPyError, UsageError
from ..imageio import load_image
from .inputs import Item

# Host memory of the shared photo ring (PhotoRing), split into one slot per photo in flight; each
# slot gets at least RING_MIN_SLOT (a 640x480 photo, 921,600 bytes, fits: the ring grows with the
# batch) and at most RING_MAX_SLOT (a 1920x1080 photo fits; larger photos travel the default way).
RING_BYTES = 256 << 20
RING_MIN_SLOT = 1 << 20
RING_MAX_SLOT = 8 << 20


def default_workers(on_cuda: bool, world: int = 1) -> int:
    """Photo decoding processes when none are asked for: on CUDA the CPU count up to 8 (shared
    between torchrun's processes); on the CPU, where the network wants the cores, none up to 4
    cores, else a quarter of them, at most 4. Measured on 2 cores: a worker slowed yolov3-tiny's
    stream from 13.0 to 11.8 photos/s (medians of 3 interleaved rounds: its work preempts the
    network's threads)."""
    try:
        cpus = len(os.sched_getaffinity(0))  # the cores this process may use (taskset, containers)
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    cpus = max(1, cpus // max(1, world))
    if on_cuda:
        return min(8, cpus)
    return 0 if cpus <= 4 else min(4, cpus // 4)


def _keep(sample):  # DataLoader collate_fn: samples stay as the workers made them
    return sample


def _shared_bytes(n: int) -> torch.Tensor:
    """n bytes of shared memory (visible to forked and spawned workers), without first filling
    private memory and copying it over as ``share_memory_()`` does (2.5x slower for 256 MiB)."""
    try:
        return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(n))
    except (AttributeError, TypeError, RuntimeError):  # a torch without it
        return torch.empty(n, dtype=torch.uint8).share_memory_()


class PhotoRing:
    """Decoded photos handed from the decoding workers to the main process through one shared
    buffer of fixed slots, created before the workers start (and, on CUDA, registered as pinned
    memory once they have, so that a slot uploads to the GPU directly).

    The default hand-over, one shared-memory file per photo, costs the receiving process about
    1.3 ms per 640x480 photo (descriptor passing, mmap, page faults: measured on 2 cores) against
    0.1 ms for a slot number, and the DataLoader's pinning copies every byte once more.

    Photo k of the stream goes to slot ``k % slots``. A worker waits before overwriting a slot
    until the main process has released the photo that held it (``release``): the main process
    releases photos only after their batch ran (results copied to the host, so any upload from the
    slot is done), and it needs at most ``batch`` photos at once, fewer than ``slots``.
    Photos larger than a slot travel the default way.
    """

    def __init__(self, slots: int, slot_bytes: int) -> None:
        if slots < 1 or slot_bytes < 1:
            raise UsageError(f"PhotoRing needs slots and bytes, got {slots} x {slot_bytes}")
        self.slots, self.slot_bytes = int(slots), int(slot_bytes)
        self.buffer = _shared_bytes(self.slots * self.slot_bytes)
        self.released = torch.zeros(1, dtype=torch.int64).share_memory_()  # photos 0 .. released-1 are free
        self._pinned = False

    @classmethod
    def for_stream(cls, batch: int, in_flight: int, photos: int, total_bytes: int = RING_BYTES) -> PhotoRing:
        """A ring for ``in_flight`` photos requested ahead plus a batch being formed (no more slots
        than ``photos``), sharing ``total_bytes`` within the slot limits."""
        slots = max(1, min(photos, in_flight + batch + 2))
        slot_bytes = min(RING_MAX_SLOT, max(RING_MIN_SLOT, total_bytes // slots)) // 4096 * 4096
        return cls(slots, slot_bytes)

    def _view(self, slot: int, shape: tuple[int, int]) -> torch.Tensor:
        start = slot * self.slot_bytes
        return self.buffer[start:start + shape[0] * shape[1] * 3].view(shape[0], shape[1], 3)

    def put(self, k: int, rgb: np.ndarray) -> int | None:
        """(worker) Copy photo k into its slot once that slot is free; its slot, or None when too large."""
        if rgb.nbytes > self.slot_bytes:
            return None
        parent = os.getppid()
        while k - self.slots >= int(self.released[0]):  # the slot's previous photo is still in use
            if os.getppid() != parent:  # the main process is gone (this worker was re-parented)
                raise RuntimeError("the main process ended")
            time.sleep(0.0005)
        slot = k % self.slots
        np.copyto(self._view(slot, rgb.shape[:2]).numpy(), rgb)
        return slot

    def get(self, slot: int, shape: tuple[int, int]) -> torch.Tensor:
        """(main) The photo in ``slot``: a view, valid until its release."""
        return self._view(slot, shape)

    def release(self, count: int) -> None:
        """(main) Photos 0 .. count-1 are done with; their slots may be reused."""
        self.released[0] = count

    def pin(self) -> bool:
        """Register the buffer with CUDA as page-locked memory: uploads from it are then asynchronous
        DMA. False (and the ring still works, with pageable copies) where registration fails."""
        if self._pinned or not torch.cuda.is_available():
            return self._pinned
        try:
            err = int(torch.cuda.cudart().cudaHostRegister(self.buffer.data_ptr(), self.buffer.numel(), 1))
        except (RuntimeError, AttributeError, AssertionError):
            return False
        self._pinned = err == 0
        return self._pinned

    def unpin(self) -> None:
        if self._pinned:
            torch.cuda.synchronize()  # no upload may still read the buffer
            torch.cuda.cudart().cudaHostUnregister(self.buffer.data_ptr())
            self._pinned = False


class _Photos(torch.utils.data.Dataset):
    """Strict decoding (darknet_py.imageio) of listed photos; a failure is a sample, not an exception,
    so that one bad file is reported in its place and the others go on."""

    def __init__(self, paths: Sequence[str], exif: bool, prepare: Callable | None, keep_rgb: bool,
                 ring: PhotoRing | None = None):
        self.paths, self.exif, self.prepare, self.keep_rgb, self.ring = list(paths), exif, prepare, keep_rgb, ring

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int) -> dict:
        try:
            rgb, meta = load_image(self.paths[k], exif_orientation=self.exif)
        except DarknetPyError as exc:
            return {"error": str(exc)}
        sample: dict = {"width": meta.width, "height": meta.height}
        if self.prepare is not None:
            sample["x"], sample["info"] = self.prepare(rgb)
        if self.keep_rgb or self.prepare is None:
            slot = self.ring.put(k, rgb) if self.ring is not None else None
            if slot is None:
                sample["rgb"] = torch.from_numpy(rgb)  # a tensor travels between processes in shared memory
            else:
                sample["slot"], sample["shape"] = slot, rgb.shape[:2]
        return sample


class PhotoFeed:
    """The decoded photos of ``paths`` in order (:meth:`next`), and the release of the ring's slots
    as batches finish.

    Each sample is a dict: ``{"error": message}`` for a photo that cannot be read, else ``width``,
    ``height`` and either ``x``, ``info`` (``prepare(rgb)``: the photo ready for the network) or
    ``rgb`` (HxWx3 uint8, a tensor); ``keep_rgb`` keeps ``rgb`` beside ``x`` (a drawn output needs
    it). ``workers``: decoding processes (0: in this process); ``batch``: how many photos the
    consumer takes before it releases them (prefetch covers it). ``pin_memory``: decoded photos in
    page-locked memory, for an asynchronous upload to a GPU.
    """

    def __init__(self, paths: Sequence[str], prepare: Callable | None = None, *, workers: int = 0, batch: int = 1,
                 exif_orientation: bool = True, keep_rgb: bool = False, pin_memory: bool = False,
                 ring_bytes: int = RING_BYTES, mp_context: str | None = None) -> None:
        self.taken = 0
        self.ring: PhotoRing | None = None
        self._loader: Iterator[dict] = iter(())
        if not paths:
            return
        workers = workers if len(paths) > 1 else 0  # one photo: forking a worker costs more than it saves
        kwargs: dict = {}
        if workers:
            # Prefetch deep enough to fill the next batch while this one runs the network: a batch's
            # worth ahead, plus one photo per worker, so that no worker idles meanwhile.
            # No cv2.setNumThreads in the workers: in a process forked from one whose OpenCV thread pool
            # had run, it segfaulted (2 cores) or hung (16 cores); decoding runs on one thread anyway.
            kwargs = dict(prefetch_factor=max(2, math.ceil(batch / workers) + 1))
            in_flight = workers * kwargs["prefetch_factor"]
            if mp_context is not None:
                kwargs["multiprocessing_context"] = mp_context
            # photos for the runner itself (no worker-side preparation, nothing drawn): through the ring
            if prepare is None and not keep_rgb and ring_bytes > 0:
                self.ring = PhotoRing.for_stream(batch, in_flight, len(paths), ring_bytes)
        loader = torch.utils.data.DataLoader(_Photos(paths, exif_orientation, prepare, keep_rgb, self.ring),
                                             batch_size=None, shuffle=False, num_workers=workers, collate_fn=_keep,
                                             pin_memory=pin_memory, **kwargs)
        self._loader = iter(loader)  # the workers start (fork) here
        if self.ring is not None and pin_memory:
            # registered only now: the CUDA driver may mark page-locked ranges MADV_DONTFORK, which
            # would leave a worker forked afterwards without the ring
            self.ring.pin()

    def next(self) -> dict:
        sample = next(self._loader)
        self.taken += 1
        if "slot" in sample:
            sample["rgb"] = self.ring.get(sample.pop("slot"), tuple(sample.pop("shape")))
        return sample

    def release(self) -> None:
        """Every photo taken so far has run: its slot may be reused."""
        if self.ring is not None:
            self.ring.release(self.taken)

    def close(self) -> None:
        if self.ring is not None:
            self.ring.release(1 << 62)  # a worker waiting for a slot goes on, and then sees the end
        self._loader = iter(())  # the DataLoader's workers end with their iterator
        if self.ring is not None:
            self.ring.unpin()

    def __enter__(self) -> PhotoFeed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_ffmpeg_quiet = False


def open_capture(item: Item) -> tuple[Any, str | None]:
    global _ffmpeg_quiet
    if not _ffmpeg_quiet:
        # FFmpeg's own log lines ("moov atom not found") would break "one line per error"; the
        # failure is reported below instead. Read once, when OpenCV first starts its FFmpeg backend.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        _ffmpeg_quiet = True
    if item.kind == "camera":
        cap = cv2.VideoCapture(int(item.camera))
        return cap, None if cap.isOpened() else f"{item.name}: cannot open the camera"
    if item.path and "://" not in item.path and not os.path.exists(item.path):
        return None, f"{item.name}: cannot read: No such file or directory"
    cap = cv2.VideoCapture(item.path)
    return cap, None if cap.isOpened() else f"{item.name}: cannot open the video (OpenCV/FFmpeg cannot read it)"


class FrameReader(threading.Thread):
    """Reads (and on the CPU prepares) frames ahead of the network; cv2 and torch release the GIL."""

    def __init__(self, cap, prepare: Callable | None, pin: bool, depth: int, max_frames: int | None):
        super().__init__(daemon=True)
        self.cap, self.prepare, self.pin, self.max_frames = cap, prepare, pin, max_frames
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()

    def _put(self, obj) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set() and (self.max_frames is None or n < self.max_frames):
                ok, bgr = self.cap.read()
                if not ok or bgr is None:
                    break
                if bgr.ndim == 2:
                    bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
                rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                sample: dict = {"width": rgb.shape[1], "height": rgb.shape[0], "rgb": rgb}
                if self.prepare is not None:
                    sample["x"], sample["info"] = self.prepare(rgb)
                elif self.pin:
                    sample["rgb"] = torch.from_numpy(rgb).pin_memory()
                if not self._put((n, sample)):
                    return
                n += 1
            self._put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=5)
        self.cap.release()


__all__ = ["FrameReader", "PhotoFeed", "PhotoRing", "RING_BYTES", "RING_MAX_SLOT", "RING_MIN_SLOT",
           "default_workers", "open_capture"]
