"""Darknet's ``.names`` files: one class name per line."""
from __future__ import annotations

import os

from .. import shipped
from ..errors import DataError
from .text import read_text, text_lines


def read_names(path, classes: int | None = None) -> list[str]:
    """Class names, one per line; CRLF and a trailing blank line are fine, a blank name or a count
    that differs from ``classes`` is an error (Darknet would print '\\r' or index past the list)."""
    names = [line.strip() for line in text_lines(read_text(path, "names file"))]
    for i, name in enumerate(names, start=1):
        if not name:
            raise DataError("blank class name", os.fspath(path), i)
    if classes is not None and len(names) != classes:
        raise DataError(f"{len(names)} names but the model has classes={classes}", os.fspath(path))
    return names


def default_names(classes: int) -> list[str]:
    """Names when none are given: COCO's for 80 classes (the bundled cfg/coco.names), else ids."""
    bundled = shipped.path("cfg/coco.names")
    if classes == 80 and bundled.exists():
        return read_names(bundled, classes)
    return [str(i) for i in range(classes)]


__all__ = ["default_names", "read_names"]
