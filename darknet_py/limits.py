"""Budgets and value ranges checked before any work, so that a cfg, weights file, checkpoint or
photo can neither exhaust memory nor hang the process (plain data and checks, no torch).

The budgets admit every real Darknet network with a wide margin (see each constant); going
past them is the explicit ``limits=False`` of the library (``--no-limits`` on the command line),
which :func:`enforced` reads. The value ranges are not budgets: a value beyond them has no meaning
(a kernel wider than any input), so they stay checked whatever ``limits`` says.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import stat
from collections.abc import Callable, Iterator

from .files import file_kind

# Weights of one network, float32: 1 Gi parameters. yolov4 has 64 M (246 MiB); yolov1, the largest
# of Darknet's published cfgs, 197 M (753 MiB): 5x that.
MAX_PARAM_BYTES = 4 * 2 ** 30
# Activations of one image, float32: the sum of every layer's output, which is what Darknet
# allocates (one l.output per layer; our forward keeps fewer, so the sum bounds its peak).
# yolov4 sums to 0.6 GiB at 608x608, 1.8 GiB at 1024, 4.1 GiB at 1536 and 29 GiB at 4096.
MAX_ACTIVATION_BYTES = 32 * 2 ** 30
# A checkpoint's entries beyond its tensors: the pickled dict, the cfg text, the header.
CHECKPOINT_OVERHEAD_BYTES = 64 * 2 ** 20

# Value ranges of cfg keys: (low, high) by key (any layer kind) or by (kind, key).
# A network side: 16x yolov4's 1024; larger inputs exceed any activation budget anyway.
MAX_INPUT_SIDE = 16384
# A window, stride, padding or grid wider than the widest input reads nothing but padding.
MAX_WINDOW = MAX_INPUT_SIDE
# [upsample] stride: cfgs use 2 and 4; 64 per side is 4096x the activations of its input.
MAX_UPSAMPLE = 64
# Classes of one head: yolo9000 has 9418, ImageNet-22k 21841; a million is 45x that.
MAX_CLASSES = 1_000_000
# Anchors of one head: cfgs use up to 9 (yolov3) or 5 (yolov2) per head.
MAX_ANCHORS = 4096
# Every integer Darknet reads with atoi into a C int.
C_INT_MAX = 2 ** 31 - 1

KEY_RANGES: dict[str | tuple[str, str], tuple[int, int]] = {
    "size": (1, MAX_WINDOW), "stride": (1, MAX_WINDOW), "stride_x": (1, MAX_WINDOW), "stride_y": (1, MAX_WINDOW),
    "padding": (0, MAX_WINDOW), "dilation": (1, MAX_WINDOW), "side": (1, MAX_WINDOW),
    "crop_width": (1, MAX_INPUT_SIDE), "crop_height": (1, MAX_INPUT_SIDE),
    "classes": (1, MAX_CLASSES), "num": (1, MAX_ANCHORS),
    ("upsample", "stride"): (-MAX_UPSAMPLE, MAX_UPSAMPLE),  # negative: Darknet's downsampling
    ("net", "width"): (1, MAX_INPUT_SIDE), ("net", "height"): (1, MAX_INPUT_SIDE),
    ("net", "w"): (1, MAX_INPUT_SIDE), ("net", "h"): (1, MAX_INPUT_SIDE),
    ("network", "width"): (1, MAX_INPUT_SIDE), ("network", "height"): (1, MAX_INPUT_SIDE),
}
_WHY = {"classes": "more classes than any dataset", "num": "more anchors than any head uses",
        "stride": "a factor beyond any network's", "width": "a side beyond any network input",
        "height": "a side beyond any network input", "w": "a side beyond any network input",
        "h": "a side beyond any network input"}

_ENFORCED: contextvars.ContextVar[bool] = contextvars.ContextVar("darknet_py_limits", default=True)


def enforced(limits: bool | None = None) -> bool:
    """Whether budgets apply: ``limits`` when given, else the setting of :func:`disabled`."""
    return _ENFORCED.get() if limits is None else bool(limits)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Every budget off inside the block (the command line's ``--no-limits``)."""
    token = _ENFORCED.set(False)
    try:
        yield
    finally:
        _ENFORCED.reset(token)


def key_range(kind: str, key: str) -> tuple[int, int] | None:
    """The (low, high) a cfg key's integer value must lie in, or None."""
    return KEY_RANGES.get((kind, key)) or KEY_RANGES.get(key)


def range_problem(kind: str, key: str, value: int) -> str | None:
    """Why ``key=value`` of a ``[kind]`` section has no meaning, or None when it is in range."""
    bounds = key_range(kind, key)
    if bounds is None:
        if abs(value) > C_INT_MAX:
            return f"{key}={value}: expected a value within a C int (|value| <= {C_INT_MAX}), as Darknet reads it"
        return None
    lo, hi = bounds
    if value > hi:
        why = _WHY.get(key, "a window wider than any network input")
        if kind == "upsample" and key == "stride":
            why = "an upsampling factor beyond any network's"
        return f"{key}={value}: expected at most {hi} ({why})"
    if kind == "upsample" and key == "stride" and value < lo:
        return f"{key}={value}: expected at least {lo} (a downsampling factor beyond any network's)"
    return None


def gib(n: float) -> str:
    """Bytes as GiB (or MiB below one GiB), for messages."""
    return f"{n / 2 ** 30:.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.1f} MiB"


def special_file_problem(path) -> str | None:
    """Why ``path`` cannot be read as a regular file (a FIFO would block the reader forever, a
    device such as /dev/zero never ends, a directory or socket has no contents), or None (a
    regular file, or one that does not exist: the reader's own open reports that)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return f"is {file_kind(mode)}, not a regular file"


def check_regular_file(path, error: Callable[[str, str], Exception]) -> None:
    """Raise ``error(message, path)`` (a WeightsError, DataError, CfgError, ImageError...) when
    :func:`special_file_problem` finds one: every reader calls this before it opens the file."""
    problem = special_file_problem(path)
    if problem:
        raise error(problem, os.fspath(path))


__all__ = ["CHECKPOINT_OVERHEAD_BYTES", "C_INT_MAX", "KEY_RANGES", "MAX_ACTIVATION_BYTES", "MAX_ANCHORS",
           "MAX_CLASSES", "MAX_INPUT_SIDE", "MAX_PARAM_BYTES", "MAX_UPSAMPLE", "MAX_WINDOW", "check_regular_file",
           "disabled", "enforced", "gib", "key_range", "range_problem", "special_file_problem"]
