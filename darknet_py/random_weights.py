"""Random but numerically sane weights for any cfg, for tests and benchmarks without real files.

Plain random kernels in a 100-layer net either saturate every head logit or drive them to a
constant, and parity on such outputs proves nothing. Here each batch-normalised conv gets
random kernels and BN statistics *measured* on a calibration input (so every layer sees
roughly unit-variance pre-activations), and each conv feeding a ``[yolo]`` head is scaled so
its logits have a useful spread: a few percent of predictions pass the usual thresholds.

That spread is measured on the calibration input, and a photo unlike it (more texture, another
contrast) moves every logit of a random net: hundreds or thousands of boxes. ``scale_free_heads``
makes the count hold across photos: each objectness and class logit is a random projection of the
head's input minus a multiple of that input's mean, with the bias at the score threshold, so a
prediction passes when its projection exceeds a fixed multiple of the local activation level,
which grows and shrinks with the photo's contrast as the projection does.
"""
from __future__ import annotations

import numpy as np
import torch

from .graph import DarknetModel
from .layers.convolutional import ConvBlock
from .layers.region import RegionHead
from .layers.yolo import YoloHead

# Standard deviations of the head logits: x/y, w/h (raw), objectness, classes.
_HEAD_STD = {"xy": 1.0, "wh": 0.3, "obj": 1.0, "cls": 1.0}
# logit(0.25): Darknet's usual detection threshold.
_LOGIT_THRESH = -1.0986
# scale_free_heads: how steeply objectness and class logits rise past the threshold.
_SCALE_FREE_GAIN = 3.0


@torch.no_grad()
def randomize(model: DarknetModel, calibration: torch.Tensor | None = None, seed: int = 0,
              objectness_rate: float = 0.004, scale_free_heads: bool = False) -> DarknetModel:
    """Fill ``model`` in place with calibrated random weights; returns it (in eval mode).

    ``calibration`` is an N x C x H x W input in [0, 1] (a letterboxed photo is best); by
    default a smooth random image. ``objectness_rate`` is the fraction of predictions of each
    head whose objectness exceeds 0.25 (a few dozen boxes for yolov3 at 416). With
    ``scale_free_heads`` (see the module's note) about 1 in ``classes`` class logits pass too, so a
    passing box has about one class, and the counts hold on photos other than the calibration's.
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
            if scale_free_heads and i in head_of:
                _scale_free_head(layer, args[0], head_of[i], objectness_rate)
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


def _scale_free_head(block: ConvBlock, x: torch.Tensor, head_spec: YoloHead | RegionHead,
                     objectness_rate: float) -> None:
    """Objectness and class rows of a head's conv as ``gain * (r - c * mean)`` with the bias at
    logit(0.25): r the row as drawn, normalised to unit spread on ``x``; mean the input's average
    over the kernel's window and channels; c the quantile of r/mean that lets ``objectness_rate``
    of the objectness logits (1/classes of the class logits) pass on ``x``. Left as drawn where the
    input's mean is not positive (no leaky or similar activation before the head)."""
    conv = block.conv
    if conv.groups != 1 or conv.bias is None:
        return
    w = conv.weight
    box = torch.full((1, *w.shape[1:]), 1.0 / w[0].numel())
    level = torch.nn.functional.conv2d(x, box, None, conv.stride, conv.padding).flatten()
    if not bool((level > 0).float().mean() > 0.99):
        return
    proj = torch.nn.functional.conv2d(x, w, None, conv.stride, conv.padding).transpose(0, 1).flatten(1)
    per = 5 + head_spec.classes
    for o in range(w.shape[0]):
        k = o % per
        if k < 4:
            continue
        u = proj[o] / proj[o].std().clamp_min(1e-12)
        rate = objectness_rate if k == 4 else 1.0 / head_spec.classes
        ratio = (u / level)[level > 0].numpy()
        c = float(np.quantile(ratio, 1.0 - rate))
        w[o] = _SCALE_FREE_GAIN * (w[o] / proj[o].std().clamp_min(1e-12) - c * box[0])
        conv.bias[o] = _LOGIT_THRESH


def synthetic_calibration(width: int, height: int, count: int = 3, seed: int = 0) -> torch.Tensor:
    """``count`` letterboxed synthetic scenes (darknet_py.synth), N x 3 x height x width in [0, 1]:
    a calibration input more like photos than a smooth random image."""
    from .synth import render_image
    from .transforms import letterbox

    rng = np.random.default_rng(seed)
    scenes = [render_image(rng, 640, 480, 6)[0] for _ in range(count)]
    return torch.stack([letterbox(rgb, width, height)[0] for rgb in scenes])
