"""Argument checks shared by the library entry points (and so by the commands that call them).

Each check raises a :class:`~darknet_py.errors.UsageError` whose message starts with the library
spelling ``keyword=value`` and whose ``option`` is ``(keyword, value)``, so the command line can
name its own flag instead (darknet_py.errors.spell_option): ``thresh=-1: expected a number in
[0, 1]`` from Python reads ``--thresh -1: expected a number in [0, 1]`` from ``darknet-py``.

Ranges (Darknet's semantics):

- ``thresh``, ``hier_thresh``, ``conf_thresh``: ``0 <= t <= 1``. A score passes when it is
  ``> thresh``: 0 keeps every candidate (as ``detector valid``'s .005 nearly does), 1 keeps none.
- ``nms``: ``0 <= nms <= 1``; a box is suppressed by a higher one when their IoU is ``> nms``, so
  1 suppresses nothing.
- ``iou`` (``detector map`` / ``recall``): ``0 <= iou < 1``; a match needs IoU ``> iou``, so 1
  would count nothing and report 0 without saying why.
- counts (batch, top-k, iterations, ...): integers ``>= 1``; ``workers`` and seeds ``>= 0``.
- network input sizes: positive multiples of the network's stride
  (:attr:`darknet_py.graph.NetworkDef.strides`).
"""
from __future__ import annotations

import math
import numbers

from .errors import UsageError


def shown(value) -> str:
    """A value as messages print it: floats with ``%g`` (``-1``, ``0.5``, ``nan``)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def option_error(keyword: str, value, expected: str) -> UsageError:
    """``keyword=value: expected ...``, with ``option`` set so the command line can name its flag."""
    err = UsageError(f"{keyword}={shown(value)}: expected {expected}")
    err.option = (keyword, shown(value))
    return err


def check_range(keyword: str, value, low: float = 0.0, high: float = 1.0, *, high_open: bool = False):
    """``low <= value <= high`` (``< high`` with ``high_open``), a real number and not NaN; None passes."""
    if value is None:
        return None
    expected = f"a number in [{low:g}, {high:g}{')' if high_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise option_error(keyword, value, expected)
    v = float(value)
    if math.isnan(v) or v < low or v > high or (high_open and v >= high):
        raise option_error(keyword, value, expected)
    return value


def check_count(keyword: str, value, minimum: int = 1, maximum: int | None = None, *, what: str = ""):
    """An integer ``minimum <= value`` (``<= maximum`` when given); None passes."""
    if value is None:
        return None
    if maximum is not None:
        expected = f"an integer in {minimum}..{maximum}"
    else:
        expected = f"an integer >= {minimum}"
    if what:
        expected += f" ({what})"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise option_error(keyword, value, expected)
    if value < minimum or (maximum is not None and value > maximum):
        raise option_error(keyword, value, expected)
    return int(value)


def check_positive(keyword: str, value):
    """A real number > 0 and finite (a time limit); None passes."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise option_error(keyword, value, "a finite number > 0")
    return value


def check_thresholds(**values) -> None:
    """The usual detection thresholds by keyword: thresh, hier_thresh, conf_thresh, nms in [0, 1];
    iou in [0, 1)."""
    for keyword, value in values.items():
        check_range(keyword, value, high_open=keyword == "iou")


__all__ = ["check_count", "check_positive", "check_range", "check_thresholds", "option_error", "shown"]
