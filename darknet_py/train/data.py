"""Darknet's detection training data: ``load_data_detection`` augmentation and a loader for the trainer.

Reproduced from pjreddie/darknet (src/data.c, src/image.c, examples/detector.c):

- geometry (``load_data_detection``): the aspect ratio is jittered, ``new_ar = (w + U(-jw, jw)) /
  (h + U(-jh, jh))`` with ``jw = jitter * w``; the photo is resized to fill the output along one side
  (``nw x nh``) and put at a random offset ``dx = U(0, out_w - nw)``, ``dy = U(0, out_h - nh)`` on a
  canvas of 0.5 (``place_image``). An offset is negative when the photo is larger than the canvas
  (possible for non-square outputs only); the photo is then cropped, and its boxes clipped;
- colour (``random_distort_image``): hue shifted by ``U(-hue, hue)`` of the circle, saturation and
  value scaled by ``rand_scale`` (``U(1, s)``, inverted with probability 1/2), clipped to [0, 1];
  the gray fill is distorted too, as in Darknet;
- a left-right flip with probability 1/2;
- boxes (``fill_truth_detection`` -> ``correct_boxes``): shuffled (``randomize_boxes``), moved with
  the photo, flipped, clamped to [0, 1], cut to ``max_boxes``, then boxes thinner than .001 dropped;
- mini-batches (``get_random_paths``): images drawn at random with replacement; with ``random=1`` a
  new square size ``(rand() % 10 + 10) * 32`` every 10 iterations, 608 for the last 200.

Where it deliberately differs:

- Darknet truncates ``nw, nh, dx, dy`` to ints for the pixels (``place_image`` takes ints) but
  uses the float values for the boxes, so pixels and boxes disagree by up to a pixel or so. Here the
  photo is placed at the float position (cv2.warpAffine, pixel-centre aligned, edges replicated as
  Darknet's bilinear_interpolate clamps), so boxes and pixels agree to 1/32 px. The interpolation
  is OpenCV's bilinear on 8-bit data, not bit-exact with Darknet's float bilinear (about 0.5/255
  apart): irrelevant for training, and much faster than converting every photo to float first;
- the random numbers come from ``numpy.random.Generator`` streams keyed by (seed, iteration, rank)
  instead of the C library's global ``rand()``, so a run is reproducible, resumable, and identical
  with any number of loader workers;
- multi-scale sizes are scaled to the cfg's size (``cfg / 416``, multiples of 32): Darknet's
  320..608 assume a 416 cfg;
- truths carry a count instead of ending at the first ``x == 0`` box (see :func:`correct_boxes`).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config.lists import read_image_list
from ..dataset import scan_labels
from ..errors import DataError, ImageError, UsageError
from ..imageio import load_image

MAX_BOXES = 90         # Darknet's [yolo] max= default (l.max_boxes)
MIN_BOX_SIDE = 0.001   # fill_truth_detection drops boxes with w or h below this
RESIZE_EVERY = 10      # detector.c: a new size every 10 iterations...
LAST_LARGEST = 200     # ...and the largest for the last 200
_FILL = 0.5


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation keys: ``jitter`` from the last [yolo], the rest from [net] (Darknet's defaults)."""

    jitter: float = 0.2
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    flip: bool = True

    def __post_init__(self):
        # jitter >= 1 can make the jittered width zero or negative (a nonsense aspect ratio in Darknet)
        if not 0.0 <= self.jitter < 1.0:
            raise UsageError(f"jitter={self.jitter}: expected 0 <= jitter < 1")
        if not 0.0 <= self.hue <= 1.0:
            raise UsageError(f"hue={self.hue}: expected 0 <= hue <= 1 (a fraction of the colour circle)")
        for name in ("saturation", "exposure"):
            if not getattr(self, name) > 0:
                raise UsageError(f"{name}={getattr(self, name)}: expected a positive scale")

    @classmethod
    def of(cls, cfg=None, **override) -> AugmentConfig:
        """From None (defaults), a mapping or any object with some of these attributes (e.g. the
        trainer's TrainConfig); keys it does not know are ignored, ``override`` wins."""
        if isinstance(cfg, cls) and not override:
            return cfg
        values = {}
        for f in fields(cls):
            if isinstance(cfg, Mapping):
                if f.name in cfg:
                    values[f.name] = cfg[f.name]
            elif cfg is not None and hasattr(cfg, f.name):
                values[f.name] = getattr(cfg, f.name)
        values.update({k: v for k, v in override.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown augmentation keys: {', '.join(sorted(unknown))}")
        return cls(**{k: (bool(v) if k == "flip" else float(v)) for k, v in values.items()})


@dataclass(frozen=True)
class Draws:
    """The random choices of one ``augment`` call; build one by hand to force them in tests."""

    nw: float          # the photo's size on the canvas, pixels
    nh: float
    dx: float          # its top-left corner on the canvas (before the flip), pixels; may be negative
    dy: float
    dhue: float = 0.0  # hue shift, a fraction of the circle
    dsat: float = 1.0  # saturation scale
    dexp: float = 1.0  # exposure (value) scale
    flip: bool = False


def _uniform(rng, lo: float, hi: float) -> float:
    """Darknet's rand_uniform: the bounds are swapped when hi < lo (newer numpy refuses them)."""
    return rng.uniform(hi, lo) if hi < lo else rng.uniform(lo, hi)


def _rand_scale(rng, s: float) -> float:
    scale = _uniform(rng, 1.0, s)
    return scale if rng.random() < 0.5 else 1.0 / scale


def draw(rng, orig_w: int, orig_h: int, out_w: int, out_h: int, *, jitter: float, hue: float = 0.0,
         saturation: float = 1.0, exposure: float = 1.0, flip: bool = True) -> Draws:
    """``load_data_detection``'s random choices for one image. ``rng`` needs only numpy Generator's
    ``uniform(low, high)`` and ``random()``, so a test can pass a scripted stand-in."""
    dw, dh = jitter * orig_w, jitter * orig_h
    new_ar = (orig_w + _uniform(rng, -dw, dw)) / (orig_h + _uniform(rng, -dh, dh))
    if new_ar < 1:
        nh = float(out_h)
        nw = nh * new_ar
    else:
        nw = float(out_w)
        nh = nw / new_ar
    dx = _uniform(rng, 0.0, out_w - nw)  # negative when the photo is wider than the canvas
    dy = _uniform(rng, 0.0, out_h - nh)
    dhue = _uniform(rng, -hue, hue)
    dsat = _rand_scale(rng, saturation)
    dexp = _rand_scale(rng, exposure)
    flipped = bool(flip) and rng.random() < 0.5
    return Draws(float(nw), float(nh), float(dx), float(dy), float(dhue), float(dsat), float(dexp), flipped)


# --------------------------------------------------------------------------- image operations


def place(rgb: np.ndarray, out_w: int, out_h: int, nw: float, nh: float, dx: float, dy: float,
          flip: bool = False) -> np.ndarray:
    """``place_image`` (+ ``flip_image``): ``rgb`` resized to ``nw x nh`` with its top-left corner at
    ``(dx, dy)`` on an ``out_h x out_w`` canvas of 0.5; float32 RGB in [0, 1].

    ``rgb`` is uint8 (0..255) or float (0..1). The flip is folded into the affine map (free).
    The photo covers the canvas pixels whose centres lie inside its rectangle; those are sampled
    pixel-centre aligned with the photo's edge pixels replicated, so the gray never bleeds in.
    """
    src_h, src_w = rgb.shape[:2]
    kx, ky = nw / src_w, nh / src_h
    x0 = out_w - dx - nw if flip else dx  # the photo's left edge on the (flipped) canvas
    # canvas columns c with centre c + .5 in [x0, x0 + nw), clipped to the canvas
    c0, c1 = (min(max(math.ceil(v - 0.5), 0), out_w) for v in (x0, x0 + nw))
    r0, r1 = (min(max(math.ceil(v - 0.5), 0), out_h) for v in (dy, dy + nh))
    canvas = np.full((out_h, out_w, 3), _FILL, np.float32)
    if c1 <= c0 or r1 <= r0:
        return canvas
    # source pixel s (centre s + .5) lands at canvas edge coordinate x0 + (s + .5) * kx, i.e. at pixel
    # index x0 + (s + .5) * kx - .5; mirrored when flipped. Shifted by the region's corner (c0, r0).
    if flip:
        mx = [-kx, 0.0, x0 + nw - 0.5 * kx - 0.5 - c0]
    else:
        mx = [kx, 0.0, x0 + 0.5 * kx - 0.5 - c0]
    m = np.array([mx, [0.0, ky, dy + 0.5 * ky - 0.5 - r0]], np.float64)
    # in place where possible: every fresh full-size temporary costs page faults, per image
    view = canvas[r0:r1, c0:c1]
    if rgb.dtype == np.float32:
        cv2.warpAffine(rgb, m, (c1 - c0, r1 - r0), dst=view, flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    else:
        view[...] = cv2.warpAffine(rgb, m, (c1 - c0, r1 - r0), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
        if rgb.dtype == np.uint8:
            view *= np.float32(1 / 255)
    return canvas


def distort(img: np.ndarray, dhue: float, dsat: float, dexp: float) -> np.ndarray:
    """``distort_image`` on float32 RGB in [0, 1], in place (a C-contiguous float32 array) and returned:
    in HSV, hue + dhue (a fraction of the circle, wrapped), saturation * dsat, value * dexp; back to
    RGB, clipped to [0, 1].

    OpenCV's float HSV has H in degrees and uses Darknet's formulas (a saturation above 1 gives
    negative channels, clipped as Darknet's constrain_image does); HSV2RGB wraps H itself.
    """
    if img.dtype != np.float32 or not img.flags.c_contiguous:
        raise UsageError("distort works in place on a C-contiguous float32 HxWx3 array")
    # Hue in degrees, shifted forwards only: OpenCV's vectorised float HSV2RGB wraps H >= 360 but gets
    # negative H wrong (the scalar path is right), so -x degrees is added as 360 - x.
    shift = 360.0 * (dhue % 1.0)
    m = np.array([[1, 0, 0, shift], [0, dsat, 0, 0], [0, 0, dexp, 0]], np.float32)
    cv2.cvtColor(img, cv2.COLOR_RGB2HSV, dst=img)  # per-pixel operations: safe in place
    cv2.transform(img, m, dst=img)
    cv2.cvtColor(img, cv2.COLOR_HSV2RGB, dst=img)
    return np.clip(img, 0.0, 1.0, out=img)


def correct_boxes(boxes: np.ndarray, out_w: int, out_h: int, nw: float, nh: float, dx: float, dy: float,
                  flip: bool) -> np.ndarray:
    """``correct_boxes``: photo-relative cx, cy, w, h -> canvas-relative, clamped (float64 (N, 4)).

    Darknet turns a box with x == 0 and y == 0 into a 999999 placeholder, because its truth arrays
    end at the first zero x; ours carry a count, so such a box (legal in a label file) is an ordinary
    box here.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    sx, sy, ox, oy = nw / out_w, nh / out_h, dx / out_w, dy / out_h
    left = (b[:, 0] - b[:, 2] / 2) * sx + ox
    right = (b[:, 0] + b[:, 2] / 2) * sx + ox
    top = (b[:, 1] - b[:, 3] / 2) * sy + oy
    bottom = (b[:, 1] + b[:, 3] / 2) * sy + oy
    if flip:
        left, right = 1.0 - right, 1.0 - left
    left, right, top, bottom = (np.clip(v, 0.0, 1.0) for v in (left, right, top, bottom))
    return np.stack([(left + right) / 2, (top + bottom) / 2, np.clip(right - left, 0.0, 1.0),
                     np.clip(bottom - top, 0.0, 1.0)], 1)


def augment(rgb: np.ndarray, boxes: np.ndarray, classes: np.ndarray, out_w: int, out_h: int, rng=None, *,
            jitter: float, hue: float = 0.0, saturation: float = 1.0, exposure: float = 1.0, flip: bool = True,
            params: Draws | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``load_data_detection`` for one image.

    ``rgb``: HxWx3 uint8 (or float in [0, 1]); ``boxes``: (N, 4) cx, cy, w, h relative to the photo.
    Returns (float32 out_h x out_w x 3 RGB in [0, 1], float32 (M, 4) cx, cy, w, h relative to the
    output, int64 (M,) classes), boxes thinner than .001 dropped. ``params`` forces the draws
    (``rng`` is then unused).
    """
    if params is None and rng is None:
        raise TypeError("augment needs an rng (numpy Generator) or forced params")
    h, w = rgb.shape[:2]
    p = params if params is not None else draw(rng, w, h, out_w, out_h, jitter=jitter, hue=hue,
                                               saturation=saturation, exposure=exposure, flip=flip)
    img = place(rgb, out_w, out_h, p.nw, p.nh, p.dx, p.dy, p.flip)
    # the flip commutes with the per-pixel distortion, so doing it first (in place) is the same
    if p.dhue != 0.0 or p.dsat != 1.0 or p.dexp != 1.0:  # identity draws: skip the HSV round trip
        distort(img, p.dhue, p.dsat, p.dexp)
    out = correct_boxes(boxes, out_w, out_h, p.nw, p.nh, p.dx, p.dy, p.flip)
    keep = (out[:, 2] >= MIN_BOX_SIDE) & (out[:, 3] >= MIN_BOX_SIDE)
    return img, out[keep].astype(np.float32), np.asarray(classes, np.int64).reshape(-1)[keep]


# --------------------------------------------------------------------------- dataset


class DetectionDataset(Dataset):
    """The images of a list file and their labels, augmented on demand.

    Every label file is read up front (``scan_labels``): a bad row raises DataError, or with
    ``on_bad="skip"`` is left out; missing label files make negatives. ``report`` says what was found.
    Items are keyed by ``(index, width, height, seed)`` tuples from :class:`MultiScaleBatchSampler`,
    so the sampler controls both the size and all randomness.
    """

    def __init__(self, list_path, classes: int, augmentation=None, *, on_bad: str = "error",
                 max_boxes: int = MAX_BOXES, exif_orientation: bool = True):
        if max_boxes < 1:
            raise UsageError(f"max_boxes={max_boxes}: expected at least 1")
        self.list_path = os.fspath(list_path)
        self.images = read_image_list(list_path, "training list")
        self.labels, self.report = scan_labels(self.images, classes, on_bad)
        self.classes = classes
        self.augmentation = AugmentConfig.of(augmentation)
        self.max_boxes = int(max_boxes)
        self.exif_orientation = exif_orientation

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            index, width, height, seed = key
        except (TypeError, ValueError):
            raise TypeError(f"DetectionDataset items are (index, width, height, seed) tuples, got {key!r}") from None
        item, labels = self.images[index], self.labels[index]
        try:
            rgb, _ = load_image(item.path, exif_orientation=self.exif_orientation)
        except ImageError as exc:  # never a blank stand-in: the list line says which entry to fix
            raise DataError(f"image '{item.listed}': {exc.reason}", self.list_path, item.line) from None
        rng = np.random.default_rng(seed)
        # randomize_boxes, then the cut to max_boxes before the thin boxes are dropped: Darknet's
        # order (correct_boxes moves each box alone, so cutting before it is the same), which may
        # keep fewer than max_boxes when some of the first ones turn out degenerate.
        order = rng.permutation(len(labels.classes))[: self.max_boxes]
        a = self.augmentation
        img, boxes, classes = augment(rgb, labels.boxes[order], labels.classes[order], int(width), int(height), rng,
                                      jitter=a.jitter, hue=a.hue, saturation=a.saturation, exposure=a.exposure,
                                      flip=a.flip)
        target = np.concatenate([boxes, classes[:, None].astype(np.float32)], 1)
        # a CHW view, not a copy (collate's stack copies anyway)
        return torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(target)


# --------------------------------------------------------------------------- sampler


def _scaled(dim: int, cfg: int) -> int:
    """Darknet's 416-based size ``dim`` for a cfg of size ``cfg``: a multiple of 32, at least 32."""
    return max(32, int(round(dim * cfg / 416 / 32)) * 32)


class MultiScaleBatchSampler:
    """Mini-batches of ``(index, width, height, seed)`` for :class:`DetectionDataset`.

    One iteration (one weight update) is ``subdivisions`` mini-batches of ``batch`` images on each of
    ``world_size`` ranks, all at one size. Images are drawn with replacement (``get_random_paths``)
    from a Generator keyed by (seed, iteration, rank), so ``start_iteration=k`` continues a run
    exactly and each rank has its own images; the size depends on (seed, iteration) only, so all
    ranks agree. With ``random`` the size is Darknet's ``(rand() % 10 + 10) * 32`` scaled by
    ``cfg / 416`` per axis (320..608 for a 416 cfg), new every 10 iterations, the largest for the
    last 200 of the schedule; without it the cfg's size.

    ``schedule_end`` is where the schedule ends (the cfg's ``max_batches``; default ``iterations``).
    Darknet's "last 200" counts back from it (``get_current_batch + 200 > max_batches``), so a run
    told to stop early (``iterations`` below it, as ``--max-batches 2`` on an 8000-update cfg) sees
    the random sizes that Darknet stopped by hand at that point saw, not the largest size only.
    """

    def __init__(self, length: int, batch: int, iterations: int, *, subdivisions: int = 1, width: int = 416,
                 height: int = 416, random: bool = False, seed: int = 0, start_iteration: int = 0, rank: int = 0,
                 world_size: int = 1, schedule_end: int | None = None):
        end = iterations if schedule_end is None else schedule_end
        checks = [(end >= iterations, f"schedule_end={schedule_end} < iterations={iterations}"),
                  (length >= 1, f"length={length}: the dataset is empty"), (batch >= 1, f"batch={batch} < 1"),
                  (subdivisions >= 1, f"subdivisions={subdivisions} < 1"), (iterations >= 0, "iterations < 0"),
                  (0 <= start_iteration <= iterations, f"start_iteration={start_iteration} outside 0..{iterations}"),
                  (width >= 1 and height >= 1, f"size {width}x{height}"), (seed >= 0, f"seed={seed} < 0"),
                  (0 <= rank < world_size, f"rank={rank} outside 0..{world_size - 1}")]
        for ok, msg in checks:
            if not ok:
                raise UsageError(msg)
        self.length, self.batch, self.iterations, self.subdivisions = length, batch, iterations, subdivisions
        self.width, self.height, self.random, self.seed = width, height, bool(random), seed
        self.start_iteration, self.rank, self.world_size = start_iteration, rank, world_size
        self.schedule_end = end

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """Every size this sampler can give, smallest first."""
        if not self.random:
            return [(self.width, self.height)]
        return sorted({(_scaled(k * 32, self.width), _scaled(k * 32, self.height)) for k in range(10, 20)})

    def size_at(self, iteration: int) -> tuple[int, int]:
        """(width, height) of an iteration."""
        if not self.random:
            return self.width, self.height
        if iteration >= self.schedule_end - LAST_LARGEST:  # detector.c: 608 at the end of the schedule
            return _scaled(608, self.width), _scaled(608, self.height)
        block = iteration // RESIZE_EVERY
        k = int(np.random.default_rng([self.seed, 0, block]).integers(10, 20))
        return _scaled(k * 32, self.width), _scaled(k * 32, self.height)

    def iteration_items(self, iteration: int) -> list[tuple[int, int, int, int]]:
        """This rank's ``batch * subdivisions`` items of one iteration."""
        w, h = self.size_at(iteration)
        rng = np.random.default_rng([self.seed, 1, iteration, self.rank])
        n = self.batch * self.subdivisions
        index = rng.integers(0, self.length, n)
        seeds = rng.integers(0, 2 ** 63 - 1, n)
        return [(int(i), w, h, int(s)) for i, s in zip(index, seeds)]

    def __iter__(self) -> Iterator[list[tuple[int, int, int, int]]]:
        for it in range(self.start_iteration, self.iterations):
            items = self.iteration_items(it)
            for k in range(self.subdivisions):
                yield items[k * self.batch:(k + 1) * self.batch]

    def __len__(self) -> int:
        return (self.iterations - self.start_iteration) * self.subdivisions


# --------------------------------------------------------------------------- batches and loader


def collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images (N, 3, H, W) float32, truths (N, T, 5) float32 [cx, cy, w, h, class] zero-padded,
    counts (N,) int64). T is the largest count, at least 1 (no zero-size dimension downstream)."""
    images = torch.stack([b[0] for b in batch])
    counts = torch.tensor([len(b[1]) for b in batch], dtype=torch.int64)
    truths = torch.zeros((len(batch), max(1, int(counts.max()) if len(batch) else 1), 5), dtype=torch.float32)
    for i, (_, t) in enumerate(batch):
        truths[i, :len(t)] = t
    return images, truths, counts


def _worker_init(_worker_id: int) -> None:
    # each worker is one process: OpenCV's and torch's own thread pools would only oversubscribe the cores
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def make_loader(dataset: DetectionDataset, sampler: MultiScaleBatchSampler, workers: int = 0) -> DataLoader:
    """A DataLoader over ``sampler``'s mini-batches; the same batches for any number of workers.

    Workers are spawned, not forked: a forked child inherits OpenCV's thread pool in whatever state
    the parent's threads left it, and ``cv2.setNumThreads`` there can block forever (seen here:
    pthread_cond_destroy waiting for pool threads that do not exist in the child). Spawning costs
    a second or two per worker once per run (the workers persist).
    """
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                      worker_init_fn=_worker_init if workers > 0 else None,
                      multiprocessing_context="spawn" if workers > 0 else None)


__all__ = ["AugmentConfig", "Draws", "DetectionDataset", "MultiScaleBatchSampler", "MAX_BOXES", "augment",
           "collate", "correct_boxes", "distort", "draw", "make_loader", "place"]
