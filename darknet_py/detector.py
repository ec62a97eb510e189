"""Detection end to end, as Darknet's ``test_detector`` does it:

photo -> letterbox -> network -> head decode -> objectness/class thresholds ->
``correct_yolo_boxes`` -> per-class NMS (``do_nms_sort``) -> photo pixel boxes.
Every head kind ([yolo], [region], ...) decodes itself (``DetectionHead.decode``); the last
head says whether the photo is letterboxed and which NMS follows, as Darknet reads
``net.layers[net.n-1]``. Everything after the photo decode runs as tensor code on the model's device.
"""
from __future__ import annotations

import os
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch

from .checkpoint import is_checkpoint, load_state, read_checkpoint
from .decode import decode
from .errors import CfgError
from .graph import DarknetModel, build_model
from .imageio import ImageMeta, load_image, to_rgb_uint8
from .postprocess import Detections, darknet_nms, detections_from, threshold
from .transforms import LetterboxInfo, correct_boxes, prepare_batch, to_photo_xyxy

# Darknet's `detect` defaults (examples/darknet.c, test_detector): thresh .5, nms .45.
DEFAULT_THRESH = 0.5
DEFAULT_NMS = 0.45

ImageInput = Union[str, os.PathLike, np.ndarray]


def load(cfg, weights=None, device: Union[str, torch.device] = "cpu", *, width: Optional[int] = None,
         height: Optional[int] = None, upto: Optional[int] = None, channels_last: bool = True,
         **weights_kwargs) -> DarknetModel:
    """Build the network a cfg defines, load Darknet weights (optional), move it, set eval mode.

    ``channels_last`` (default True) keeps kernels and activations NHWC: measured faster on the
    CPU (tools/bench_cpu.py) and on an H200 in fp32 (yolov3-416 batch 1: 4.1 ms against 6.4 ms);
    outputs are the same NCHW tensors either way.
    """
    model = build_model(cfg, width=width, height=height)
    if weights is not None:
        if is_checkpoint(weights):  # W11: a .pt given as weights is read as what it is
            if upto is not None:
                raise ValueError("upto= applies to Darknet .weights files, not to checkpoints")
            payload = read_checkpoint(weights)
            load_state(model, payload["state_dict"], os.fspath(weights))
        else:
            model.load_weights(weights, upto=upto, **weights_kwargs)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    if channels_last:
        model.to_channels_last()
    return model


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch reports no CUDA device "
                           f"(torch {torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA)")
    return dev


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _as_rgb(image: ImageInput):
    if isinstance(image, np.ndarray):
        return to_rgb_uint8(image)
    return load_image(image)


def letterboxed(model: DarknetModel) -> bool:
    """Whether ``detect`` letterboxes photos for this network (its last head decides)."""
    heads = model.head_specs
    return heads[-1].letterbox if heads else True


def check_detector(model: DarknetModel) -> None:
    """A network ``detect`` can run: RGB input and at least one detection head."""
    if not model.head_specs:
        raise CfgError("the cfg has no detection head ([yolo], [region], [detection], [Gaussian_yolo]); for a "
                       "classifier use `darknet-py classifier predict`", path=model.netdef.path)
    check_rgb_model(model)


def check_rgb_model(model: DarknetModel) -> None:
    if model.netdef.net.channels != 3:
        raise CfgError(f"[net] channels={model.netdef.net.channels}: detection takes RGB photos and supports "
                       "channels=3 networks only", path=model.netdef.path, line=model.netdef.net.line, section="net")


@torch.no_grad()
def postprocess(model: DarknetModel, outputs: Sequence[torch.Tensor], infos: Sequence[LetterboxInfo],
                thresh: float = DEFAULT_THRESH, nms: float = DEFAULT_NMS,
                photo_boxes: Callable[[torch.Tensor, LetterboxInfo], torch.Tensor] = to_photo_xyxy
                ) -> List[Detections]:
    """Head outputs of a batch -> one Detections per image (boxes in that photo's pixels).

    ``photo_boxes`` turns photo-relative CXCYWH into the reported corners: by default clipped as
    Darknet draws them; ``detector valid`` passes its own (Darknet's result files clip differently).
    """
    net_w, net_h = model.input_size
    boxes, obj, cls = decode(outputs, model.head_specs, net_w, net_h)
    last = model.head_specs[-1]
    results = []
    for i, info in enumerate(infos):
        cand = threshold(boxes[i], obj[i], cls[i], thresh, gate=all(h.gate_objectness for h in model.head_specs))
        # Darknet corrects boxes to the photo before its NMS, so the IoUs are the photo's.
        rel = correct_boxes(cand.boxes, info)
        probs = darknet_nms(rel, cand.probs, nms, last.nms_kind, last.beta_nms)
        results.append(detections_from(cand, probs, photo_boxes(rel, info)))
    return results


@torch.inference_mode()
def detect_batch(model: DarknetModel, images: Sequence[ImageInput], thresh: float = DEFAULT_THRESH,
                 nms: float = DEFAULT_NMS) -> List[Detections]:
    """Several photos in one forward pass. Paths are decoded strictly (darknet_py.imageio)."""
    check_detector(model)
    rgbs = [_as_rgb(im)[0] for im in images]
    net_w, net_h = model.input_size
    x, infos = prepare_batch(rgbs, net_w, net_h, device=_model_device(model), letterboxed=letterboxed(model))
    return postprocess(model, model(x), infos, thresh, nms)


def detect(model: DarknetModel, image: ImageInput, thresh: float = DEFAULT_THRESH,
           nms: float = DEFAULT_NMS) -> Detections:
    """One photo (path, or HxWx3 uint8 RGB array) -> Detections in photo pixels."""
    return detect_batch(model, [image], thresh, nms)[0]


__all__ = ["DEFAULT_NMS", "DEFAULT_THRESH", "ImageMeta", "check_detector", "detect", "detect_batch", "letterboxed",
           "load", "postprocess", "resolve_device"]
