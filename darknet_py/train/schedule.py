"""The training hyper-parameters of a cfg's ``[net]`` section and Darknet's learning-rate policies.

``parse_net_options`` (src/parser.c) reads them with these defaults; ``get_current_rate``
(src/network.c, AlexeyAB's for ``sgdr``) turns them into the rate of batch ``n``:
burn-in ``lr * (n / burn_in) ** power`` first, then the policy.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ..errors import CfgError

POLICIES = ("constant", "step", "steps", "exp", "poly", "sigmoid", "random", "sgdr")

# Keys that would change what training does, refused rather than ignored when switched on.
_UNSUPPORTED_ON = {"adam": "Darknet's Adam update", "mosaic": "mosaic augmentation", "cutmix": "CutMix",
                   "mixup": "MixUp", "letter_box": "letterboxed training images", "contrastive": "contrastive loss",
                   "blur": "blur augmentation", "gaussian_noise": "Gaussian-noise augmentation",
                   "track": "tracking training", "unsupervised": "unsupervised training"}


@dataclass
class TrainConfig:
    batch: int = 1
    subdivisions: int = 1
    learning_rate: float = 0.001
    momentum: float = 0.9
    decay: float = 0.0001
    burn_in: int = 0
    power: float = 4.0
    policy: str = "constant"
    step: int = 1
    scale: float = 1.0
    steps: list[int] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    gamma: float = 1.0
    max_batches: int = 0
    learning_rate_min: float = 0.00001
    sgdr_cycle: int = 0
    sgdr_mult: int = 2
    # augmentation ([net]); jitter and random come from the [yolo] layers. `angle` is read by
    # Darknet's classifier loader only, so detection training ignores it as Darknet does.
    angle: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    hue: float = 0.0
    flip: bool = True

    @property
    def minibatch(self) -> int:
        """Images per forward pass: Darknet divides ``batch`` by ``subdivisions``."""
        return self.batch // self.subdivisions

    def rate(self, batch_num: int, rng: random.Random | None = None) -> float:
        """``get_current_rate``: the learning rate for update number ``batch_num`` (0-based)."""
        lr, n = self.learning_rate, batch_num
        if n < self.burn_in:
            return lr * (n / self.burn_in) ** self.power
        p = self.policy
        if p == "constant":
            return lr
        if p == "step":
            return lr * self.scale ** (n // self.step)
        if p == "steps":
            for s, sc in zip(self.steps, self.scales):
                if s > n:
                    return lr
                lr *= sc
            return lr
        if p == "exp":
            return lr * self.gamma ** n
        if p == "poly":
            return lr * (1 - n / self.max_batches) ** self.power
        if p == "sigmoid":
            return lr * (1.0 / (1.0 + math.exp(self.gamma * (n - self.step))))
        if p == "random":
            return lr * (rng or random).random() ** self.power
        # sgdr: cosine restarts, each cycle sgdr_mult times longer than the one before
        start, cycle = 0, self.sgdr_cycle or self.max_batches
        while start + cycle < n:
            start += cycle
            cycle *= self.sgdr_mult
        return self.learning_rate_min + 0.5 * (lr - self.learning_rate_min) * (
            1.0 + math.cos((n - start) * math.pi / cycle))


def _number(raw: dict[str, str], key: str, kind, default, where: tuple[str | None, int]):
    if key not in raw:
        return default
    text = raw[key].strip()
    try:
        v = float(text)
        if kind is int and not v.is_integer():
            raise ValueError(text)
        return int(v) if kind is int else v
    except ValueError:
        raise CfgError(f"{key}={text}: expected {'an integer' if kind is int else 'a number'}",
                       path=where[0], line=where[1], section="net") from None


def _list(raw: dict[str, str], key: str, kind, where) -> list:
    if key not in raw:
        return []
    try:
        return [kind(float(v)) if kind is int else kind(v) for v in raw[key].replace(" ", "").split(",") if v]
    except ValueError:
        raise CfgError(f"{key}={raw[key]}: expected a comma-separated list of numbers", path=where[0],
                       line=where[1], section="net") from None


def train_config(net, path: str | None = None) -> TrainConfig:
    """The ``[net]`` training keys of a parsed cfg (``NetSpec``), checked."""
    raw, where = net.training, (path, net.line)
    for key, what in _UNSUPPORTED_ON.items():
        if key in raw and raw[key].strip() not in ("0", "0.0"):
            raise CfgError(f"{key}={raw[key]}: {what} is not supported by darknet-py's trainer", path=path,
                           line=net.line, section="net")
    c = TrainConfig()
    for key, kind in (("batch", int), ("subdivisions", int), ("learning_rate", float), ("momentum", float),
                      ("decay", float), ("burn_in", int), ("power", float), ("step", int), ("scale", float),
                      ("gamma", float), ("max_batches", int), ("learning_rate_min", float), ("sgdr_cycle", int),
                      ("sgdr_mult", int), ("angle", float), ("saturation", float), ("exposure", float),
                      ("hue", float)):
        setattr(c, key, _number(raw, key, kind, getattr(c, key), where))
    c.flip = bool(_number(raw, "flip", int, 1, where))
    c.policy = raw.get("policy", "constant").strip().lower()
    if c.policy == "sig":
        c.policy = "sigmoid"
    c.steps, c.scales = _list(raw, "steps", int, where), _list(raw, "scales", float, where)

    def bad(msg):
        return CfgError(msg, path=path, line=net.line, section="net")

    if c.policy not in POLICIES:
        raise bad(f"policy={c.policy}: expected one of {', '.join(POLICIES)}")
    if c.batch < 1 or c.subdivisions < 1 or c.batch % c.subdivisions:
        raise bad(f"batch={c.batch} subdivisions={c.subdivisions}: batch must be a positive multiple of "
                  "subdivisions (each forward pass takes batch/subdivisions images)")
    if c.policy == "steps" and (not c.steps or len(c.steps) != len(c.scales)):
        # Darknet: "STEPS policy must have steps and scales in cfg file"
        raise bad(f"policy=steps needs steps and scales of equal length, got {len(c.steps)} steps and "
                  f"{len(c.scales)} scales")
    if c.policy == "poly" and c.max_batches <= 0:
        raise bad("policy=poly needs max_batches > 0")
    if c.step <= 0:
        raise bad(f"step={c.step}: must be positive")
    return c


__all__ = ["POLICIES", "TrainConfig", "train_config"]
