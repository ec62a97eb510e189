"""Darknet's image lists (``train``/``valid`` in a .data file, or given to ``detect``): one image
path per line, as ``get_paths`` reads them.

Paths are tried relative to the working directory (as Darknet opens them), then relative to the
list's own folder (so a list that travels with its images works from anywhere). CRLF and a BOM
are fine, trailing blank lines are ignored; a blank line in the middle (Darknet would try to open
"": AlexeyAB/Yolo_mark#132), a missing file or a folder is a problem reported with its line.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .text import read_text, text_lines

# Problems quoted in one error message; the count says how many there were.
MAX_QUOTED = 10


@dataclass(frozen=True)
class ListedImage:
    path: Path    # the file, resolved
    listed: str   # the path as written in the list
    line: int     # its line in the list
    base: Path | None = None  # folder a relative path was resolved against (None: working directory)


@dataclass(frozen=True)
class ListProblem:
    line: int
    message: str  # what is wrong with the line, without its location
    value: str = ""


def resolve_listed(value: str, list_dir: Path) -> tuple[Path | None, Path | None]:
    """(the file a list entry names or None, the folder it was resolved against or None)."""
    p = Path(value)
    if p.is_absolute() or p.exists():
        return (p if p.exists() else None), None
    beside = list_dir / p
    return (beside if beside.exists() else None), list_dir


def scan_image_list(path, what: str = "image list") -> list[ListedImage | ListProblem]:
    """Every line of the list in order: the image it names, or the problem with it."""
    list_dir = Path(os.fspath(path)).parent
    out: list[ListedImage | ListProblem] = []
    for lineno, raw in enumerate(text_lines(read_text(path, what)), start=1):
        value = raw.strip()
        if not value:
            out.append(ListProblem(lineno, "blank line"))
            continue
        found, base = resolve_listed(value, list_dir)
        if found is None:
            out.append(ListProblem(lineno, f"'{value}' not found", value))
        elif found.is_dir():
            out.append(ListProblem(lineno, f"'{value}' is a directory", value))
        else:
            out.append(ListedImage(found, value, lineno, base))
    return out


def quote_problems(problems: Sequence[tuple[int, str]], what: str) -> str:
    """'N what: line a: ...; line b: ...' with at most MAX_QUOTED quoted."""
    shown = "; ".join(f"line {line}: {msg}" for line, msg in problems[:MAX_QUOTED])
    more = f"; and {len(problems) - MAX_QUOTED} more" if len(problems) > MAX_QUOTED else ""
    return f"{len(problems)} {what}: {shown}{more}"


def read_image_list(path, what: str = "image list") -> list[ListedImage]:
    """The images of a list, every entry checked to exist: any problem is one DataError listing them."""
    spath = os.fspath(path)
    entries = scan_image_list(path, what)
    problems = [(e.line, e.message) for e in entries if isinstance(e, ListProblem)]
    if problems:
        list_dir = Path(spath).parent
        raise DataError(quote_problems(problems, "bad entries in the list (paths are tried relative to the working "
                                                 f"directory, then to {list_dir or '.'})"), spath, problems[0][0])
    images = [e for e in entries if isinstance(e, ListedImage)]
    if not images:
        raise DataError(f"{what} lists no images", spath)
    return images


__all__ = ["ListProblem", "ListedImage", "quote_problems", "read_image_list", "resolve_listed", "scan_image_list"]
