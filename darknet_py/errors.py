"""Typed errors. Each renders as one line that names the file, the place in it, what was
expected and what was found, so the CLI can print ``str(err)`` and exit non-zero."""
from __future__ import annotations

import os
from collections.abc import Mapping


class DarknetPyError(Exception):
    """Base of every error darknet-py raises on bad input.

    ``option``: where a library argument would get past the error, (keyword, value) as the
    message spells it (``on_bad='skip'``); the command line then names its own option instead.
    """

    option: tuple[str, str] | None = None

    def spelt(self, flags: Mapping[str, str]) -> str:
        """The message with ``option``'s library spelling replaced by the command line's (see
        :func:`spell_option`)."""
        return spell_option(str(self), self.option, flags)


def spell_option(text: str, option: tuple[str, str] | None, flags: Mapping[str, str]) -> str:
    """``text`` with the library spelling of ``option`` = (keyword, value), ``keyword='value'`` or
    ``keyword=value``, replaced by the command line's: ``flags[keyword]`` formatted with the value
    (``"--on-bad-label {}"`` -> ``--on-bad-label skip``)."""
    if option is None or option[0] not in flags:
        return text
    key, value = option
    for api in (f"{key}={value!r}", f"{key}={value}"):
        text = text.replace(api, flags[key].format(value))
    return text


# Unicode's line and paragraph separators: str.splitlines() breaks at them, as at the C0/C1 controls
_LINE_SEPARATORS = {"\u2028": "\\u2028", "\u2029": "\\u2029"}


def escape_controls(text: str) -> str:
    """``text`` with its control characters (C0, DEL, C1) and line separators written as escapes,
    as repr writes them (``\\n``, ``\\r``, ``\\t``, ``\\x1b``): a file or class name printed on a
    Darknet text line or in a message cannot start a line of its own (a photo named
    ``"x\\nperson: 99%"`` forging a detection) or send terminal escapes."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in _LINE_SEPARATORS:
            out.append(_LINE_SEPARATORS[ch])
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            out.append(repr(ch)[1:-1])
        else:
            out.append(ch)
    return "".join(out)


class CfgError(DarknetPyError):
    """A .cfg file that cannot define a network: ``path:line: [section #i] message``."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 section: str | None = None, index: int | None = None):
        self.message, self.path, self.line, self.section, self.index = message, path, line, section, index
        where = os.fspath(path) if path is not None else "<cfg>"
        if line is not None:
            where += f":{line}"
        if section is not None:
            where += f": [{section}]" + (f" (layer {index})" if index is not None and index >= 0 else "")
        super().__init__(f"{where}: {message}")


class WeightsError(DarknetPyError):
    """A .weights file that does not fit its cfg, with byte counts."""

    def __init__(self, message: str, path: str | None = None):
        self.message, self.path = message, path
        super().__init__(f"{os.fspath(path) if path is not None else '<weights>'}: {message}")


class ImageError(DarknetPyError):
    """An image that cannot be decoded faithfully."""

    def __init__(self, reason: str, path: str | None = None):
        self.reason, self.path = reason, path
        super().__init__(f"{os.fspath(path) if path is not None else '<image>'}: {reason}")


class DataError(DarknetPyError):
    """A .data / .names / list file that is malformed."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 option: tuple[str, str] | None = None):
        self.message, self.path, self.line, self.option = message, path, line, option
        where = os.fspath(path) if path is not None else "<data>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {message}")


class UsageError(DarknetPyError, ValueError):
    """An argument or option whose value cannot work (a negative batch, two outputs on one file):
    the message says what was given and what is expected. Also a ValueError."""


class OutputError(DarknetPyError):
    """An output that cannot be written: ``path: cannot write: reason``."""

    def __init__(self, reason: str, path: str | None = None):
        self.reason, self.path = reason, path
        super().__init__(f"{os.fspath(path) if path is not None else '<output>'}: {reason}")


class ExportError(DarknetPyError):
    """An export that cannot be made (a missing package, an unsupported precision) or whose check
    against PyTorch failed."""


class NoCudaError(DarknetPyError, RuntimeError):
    """CUDA asked for where torch has none (a CPU build, or no GPU). Also a RuntimeError."""
