"""Detection end to end, as Darknet's ``test_detector`` does it (the exact path):

photo -> letterbox (darknet_py.transforms) -> network -> head decode -> objectness/class
thresholds -> ``correct_yolo_boxes`` -> per-class NMS (``do_nms_sort``) -> photo pixel boxes
(darknet_py.postprocess). Every head kind ([yolo], [region], ...) decodes itself; the last head
says whether the photo is letterboxed and which NMS follows, as Darknet reads
``net.layers[net.n-1]``. Everything after the photo decode runs as tensor code on the model's device.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

from .checkpoint import follow_stored_tree, is_checkpoint, load_state, read_checkpoint
from .device import model_device, resolve_device
from .errors import CfgError, UsageError
from .graph import DarknetModel, build_model
from .imageio import ImageMeta, load_image, to_rgb_uint8
from .postprocess import Detections, postprocess
from .postprocess.thresholds import DEFAULT_NMS, DEFAULT_THRESH
from .transforms import prepare_batch, uses_letterbox

ImageInput = Union[str, os.PathLike, np.ndarray, torch.Tensor]


def load(cfg, weights=None, device: str | torch.device = "cpu", *, width: int | None = None,
         height: int | None = None, upto: int | None = None, channels_last: bool = True,
         limits: bool | None = None, darknet: str | None = None, **weights_kwargs) -> DarknetModel:
    """Build the network a cfg defines, load Darknet weights (optional), move it, set eval mode.

    ``weights`` may also be a darknet-py checkpoint (.pt), recognised by its first bytes.
    ``channels_last`` (default True) keeps kernels and activations NHWC: measured faster on the
    CPU (tools/bench_cpu.py) and on an H200 in fp32 (yolov3-416 batch 1: 4.1 ms against 6.4 ms);
    outputs are the same NCHW tensors either way. ``limits=False`` goes past the memory budgets of
    darknet_py.limits (see darknet_py.graph.parse_network). ``darknet``: the Darknet tree whose
    arithmetic and photo preparation the model follows -- pjreddie, alexeyab or auto (None; a
    checkpoint's stored tree, else decided from the cfg: darknet_py.numerics.choose).
    """
    model = build_model(cfg, width=width, height=height, limits=limits, darknet=darknet)
    if weights is not None:
        if is_checkpoint(weights):
            if upto is not None:
                raise UsageError("upto= applies to Darknet .weights files, not to checkpoints")
            payload = read_checkpoint(weights, model)
            load_state(model, payload["state_dict"], os.fspath(weights))
            follow_stored_tree(model, payload, darknet)
        else:
            model.load_weights(weights, upto=upto, **weights_kwargs)
    model = model.to(resolve_device(device)).eval()
    if channels_last:
        model.to_channels_last()
    return model


def letterboxed(model: DarknetModel) -> bool:
    """Whether ``detect`` letterboxes photos for this network (else it stretches them): in
    AlexeyAB's tree only when the cfg's [net] says ``letter_box=1`` (its test_detector and
    validate_detector call resize_image otherwise); in pjreddie's as its heads do (darknet_py.transforms)."""
    if model.darknet.tree == "alexeyab":
        return str(model.netdef.net.training.get("letter_box", "0")).strip() not in ("", "0")
    return uses_letterbox(model.head_specs)


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


def as_rgb(image: ImageInput) -> np.ndarray | torch.Tensor:
    """A photo as detection takes it: HxWx3 uint8 RGB. Paths are decoded strictly
    (darknet_py.imageio); arrays go through ``to_rgb_uint8`` (a C-contiguous uint8 HxWx3 one as it
    is: detection only reads it); uint8 HxWx3 tensors (the streaming command's pinned frames) pass as they are."""
    if torch.is_tensor(image):
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[2] != 3 or not image.shape[0] \
                or not image.shape[1]:
            raise UsageError(f"expected an HxWx3 uint8 RGB tensor, got {tuple(image.shape)} {image.dtype}")
        return image
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.shape[0] and image.shape[1] \
                and image.flags.c_contiguous:
            return image
        return to_rgb_uint8(image)[0]
    return load_image(image)[0]


@torch.inference_mode()
def detect_batch(model: DarknetModel, images: Sequence[ImageInput], thresh: float = DEFAULT_THRESH,
                 nms: float = DEFAULT_NMS) -> list[Detections]:
    """Several photos (paths, arrays or uint8 tensors, see :func:`as_rgb`) in one forward pass."""
    check_detector(model)
    dev = model_device(model)
    # tensors (pinned by the streaming command) upload without waiting; arrays are wrapped, not copied
    rgbs = [torch.as_tensor(as_rgb(im)).to(dev, non_blocking=True) for im in images]
    net_w, net_h = model.input_size
    x, infos = prepare_batch(rgbs, net_w, net_h, device=dev, letterboxed=letterboxed(model))
    return postprocess(model, model(x), infos, thresh, nms)


def detect(model: DarknetModel, image: ImageInput, thresh: float = DEFAULT_THRESH,
           nms: float = DEFAULT_NMS) -> Detections:
    """One photo (path, HxWx3 uint8 RGB array or tensor) -> Detections in photo pixels."""
    return detect_batch(model, [image], thresh, nms)[0]


__all__ = ["DEFAULT_NMS", "DEFAULT_THRESH", "ImageMeta", "as_rgb", "check_detector", "detect", "detect_batch",
           "letterboxed", "load", "model_device", "postprocess", "resolve_device"]
