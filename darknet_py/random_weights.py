"""Random but numerically sane weights for any cfg, for tests and benchmarks without real files.

Plain random kernels in a 100-layer net either saturate every head logit or drive them to a
constant, and parity on such outputs proves nothing. Here each batch-normalised conv gets
random kernels and BN statistics *measured* on a calibration input (so every layer sees
roughly unit-variance pre-activations), and each conv feeding a ``[yolo]`` head is scaled so
its logits have a useful spread: a few percent of predictions pass the usual thresholds.
"""
from __future__ import annotations

import torch

from .graph import DarknetModel
from .layers.convolutional import ConvBlock
from .layers.region import RegionHead
from .layers.yolo import YoloHead

# Standard deviations of the head logits: x/y, w/h (raw), objectness, classes.
_HEAD_STD = {"xy": 1.0, "wh": 0.3, "obj": 1.0, "cls": 1.0}


@torch.no_grad()
def randomize(model: DarknetModel, calibration: torch.Tensor | None = None, seed: int = 0,
              objectness_rate: float = 0.004) -> DarknetModel:
    """Fill ``model`` in place with calibrated random weights; returns it (in eval mode).

    ``calibration`` is an N x C x H x W input in [0, 1] (a letterboxed photo is best); by
    default a smooth random image. ``objectness_rate`` is the fraction of predictions of each
    head whose objectness exceeds 0.25 (a few dozen boxes for yolov3 at 416).
    """
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    if calibration is None:
        c, h, w = model.netdef.input_shape
        coarse = torch.rand(1, c, max(1, h // 16), max(1, w // 16), generator=gen)
        calibration = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    calibration = calibration.to(torch.float32)
    # the [yolo] head each conv feeds, if any: its output gets the head's logit spread
    # ([region] has the same a*(5+C) channel layout as [yolo]: x, y, w, h, objectness, classes)
    head_of = {j: layer for i, layer in enumerate(model.layers) if isinstance(layer, (YoloHead, RegionHead))
               for j in model.inputs[i]}
    cache = [None] * len(model.layers)
    for i, layer in enumerate(model.layers):
        args = [calibration if j < 0 else cache[j] for j in model.inputs[i]]
        if isinstance(layer, ConvBlock):
            _init_conv(layer, args[0], gen, head_spec=head_of.get(i), objectness_rate=objectness_rate)
        elif hasattr(layer, "randomize_"):  # other kinds with weights calibrate themselves on their input
            layer.randomize_(*args, generator=gen)
        cache[i] = layer(*args)
    model.header = None
    return model


def _init_conv(block: ConvBlock, x: torch.Tensor, gen: torch.Generator, head_spec: YoloHead | None,
               objectness_rate: float) -> None:
    w = block.conv.weight
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    w.copy_(torch.randn(w.shape, generator=gen) / fan_in ** 0.5)
    y = torch.nn.functional.conv2d(x, w, None, block.conv.stride, block.conv.padding, 1, block.conv.groups)
    mean = y.mean((0, 2, 3))
    var = y.var((0, 2, 3), unbiased=False).clamp_min(1e-4)
    n = w.shape[0]
    if block.bn is not None:
        # Kernels scaled to unit output variance, then measured statistics (lightly perturbed) as
        # BN's running mean/variance: every layer stays near unit variance through 100+ layers,
        # and variances near 1 make Darknet's and OpenCV's BN epsilon placements agree (< 1e-6).
        s = var.sqrt()
        w.div_(s.view(-1, 1, 1, 1))
        block.bn.running_mean.copy_(mean / s + 0.1 * torch.randn(n, generator=gen))
        block.bn.running_var.copy_(0.8 + 0.4 * torch.rand(n, generator=gen))
        block.bn.weight.copy_(0.75 + 0.5 * torch.rand(n, generator=gen))
        block.bn.bias.copy_(0.3 * torch.randn(n, generator=gen))
        return
    std = torch.full((n,), 1.0)
    shift = torch.zeros(n)
    if head_spec is not None:
        per = 5 + head_spec.classes
        k = torch.arange(n) % per
        # softmax classes need a wider logit spread than logistic ones for a top class to stand out
        cls_std = 3.0 if getattr(head_spec, "softmax", False) or getattr(head_spec, "tree", None) else _HEAD_STD["cls"]
        std = torch.where(k < 2, _HEAD_STD["xy"], torch.where(k < 4, _HEAD_STD["wh"], torch.where(
            k == 4, _HEAD_STD["obj"], cls_std)))
        # Objectness logits placed so that about `objectness_rate` of them pass 0.25 (logit -1.0986).
        z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1.0 - objectness_rate))
        shift = torch.where(k == 4, -1.0986 - z * std, torch.where(k >= 5, -1.5 * std, torch.zeros(n)))
    scale = std / var.sqrt()
    w.mul_(scale.view(-1, 1, 1, 1))
    block.conv.bias.copy_(shift - mean * scale)
