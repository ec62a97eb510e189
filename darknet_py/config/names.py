"""Darknet's ``.names`` files: one class name per line."""
from __future__ import annotations

import os
import warnings

from .. import shipped
from ..errors import DataError
from .text import read_text, text_lines


def read_names(path, classes: int | None = None) -> list[str]:
    """Class names, one per line; CRLF and a trailing blank line are fine, a blank name is an error
    (Darknet would print '\\r' or an empty label).

    With ``classes``, Darknet's ``get_labels`` rule: the first ``classes`` names are used and the
    rest ignored, with a warning naming the file and both counts (its stock ``imagenet1k.data``
    gives 21,842 short names to a 1000-class net); fewer names than classes is a DataError, since
    Darknet would index past the list."""
    spath = os.fspath(path)
    names = [line.strip() for line in text_lines(read_text(path, "names file"))]
    if classes is not None and len(names) < classes:
        raise DataError(f"{len(names)} names but the model has classes={classes}: "
                        f"a names file needs at least one name per class", spath)
    used = names if classes is None else names[:classes]
    for i, name in enumerate(used, start=1):
        if not name:
            raise DataError("blank class name", spath, i)
    if classes is not None and len(names) > classes:
        warnings.warn(f"{spath}: {len(names)} names for a model with classes={classes}; "
                      f"the first {classes} are used, as Darknet does", stacklevel=2)
    return used


def default_names(classes: int) -> list[str]:
    """Names when none are given: COCO's for 80 classes (the bundled cfg/coco.names), else ids."""
    bundled = shipped.path("cfg/coco.names")
    if classes == 80 and bundled.exists():
        return read_names(bundled, classes)
    return [str(i) for i in range(classes)]


__all__ = ["default_names", "read_names"]
