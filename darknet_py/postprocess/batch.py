"""Head outputs of a batch -> one :class:`Detections` per photo, as Darknet's ``test_detector``:

decode -> objectness/class thresholds -> ``correct_yolo_boxes`` -> per-class NMS
(``do_nms_sort``) -> photo pixel boxes, every step on all images together:

* thresholds: one ``nonzero`` over the (image, row) mask; candidates stay image-major, in each
  image's own row order, so everything "in candidate order" is what one image alone would give;
* box correction: the per-image geometry becomes per-row parameters (darknet_py.transforms'
  geometry table) with Darknet's mixed double/float32 operations. Darknet corrects boxes to the
  photo before its NMS, so the overlaps compared are the photo's;
* per-class NMS over the batch (darknet_py.postprocess.nms);
* the final rows: one ``nonzero``, a stable score sort and a stable image sort (so within an
  image: best first, ties in (box, class) order), split once by the per-image counts.

A constant number of host synchronisations per batch (plus one per NMS round and per memory
chunk), whatever the number of images.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch

from ..layers.head import decode_heads
from ..transforms import LetterboxInfo, correct_boxes_rows, geometry_table, scale_to_photo_rows, to_photo_xyxy_rows
from .detections import Detections, split_by_image
from .nms import batched_nms
from .thresholds import DEFAULT_NMS, DEFAULT_THRESH, candidate_mask, class_scores

Tensor = torch.Tensor
PhotoBoxes = Callable[[Tensor, LetterboxInfo], Tensor]


def nms_policy(head_specs: Sequence) -> tuple[str, float, bool]:
    """(nms_kind, beta_nms, gate) of a network: the last head names the NMS (Darknet reads
    ``net.layers[net.n-1]``); rows pass the objectness gate unless some head has none (YOLOv1)."""
    last = head_specs[-1]
    return last.nms_kind, float(last.beta_nms), all(h.gate_objectness for h in head_specs)


@torch.no_grad()
def postprocess_decoded(boxes: Tensor, objectness: Tensor, class_probs: Tensor, infos: Sequence[LetterboxInfo],
                        thresh: float = DEFAULT_THRESH, nms: float = DEFAULT_NMS, nms_kind: str = "default",
                        beta_nms: float = 0.6, photo_boxes: PhotoBoxes | None = None,
                        gate: bool = True, nms_in_pixels: bool = False,
                        array_order: bool = False) -> list[Detections]:
    """Decoded heads of a batch (``boxes`` (N, R, 4) network-relative cx, cy, w, h, ``objectness``
    (N, R), ``class_probs`` (N, R, C)) -> one Detections per image of ``infos`` (the first
    ``len(infos)`` rows are used; the rest may be padding).

    ``photo_boxes(rel, info)`` turns one photo's photo-relative cx, cy, w, h into the reported
    corners; by default clipped as Darknet draws them (darknet_py.transforms.to_photo_xyxy).
    ``gate=False``: no objectness comparison (YOLOv1's [detection], see thresholds.candidate_mask).
    ``nms_in_pixels``: NMS compares the boxes in photo pixels, not photo-relative (AlexeyAB's
    validate_detector asks get_network_boxes for relative=0 boxes). IoU is the same in either frame;
    DIoU's centre-distance term is not, on a photo that is not square. ``array_order``: fill
    Detections.array_rank (:func:`darknet_array_rank`).
    """
    n = len(infos)
    if n == 0:
        return []
    dev = boxes.device
    boxes, objectness, class_probs = boxes[:n], objectness[:n], class_probs[:n]
    keep = candidate_mask(objectness, class_probs, thresh, gate)
    img, row = torch.nonzero(keep, as_tuple=True)
    obj = objectness[img, row]
    probs = class_scores(obj, class_probs[img, row], thresh)
    counts = keep.sum(1)
    geom = geometry_table(infos, dev)
    rel = correct_boxes_rows(boxes[img, row], geom[img])
    frame = scale_to_photo_rows(rel, geom[img]) if nms_in_pixels else rel
    rank = darknet_array_rank(probs, img) if array_order else None
    probs = batched_nms(frame, probs, img, n, nms, nms_kind, beta_nms)
    # the surviving (box, class) scores, per image best first (ties: box order, then class)
    box_i, cls_i = torch.nonzero(probs > 0, as_tuple=True)
    scores = probs[box_i, cls_i]
    order = torch.sort(scores, descending=True, stable=True).indices
    order = order[torch.sort(img[box_i][order], stable=True).indices]
    box_i, cls_i, scores = box_i[order], cls_i[order], scores[order]
    d_img = img[box_i]
    starts = torch.cumsum(counts, 0) - counts
    if photo_boxes is None:
        xyxy = to_photo_xyxy_rows(rel[box_i], geom[d_img])
    else:
        parts = torch.split(rel, counts.tolist())
        xyxy = torch.cat([photo_boxes(p, info) for p, info in zip(parts, infos)])[box_i]
    det_counts = torch.zeros(n, dtype=torch.int64, device=dev).index_add_(0, d_img, torch.ones_like(d_img)).tolist()
    fields = [xyxy, scores, cls_i, obj[box_i], box_i - starts[d_img]]
    if rank is not None:
        fields.append(rank[box_i] - starts[d_img])
    return split_by_image(fields, det_counts)


def darknet_array_rank(probs: Tensor, img: Tensor) -> Tensor:
    """Each candidate box's place, within its image, in Darknet's ``dets`` array after
    ``do_nms_sort`` (``probs``: (K, C) thresholded class scores before NMS, image-major candidates).

    do_nms_sort qsorts the whole array by class 0's score, runs that class's NMS, then sorts by
    class 1's, and so on; glibc's qsort is a merge sort, stable, so each sort keeps the previous
    order among equal scores. A class's NMS zeroes only that class's scores, which no later sort
    reads: the final order is the lexicographic order of (p[C-1], ..., p[0]) descending on the
    scores before NMS, ties in candidate (get_network_boxes) order.
    """
    p = probs.detach().float().cpu().numpy()
    keys = [np.arange(len(p))] + [-p[:, k] for k in range(p.shape[1])] + [img.cpu().numpy()]
    order = np.lexsort(keys)  # the last key is the primary one: the image, then p[C-1], ...
    pos = np.empty(len(p), np.int64)
    pos[order] = np.arange(len(p))
    return torch.from_numpy(pos).to(probs.device)


@torch.no_grad()
def postprocess(model, outputs: Sequence[Tensor], infos: Sequence[LetterboxInfo], thresh: float = DEFAULT_THRESH,
                nms: float = DEFAULT_NMS, photo_boxes: PhotoBoxes | None = None,
                nms_in_pixels: bool = False, array_order: bool = False) -> list[Detections]:
    """``model(x)``'s head outputs for a batch -> one Detections per image (boxes in that photo's
    pixels); ``infos``: each photo's LetterboxInfo, ``photo_boxes`` and ``nms_in_pixels`` as in
    :func:`postprocess_decoded`."""
    net_w, net_h = model.input_size
    boxes, obj, cls = decode_heads(outputs, model.head_specs, net_w, net_h)
    kind, beta, gate = nms_policy(model.head_specs)
    return postprocess_decoded(boxes, obj, cls, infos, thresh, nms, kind, beta, photo_boxes, gate, nms_in_pixels,
                               array_order)


__all__ = ["darknet_array_rank", "nms_policy", "postprocess", "postprocess_decoded"]
