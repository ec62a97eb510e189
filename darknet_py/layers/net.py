"""``[net]`` / ``[network]``: the input size and the training hyper-parameters.

Only width, height and channels change inference; ``batch``/``subdivisions`` and the rest
are training values, kept for the trainer (the batch comes from the input tensor).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from ..config.reader import Section

NET_TRAINING_KEYS = (
    "batch", "subdivisions", "learning_rate", "momentum", "decay", "time_steps", "notruth", "random", "adam",
    "B1", "B2", "eps", "max_crop", "min_crop", "max_ratio", "min_ratio", "center", "clip", "angle", "aspect",
    "saturation", "exposure", "hue", "policy", "burn_in", "power", "step", "scale", "steps", "scales", "gamma",
    "max_batches", "max_epochs", "seq_scales", "letter_box", "mosaic", "mosaic_bound", "cutmix", "mixup", "blur",
    "gaussian_noise", "flip", "label_smooth_eps", "resize_step", "attention", "adversarial_lr", "max_chart_loss",
    "track", "augment_speed", "sequential_subdivisions", "init_sequential_subdivisions", "try_fix_nan",
    "weights_reject_freq", "ema_alpha", "contrastive", "contrastive_jit_flip", "contrastive_color",
    "unsupervised", "loss_scale", "dynamic_minibatch", "optimized_memory", "workspace_size_limit_MB",
    "use_cuda_graph", "equidistant_point", "show_receptive_field", "rotate", "inputs", "sgdr_cycle", "sgdr_mult",
    "learning_rate_min",
)


@dataclass
class NetSpec:
    width: int
    height: int
    channels: int
    line: int
    training: dict[str, str] = field(default_factory=dict)  # raw text of the training keys present


def parse_net(section: Section) -> NetSpec:
    # pjreddie also accepts h/w/c as short names for height/width/channels.
    height = section.get_int("height", None, min=1)
    width = section.get_int("width", None, min=1)
    channels = section.get_int("channels", None, choices=(1, 3))
    short = {k: section.get_int(k, None, min=1) for k in ("h", "w", "c")}
    height = height if height is not None else short["h"]
    width = width if width is not None else short["w"]
    channels = channels if channels is not None else (short["c"] if short["c"] is not None else 3)
    if height is None or width is None:
        # a misspelt "widht=416" is the likely cause: report it with its did-you-mean first
        section.mark_used(NET_TRAINING_KEYS)
        section.check_all_used(("width", "height", "channels") + NET_TRAINING_KEYS)
        raise section.error("missing required key 'width' or 'height' (the network input size)")
    if channels not in (1, 3):
        raise section.error(f"channels={channels}: expected 1 or 3")
    if width % 32 or height % 32:
        warnings.warn(f"{section.path}:{section.line}: [net] width={width} height={height} are not multiples of 32; "
                      "YOLO nets need that for their routes", stacklevel=2)
    present = section.mark_used(NET_TRAINING_KEYS)
    section.check_all_used(("width", "height", "channels") + NET_TRAINING_KEYS)
    return NetSpec(width, height, channels, section.line, {k: section.options[k].value for k in present})
