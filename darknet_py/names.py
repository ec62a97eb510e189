"""Darknet's small text files: ``.names`` (one class per line) and ``.data`` (key = value)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .errors import DataError


def _read_text(path, what: str) -> str:
    spath = os.fspath(path)
    try:
        with open(spath, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read {what}: {exc.strerror or exc}", spath) from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"invalid UTF-8 at byte {exc.start}", spath) from None


def read_names(path, classes: Optional[int] = None) -> List[str]:
    """Class names, one per line; CRLF and a trailing blank line are fine (D1), a count that
    differs from ``classes`` is an error (Darknet would print '\\r' or index past the list)."""
    lines = _read_text(path, "names file").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    names = [line.strip() for line in lines]
    for i, name in enumerate(names, start=1):
        if not name:
            raise DataError("blank class name", os.fspath(path), i)
    if classes is not None and len(names) != classes:
        raise DataError(f"{len(names)} names but the model has classes={classes}", os.fspath(path))
    return names


def read_data_entries(path) -> Dict[str, Tuple[str, int]]:
    """A Darknet ``.data`` file: ``key = value`` lines, ``#`` comments -> {key: (value, line)}.

    A repeated key is an error: Darknet's ``option_find`` would take the first one silently.
    """
    out: Dict[str, Tuple[str, int]] = {}
    text = _read_text(path, "data file")
    for lineno, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if "=" not in line:
            raise DataError(f"expected 'key = value', found '{line}'", os.fspath(path), lineno)
        key, value = (part.strip() for part in line.split("=", 1))
        if not key or not value:
            raise DataError(f"empty key or value in '{line}'", os.fspath(path), lineno)
        if key in out:
            raise DataError(f"'{key}' given twice (first on line {out[key][1]})", os.fspath(path), lineno)
        out[key] = (value, lineno)
    return out


def read_data_file(path) -> Dict[str, str]:
    """A Darknet ``.data`` file as {key: value}."""
    return {k: v for k, (v, _) in read_data_entries(path).items()}


def resolve_data_path(value: str, data_path) -> Path:
    """Darknet opens .data paths relative to the working directory; also try beside the .data file."""
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p
    beside = Path(os.fspath(data_path)).parent / p
    if beside.exists():
        return beside
    # also the file name alone beside the .data file (data/coco.names next to coco.data)
    alone = Path(os.fspath(data_path)).parent / p.name
    return alone if alone.exists() else p


def default_names(classes: int) -> List[str]:
    """Names when none are given: COCO's for 80 classes (the bundled cfg/coco.names), else ids."""
    bundled = Path(__file__).resolve().parent.parent / "cfg" / "coco.names"
    if classes == 80 and bundled.exists():
        return read_names(bundled, classes)
    return [str(i) for i in range(classes)]
