"""The one way Darknet's small text files are read: bytes, a UTF-8 BOM dropped, UTF-8 strictly,
line endings of any platform."""
from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import DataError
from ..files import note_input
from ..limits import check_regular_file


def read_bytes(path, what: str, error: Callable[..., Exception] = DataError) -> bytes:
    """The bytes of one of Darknet's small text files (cfg, .data, names, lists, labels): a special
    file or an unreadable one is ``error(message, path)`` naming ``what`` it is; the file is recorded
    as an input of the run (no output may replace it: darknet_py.files)."""
    spath = os.fspath(path)
    check_regular_file(spath, error)
    try:
        with open(spath, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}", spath) from None
    note_input(spath, what)
    return data


def read_text(path, what: str) -> str:
    """The file's text; an unreadable file or invalid UTF-8 is a DataError naming ``what`` it is."""
    spath = os.fspath(path)
    data = read_bytes(spath, what)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"invalid UTF-8 at byte {exc.start}: not a {what}", spath) from None


def text_lines(text: str, drop_trailing_blank: bool = True) -> list[str]:
    """Lines of any line ending (CRLF, CR, LF); a final newline or trailing blank lines are harmless."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while drop_trailing_blank and lines and not lines[-1].strip():
        lines.pop()
    return lines


__all__ = ["read_bytes", "read_text", "text_lines"]
