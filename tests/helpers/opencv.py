"""The single home of the OpenCV runner: cv2.dnn's Darknet importer (OpenCV 4.x), an implementation of
Darknet's layers independent of ours, read from the same cfg and .weights files and run on the same
(letterboxed) input tensor."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from darknet_py.layers.head import decode_heads

try:
    import cv2
except ImportError:  # the files that need it skip with pytest.importorskip("cv2")
    cv2 = None

HAS_DARKNET_IMPORTER = cv2 is not None and hasattr(cv2.dnn, "readNetFromDarknet")
needs_darknet_importer = pytest.mark.skipif(not HAS_DARKNET_IMPORTER, reason="OpenCV 5 has no Darknet importer")


def opencv_net(cfg: Path, weights=None):
    """readNetFromDarknet on a cfg file (and a .weights file), on OpenCV's own CPU backend with Winograd
    convolutions off: they round differently (about 1e-4 of scale more on deep nets)."""
    net = cv2.dnn.readNetFromDarknet(str(cfg)) if weights is None else cv2.dnn.readNetFromDarknet(str(cfg),
                                                                                                  str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.enableWinograd(False)
    return net


def opencv_run(net, x, outputs=None, one_by_one: bool = False):
    """``net``'s forward of the NCHW tensor ``x``: the last layer's output (``outputs`` None), or a list,
    of every unconnected output (``outputs="unconnected"``: the [yolo] heads, in layer order) or of the
    named layers. ``one_by_one``: image by image, concatenated (OpenCV 4.14's Scale layer fails on a
    batch of 2; last output only)."""
    if one_by_one:
        assert outputs is None
        return np.concatenate([opencv_run(net, image[None]) for image in x])
    net.setInput(x.numpy())
    if outputs is None:
        return net.forward()
    return net.forward(net.getUnconnectedOutLayersNames() if outputs == "unconnected" else outputs)


def opencv_forward(cfg: Path, weights, x, outputs=None, one_by_one: bool = False):
    """``opencv_run`` of ``opencv_net(cfg, weights)``."""
    return opencv_run(opencv_net(cfg, weights), x, outputs, one_by_one)


def opencv_yolo_rows(cfg_text: str, weights, x, tmp_path: Path) -> np.ndarray:
    """OpenCV's decoded [yolo] rows of one image: (h*w*A, 5+C) per head, heads in layer order, rows cell
    by cell then anchor by anchor: x, y, w, h relative, objectness, objectness*sigmoid(class)."""
    cv_cfg = tmp_path / "opencv.cfg"
    # OpenCV zeroes class scores below its [yolo] `thresh` (.2 by default): 0 keeps them raw.
    cv_cfg.write_text(cfg_text.replace("[yolo]", "[yolo]\nthresh=0"))
    outs = opencv_forward(cv_cfg, weights, x, "unconnected")
    return np.concatenate([o.reshape(-1, o.shape[-1]) for o in outs])


def yolo_rows(model, outputs) -> np.ndarray:
    """darknet_py's decoded [yolo] rows of one image (a batch of 1's head outputs), in
    ``opencv_yolo_rows``' layout."""
    net_w, net_h = model.input_size
    boxes, obj, cls = decode_heads(outputs, model.yolo_specs, net_w, net_h)
    return torch.cat([boxes[0], obj[0, :, None], obj[0, :, None] * cls[0]], 1).numpy()
