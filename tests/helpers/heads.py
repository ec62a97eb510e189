"""The single home of the detection heads' references that several test files share: pjreddie's C
for YOLOv1's [detection] (src/detection_layer.c), YOLOv2's [reorg] (src/blas.c ``reorg_cpu`` /
``flatten``) and [region] (src/region_layer.c ``forward_region_layer`` / ``get_region_detections``,
``correct_region_boxes``), the YOLO9000 tree (src/tree.c), ported to plain Python / NumPy from the C
and never from darknet_py's code; and the small generated networks that exercise a head or a key
(a [region] network with a calibrated head, the YOLOv4-tiny-like [route]/[shortcut]/[yolo] network).
"""
from __future__ import annotations

import textwrap

import numpy as np
import torch

import darknet_py
from darknet_py.random_weights import randomize
from darknet_py.transforms import letterbox
from tests.helpers.cfgs import cfg, conv, head_conv, maxpool, shortcut, yolo
from tests.helpers.numeric import assert_detections_match
from tests.helpers.opencv import yolo_rows
from tests.helpers.reference import correct_box, do_nms_sort, reported, yolo_detections

F32 = np.float32
THRESH, NMS = 0.25, 0.45  # the end-to-end checks' threshold and NMS


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


# ------------------------------------------------------------------------------------ [detection] (YOLOv1)

def get_detection_detections(flat: np.ndarray, side: int, num: int, classes: int, sqrt: bool, thresh: float):
    """src/detection_layer.c get_detection_detections with w = h = 1 (test_yolo), float32 as the C."""
    flat = flat.astype(F32)
    dets = []
    for i in range(side * side):
        row, col = i // side, i % side
        for n in range(num):
            scale = flat[side * side * classes + i * num + n]
            bi = side * side * (classes + num) + (i * num + n) * 4
            x = (flat[bi] + F32(col)) / F32(side) * F32(1)
            y = (flat[bi + 1] + F32(row)) / F32(side) * F32(1)
            # pow() in double, times the int w, rounded once when stored in the float box
            bw = F32(float(flat[bi + 2]) ** (2 if sqrt else 1))
            bh = F32(float(flat[bi + 3]) ** (2 if sqrt else 1))
            probs = []
            for j in range(classes):
                prob = F32(scale * flat[i * classes + j])
                probs.append(prob if prob > thresh else F32(0))
            dets.append({"row": i * num + n, "box": (x, y, bw, bh), "objectness": scale, "prob": probs})
    return dets


def nms_reported(dets, nms: float, img_w: int, img_h: int):
    """do_nms_sort in float32 (as the C) on get_detection_detections' boxes, then what draw_detections
    reports: (class, prob, left, top, right, bottom), by class, then by decreasing prob."""
    dets = [d for d in dets if d["objectness"] != 0]  # do_nms_sort leaves objectness 0 out first
    boxes, probs = [d["box"] for d in dets], [d["prob"] for d in dets]
    do_nms_sort(boxes, probs, nms, dtype=F32)
    return sorted(((k, float(p), *corners) for k, p, corners in reported(boxes, probs, img_w, img_h)),
                  key=lambda r: (r[0], -r[1]))


# ------------------------------------------------------------------------------------ [reorg] (YOLOv2)

def reorg_reference(x: np.ndarray, stride: int, reverse: bool, flatten: bool) -> np.ndarray:
    """forward_reorg_layer on one image (C, H, W) -> the flat output buffer, float64.

    reorg_cpu(x, w, h, c, batch, stride, forward, out) is called with the *input*'s w, h, c:
    forward=0 (reverse=0) does out[in_index] = x[out_index], forward=1 (reverse=1) the opposite."""
    c, h, w = x.shape
    flat = x.astype(np.float64).ravel()
    out = np.zeros_like(flat)
    if flatten:
        size, layers = w * h, c
        cc, ii = np.meshgrid(np.arange(layers), np.arange(size), indexing="ij")
        i1 = cc * size + ii
        i2 = ii * layers + cc
        if reverse:   # flatten(..., forward=0): swap[i1] = x[i2]
            out[i1] = flat[i2]
        else:         # flatten(..., forward=1): swap[i2] = x[i1]
            out[i2] = flat[i1]
        return out
    out_c = c // (stride * stride)
    k, j, i = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    in_index = i + w * (j + h * k)
    c2 = k % out_c
    offset = k // out_c
    w2 = i * stride + offset % stride
    h2 = j * stride + offset // stride
    out_index = w2 + w * stride * (h2 + h * stride * c2)
    if reverse:
        out[out_index] = flat[in_index]
    else:
        out[in_index] = flat[out_index]
    return out


# ------------------------------------------------------------------------------------ the YOLO9000 tree

# A small tree: three roots, children of several depths, one node (oak) alone in its group.
TREE = """\
animal -1
plant -1
thing -1
dog 0
cat 0
bird 0
tree 1
flower 1
poodle 3
beagle 3
terrier 3
rose 7
tulip 7
oak 6
"""


class Tree:
    """src/tree.c read_tree, line by line as the C does it."""

    def __init__(self, text: str):
        self.parent, self.child, self.group, self.group_offset, self.group_size = [], [], [], [], []
        last_parent, group_size, groups = -1, 0, 0
        for n, line in enumerate(text.splitlines()):
            parts = line.split()
            parent = int(parts[1]) if len(parts) > 1 else -1
            self.parent.append(parent)
            self.child.append(-1)
            if parent != last_parent:
                groups += 1
                self.group_offset.append(n - group_size)
                self.group_size.append(group_size)
                group_size = 0
                last_parent = parent
            self.group.append(groups)
            if parent >= 0:
                self.child[parent] = groups
            group_size += 1
        self.group_offset.append(len(self.parent) - group_size)
        self.group_size.append(group_size)
        self.n, self.groups = len(self.parent), groups + 1


# ------------------------------------------------------------------------------------ [region] (YOLOv2)

def region_forward(raw: np.ndarray, num: int, classes: int, softmax: bool = True, background: bool = False,
                   tree: Tree | None = None) -> np.ndarray:
    """forward_region_layer at inference, float64: (num*(5+C), h, w) -> l.output, same shape.
    The tree's group softmax is the GPU ``softmax_tree`` kernel's (temperature 1)."""
    _, h, w = raw.shape
    coords, wh = 4, h * w
    x = raw.astype(np.float64).ravel()
    out = x.copy()

    def entry_index(location, entry):
        n, loc = divmod(location, wh)
        return n * wh * (coords + classes + 1) + entry * wh + loc

    for n in range(num):
        i = entry_index(n * wh, 0)
        out[i:i + 2 * wh] = sigmoid(out[i:i + 2 * wh])
        i = entry_index(n * wh, coords)
        if not background:
            out[i:i + wh] = sigmoid(out[i:i + wh])
        i = entry_index(n * wh, coords + 1)
        if not softmax and tree is None:
            out[i:i + classes * wh] = sigmoid(out[i:i + classes * wh])
    inputs = x.size
    if tree is not None:
        base = entry_index(0, coords + 1)
        for b in range(num):  # softmax_tree(input + index, spatial=w*h, batch=n, stride=inputs/n, ...)
            for g in range(tree.groups):
                for s in range(wh):
                    first = base + b * (inputs // num) + tree.group_offset[g] * wh + s
                    idx = first + wh * np.arange(tree.group_size[g])
                    if len(idx):
                        out[idx] = _softmax(x[idx])
    elif softmax:
        base = entry_index(0, coords + (0 if background else 1))
        for b in range(num):  # softmax_cpu(n=classes+background, batch*n, inputs/n, groups=w*h, 1, stride w*h)
            for s in range(wh):
                idx = base + b * (inputs // num) + s + wh * np.arange(classes + int(background))
                out[idx] = _softmax(x[idx])
    return out.reshape(raw.shape)


def hierarchy_top_prediction(pred, tree: Tree, thresh: float, trace: list) -> int:
    """src/tree.c hierarchy_top_prediction; ``trace`` records which way out it took (leaf, root, parent)."""
    p, group = 1.0, 0
    while True:
        best, max_i = 0.0, 0
        for i in range(tree.group_size[group]):
            index = i + tree.group_offset[group]
            if pred[index] > best:
                max_i, best = index, pred[index]
        if p * best > thresh:
            p = p * best
            group = tree.child[max_i]
            if tree.child[max_i] < 0:
                trace.append("leaf")
                return max_i
        elif group == 0:
            trace.append("root")
            return max_i
        else:
            trace.append("parent")
            return tree.parent[tree.group_offset[group]]


def region_detections(output: np.ndarray, num: int, classes: int, anchors, thresh: float,
                      background: bool = False, tree: Tree | None = None, hier_thresh: float = 0.5, trace=None):
    """get_region_detections (no map, batch 1), float64: -> list over index n*w*h + i of
    (box (x, y, w, h) relative, objectness, probs, the products scale*p before thresholding, scale)."""
    _, h, w = output.shape
    coords, wh = 4, h * w
    pred = output.astype(np.float64).ravel().copy()

    def entry_index(location, entry):
        n, loc = divmod(location, wh)
        return n * wh * (coords + classes + 1) + entry * wh + loc

    dets = [None] * (num * wh)
    for i in range(wh):
        row, col = divmod(i, w)
        for n in range(num):
            index = n * wh + i
            obj_index = entry_index(index, coords)
            box_index = entry_index(index, 0)
            scale = 1.0 if background else pred[obj_index]
            box = ((col + pred[box_index]) / w, (row + pred[box_index + wh]) / h,
                   np.exp(pred[box_index + 2 * wh]) * anchors[n][0] / w,
                   np.exp(pred[box_index + 3 * wh]) * anchors[n][1] / h)
            objectness = scale if scale > thresh else 0.0
            probs = [0.0] * classes
            class_index = entry_index(index, coords + (0 if background else 1))
            products = [scale * pred[entry_index(index, coords + 1 + j)] for j in range(classes)]
            if tree is not None:
                for j in range(classes):  # hierarchy_predictions(..., only_leaves=0), in place
                    if tree.parent[j] >= 0:
                        pred[class_index + j * wh] *= pred[class_index + tree.parent[j] * wh]
                top = hierarchy_top_prediction([pred[class_index + j * wh] for j in range(classes)], tree,
                                               hier_thresh, trace if trace is not None else [])
                probs[top] = scale if scale > thresh else 0.0
                products = [scale if j == top else 0.0 for j in range(classes)]
            elif objectness:
                probs = [pr if pr > thresh else 0.0 for pr in products]
            dets[index] = (box, objectness, probs, products, scale)
    return dets


def region_darknet_boxes(dets, info, nms: float):
    """correct_region_boxes (relative=1) + do_nms_sort + the drawn, clipped photo boxes:
    -> [(class, prob, [x1, y1, x2, y2])]."""
    kept = [d for d in dets if d[1] != 0]  # do_nms_sort leaves the boxes of objectness 0 out first
    boxes = [correct_box(box, info) for box, *_ in kept]
    probs = do_nms_sort(boxes, [list(p) for _, _, p, *_ in kept], nms)
    return reported(boxes, probs, info.img_w, info.img_h)


def assert_same_region_detections(dets, ref, tol: float, thresh: float = THRESH):
    # a score within 5 * tol of the threshold may fall either side of it; boxes wholly outside the
    # photo clip to zero area (no IoU): their corners must agree instead
    assert_detections_match(dets, ref, thresh, 5 * tol, 1 - 10 * tol, corner_tol=10 * tol)


# ------------------------------------------------------------------------------------ [region] networks

@torch.no_grad()
def calibrate_region_head(model, x, seed=0, obj_shift=-1.0, cls_std=3.0):
    """Give the conv feeding the [region] a useful logit spread (random_weights only calibrates [yolo]
    heads): x, y std 1; w, h std .3; objectness N(obj_shift, 1.5); classes std cls_std."""
    head = model.heads[0]
    spec = model.netdef.specs[head]
    conv = model.layers[head - 1]
    y = model(x, raw=True)[0].double()
    mean, std = y.mean((0, 2, 3)), y.std((0, 2, 3)).clamp_min(1e-6)
    k = torch.arange(y.shape[1]) % (5 + spec.classes)
    target = torch.where(k < 2, 1.0, torch.where(k < 4, 0.3, torch.where(k == 4, 1.5, cls_std))).double()
    shift = torch.where(k == 4, obj_shift, 0.0).double()
    scale = target / std
    gen = torch.Generator().manual_seed(seed)
    shift = shift + 0.2 * torch.randn(len(k), generator=gen, dtype=torch.float64) * (k >= 5)
    conv.conv.weight.mul_(scale.view(-1, 1, 1, 1).float())
    conv.conv.bias.copy_(((conv.conv.bias.double() - mean) * scale + shift).float())
    return model


REGION_SIZE = 64  # the small [region] networks' default input


def small_region_cfg(classes: int, region: str, num: int = 2, width: int = REGION_SIZE,
                     height: int = REGION_SIZE) -> str:
    """conv, maxpool, the head's 1x1 conv and a [region] of ``num`` anchors; ``region``: its key lines."""
    anchors = "1.5,2.0, 3.2,2.5" + ", 0.8,0.9" * (num - 2)
    return cfg(conv(8, stride=2), maxpool(), conv(num * (5 + classes), 1, act="linear", bn=False),
               f"[region]\nanchors={anchors}\nclasses={classes}\nnum={num}\n" + textwrap.dedent(region),
               width=width, height=height)


def small_region_model(text, photo_rgb, seed=0, **calib):
    """The network of a cfg text (or a parsed NetworkDef) with random weights and a calibrated [region]
    head, in eval mode, and the letterboxed photo it was calibrated on: -> (model, x)."""
    model = darknet_py.build_model(text.encode() if isinstance(text, str) else text)
    x = letterbox(photo_rgb, *model.input_size)[0][None]
    randomize(model, x, seed=seed)
    calibrate_region_head(model, x, seed=seed, **calib)
    return model.eval(), x


# ------------------------------------------------------------------------------------ AlexeyAB's [yolo] keys

YOLOV4_SMALL = 64  # the YOLOv4-tiny-like network's input


def yolov4_small_cfg(head: str, *, head_act: str = "linear", route: str = "layers=0\ngroups=2\ngroup_id=1",
                     route3: str = "layers=-1,-3") -> str:
    """A small network with YOLOv4-tiny's grouped routes, [shortcut]s over different channel counts and
    one [yolo] (``head``: its extra key lines; ``head_act``: the activation of the conv before it)."""
    return cfg(
        conv(8),                # 0: 8 channels
        "[route]\n" + route,    # 1: the second half of layer 0 (yolov4-tiny's pattern): 4 channels
        conv(4),                # 2: 4 channels
        "[route]\n" + route3,   # 3: layers 2 and 0: 12 channels
        conv(6),                # 4: 6 channels
        shortcut(2),            # 5: 6 channels + layer 2's 4: the first 4 added, the last 2 kept
        conv(4, stride=2),      # 6: 4 channels, 32x32
        "[route]\nlayers=-1\ngroups=2\ngroup_id=0",  # 7: the first of 2 groups of layer 6: 2 channels
        conv(2, 1),             # 8: 2 channels
        shortcut(6, "leaky"),   # 9: 2 channels + layer 6's 4: the extra 2 of layer 6 ignored
        head_conv(21, head_act),
        yolo("0,1,2", "6,8, 12,10, 20,30", 2, 3, head),
        width=YOLOV4_SMALL)


def decoded_yolo_rows(model, x) -> np.ndarray:
    """darknet_py's decoded [yolo] rows of the image x (a batch of 1), in OpenCV's layout."""
    with torch.no_grad():
        return yolo_rows(model, model(x))


def assert_same_yolo_detections(model, photo, rows: np.ndarray, tol: float):
    """darknet_py.detect on the photo against the plain-Python Darknet port applied to `rows`."""
    net_w, net_h = model.input_size
    info = letterbox(photo, net_w, net_h)[1]
    dets = darknet_py.detect(model, photo, THRESH, NMS)
    last = model.head_specs[-1]
    ref = yolo_detections(rows, info, THRESH, NMS, last.nms_kind, last.beta_nms)
    assert len(ref) >= 3
    # a score within 5 * tol of the threshold may fall either side of it
    assert_detections_match(dets, ref, THRESH, 5 * tol, 1 - 10 * tol)
