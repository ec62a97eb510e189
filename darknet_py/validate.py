"""``detector valid``, ``detector map`` and ``detector recall``: the detector over a ``.data``
file's ``valid`` list, Darknet's result files, and the numbers to put beside a paper's.

Darknet's ``validate_detector`` (examples/detector.c) letterboxes each photo, keeps boxes with
objectness > .005, runs ``do_nms_sort`` at .45 and writes, into the ``results`` folder:
``coco_results.json`` for ``eval=coco``, ``comp4_det_test_<class>.txt`` per class otherwise
(``imagenet-detection.txt`` for ``eval=imagenet``). ``map`` evaluates exactly those detections
(darknet_py.evaluation); ``recall`` is ``validate_detector_recall``.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .boxes import iou_matrix_cxcywh
from .checks import check_count, check_thresholds
from .config.data import DataConfig, read_data_config
from .config.lists import ListedImage, read_image_list
from .config.names import default_names, read_names
from .dataset import (CocoAnnotations, LabelReport, category_ids, coco_image_id, read_coco_annotations, scan_labels,
                      truth_from_coco, truth_from_labels)
from .defaults import (MAP_CONF_THRESH, MAP_IOU, RECALL_IOU, RECALL_NMS, RECALL_THRESH, VALID_NMS, VALID_NMS_ALEXEYAB,
                       VALID_THRESH, VALID_THRESH_ALEXEYAB)
from .detector import check_detector, letterboxed, load
from .device import model_device
from .errors import DataError
from .evaluation import EvaluationReport, GroundTruth, ImageDetections, coco_detections, coco_evaluate, evaluate
from .files import OutputPlan, write_text
from .layers.head import decode_heads
from .postprocess import darknet_nms, detections_to, postprocess
from .stream.feed import PhotoFeed, default_workers
from .transforms import fit, pixel_corners

# letterboxed NCHW batch -> the raw [yolo] heads, as ``model(x)`` returns them
Forward = Callable[[torch.Tensor], Sequence[torch.Tensor]]


@dataclass(frozen=True)
class ValidImage:
    path: Path
    listed: str     # as written in the list (result files name images by it)
    line: int
    width: int
    height: int
    image_id: int


@dataclass
class ValidationRun:
    """Detections of every listed image, as Darknet's ``dets`` after NMS: one row per (box, class)."""

    images: list[ValidImage]
    boxes: list[np.ndarray]    # (D, 4) float64 photo pixel corners, not clipped (Darknet's bbox in pixels)
    scores: list[np.ndarray]   # (D,) objectness * class probability
    classes: list[np.ndarray]  # (D,) int64
    seconds: float
    ranks: list[np.ndarray] | None = None  # (D,) place in Darknet's dets array (array_order=True)

    def detections(self) -> list[ImageDetections]:
        """Boxes clipped to [0, w] x [0, h] as ``print_cocos`` writes them: what ``map`` evaluates."""
        out = []
        ranks = self.ranks if self.ranks is not None else [None] * len(self.images)
        for im, b, s, c, r in zip(self.images, self.boxes, self.scores, self.classes, ranks):
            clipped = np.stack([np.maximum(b[:, 0], 0), np.maximum(b[:, 1], 0), np.minimum(b[:, 2], im.width),
                                np.minimum(b[:, 3], im.height)], 1) if len(b) else b
            out.append(ImageDetections(im.image_id, clipped, s, c, r))
        return out

    def count(self) -> int:
        return int(sum(len(s) for s in self.scores))


# --------------------------------------------------------------------------- running the detector


def _progress(total: int, enabled: bool | None, desc: str):
    from tqdm import tqdm

    # disable=None: a bar on a terminal, silence in pipes and logs
    return tqdm(total=total, desc=desc, unit="img", disable=None if enabled else True, file=sys.stderr)


def _batches(model, images: Sequence[ListedImage], list_path: str, batch: int, workers: int | None,
             progress: bool | None, exif: bool, stretch: bool, desc: str):
    """(chunk of (image, x, info), stacked input on the model's device), ``batch`` photos at a time,
    from the streaming command's photo feed; photos stretched when ``stretch`` (or the network
    says so), else letterboxed."""
    net_w, net_h = model.input_size
    device = model_device(model)
    workers = workers if workers is not None else default_workers(device.type == "cuda")
    prepare = partial(fit, net_w=net_w, net_h=net_h, letterboxed=not stretch and letterboxed(model))
    chunk = []
    with _progress(len(images), progress, desc) as bar, \
            PhotoFeed([os.fspath(im.path) for im in images], prepare, workers=workers, batch=batch,
                      exif_orientation=exif) as feed:
        for image in images:
            sample = feed.next()
            if "error" in sample:  # an unreadable photo would silently change the score: stop, name it
                raise DataError(sample["error"], list_path, image.line)
            chunk.append((image, sample["x"], sample["info"]))
            if len(chunk) == batch:
                yield chunk, torch.stack([c[1] for c in chunk]).to(device, non_blocking=True)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            yield chunk, torch.stack([c[1] for c in chunk]).to(device, non_blocking=True)
            bar.update(len(chunk))


@torch.inference_mode()
def run_detections(model, images: Sequence[ListedImage], image_ids: Sequence[int], *, list_path: str = "<list>",
                   thresh: float = VALID_THRESH, nms: float = VALID_NMS, batch: int = 8,
                   workers: int | None = None, progress: bool | None = False,
                   exif_orientation: bool = True, nms_in_pixels: bool = False,
                   array_order: bool = False, forward: Forward | None = None) -> ValidationRun:
    """Darknet's validation pass over listed images, ``batch`` at a time on the model's device
    (``nms_in_pixels``, ``array_order``: see darknet_py.postprocess.postprocess_decoded).
    ``forward``: what turns the batch into the raw heads instead of ``model(x)`` (a converted model:
    darknet_py.export.accuracy); the decode, thresholds and NMS stay the model's."""
    check_detector(model)
    _check_args(thresh=thresh, nms=nms, batch=batch, workers=workers)
    start = time.perf_counter()
    run = ValidationRun([], [], [], [], 0.0, [] if array_order else None)
    ids = iter(image_ids)
    for chunk, x in _batches(model, images, list_path, batch, workers, progress, exif_orientation, False,
                             "detector valid"):
        # the whole batch at once: the per-image postprocess bit for bit, without per-image host syncs
        heads = model(x) if forward is None else forward(x)
        dets = postprocess(model, heads, [c[2] for c in chunk], thresh, nms, photo_boxes=pixel_corners,
                           nms_in_pixels=nms_in_pixels, array_order=array_order)
        for (image, _, info), d in zip(chunk, detections_to(dets, "cpu")):
            run.images.append(ValidImage(image.path, image.listed, image.line, info.img_w, info.img_h, next(ids)))
            run.boxes.append(d.boxes.double().cpu().numpy())
            run.scores.append(d.scores.float().cpu().numpy())
            run.classes.append(d.classes.cpu().numpy())
            if run.ranks is not None and d.array_rank is not None:
                run.ranks.append(d.array_rank.cpu().numpy())
    run.seconds = time.perf_counter() - start
    return run


# --------------------------------------------------------------------------- Darknet's result files


def _basecfg(path: str) -> str:
    """Darknet's ``basecfg``: the file name up to its first '.' (the VOC result files' image id)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name.split(".", 1)[0]


def write_coco_results(path, run: ValidationRun, cat_ids: Sequence[int]) -> Path:
    """``print_cocos``: one record per (box, class), Darknet's exact text layout, valid JSON."""
    records = coco_detections(run.detections(), cat_ids)
    lines = [f'{{"image_id":{r["image_id"]}, "category_id":{r["category_id"]}, "bbox":[{r["bbox"][0]:f}, '
             f'{r["bbox"][1]:f}, {r["bbox"][2]:f}, {r["bbox"][3]:f}], "score":{r["score"]:f}}}' for r in records]
    # Darknet writes ",\n" after every record and seeks back over the last one; with no record at
    # all that seek eats the "[" and leaves invalid JSON, so an empty run writes "[\n]\n".
    path = Path(path)
    write_text(path, "[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n")
    return path


def write_voc_results(folder, prefix: str, run: ValidationRun, names: Sequence[str]) -> list[Path]:
    """``print_detector_detections``: per class ``<prefix><name>.txt`` lines ``id score x1 y1 x2 y2``
    with 1-based corners clipped to [1, w] x [1, h] (the VOC devkit's pixel convention)."""
    rows: list[list[str]] = [[] for _ in names]
    for im, b, s, c in zip(run.images, run.boxes, run.scores, run.classes):
        ident = _basecfg(im.listed)
        for (x1, y1, x2, y2), score, cls in zip(b.tolist(), s.tolist(), c.tolist()):
            x1, y1 = max(x1 + 1, 1.0), max(y1 + 1, 1.0)
            x2, y2 = min(x2 + 1, float(im.width)), min(y2 + 1, float(im.height))
            rows[cls].append(f"{ident} {score:f} {x1:f} {y1:f} {x2:f} {y2:f}\n")
    paths = []
    for name, lines in zip(names, rows):
        p = Path(folder) / f"{prefix}{name}.txt"
        write_text(p, "".join(lines))
        paths.append(p)
    return paths


def write_imagenet_results(path, run: ValidationRun) -> Path:
    """``print_imagenet_detections``: ``index class score x1 y1 x2 y2``, 1-based index and class."""
    out = []
    for i, (im, b, s, c) in enumerate(zip(run.images, run.boxes, run.scores, run.classes), start=1):
        for (x1, y1, x2, y2), score, cls in zip(b.tolist(), s.tolist(), c.tolist()):
            out.append(f"{i} {cls + 1} {score:f} {max(x1, 0.0):f} {max(y1, 0.0):f} "
                       f"{min(x2, float(im.width)):f} {min(y2, float(im.height)):f}\n")
    path = Path(path)
    write_text(path, "".join(out))
    return path


# --------------------------------------------------------------------------- the commands


@dataclass
class ValidSetup:
    data: DataConfig
    model: torch.nn.Module
    names: list[str]
    images: list[ListedImage]
    list_path: Path
    coco: CocoAnnotations | None


def _check_args(*, batch: int, workers: int | None, width: int | None = None, height: int | None = None,
                **thresholds: float | None) -> None:
    """The numeric arguments of valid / map / recall, before any file is read or model loaded (a
    size's multiple of the network's stride is checked when the cfg is parsed)."""
    check_thresholds(**thresholds)
    check_count("batch", batch, 1)
    check_count("workers", workers, 0)
    check_count("width", width, 1)
    check_count("height", height, 1)


def _setup(data_path, cfg, weights, device, width, height, model=None) -> ValidSetup:
    data = read_data_config(data_path)
    list_path = data.require("valid", "the list of images to validate on")
    images = read_image_list(list_path, "valid list")  # every path checked before the model loads
    if model is None:
        model = load(cfg, weights, device=device, width=width, height=height)
    check_detector(model)
    classes = model.netdef.classes
    data.check_classes(classes)
    names_path = data.file("names")
    names = read_names(names_path, classes) if names_path else default_names(classes)
    ann = data.file("annotations")
    return ValidSetup(data, model, names, images, list_path, read_coco_annotations(ann) if ann else None)


def image_ids_for(setup: ValidSetup, from_names: bool) -> list[int]:
    """COCO ids from the annotations json, or Darknet's file-name rule, or list positions."""
    if setup.coco is not None:
        ids = [setup.coco.image(im.listed)["id"] for im in setup.images]
    elif from_names:
        ids = [coco_image_id(im.listed) for im in setup.images]
    else:
        return list(range(1, len(setup.images) + 1))
    first = {}
    for im, i in zip(setup.images, ids):
        if i in first:
            raise DataError(f"image id {i} of '{im.listed}' was already given to line {first[i].line} "
                            f"('{first[i].listed}')", os.fspath(setup.list_path), im.line)
        first[i] = im
    return ids


def detector_valid(data_path, cfg, weights, *, out: str | None = None, results: str | None = None,
                   device="cpu", batch: int = 8, thresh: float | None = None, nms: float | None = None,
                   width: int | None = None, height: int | None = None, progress: bool | None = False,
                   workers: int | None = None, model=None, overwrite: bool = False) -> tuple[ValidationRun, list[Path]]:
    """``darknet detector valid``: detections over ``valid``, written where ``results`` says. The
    result files are checked before the run: an existing one is replaced when ``out`` names it or
    with ``overwrite`` (Darknet's default names are not the user's to lose silently). ``thresh``
    and ``nms`` default to the model's Darknet tree's (pjreddie .005 and .45, AlexeyAB .001 and .6);
    in AlexeyAB's tree a DIoU/greedy NMS runs on the boxes in photo pixels, as its validate_detector."""
    _check_args(thresh=thresh, nms=nms, batch=batch, workers=workers, width=width,
                height=height)
    setup = _setup(data_path, cfg, weights, device, width, height, model)
    alexeyab = setup.model.darknet.tree == "alexeyab"
    if thresh is None:
        thresh = VALID_THRESH_ALEXEYAB if alexeyab else VALID_THRESH
    if nms is None:
        nms = VALID_NMS_ALEXEYAB if alexeyab else VALID_NMS
    kind = setup.data.eval
    classes = setup.model.netdef.classes
    if kind == "imagenet" and classes != 200:
        raise DataError(f"eval = imagenet writes Darknet's 200 ImageNet detection classes; the network has "
                        f"classes={classes}", os.fspath(setup.data.path), setup.data.line("eval"))
    cat_ids = category_ids(classes, coco=True) if kind == "coco" else None
    ids = image_ids_for(setup, from_names=kind == "coco")
    folder = Path(results) if results is not None else setup.data.results
    folder.mkdir(parents=True, exist_ok=True)  # Darknet would crash on fopen(NULL) instead
    if kind == "coco":
        targets = [folder / f"{out or 'coco_results'}.json"]
    elif kind == "imagenet":
        targets = [folder / f"{out or 'imagenet-detection'}.txt"]
    else:
        targets = [folder / f"{out or 'comp4_det_test_'}{name}.txt" for name in setup.names]
    plan = OutputPlan(overwrite)
    for target in targets:
        plan.add(target, "a result file of detector valid", named=out is not None)
    run = run_detections(setup.model, setup.images, ids, list_path=os.fspath(setup.list_path), thresh=thresh,
                         nms=nms, batch=batch, workers=workers, progress=progress, nms_in_pixels=alexeyab)
    if kind == "coco":
        written = [write_coco_results(folder / f"{out or 'coco_results'}.json", run, cat_ids)]
    elif kind == "imagenet":
        written = [write_imagenet_results(folder / f"{out or 'imagenet-detection'}.txt", run)]
    else:
        written = write_voc_results(folder, out or "comp4_det_test_", run, setup.names)
    return run, written


@dataclass
class MapResult:
    report: EvaluationReport
    labels: LabelReport | None  # None when the truth came from a COCO json
    run: ValidationRun
    truth_source: str


def detector_map(data_path, cfg, weights, *, device="cpu", batch: int = 8, thresh: float = VALID_THRESH,
                 nms: float = VALID_NMS, iou: float = MAP_IOU, conf_thresh: float = MAP_CONF_THRESH,
                 on_bad_label: str = "error",
                 width: int | None = None, height: int | None = None, progress: bool | None = False,
                 workers: int | None = None, model=None, forward: Forward | None = None,
                 limit: int | None = None) -> MapResult:
    """Detections over ``valid`` (as ``detector valid`` makes them) against the truth: the YOLO
    label files found the Darknet way, or the COCO json that ``annotations =`` names.
    ``forward``: see :func:`run_detections`; ``limit``: that many photos spread evenly over the
    list (the first and the last included), for a quick estimate.

    ``thresh``, ``nms``, ``conf_thresh`` in [0, 1]; ``iou`` in [0, 1) (a match needs IoU > ``iou``)."""
    _check_args(thresh=thresh, nms=nms, iou=iou, conf_thresh=conf_thresh, batch=batch, workers=workers, width=width,
                height=height)
    check_count("limit", limit, 1)
    setup = _setup(data_path, cfg, weights, device, width, height, model)
    if limit is not None and limit < len(setup.images):
        picks = np.linspace(0, len(setup.images) - 1, int(limit)).round().astype(int)
        setup.images = [setup.images[i] for i in picks]
    classes = setup.model.netdef.classes
    coco_kind = setup.data.eval == "coco"
    cat_ids = category_ids(classes, coco=coco_kind)
    labels = report = None
    if setup.coco is None:  # read every label before the long part, so a bad row fails fast
        labels, report = scan_labels(setup.images, classes, on_bad_label)
    ids = image_ids_for(setup, from_names=False)
    # AlexeyAB's tree counts its TP/FP at conf_thresh in Darknet's detection-array order
    alexeyab = setup.model.darknet.tree == "alexeyab"
    run = run_detections(setup.model, setup.images, ids, list_path=os.fspath(setup.list_path), thresh=thresh,
                         nms=nms, batch=batch, workers=workers, progress=progress, array_order=alexeyab,
                         forward=forward)
    truths: list[GroundTruth] = []
    if setup.coco is not None:
        class_of = {c: i for i, c in enumerate(cat_ids)}
        for im in run.images:
            gt = truth_from_coco(setup.coco, im.listed, class_of)
            if (gt.width, gt.height) != (im.width, im.height):
                raise DataError(f"'{im.listed}' is {im.width}x{im.height} but the annotations say "
                                f"{gt.width}x{gt.height}", os.fspath(setup.coco.path))
            truths.append(gt)
        source = f"COCO annotations {setup.coco.path}"
    else:
        truths = [truth_from_labels(lab, im.image_id, Path(im.listed).name, im.width, im.height)
                  for lab, im in zip(labels, run.images)]
        source = "YOLO label files"
    dets = run.detections()
    result = evaluate(truths, dets, setup.names, category_ids=cat_ids, iou=iou, conf_thresh=conf_thresh,
                      coco=setup.coco is None, counting="alexeyab" if alexeyab else "ranking")
    if setup.coco is not None:
        # pycocotools on the user's own json (segmentation areas, crowd regions, every float as
        # written), restricted to the listed images: the number the COCO tools would give.
        result.coco = coco_evaluate(setup.coco.path, coco_detections(dets, cat_ids), [t.image_id for t in truths])
    return MapResult(result, report, run, source)


@dataclass
class RecallResult:
    images: int
    truths: int
    correct: int
    proposals: int
    avg_iou: float

    @property
    def recall(self) -> float:
        return self.correct / self.truths if self.truths else float("nan")

    def line(self, index: int | None = None) -> str:
        """Darknet's progress line: ``i correct total RPs/Img IOU Recall``."""
        i = self.images - 1 if index is None else index
        iou = 100 * self.avg_iou if self.truths else float("nan")
        return (f"{i:5d} {self.correct:5d} {self.truths:5d}\tRPs/Img: {self.proposals / max(1, self.images):.2f}"
                f"\tIOU: {iou:.2f}%\tRecall:{100 * self.recall:.2f}%")


@torch.inference_mode()
def detector_recall(data_path, cfg, weights, *, device="cpu", batch: int = 8, thresh: float = RECALL_THRESH,
                    nms: float = RECALL_NMS, iou: float = RECALL_IOU, on_bad_label: str = "error",
                    width: int | None = None, height: int | None = None, progress: bool | None = False,
                    workers: int | None = None, model=None, each: Callable[[RecallResult], None] | None = None
                    ) -> RecallResult:
    """``validate_detector_recall``: how many truths some proposal covers at IoU > ``iou``.

    As Darknet: photos resized without letterbox, proposals are boxes with objectness > ``thresh``
    after objectness NMS (``do_nms_obj``), classes ignored. Darknet reads its list from the fixed
    path data/coco_val_5k.list and scans past the end of its box array; we take the ``valid``
    list and every proposal. ``thresh``, ``nms`` in [0, 1]; ``iou`` in [0, 1).
    """
    _check_args(thresh=thresh, nms=nms, iou=iou, batch=batch, workers=workers, width=width,
                height=height)
    setup = _setup(data_path, cfg, weights, device, width, height, model)
    model = setup.model
    labels, _ = scan_labels(setup.images, model.netdef.classes, on_bad_label)
    net_w, net_h = model.input_size
    total = correct = proposals = n = 0
    iou_sum = 0.0
    for chunk, x in _batches(model, setup.images, os.fspath(setup.list_path), batch, workers, progress, True, True,
                             "detector recall"):
        boxes, obj, _ = decode_heads(model(x), model.head_specs, net_w, net_h)
        for i in range(len(chunk)):
            keep = obj[i] > thresh
            b, o = boxes[i][keep].double(), obj[i][keep]
            o = darknet_nms(b, o[:, None], nms)[:, 0]  # do_nms_obj: one "class", the objectness
            b = b[o > thresh]
            proposals += int(b.shape[0])
            truth = torch.from_numpy(labels[n].boxes).to(b.device)
            if truth.shape[0]:
                best = (iou_matrix_cxcywh(truth, b).amax(1) if b.shape[0]
                        else torch.zeros(truth.shape[0], dtype=torch.float64, device=b.device)).clamp(min=0)
                total += int(truth.shape[0])
                correct += int((best > iou).sum())
                iou_sum += float(best.sum())
            n += 1
            if each is not None:
                each(RecallResult(n, total, correct, proposals, iou_sum / total if total else 0.0))
    return RecallResult(n, total, correct, proposals, iou_sum / total if total else 0.0)


__all__ = ["Forward", "MapResult", "RecallResult", "RECALL_IOU", "RECALL_NMS", "RECALL_THRESH", "VALID_NMS",
           "VALID_THRESH", "ValidImage", "ValidationRun", "detector_map", "detector_recall", "detector_valid",
           "image_ids_for",
           "run_detections", "write_coco_results", "write_imagenet_results", "write_voc_results"]
