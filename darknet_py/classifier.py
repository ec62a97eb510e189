"""Classification as Darknet's ``classifier predict`` does it (examples/classifier.c):
letterbox the photo to the network size (AlexeyAB's tree: the centre crop of the photo resized to
the network width on its short side), forward, then ``top_k`` over the outputs (the last layer's,
after its ``[softmax]``), highest first, ties to the lower index."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .detector import ImageInput, as_rgb, check_rgb_model
from .checks import check_count
from .device import model_device
from .errors import CfgError
from .graph import DarknetModel
from .transforms import letterbox, resize_min_crop


@dataclass
class Prediction:
    indices: list[int]
    scores: list[float]


def check_classifier(model: DarknetModel) -> None:
    if model.netdef.head_specs:
        spec = model.netdef.head_specs[0]
        kind = model.netdef.sections[spec.index + 1].kind
        raise CfgError(f"this network has a [{kind}] head: it is a detector (use darknet-py detect)",
                       path=model.netdef.path, line=spec.line, section=kind, index=spec.index)


@torch.inference_mode()
def scores(model: DarknetModel, image: ImageInput) -> torch.Tensor:
    """The network's output for one photo, flattened (Darknet's ``network_predict``)."""
    check_classifier(model)
    check_rgb_model(model)
    rgb = as_rgb(image)
    net_w, net_h = model.input_size
    if model.darknet.tree == "alexeyab":  # its predict_classifier crops the centre of resize_min
        x = resize_min_crop(rgb, net_w, net_h, device=model_device(model))
    else:
        x, _ = letterbox(rgb, net_w, net_h, device=model_device(model))
    return model(x[None])[0].flatten().float().cpu()


def top_k(values: torch.Tensor, k: int) -> Prediction:
    """Darknet's ``top_k``: the k largest, in descending order, equal values by lower index."""
    k = max(1, min(int(k), values.numel()))
    order = torch.sort(values, descending=True, stable=True).indices[:k]
    return Prediction(order.tolist(), values[order].tolist())


def classify(model: DarknetModel, image: ImageInput, top: int = 5) -> Prediction:
    """The ``top`` best classes of a photo (``top`` >= 1; more than the classes gives them all)."""
    check_count("top", top, 1)
    return top_k(scores(model, image), top)


__all__ = ["Prediction", "check_classifier", "classify", "scores", "top_k"]
