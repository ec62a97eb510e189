"""Darknet's activations (src/activations.h, AlexeyAB's additions), as tensor functions.

Names are Darknet's: the 14 of pjreddie's ``get_activation`` (linear, logistic, loggy, relu, elu,
selu, relie, plse, hardtan, lhtan, ramp, leaky, tanh, stair) and AlexeyAB's 9 more (relu6, gelu,
swish, mish, hard_mish, revleaky, normalize_channels, normalize_channels_softmax,
normalize_channels_softmax_maxval). ``check_activation`` fails with the list of known names:
pjreddie falls back to ReLU on an unknown name (so a yolov4 cfg on pjreddie silently runs mish as
relu) and some ports to identity, both silently.

Where the two trees' formulas differ, the difference is below the float32 resolution except:
pjreddie's tanh is ``(e^2x - 1)/(e^2x + 1)`` in double, NaN above x ~ 354 (AlexeyAB's
``2/(1 + e^-2x) - 1`` and torch.tanh are 1 there). Three of AlexeyAB's names are computed only by
some layers, see ``COMPUTED_ONLY_IN``; relu6 is min(max(x, 0), 6) as in AlexeyAB's CUDA kernels
(its CPU ``activate()`` has no case for RELU6 and returns 0 in every layer).
"""
from __future__ import annotations

import difflib
from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# activate_array_normalize_channels*: the eps that starts each per-pixel sum.
NORM_CHAN_EPS = 1e-4


def _stair(x: Tensor) -> Tensor:
    n = torch.floor(x)
    half = torch.floor(x / 2)
    return torch.where(torch.remainder(n, 2) == 0, half, (x - n) + half)


def _mish(x: Tensor) -> Tensor:
    # AlexeyAB's softplus uses threshold 20 (x itself above it), as torch's softplus does.
    return x * torch.tanh(F.softplus(x, beta=1.0, threshold=20.0))


def _normalize_channels(x: Tensor) -> Tensor:
    # activate_array_normalize_channels: at each pixel, positive values over (eps + their sum across
    # channels); the others 0.
    pos = F.relu(x)
    return pos / (pos.sum(1, keepdim=True) + NORM_CHAN_EPS)


def _normalize_channels_softmax(x: Tensor, use_max: bool = False) -> Tensor:
    # activate_array_normalize_channels_softmax: exp(x - m) / (eps + sum over channels), m = 0 or,
    # for the _maxval variant, the per-pixel maximum (without it exp overflows to NaN, as in Darknet).
    e = torch.exp(x - x.amax(1, keepdim=True)) if use_max else torch.exp(x)
    return e / (e.sum(1, keepdim=True) + NORM_CHAN_EPS)


def _leaky(x: Tensor) -> Tensor:
    # Darknet's leaky slope is 0.1, not PyTorch's default 0.01.
    return F.leaky_relu(x, 0.1)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda x: x,
    "logistic": torch.sigmoid,
    "loggy": lambda x: 2.0 * torch.sigmoid(x) - 1.0,
    "relu": F.relu,
    "relu6": lambda x: torch.clamp(x, 0.0, 6.0),
    "elu": lambda x: torch.where(x >= 0, x, torch.expm1(x)),
    "selu": lambda x: torch.where(x >= 0, 1.0507 * x, 1.0507 * 1.6732 * torch.expm1(x)),
    "gelu": lambda x: 0.5 * x * (1.0 + torch.tanh(0.797885 * x + 0.035677 * x * x * x)),
    "relie": lambda x: torch.where(x > 0, x, 0.01 * x),
    "ramp": lambda x: F.relu(x) + 0.1 * x,
    "leaky": _leaky,
    # AlexeyAB's revleaky differs from leaky only in its gradient; activate() maps it to leaky.
    "revleaky": _leaky,
    "tanh": torch.tanh,
    "plse": lambda x: torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5)),
    "stair": _stair,
    "hardtan": lambda x: torch.clamp(x, -1.0, 1.0),
    "lhtan": lambda x: torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x)),
    "swish": lambda x: x * torch.sigmoid(x),
    "mish": _mish,
    "hard_mish": lambda x: torch.where(x > 0, x, torch.where(x > -2, 0.5 * x * x + x, torch.zeros_like(x))),
    "normalize_channels": _normalize_channels,
    "normalize_channels_softmax": _normalize_channels_softmax,
    "normalize_channels_softmax_maxval": lambda x: _normalize_channels_softmax(x, use_max=True),
}

# Names AlexeyAB computes only in the layers listed: elsewhere its per-element activate() (CPU and
# CUDA) has no case for them and returns 0. [convolutional] calls all of them by name, [shortcut]
# swish and mish.
_CONV = ("convolutional", "conv")
COMPUTED_ONLY_IN: dict[str, tuple[str, ...]] = {
    "swish": _CONV + ("shortcut",),
    "mish": _CONV + ("shortcut",),
    "hard_mish": _CONV,
    "normalize_channels": _CONV,
    "normalize_channels_softmax": _CONV,
    "normalize_channels_softmax_maxval": _CONV,
}


# In-place forms, used when no gradient is needed: the input is always a fresh conv/add result,
# and skipping one full-size write per layer is measurable on the CPU.
_INPLACE: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda x: x,
    "leaky": lambda x: F.leaky_relu_(x, 0.1),
    "revleaky": lambda x: F.leaky_relu_(x, 0.1),
    "relu": F.relu_,
    "logistic": torch.sigmoid_,
}


class Activation(torch.nn.Module):
    """An activation by Darknet name. The normalize_channels* family works across dimension 1 (the
    channels of N x C x H x W); every other one is element-wise."""

    def __init__(self, name: str):
        super().__init__()
        if name not in ACTIVATIONS:
            raise KeyError(name)
        self.name = name
        self.fn = ACTIVATIONS[name]
        self.fn_ = _INPLACE.get(name)

    def forward(self, x: Tensor, fresh: bool = False) -> Tensor:
        """``fresh``: ``x`` is a result that nothing else uses and that its maker did not keep for
        the backward pass (a convolution's or a batch norm's output), so the in-place form is safe
        with gradients too (its backward uses the output it keeps). In training that saves one
        activation-sized tensor per convolutional layer."""
        if self.fn_ is not None and (fresh or not torch.is_grad_enabled()):
            return self.fn_(x)
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def check_activation(section, key: str = "activation", default: str = "linear") -> str:
    """Read and validate an activation name from a section (marks it used)."""
    name = section.get_str(key, default)
    if name not in ACTIVATIONS:
        close = difflib.get_close_matches(name, list(ACTIVATIONS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise section.error(f"unknown activation '{name}'; {hint}known: {', '.join(sorted(ACTIVATIONS))}", key)
    where = COMPUTED_ONLY_IN.get(name)
    if where is not None and section.kind not in where:
        kinds = ", ".join(f"[{k}]" for k in where if k != "conv")
        raise section.error(f"{key}={name} is not supported on [{section.kind}]: Darknet computes it only in {kinds}; "
                            "elsewhere its activate() has no case for it and outputs 0", key)
    return name
