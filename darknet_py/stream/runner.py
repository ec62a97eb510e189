"""What runs the network in a stream: a :class:`Runner`.

Two runners come with darknet-py: :class:`ModelRunner` (``darknet_py.detector.detect_batch``'s
exact path, the default) and ``darknet_py.fast.FastDetector`` (reduced precision, CUDA graphs,
fused CPU convolutions). Any object with the same attributes and methods can run a stream.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Callable, Protocol

import torch

from ..detector import check_detector, detect_batch, letterboxed
from ..device import model_device
from ..postprocess import Detections, postprocess
from ..transforms import LetterboxInfo, fit

Tensor = torch.Tensor
Prepare = Callable[[Any], tuple[Tensor, LetterboxInfo]]


class Runner(Protocol):
    """The contract between a stream and what runs the network.

    ``device``: where the network runs (photos are pinned for it when it is a GPU).
    ``host_prepare``: None, or a picklable ``rgb -> (CHW float tensor, LetterboxInfo)`` that the
    decoding workers run (Darknet's letterbox or stretch), after which the stream calls
    :meth:`detect_prepared` with the stacked tensors; otherwise it calls :meth:`detect_batch`.
    ``accepts_tensors``: :meth:`detect_batch` takes uint8 torch tensors (pinned for the GPU, views
    of the shared photo ring); else it gets numpy arrays.
    """

    device: torch.device
    host_prepare: Prepare | None
    accepts_tensors: bool

    def detect_batch(self, images: Sequence[Any], thresh: float, nms: float) -> list[Detections]:
        """HxWx3 uint8 RGB photos (numpy arrays or torch tensors, possibly pinned) -> one Detections
        each. The photos may be views of a reused buffer: copy what is kept."""
        ...

    def detect_prepared(self, x: Tensor, infos: Sequence[LetterboxInfo], thresh: float,
                        nms: float) -> list[Detections]:
        """Photos ``host_prepare`` made, stacked (N, 3, H, W) -> one Detections each."""
        ...


class CustomRunner:
    """A base for runners of one's own: the :class:`Runner` attributes with defaults (the CPU, no
    worker-side preparation, numpy photos); subclasses implement :meth:`detect_batch`."""

    device = torch.device("cpu")
    host_prepare: Prepare | None = None
    accepts_tensors = False

    def detect_batch(self, images: Sequence[Any], thresh: float, nms: float) -> list[Detections]:
        raise NotImplementedError

    def detect_prepared(self, x: Tensor, infos: Sequence[LetterboxInfo], thresh: float,
                        nms: float) -> list[Detections]:
        raise NotImplementedError("this runner prepares no photos in the workers (host_prepare is None)")


class ModelRunner:
    """``darknet_py.detector.detect_batch(model, images, thresh, nms)`` as a :class:`Runner`, split so
    that the photo preparation can run in the decoding workers (CPU) and the upload can come from
    pinned memory (CUDA)."""

    accepts_tensors = True

    def __init__(self, model) -> None:
        check_detector(model)
        self.model = model
        self.device = model_device(model)
        net_w, net_h = model.input_size
        # On the CPU Darknet's exact resize costs about as much per photo as decoding it: done in
        # the workers it overlaps the network. On a GPU it is cheaper there, from the uint8 upload.
        self.host_prepare: Prepare | None = (
            partial(fit, net_w=net_w, net_h=net_h, letterboxed=letterboxed(model))
            if self.device.type == "cpu" else None)

    def detect_batch(self, images: Sequence[Any], thresh: float, nms: float) -> list[Detections]:
        return detect_batch(self.model, images, thresh, nms)

    @torch.inference_mode()
    def detect_prepared(self, x: Tensor, infos: Sequence[LetterboxInfo], thresh: float,
                        nms: float) -> list[Detections]:
        return postprocess(self.model, self.model(x.to(self.device, non_blocking=True)), infos, thresh, nms)


__all__ = ["CustomRunner", "ModelRunner", "Prepare", "Runner"]
