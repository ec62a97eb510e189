"""Photos for int8 calibration and for the conversion report, from a Darknet ``.data`` file.

``--calibrate DATA`` reads the photos of the file's ``train`` list (its ``valid`` list when there
is no ``train``), evenly spread over the list so a sorted list does not calibrate on one class;
each is prepared exactly as darknet_py prepares a photo for this model (letterbox, or stretch for
an AlexeyAB model without ``letter_box=1``: darknet_py.detector.letterboxed), so the ranges a
quantiser measures are the ranges it will see.
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch

from ..config.data import read_data_config
from ..config.lists import read_image_list
from ..detector import letterboxed
from ..errors import DataError
from ..imageio import load_image
from ..transforms import prepare_batch

# Enough photos for stable activation ranges on a detector, few enough to stay a minute on a CPU.
DEFAULT_CALIB_IMAGES = 64


def listed_photos(data, key: str | None = None, limit: int | None = None) -> list[str]:
    """Paths of ``limit`` photos spread evenly over the ``key`` list of ``data`` (a .data path);
    ``key`` None: ``train``, else ``valid``."""
    cfg = read_data_config(data)
    keys = [key] if key else ["train", "valid"]
    for k in keys:
        p = cfg.file(k)
        if p is None:
            continue
        listed = read_image_list(p, what=f"{k} list")  # refuses an empty list, naming it
        paths = [os.fspath(item.path) for item in listed]
        if limit is not None and limit < len(paths):
            picks = np.linspace(0, len(paths) - 1, int(limit)).round().astype(int)
            paths = [paths[i] for i in picks]
        return paths
    raise DataError(f"no {' or '.join(repr(k) for k in keys)} key: the photos to use are read from it",
                    os.fspath(cfg.path))


def load_photos(paths) -> list[tuple[str, np.ndarray]]:
    """(path, HxWx3 uint8 RGB) for each path, in order."""
    return [(os.fspath(p), load_image(p)[0]) for p in paths]


def framings(rgb: np.ndarray) -> list[np.ndarray]:
    """The photo, flipped, and four crops of 70 % of each side (corners): more framings of the same
    scenes, for a calibration from a handful of photos (activation ranges of one framing are narrow)."""
    h, w = rgb.shape[:2]
    ch, cw = int(h * 0.7), int(w * 0.7)
    crops = [rgb[y:y + ch, x:x + cw] for y, x in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw))]
    return [rgb, np.ascontiguousarray(rgb[:, ::-1])] + [np.ascontiguousarray(c) for c in crops]


def prepared_batches(model, photos, batch: int = 1) -> Iterator[np.ndarray]:
    """Float32 NCHW batches of ``batch`` photos, prepared for ``model`` (the last may be smaller)."""
    net_w, net_h = model.input_size
    boxed = letterboxed(model)
    rgbs = [rgb for _, rgb in photos]
    for i in range(0, len(rgbs), batch):
        part = [torch.as_tensor(np.ascontiguousarray(r)) for r in rgbs[i:i + batch]]
        x, _ = prepare_batch(part, net_w, net_h, device="cpu", letterboxed=boxed)
        yield x.numpy()


def calibration_batches(model, data, n: int = DEFAULT_CALIB_IMAGES, batch: int = 1) -> list[np.ndarray]:
    """``n`` photos of the ``.data`` file's train (else valid) list, prepared for ``model``."""
    return list(prepared_batches(model, load_photos(listed_photos(data, limit=n)), batch))


__all__ = ["DEFAULT_CALIB_IMAGES", "calibration_batches", "framings", "listed_photos", "load_photos",
           "prepared_batches"]
