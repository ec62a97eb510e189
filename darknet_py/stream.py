"""Streaming detection over many photos, videos and cameras: the engine of ``darknet-py detect``.

    INPUT strings --expand_inputs--> items (photos, videos, cameras, and the errors met listing them)
      -> photos decoded strictly (darknet_py.imageio) in DataLoader worker processes, and on the CPU
         letterboxed there too, so that decoding and resizing overlap the network
      -> batches of ``batch`` photos or frames -> a runner's ``detect_batch`` -> Detections
      -> results in input order -> sinks: Darknet's lines, JSON lines, YOLO txt, drawn photos, videos

Photos decoded for the runner itself (no worker-side preparation) cross from the workers through
a shared ring of slots (:class:`PhotoRing`, page-locked on CUDA); they are views of the ring, valid
until the runner's call returns (a runner copies what it keeps).

A runner is any object with ``detect_batch(images, thresh, nms) -> List[Detections]`` taking
HxWx3 uint8 RGB numpy arrays: :class:`ModelRunner` (``darknet_py.detector.detect_batch``'s
semantics, the default) or ``darknet_py.fast.FastDetector``. A runner may also offer
``host_prepare`` (a picklable ``rgb -> (CHW float tensor, LetterboxInfo)`` the workers run) with
``detect_prepared(x, infos, thresh, nms)``, and ``accepts_tensors`` (uint8 torch tensors, pinned,
instead of numpy arrays).

Under ``torchrun`` (WORLD_SIZE > 1) process r takes items r, r+W, r+2W, ... of the list rank 0
expanded; every ``ROUND_ITEMS * W`` items the text outputs are gathered to rank 0, which writes
them in input order, so the merged output equals a single process's. Files written per photo
(YOLO txt, drawn photos, annotated videos) are written by the process that ran the photo.

This module prints nothing itself: the command line passes the streams to write to.
"""
from __future__ import annotations

import glob
import json
import math
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from .dataset import _resolve_listed
from .detector import check_detector, detect_batch, letterboxed
from .draw import draw_detections, group_by_box
from .errors import DarknetPyError
from .imageio import load_image, save_image
from .postprocess import Detections, detections_to, postprocess
from .transforms import LetterboxInfo, letterbox, stretch

# Files taken from folders and glob matches (what darknet_py.imageio can decode); others are skipped there.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm", ".pnm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                    ".3gp", ".ogv", ".mjpeg", ".mjpg")
LIST_EXTENSIONS = (".txt", ".list")
# Annotated videos: containers with an encoder every OpenCV FFmpeg build has (opencv-python-headless too).
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
_DRAWN_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

# Items each process runs between two merges of the text outputs under torchrun.
ROUND_ITEMS = 256
# Host memory of the shared photo ring (PhotoRing), split into one slot per photo in flight; each
# slot gets at least RING_MIN_SLOT (a 640x480 photo, 921,600 bytes, fits: the ring grows with the
# batch) and at most RING_MAX_SLOT (a 1920x1080 photo fits; larger photos travel the default way).
RING_BYTES = 256 << 20
RING_MIN_SLOT = 1 << 20
RING_MAX_SLOT = 8 << 20


# --------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Item:
    """One thing to run: a photo, a video, a camera, or an error met while listing the inputs."""

    kind: str                    # "image", "video", "camera" or "error"
    name: str                    # as reported (JSON "image"): the path as given, listed or found
    path: Optional[str] = None   # what to open (list entries resolved); a video may be a URL
    rel: str = ""                # output name under --save-txt / --save-dir, relative, with extension
    camera: Optional[int] = None
    error: Optional[str] = None  # kind "error": the one-line message


def _kind_of(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return "video" if ext in VIDEO_EXTENSIONS else "list" if ext in LIST_EXTENSIONS else "image"


def _safe_rel(value: str) -> str:
    """A relative output name for a path: itself when it stays below the output folder, else its name."""
    p = Path(value)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        return p.name or "input"
    return p.as_posix()


def _file_item(path: str, rel: str) -> List[Item]:
    kind = _kind_of(path)
    if kind == "list":
        return _list_items(path)
    return [Item(kind, path, path, rel)]


def _list_items(path: str) -> List[Item]:
    """Darknet's image list (one path per line, as ``get_paths`` reads it), resolved as
    darknet_py.dataset does: relative to the working directory, then to the list's folder. A bad
    entry becomes an error item (reported in its place), the others still run."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except OSError as e:
        return [Item("error", path, error=f"{path}: cannot read the image list: {e.strerror or e}")]
    except UnicodeDecodeError as e:
        return [Item("error", path, error=f"{path}: image list is not UTF-8 text ({e.reason} at byte {e.start})")]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():  # a final newline or trailing blank lines are harmless
        lines.pop()
    list_dir = Path(path).parent
    items: List[Item] = []
    for lineno, raw in enumerate(lines, start=1):
        value = raw.strip()
        where = f"{path}:{lineno}"
        if not value:  # Darknet would try to open "" (AlexeyAB/Yolo_mark#132)
            items.append(Item("error", where, error=f"{where}: blank line in the image list"))
            continue
        found, _ = _resolve_listed(value, list_dir)
        if found is None:
            items.append(Item("error", where, error=f"{where}: '{value}' not found (tried relative to the working "
                                                    f"directory, then to {list_dir})"))
        elif found.is_dir():
            items.append(Item("error", where, error=f"{where}: '{value}' is a directory"))
        else:
            kind = "video" if _kind_of(value) == "video" else "image"
            items.append(Item(kind, os.fspath(found), os.fspath(found), _safe_rel(value)))
    if not lines:
        items.append(Item("error", path, error=f"{path}: the image list names no images"))
    return items


def _folder_items(folder: str, recursive: bool) -> List[Item]:
    """Images of a folder sorted by relative path; hidden files (macOS ``._x.jpg``) are not photos."""
    found: List[str] = []
    subfolders = False
    try:
        if recursive:
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel_dir = os.path.relpath(dirpath, folder)
                found += [os.path.normpath(os.path.join(rel_dir, n)) for n in filenames if not n.startswith(".")]
        else:
            with os.scandir(folder) as entries:
                for e in entries:
                    if e.name.startswith("."):
                        continue
                    if e.is_dir():
                        subfolders = True
                    elif e.is_file():
                        found.append(e.name)
    except OSError as e:
        return [Item("error", folder, error=f"{folder}: cannot list the folder: {e.strerror or e}")]
    rels = sorted((Path(r).as_posix() for r in found if os.path.splitext(r)[1].lower() in IMAGE_EXTENSIONS))
    if not rels:
        hint = "; use --recursive for its subfolders" if subfolders else ""
        return [Item("error", folder, error=f"{folder}: no images in the folder ({', '.join(IMAGE_EXTENSIONS)}){hint}")]
    return [Item("image", os.path.join(folder, r), os.path.join(folder, r), r) for r in rels]


def _glob_items(pattern: str) -> List[Item]:
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]]
    base = os.path.join(*fixed) if fixed else "."
    items = []
    for match in sorted(glob.glob(pattern, recursive=True)):
        ext = os.path.splitext(match)[1].lower()
        if not os.path.isfile(match) or ext not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
            continue
        kind = "video" if ext in VIDEO_EXTENSIONS else "image"
        items.append(Item(kind, match, match, _safe_rel(os.path.relpath(match, base))))
    if not items:
        return [Item("error", pattern, error=f"{pattern}: no image or video files match")]
    return items


def expand_inputs(inputs: Sequence[str], *, recursive: bool = False, cameras: Sequence[int] = ()) -> List[Item]:
    """INPUT strings -> items, in order. Each INPUT is an image file, a folder (its images sorted;
    ``recursive`` for subfolders), a glob pattern, an image list (.txt/.list), a video file or URL,
    or a camera index ("0"); ``cameras`` are added at the end. Problems (an empty folder, a glob
    that matches nothing, a bad list entry) become error items in their place; a missing photo
    stays a photo, which its decoding then reports."""
    items: List[Item] = []
    for s in inputs:
        p = Path(s)
        if "://" in s:
            items.append(Item("video", s, s, _safe_rel(Path(s.split("?")[0]).name or "stream") + ".mp4"))
        elif p.is_dir():
            items += _folder_items(s, recursive)
        elif p.exists():
            items += _file_item(s, p.name)
        elif glob.has_magic(s):
            items += _glob_items(s)
        elif s.isdigit():
            items.append(Item("camera", f"camera {int(s)}", rel=f"camera{int(s)}.mp4", camera=int(s)))
        else:
            items += _file_item(s, p.name)
    for c in cameras:
        items.append(Item("camera", f"camera {c}", rel=f"camera{c}.mp4", camera=int(c)))
    return items


def _stem(rel: str) -> str:
    return os.path.splitext(rel)[0]


def drawn_rel(rel: str) -> str:
    """--save-dir name of a drawn photo: the photo's own, with .jpg where OpenCV cannot write its format."""
    return rel if os.path.splitext(rel)[1].lower() in _DRAWN_EXTENSIONS else _stem(rel) + ".jpg"


def video_rel(item: Item) -> str:
    ext = os.path.splitext(item.rel)[1].lower()
    return _stem(item.rel) + (ext if ext in _FOURCC else ".mp4")


def check_output_names(items: Sequence[Item], save_txt: Optional[str], save_dir: Optional[str]) -> None:
    """Refuse before running what would silently lose results: two inputs written to the same
    --save-txt/--save-dir file (a.jpg and a.png both make a.txt), or a drawn photo over its source."""
    if not save_txt and not save_dir:
        return
    owner: Dict[str, str] = {}
    for it in items:
        if it.kind == "error":
            continue
        src = os.path.realpath(it.path) if it.path else it.name
        key = _stem(it.rel)
        if owner.setdefault(key, src) != src:
            first = next(i.name for i in items if i.kind != "error" and _stem(i.rel) == key)
            raise ValueError(f"{first} and {it.name} would both be written as '{key}.*' under --save-txt/--save-dir; "
                             "give them separately or rename one")
        if save_dir and it.path and it.kind == "image":
            out = os.path.realpath(os.path.join(save_dir, drawn_rel(it.rel)))
            if out == src:
                raise ValueError(f"--save-dir {save_dir} would overwrite the input {it.name} with its drawn copy")


# --------------------------------------------------------------------------------------- runners


def prepare_image(rgb: np.ndarray, net_w: int, net_h: int, letterboxed: bool) -> Tuple[torch.Tensor, LetterboxInfo]:
    """One photo as ``prepare_batch`` makes each row: Darknet's letterbox (or plain resize)."""
    return (letterbox if letterboxed else stretch)(rgb, net_w, net_h)


class ModelRunner:
    """``darknet_py.detector.detect_batch(model, images, thresh, nms)``, split so that the photo
    preparation can run in the decoding workers (CPU) and the upload can come from pinned memory (CUDA)."""

    def __init__(self, model) -> None:
        check_detector(model)
        self.model = model
        self.device = next(model.parameters()).device
        self.net_w, self.net_h = model.input_size
        self.letterboxed = letterboxed(model)
        self.accepts_tensors = True
        # On the CPU Darknet's exact resize costs about as much per photo as decoding it: done in
        # the workers it overlaps the network. On a GPU it is cheaper there, from the uint8 upload.
        self.host_prepare: Optional[Callable] = (
            partial(prepare_image, net_w=self.net_w, net_h=self.net_h, letterboxed=self.letterboxed)
            if self.device.type == "cpu" else None)

    @torch.inference_mode()
    def detect_batch(self, images: Sequence[Any], thresh: float, nms: float) -> List[Detections]:
        """HxWx3 uint8 RGB photos (numpy arrays, or uint8 tensors, pinned for an async upload)."""
        if all(isinstance(im, np.ndarray) for im in images):
            return detect_batch(self.model, images, thresh, nms)
        from .transforms import prepare_batch

        on_device = [torch.as_tensor(im).to(self.device, non_blocking=True) for im in images]
        x, infos = prepare_batch(on_device, self.net_w, self.net_h, device=self.device, letterboxed=self.letterboxed)
        return postprocess(self.model, self.model(x), infos, thresh, nms)

    @torch.inference_mode()
    def detect_prepared(self, x: torch.Tensor, infos: Sequence[LetterboxInfo], thresh: float,
                        nms: float) -> List[Detections]:
        """Photos already prepared by ``host_prepare`` and stacked: the rest of ``detect_batch``.
        (``batched.postprocess_batch``: the detector's postprocess, bit for bit, with a fixed number
        of host syncs per batch instead of several per image.)"""
        return postprocess(self.model, self.model(x.to(self.device, non_blocking=True)), infos, thresh, nms)


def fast_runner(model, *, half: bool = False, bf16: bool = False, cuda_graph: bool = False,
                compile: bool = False):
    """A ``darknet_py.fast.FastDetector`` (imported only when asked for)."""
    flags = " ".join(f for f, on in (("--half", half), ("--bf16", bf16), ("--cuda-graph", cuda_graph),
                                     ("--compile", compile)) if on)
    try:
        from .fast import FastDetector
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.fast":
            raise
        raise RuntimeError(f"{flags} needs darknet_py.fast (FastDetector), which this installation does not have; "
                           "run without these flags") from None
    dtype = torch.float16 if half else torch.bfloat16 if bf16 else torch.float32
    return FastDetector(model, dtype=dtype, channels_last=True, cuda_graph=cuda_graph, compile=compile)


# --------------------------------------------------------------------------------------- pipeline


@dataclass
class StreamOptions:
    thresh: float = 0.5
    nms: float = 0.45
    batch: int = 1
    workers: int = 0               # photo decoding processes (0: in this process)
    exif_orientation: bool = True
    max_frames: Optional[int] = None  # per video or camera
    keep_rgb: bool = False         # results carry the photo (a drawn output needs it)
    pin_memory: bool = False       # decoded photos in pinned memory (model on CUDA)
    ring_bytes: int = RING_BYTES   # the shared photo ring's budget (PhotoRing.for_stream); 0: no ring
    # How workers start: None is the platform's default (fork on Linux: fast, and the workers never
    # touch CUDA, so a model already on the GPU is fine; measured on an H200); "forkserver"/"spawn"
    # need the caller's script to be import-safe (if __name__ == "__main__").
    mp_context: Optional[str] = None


@dataclass
class Result:
    """One photo or video frame, or one failure, in input order."""

    index: int                         # the item's position in the whole input list
    item: Item
    frame: Optional[int] = None        # video/camera frame number, from 0
    width: int = 0
    height: int = 0
    dets: Optional[Detections] = None  # on the CPU
    seconds: float = 0.0               # its batch's detection time / the batch size
    rgb: Optional[np.ndarray] = None   # the photo (keep_rgb), for drawing
    fps: float = 0.0                   # video: frames per second
    error: Optional[str] = None


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
            raise ValueError(f"PhotoRing needs slots and bytes, got {slots} x {slot_bytes}")
        self.slots, self.slot_bytes = int(slots), int(slot_bytes)
        self.buffer = _shared_bytes(self.slots * self.slot_bytes)
        self.released = torch.zeros(1, dtype=torch.int64).share_memory_()  # photos 0 .. released-1 are free
        self._pinned = False

    @classmethod
    def for_stream(cls, batch: int, in_flight: int, photos: int, total_bytes: int = RING_BYTES) -> "PhotoRing":
        """A ring for ``in_flight`` photos requested ahead plus a batch being formed (no more slots
        than ``photos``), sharing ``total_bytes`` within the slot limits."""
        slots = max(1, min(photos, in_flight + batch + 2))
        slot_bytes = min(RING_MAX_SLOT, max(RING_MIN_SLOT, total_bytes // slots)) // 4096 * 4096
        return cls(slots, slot_bytes)

    def _view(self, slot: int, shape: Tuple[int, int]) -> torch.Tensor:
        start = slot * self.slot_bytes
        return self.buffer[start:start + shape[0] * shape[1] * 3].view(shape[0], shape[1], 3)

    def put(self, k: int, rgb: np.ndarray) -> Optional[int]:
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

    def get(self, slot: int, shape: Tuple[int, int]) -> torch.Tensor:
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

    def __init__(self, paths: Sequence[str], exif: bool, prepare: Optional[Callable], keep_rgb: bool,
                 ring: Optional[PhotoRing] = None):
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


class _PhotoFeed:
    """The decoded photos in input order, and the release of the ring's slots as batches finish."""

    def __init__(self, paths: Sequence[str], runner, opts: StreamOptions) -> None:
        self.taken = 0
        self.ring: Optional[PhotoRing] = None
        self._loader: Iterator[dict] = iter(())
        if not paths:
            return
        prepare = getattr(runner, "host_prepare", None)
        workers = opts.workers if len(paths) > 1 else 0  # one photo: forking a worker costs more than it saves
        kwargs: dict = {}
        in_flight = 0
        if workers:
            # Prefetch deep enough to fill the next batch while this one runs the network.
            # No cv2.setNumThreads in the workers: in a process forked from one whose OpenCV thread pool
            # had run, it segfaulted (2 cores) or hung (16 cores); decoding runs on one thread anyway.
            # (a batch's worth ahead, plus one photo per worker: the next batch is decoded by the time
            # this one has run, and no worker idles meanwhile)
            kwargs = dict(prefetch_factor=max(2, math.ceil(opts.batch / workers) + 1))
            in_flight = workers * kwargs["prefetch_factor"]
            if opts.mp_context is not None:
                kwargs["multiprocessing_context"] = opts.mp_context
            # photos for the runner itself (no worker-side preparation, nothing drawn): through the ring
            if prepare is None and not opts.keep_rgb and opts.ring_bytes > 0:
                self.ring = PhotoRing.for_stream(opts.batch, in_flight, len(paths), opts.ring_bytes)
        loader = torch.utils.data.DataLoader(_Photos(paths, opts.exif_orientation, prepare, opts.keep_rgb, self.ring),
                                             batch_size=None, shuffle=False, num_workers=workers, collate_fn=_keep,
                                             pin_memory=opts.pin_memory, **kwargs)
        self._loader = iter(loader)  # the workers start (fork) here
        if self.ring is not None and opts.pin_memory:
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


def _run_batch(runner, samples: Sequence[dict], opts: StreamOptions) -> Tuple[List[Detections], float]:
    start = time.perf_counter()
    if getattr(runner, "host_prepare", None) is not None:
        x = torch.stack([s["x"] for s in samples])
        dets = runner.detect_prepared(x, [s["info"] for s in samples], opts.thresh, opts.nms)
    else:
        tensors = getattr(runner, "accepts_tensors", False)
        images = [s["rgb"] if tensors else s["rgb"].numpy() for s in samples]
        dets = runner.detect_batch(images, opts.thresh, opts.nms)
    dets = detections_to(dets, "cpu")  # waits for the device, so the time is the real one
    return dets, (time.perf_counter() - start) / max(1, len(samples))


def _rgb_array(sample: dict) -> Optional[np.ndarray]:
    rgb = sample.get("rgb")
    return rgb.numpy() if torch.is_tensor(rgb) else rgb


class _Pending:
    """Photos and failures waiting for their batch: output keeps input order, so a failure
    waits behind the photos before it."""

    def __init__(self) -> None:
        self.entries: List[Tuple[int, Item, dict]] = []
        self.ready = 0

    def add(self, index: int, item: Item, sample: dict) -> None:
        self.entries.append((index, item, sample))
        self.ready += "error" not in sample

    def flush(self, runner, opts: StreamOptions) -> List[Result]:
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


_ffmpeg_quiet = False


def _open_capture(item: Item) -> Tuple[Any, Optional[str]]:
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


class _FrameReader(threading.Thread):
    """Reads (and on the CPU prepares) frames ahead of the network; cv2 and torch release the GIL."""

    def __init__(self, cap, prepare: Optional[Callable], pin: bool, depth: int, max_frames: Optional[int]):
        super().__init__(daemon=True)
        self.cap, self.prepare, self.pin, self.max_frames = cap, prepare, pin, max_frames
        self.queue: "queue.Queue" = queue.Queue(maxsize=depth)
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


def _video_results(runner, index: int, item: Item, opts: StreamOptions, bar) -> Iterator[List[Result]]:
    cap, error = _open_capture(item)
    if error:
        yield [Result(index, item, error=error)]
        return
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and math.isfinite(fps) and 0 < fps < 1000 else 25.0  # cameras may not say
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if bar is not None and frames > 0 and item.kind == "video":
        bar.total = (bar.total or 0) + (min(frames, opts.max_frames) if opts.max_frames else frames)
        bar.refresh()
    prepare = getattr(runner, "host_prepare", None)
    reader = _FrameReader(cap, prepare, opts.pin_memory, 2 * opts.batch, opts.max_frames)
    reader.start()
    count = 0
    try:
        done = False
        while not done:
            chunk: List[Tuple[int, dict]] = []
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


def stream(runner, items: Sequence[Item], opts: StreamOptions, *, positions: Optional[Sequence[int]] = None,
           round_of: Optional[Sequence[int]] = None, rounds: int = 1, bar=None) -> Iterator[Optional[List[Result]]]:
    """Run ``items[p]`` for p in ``positions`` (default: all) and yield lists of Results in input
    order; ``None`` marks the end of each of ``rounds`` rounds (``round_of[k]``: the round of
    ``positions[k]``), after every result of that round was yielded."""
    if opts.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {opts.batch}")
    positions = list(range(len(items))) if positions is None else list(positions)
    round_of = [0] * len(positions) if round_of is None else list(round_of)
    photos = _PhotoFeed([items[p].path for p in positions if items[p].kind == "image"], runner, opts)
    pending = _Pending()

    def flush() -> List[Result]:
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


# --------------------------------------------------------------------------------------- outputs


def darknet_lines(name: str, dets: Detections, names: Sequence[str], seconds: float, ext_output: bool) -> str:
    """Darknet's ``test_detector`` output: "NAME: Predicted in T seconds." and "class: NN%" lines."""
    lines = [f"{name}: Predicted in {seconds:f} seconds."]
    boxes = dets.boxes.tolist()
    cls, scores = dets.classes.tolist(), dets.scores.tolist()
    for _, rows in group_by_box(dets):
        for r in rows:
            line = f"{names[cls[r]]}: {scores[r] * 100:.0f}%"
            if ext_output:
                x1, y1, x2, y2 = boxes[r]
                line += f"\t(left_x: {x1:4.0f}   top_y: {y1:4.0f}   width: {x2 - x1:4.0f}   height: {y2 - y1:4.0f})"
            lines.append(line)
    return "\n".join(lines) + "\n"


def json_record(result: Result, names: Sequence[str]) -> dict:
    """One JSON line: image, [frame,] width, height, seconds, detections (class_id, name, score, box
    x1,y1,x2,y2 in photo pixels, clipped as Darknet draws them, rounded to 0.01)."""
    dets = result.dets
    rec: dict = {"image": result.item.name}
    if result.frame is not None:
        rec["frame"] = result.frame
    boxes = dets.boxes.tolist()
    rec.update(width=result.width, height=result.height, seconds=round(result.seconds, 6),
               detections=[{"class_id": int(c), "name": names[int(c)], "score": float(s),
                            "box": [round(v, 2) for v in boxes[i]]}
                           for i, (c, s) in enumerate(zip(dets.classes.tolist(), dets.scores.tolist()))])
    return rec


def yolo_lines(dets: Detections, width: int, height: int, with_score: bool = False) -> str:
    """Darknet/YOLO label rows ``class cx cy w h`` relative to the photo (one per class of a box),
    from the reported pixel boxes; ``with_score`` adds the score as a sixth column."""
    rows = []
    for (x1, y1, x2, y2), c, s in zip(dets.boxes.double().tolist(), dets.classes.tolist(), dets.scores.tolist()):
        vals = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
        rows.append(f"{int(c)} " + " ".join(f"{v:.6f}" for v in vals) + (f" {s:.6f}" if with_score else "") + "\n")
    return "".join(rows)


def legacy_out_path(out: str, image: str, several: bool) -> str:
    """Darknet's ``-out``: a name to which .jpg is added unless it has an image extension;
    several photos get NAME-<stem>."""
    base, ext = os.path.splitext(out)
    if ext.lower() not in _DRAWN_EXTENSIONS:
        base, ext = out, ".jpg"
    if several:
        base = f"{base}-{Path(image).stem}"
    return base + ext


@dataclass
class Outputs:
    """Where results go. Text outputs are written by rank 0 only; files by the process that ran them."""

    text: bool = True                 # Darknet's lines on stdout
    json_stdout: bool = False         # JSON lines on stdout instead of Darknet's lines
    json_out: Optional[str] = None    # JSON lines file
    ext_output: bool = False
    save_txt: Optional[str] = None    # folder of YOLO label files
    save_conf: bool = False
    save_dir: Optional[str] = None    # folder of drawn photos (and annotated videos)
    draw_out: Optional[str] = None    # Darknet's -out naming of drawn photos
    draw_several: bool = False        # -out with several photos: NAME-<stem>
    video_out: Optional[str] = None   # annotated video (several videos: NAME-<stem>.ext)
    video_several: bool = False


def needs_rgb(outputs: Outputs) -> bool:
    return bool(outputs.save_dir or outputs.draw_out or outputs.video_out)


def _mkdir_for(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _open_text(path: str) -> IO[str]:
    return open(_mkdir_for(Path(path)), "w", encoding="utf-8")


def _writing(path, action: Callable):
    """An output that cannot be written stops the run with one line naming it (not a traceback)."""
    try:
        return action()
    except OSError as e:
        raise ValueError(f"{os.fspath(path)}: cannot write: {e.strerror or e}") from None


class _Videos:
    """Annotated videos being written, closed when their input ends."""

    def __init__(self) -> None:
        self.open: Dict[str, Tuple[Any, Tuple[int, int], int]] = {}

    def write(self, path: str, bgr: np.ndarray, fps: float, index: int) -> None:
        entry = self.open.get(path)
        h, w = bgr.shape[:2]
        if entry is None:
            ext = os.path.splitext(path)[1].lower()
            if ext not in _FOURCC:
                raise ValueError(f"{path}: cannot write a video with extension {ext or '(none)'!r}; use one of "
                                 f"{', '.join(_FOURCC)}")
            _writing(path, lambda: _mkdir_for(Path(path)))
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*_FOURCC[ext]), fps, (w, h))
            if not writer.isOpened():
                raise ValueError(f"{path}: OpenCV cannot write this video ({_FOURCC[ext]} codec)")
            entry = self.open[path] = (writer, (w, h), index)
        if (w, h) != entry[1]:
            raise ValueError(f"{path}: a frame of {w}x{h} in a video that started at {entry[1][0]}x{entry[1][1]}")
        entry[0].write(bgr)

    def close(self, keep_index: Optional[int] = None) -> None:
        for path in [p for p, e in self.open.items() if e[2] != keep_index]:
            self.open.pop(path)[0].release()


class FileSink:
    """Per-photo files: YOLO txt, drawn photos, annotated videos."""

    def __init__(self, outputs: Outputs, names: Sequence[str], classes: int) -> None:
        self.o, self.names, self.classes = outputs, names, classes
        self.videos = _Videos()

    def handle(self, r: Result) -> None:
        self.videos.close(keep_index=r.index)
        if r.error is not None:
            return
        o = self.o
        suffix = "" if r.frame is None else f"_{r.frame:06d}"
        if o.save_txt:
            path = Path(o.save_txt) / (_stem(r.item.rel) + suffix + ".txt")
            text = yolo_lines(r.dets, r.width, r.height, o.save_conf)
            _writing(path, lambda: _mkdir_for(path).write_text(text))
        if not needs_rgb(o):
            return
        drawn = draw_detections(r.rgb, r.dets, self.names, self.classes)
        if r.frame is None:
            if o.save_dir:
                path = Path(o.save_dir) / drawn_rel(r.item.rel)
                _writing(path, lambda: save_image(_mkdir_for(path), drawn))
            if o.draw_out:
                save_image(legacy_out_path(o.draw_out, r.item.name, o.draw_several), drawn)
            return
        bgr = np.ascontiguousarray(drawn[:, :, ::-1])
        if o.save_dir:
            self.videos.write(os.path.join(o.save_dir, video_rel(r.item)), bgr, r.fps, r.index)
        if o.video_out:
            path = o.video_out
            if o.video_several:
                base, ext = os.path.splitext(path)
                path = f"{base}-{Path(_stem(r.item.rel)).name}{ext}"
            self.videos.write(path, bgr, r.fps, r.index)

    def close(self) -> None:
        self.videos.close()


@dataclass
class TextRecord:
    """A result's text outputs, ready to write (and to send to rank 0 under torchrun)."""

    index: int
    seq: int
    out: str = ""     # stdout: Darknet's lines or a JSON line
    json: str = ""    # --json-out line
    err: str = ""     # stderr: the failure

    @property
    def key(self) -> Tuple[int, int]:
        return self.index, self.seq


def text_record(r: Result, seq: int, outputs: Outputs, names: Sequence[str]) -> TextRecord:
    if r.error is not None:
        return TextRecord(r.index, seq, err=f"darknet-py: {r.error}\n")
    rec = json_record(r, names) if (outputs.json_stdout or outputs.json_out) else None
    line = json.dumps(rec) + "\n" if rec is not None else ""
    out = ""
    if outputs.json_stdout:
        out = line
    elif outputs.text:
        name = r.item.name if r.frame is None else f"{r.item.name} frame {r.frame}"
        out = darknet_lines(name, r.dets, names, r.seconds, outputs.ext_output)
    return TextRecord(r.index, seq, out, line if outputs.json_out else "", "")


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class TextWriter:
    """Writes text records on rank 0: stdout, stderr and the --json-out file."""

    def __init__(self, outputs: Outputs, out: IO[str], err: IO[str], bar=None) -> None:
        self.out, self.err, self.bar = out, err, bar
        self.json_file: Optional[IO[str]] = None
        if outputs.json_out:
            self.json_file = _writing(outputs.json_out, lambda: _open_text(outputs.json_out))

    def _emit(self, stream: IO[str], text: str) -> None:
        if not text:
            return
        if self.bar is not None and not self.bar.disable and _isatty(stream):
            with self.bar.external_write_mode(file=stream):  # keeps the progress bar out of the lines
                stream.write(text)
        else:
            stream.write(text)

    def write(self, records: Sequence[TextRecord]) -> None:
        for rec in records:
            self._emit(self.err, rec.err)
            self._emit(self.out, rec.out)
            if rec.json and self.json_file is not None:
                self.json_file.write(rec.json)
        # results stream out as their batch finishes, not when a buffer fills
        self.out.flush()
        self.err.flush()
        if self.json_file is not None:
            self.json_file.flush()

    def close(self) -> None:
        if self.json_file is not None:
            self.json_file.close()


# --------------------------------------------------------------------------------------- torchrun


class Distributed:
    """torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK), or one process."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, requested: Optional[str]) -> str:
        """Single process: ``requested`` or the CPU. Under torchrun: cuda:LOCAL_RANK where CUDA is
        available (or asked for as plain 'cuda'), else the CPU."""
        if not self.active:
            return requested or "cpu"
        if requested in (None, "auto"):
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        if requested == "cuda":
            return f"cuda:{self.local_rank}"
        return requested

    def start(self) -> None:
        if self.active and not torch.distributed.is_initialized():
            # Only Python objects cross processes here (the input list, text records): gloo carries
            # them whatever the device, and needs no CUDA stream ordering.
            torch.distributed.init_process_group("gloo")

    def broadcast(self, obj):
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> Optional[list]:
        if not self.active:
            return [obj]
        out = [None] * self.world if self.main else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def all_gather(self, obj) -> list:
        if not self.active:
            return [obj]
        out: list = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


# --------------------------------------------------------------------------------------- the run


@dataclass
class Summary:
    ok: int = 0           # photos and frames detected
    failed: int = 0       # inputs that could not be read
    seconds: float = 0.0  # wall time of the stream (model loading excluded)
    images_per_second: float = 0.0
    main: bool = True     # this process writes the summary


def _progress(total: int, enabled: Optional[bool], err: IO[str]):
    from tqdm import tqdm

    # disable=None: a bar on a terminal, nothing in pipes and logs
    return tqdm(total=total or None, desc="detect", unit="img", file=err, dynamic_ncols=True,
                disable=None if enabled is None else not enabled)


def run(runner, items: Sequence[Item], opts: StreamOptions, outputs: Outputs, names: Sequence[str], classes: int,
        *, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr, progress: Optional[bool] = None,
        dist: Optional[Distributed] = None) -> Summary:
    """Run every item through ``runner`` and write the outputs. Under torchrun (``dist.active``)
    ``items`` must be the same list in every process (broadcast it from rank 0)."""
    dist = dist or Distributed()
    if dist.active and any(it.kind == "camera" for it in items):
        raise ValueError("a camera cannot be shared by several torchrun processes; run it in one process")
    opts.keep_rgb = opts.keep_rgb or needs_rgb(outputs)
    n = len(items)
    positions = list(range(dist.rank, n, dist.world))
    per_round = ROUND_ITEMS * dist.world if dist.active else max(1, n)
    rounds = max(1, math.ceil(n / per_round))
    round_of = [p // per_round for p in positions]
    bar = _progress(sum(items[p].kind == "image" for p in positions), progress if dist.main else False, err)
    writer = TextWriter(outputs, out, err, bar) if dist.main else None
    files = FileSink(outputs, names, classes)
    ok = failed = 0
    buffer: List[TextRecord] = []
    seq: Dict[int, int] = {}
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
            records = []
            for r in chunk:
                files.handle(r)
                k = seq[r.index] = seq.get(r.index, -1) + 1
                records.append(text_record(r, k, outputs, names))
                if r.error is None:
                    ok += 1
                else:
                    failed += 1
            bar.update(len(chunk))
            if dist.active:
                buffer += records
            else:
                writer.write(records)
    finally:
        files.close()
        bar.close()
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - start
    totals = dist.all_gather((ok, failed))
    ok, failed = sum(t[0] for t in totals), sum(t[1] for t in totals)
    return Summary(ok, failed, seconds, ok / seconds if seconds > 0 else 0.0, dist.main)
