"""The single home of the cfg-error assertion: a cfg text must be refused with a
darknet_py.errors.CfgError that names the line and says what is wrong."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from darknet_py.errors import CfgError
from darknet_py.graph import parse_network


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based number of the nth line of ``text`` that reads ``needle`` (blanks around it ignored);
    nth=-1: the last one."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if line.strip() == needle]
    assert hits, f"no line {needle!r} in the text"
    return hits[nth - 1] if nth > 0 else hits[nth]


def expect_cfg_error(text: str | bytes, line: int | None, *needles: str,
                     path: Path | None = None) -> CfgError:
    """parse_network must refuse ``text`` with a CfgError at cfg line ``line`` (None: not asserted) whose
    message holds every needle; the error is returned. With ``path`` the text is written there and read
    as that file: the error then names it, its message beginning "path:line:". Warnings are silenced
    (a refused cfg may warn first)."""
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    if path is not None:
        path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CfgError) as info:
            parse_network(data if path is None else path)
    err = info.value
    msg = str(err)
    if path is not None:
        assert str(path) in msg and err.path == str(path), msg
        if err.line is not None:
            assert msg.startswith(f"{path}:{err.line}:"), msg
    if line is not None:
        assert err.line == line, (msg, line)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return err
