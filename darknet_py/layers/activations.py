"""Darknet's activations (src/activations.h, AlexeyAB's additions), as tensor functions.

Names are Darknet's. ``get_activation`` fails with the list of known names: Darknet falls back
to ReLU on an unknown name and some ports to identity, both silently.
"""
from __future__ import annotations

import difflib
from typing import Callable, Dict

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _stair(x: Tensor) -> Tensor:
    n = torch.floor(x)
    half = torch.floor(x / 2)
    return torch.where(torch.remainder(n, 2) == 0, half, (x - n) + half)


def _mish(x: Tensor) -> Tensor:
    # AlexeyAB's softplus uses threshold 20 (x itself above it), as torch's softplus does.
    return x * torch.tanh(F.softplus(x, beta=1.0, threshold=20.0))


ACTIVATIONS: Dict[str, Callable[[Tensor], Tensor]] = {
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
    # Darknet's leaky slope is 0.1, not PyTorch's default 0.01.
    "leaky": lambda x: F.leaky_relu(x, 0.1),
    "tanh": torch.tanh,
    "plse": lambda x: torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5)),
    "stair": _stair,
    "hardtan": lambda x: torch.clamp(x, -1.0, 1.0),
    "lhtan": lambda x: torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x)),
    "swish": lambda x: x * torch.sigmoid(x),
    "mish": _mish,
    "hard_mish": lambda x: torch.where(x > 0, x, torch.where(x > -2, 0.5 * x * x + x, torch.zeros_like(x))),
}


# In-place forms, used when no gradient is needed: the input is always a fresh conv/add result,
# and skipping one full-size write per layer is measurable on the CPU.
_INPLACE: Dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda x: x,
    "leaky": lambda x: F.leaky_relu_(x, 0.1),
    "relu": F.relu_,
    "logistic": torch.sigmoid_,
}


class Activation(torch.nn.Module):
    def __init__(self, name: str):
        super().__init__()
        if name not in ACTIVATIONS:
            raise KeyError(name)
        self.name = name
        self.fn = ACTIVATIONS[name]
        self.fn_ = _INPLACE.get(name)

    def forward(self, x: Tensor) -> Tensor:
        if self.fn_ is not None and not torch.is_grad_enabled():
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
    return name
