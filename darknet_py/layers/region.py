"""``[region]``: the YOLOv2 / YOLO9000 detection head (pjreddie src/region_layer.c at inference:
``forward_region_layer``, ``get_region_detections``, ``get_region_box``; ``parse_region`` in src/parser.c).

The input has ``num*(coords+1+classes)`` channels, anchor-major: channel ``a*(5+C)+k`` with
k = x, y, w, h, objectness, class0... The layer's output (Darknet's ``l.output``) is the input
with the logistic applied to x, y and objectness, and the classes activated by one of:

- ``softmax=1``: a softmax over the C classes of each anchor and cell;
- ``tree=FILE`` (YOLO9000, wins over softmax): a softmax within each group of the tree
  (darknet_py.softmax_tree), i.e. each node's probability given its parent;
- neither: the logistic on each class.

``background=1``: no logistic on objectness, the softmax (if any) covers the objectness entry as
a "background" class before the C classes, and detection uses 1 as the objectness.

Decoding (``get_region_box``): for cell (row, col) of an h x w grid and anchor (pw, ph) given in
*grid cells* (not pixels, unlike [yolo]): ``bx = (col + x)/w``, ``by = (row + y)/h``,
``bw = e^tw * pw / w``, ``bh = e^th * ph / h``. Detection rows come anchor-major then cell
(``index = n*l.w*l.h + i`` in ``get_region_detections``), not cell-major as [yolo]'s.

Thresholds: ``get_region_detections`` sets ``objectness = scale > thresh ? scale : 0`` and, only when
that is non-zero, ``prob[j] = scale*p_j > thresh ? scale*p_j : 0``; the generic pipeline's
``objectness > thresh`` then ``objectness * p > thresh`` (both strict, same float32 product) keeps
exactly those entries. With a tree (no ``map``), ``hierarchy_top_prediction(hier_thresh)`` picks one
class j and ``prob[j] = scale > thresh ? scale : 0``: ``decode`` returns a one-hot class vector,
so objectness * 1 = scale and the generic comparisons again select the same entries.
Darknet's batch-2 flip averaging in get_region_detections (only when the cfg's batch is 2) is
not done: test_detector sets batch 1. Boxes are then corrected as in ``correct_region_boxes``
(the same letterbox inverse as correct_yolo_boxes) and NMS is do_nms_sort.

Training-only keys (``bias_match``, ``jitter``, ``rescore``, the ``*_scale`` keys, ``absolute``,
``thresh``, ``random``, ``map`` — the truth class remap of forward_region_layer's training branch —
and the others Darknet reads) are kept. ``coords`` other than 4 (the mask coefficients that
pjreddie's CPU and GPU forwards activate differently) and ``background=1`` together with a tree
(get_region_detections then reads the tree one entry off the softmax) are refused. No weights.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..defaults import DEFAULT_HIER_THRESH
from ..errors import DataError
from ..softmax_tree import SoftmaxTree, group_softmax, hierarchy_predictions, read_tree, top_prediction
from .head import DetectionHead
from .registry import LayerKind, LayerSpec, Shape, register

# test_detector's and validate_detector's hier_thresh (examples/detector.c: `-hier`, default .5).


@dataclass
class RegionSpec(LayerSpec, DetectionHead):
    anchors: list[tuple[float, float]]  # width, height in grid cells
    classes: int
    num: int
    coords: int = 4
    softmax: bool = False
    background: bool = False
    tree: SoftmaxTree | None = None
    # the threshold of hierarchy_top_prediction (a detection-time option in Darknet, not a cfg key)
    hier_thresh: float = DEFAULT_HIER_THRESH
    # Training keys, kept for a trainer (they do not change inference).
    jitter: float = 0.2
    rescore: bool = False
    thresh: float = 0.5
    bias_match: bool = False
    absolute: bool = False
    random: bool = False
    coord_scale: float = 1.0
    object_scale: float = 1.0
    noobject_scale: float = 1.0
    class_scale: float = 1.0
    map: str | None = None

    def decode(self, out, net_w, net_h):
        """``l.output`` (N, A*(5+C), h, w) -> boxes (N, A*h*w, 4), objectness, class probabilities,
        rows anchor-major then cell (get_region_detections). ``net_w``/``net_h`` are not needed:
        region boxes are relative to the grid, hence to the network input."""
        n, _, h, w = out.shape
        a, c = self.num, self.classes
        p = out.reshape(n, a, 5 + c, h, w).permute(0, 1, 3, 4, 2)  # (N, A, h, w, 5+C)
        col = torch.arange(w, device=out.device, dtype=out.dtype).view(1, 1, 1, w)
        row = torch.arange(h, device=out.device, dtype=out.dtype).view(1, 1, h, 1)
        anchor = torch.tensor(self.anchors, device=out.device, dtype=out.dtype).view(1, a, 1, 1, 2)
        bx = (col + p[..., 0]) / w
        by = (row + p[..., 1]) / h
        bw = torch.exp(p[..., 2]) * anchor[..., 0] / w
        bh = torch.exp(p[..., 3]) * anchor[..., 1] / h
        rows = a * h * w
        boxes = torch.stack((bx, by, bw, bh), -1).reshape(n, rows, 4)
        # background=1: `scale = l.background ? 1 : predictions[obj_index]`
        obj = torch.ones_like(p[..., 4]) if self.background else p[..., 4]
        probs = p[..., 5:].reshape(n, rows, c)
        if self.tree is not None:
            top = top_prediction(hierarchy_predictions(probs, self.tree), self.tree, self.hier_thresh)
            probs = torch.nn.functional.one_hot(top, c).to(out.dtype)
        return boxes, obj.reshape(n, rows), probs


class RegionHead(nn.Module):
    """forward_region_layer at inference: logistic on x, y (and objectness unless background);
    softmax, tree group softmax or logistic on the classes; w, h pass through."""

    def __init__(self, num: int, classes: int, softmax: bool = False, background: bool = False,
                 tree: SoftmaxTree | None = None):
        super().__init__()
        self.num, self.classes = num, classes
        self.softmax, self.background, self.tree = bool(softmax), bool(background), tree

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        p = x.contiguous().view(n, self.num, 5 + self.classes, h, w)  # Darknet's l.output layout is NCHW
        xy = torch.sigmoid(p[:, :, 0:2])
        wh = p[:, :, 2:4]
        if self.tree is not None:
            obj = torch.sigmoid(p[:, :, 4:5])
            cls = group_softmax(p[:, :, 5:], self.tree, dim=2)
            rest = torch.cat((obj, cls), 2)
        elif self.softmax and self.background:
            # softmax over classes+1 entries from entry `coords`: objectness is the background class
            rest = torch.softmax(p[:, :, 4:], dim=2)
        elif self.softmax:
            rest = torch.cat((torch.sigmoid(p[:, :, 4:5]), torch.softmax(p[:, :, 5:], dim=2)), 2)
        elif self.background:
            rest = torch.cat((p[:, :, 4:5], torch.sigmoid(p[:, :, 5:])), 2)
        else:
            rest = torch.sigmoid(p[:, :, 4:])
        return torch.cat((xy, wh, rest), 2).view(n, -1, h, w)


def _resolve_tree_path(section, value: str) -> tuple[str | None, list[str]]:
    """Darknet fopen()s the path from its working directory; the cfg's folder and its parent (a
    Darknet checkout keeps cfg/ and data/ side by side) are tried after it."""
    tried = [value]
    if os.path.isabs(value):
        return (value if os.path.isfile(value) else None), tried
    if section.path is not None:
        cfg_dir = os.path.dirname(os.path.abspath(section.path))
        tried += [os.path.join(cfg_dir, value), os.path.join(os.path.dirname(cfg_dir), value)]
    for candidate in tried:
        if os.path.isfile(candidate):
            return candidate, tried
    return None, tried


@register
class RegionKind(LayerKind):
    name = "region"
    keys = ("anchors", "classes", "coords", "num", "softmax", "tree", "background")
    # Keys parse_region reads that only the training branch of forward_region_layer uses (log, sqrt,
    # classfix, max and mask_scale are read and never used; focal_loss and resize are AlexeyAB's).
    training_keys = ("bias_match", "jitter", "rescore", "object_scale", "noobject_scale", "class_scale",
                     "coord_scale", "absolute", "thresh", "random", "map", "log", "sqrt", "classfix", "max",
                     "mask_scale", "focal_loss", "resize")

    @classmethod
    def parse(cls, section, net) -> RegionSpec:
        coords = section.get_int("coords", 4)
        if coords != 4:
            raise section.error(f"coords={coords} is not supported by darknet-py (only the 4 box coordinates; "
                                "pjreddie's CPU and GPU forwards treat extra mask coefficients differently)", "coords")
        classes = section.get_int("classes", required=True, min=1)
        num = section.get_int("num", 1, min=1)  # Darknet's default: 1 anchor
        flat = section.get_float_list("anchors", required=True)
        if len(flat) != 2 * num:
            default = " (Darknet's default when num= is absent)" if not section.has("num") else ""
            raise section.error(f"anchors holds {len(flat)} numbers but num={num}{default} needs 2*num = {2 * num} "
                                "(width,height pairs in grid cells)", "anchors")
        if any(not v > 0 for v in flat):
            raise section.error("anchors must be positive (width,height in grid cells)", "anchors")
        anchors = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        softmax = section.get_bool("softmax", False)
        background = section.get_bool("background", False)
        tree = None
        value = section.get_str("tree")
        if value is not None:
            if background:
                raise section.error("background=1 with tree= is not supported (Darknet's get_region_detections "
                                    "reads the tree one entry away from where the softmax put it)", "background")
            path, tried = _resolve_tree_path(section, value)
            if path is None:
                raise section.error(f"tree={value}: file not found (tried {', '.join(tried)})", "tree")
            try:
                tree = read_tree(path)
            except DataError as err:
                raise section.error(f"tree={value}: {err}", "tree") from None
            if tree.n != classes:
                raise section.error(f"tree={value} has {tree.n} nodes but classes={classes}: Darknet indexes one "
                                    "class per tree node", "tree")
        spec = RegionSpec(section.index, section.line, anchors, classes, num, coords, softmax, background, tree,
                          jitter=section.get_float("jitter", 0.2), rescore=section.get_bool("rescore", False),
                          thresh=section.get_float("thresh", 0.5), bias_match=section.get_bool("bias_match", False),
                          absolute=section.get_bool("absolute", False), random=section.get_bool("random", False),
                          coord_scale=section.get_float("coord_scale", 1.0),
                          object_scale=section.get_float("object_scale", 1.0),
                          noobject_scale=section.get_float("noobject_scale", 1.0),
                          class_scale=section.get_float("class_scale", 1.0), map=section.get_str("map"))
        section.mark_used(cls.training_keys)
        return spec

    @classmethod
    def out_shape(cls, spec: RegionSpec, in_shapes: Sequence[Shape], section, specs=None) -> Shape:
        c, h, w = in_shapes[0]
        need = spec.num * (spec.coords + 1 + spec.classes)
        if c != need:
            prev = specs[spec.index - 1] if specs else None
            where = f"layer {spec.index - 1}" + (f" (cfg line {prev.line})" if prev is not None else "")
            raise section.error(f"{where} outputs {c} channels but this [region] needs num*(coords+1+classes) = "
                                f"{spec.num}*({spec.coords}+1+{spec.classes}) = {need}; set filters={need} there")
        return (c, h, w)

    @classmethod
    def build(cls, spec: RegionSpec, in_shapes: Sequence[Shape]) -> RegionHead:
        return RegionHead(spec.num, spec.classes, spec.softmax, spec.background, spec.tree)
