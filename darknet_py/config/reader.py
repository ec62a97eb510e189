"""Darknet ``.cfg`` text -> line-numbered sections. Pure data: no torch, no interpretation.

Darknet's own ``read_cfg`` (src/parser.c) deletes every space, tab and newline in a line,
treats lines starting with ``#`` or ``;`` as comments and splits options at the first ``=``.
We accept the same texts and are strict where Darknet is silent: CRLF/CR line endings, a BOM,
inline comments, duplicate keys, keys outside a section and lines without ``=`` are either
normalised (the first three) or reported with the file, line and offending text.

Every option remembers whether a layer read it (Darknet's ``option_unused`` idea), so a typo
such as ``filter=255`` is an error instead of a silently defaulted ``filters=1``.
"""
from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Union

from ..errors import CfgError
from .text import read_bytes

PathLike = Union[str, os.PathLike]

# re.ASCII: a bare \d also matches Arabic-Indic or full-width digits, which int()/float() convert
# but Darknet's atoi/atof read as 0, so "filters=٣٢" would silently mean another net.
_INT_RE = re.compile(r"[+-]?\d+\Z", re.ASCII)
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z", re.ASCII)
# Darknet's strip() removes these everywhere in a line, so "anchors = 10,13,  16,30" is one token.
_WS_RE = re.compile(r"[ \t\f\v]+")
_SECTION_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class Option:
    key: str
    value: str
    line: int
    used: bool = False


@dataclass
class Section:
    """One ``[kind]`` block. ``index`` is the layer index (-1 for ``[net]``)."""

    kind: str
    line: int
    index: int
    path: str | None = None
    options: dict[str, Option] = field(default_factory=dict)
    duplicates: list[Option] = field(default_factory=list)  # later repeats of a key, in file order

    # -- error helpers -------------------------------------------------------------------
    def error(self, message: str, key: str | None = None) -> CfgError:
        line = self.options[key].line if key is not None and key in self.options else self.line
        return CfgError(message, path=self.path, line=line, section=self.kind, index=self.index)

    # -- typed getters; each marks the option used --------------------------------------
    def has(self, key: str) -> bool:
        return key in self.options

    def raw(self, key: str) -> str | None:
        opt = self.options.get(key)
        if opt is None:
            return None
        opt.used = True
        return opt.value

    def _required(self, key: str) -> str:
        value = self.raw(key)
        if value is None:
            raise self.error(f"missing required key '{key}'")
        return value

    def get_str(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        if required:
            return self._required(key)
        value = self.raw(key)
        return default if value is None else value

    def get_int(self, key: str, default: int | None = None, *, required: bool = False,
                min: int | None = None, max: int | None = None, choices: Sequence[int] | None = None) -> int:
        value = self._required(key) if required else self.raw(key)
        if value is None:
            return default  # type: ignore[return-value]
        if not _INT_RE.match(value):
            # Darknet's atoi would read "3.5" as 3 and "abc"/"true" as 0, silently.
            raise self.error(f"{key}={value}: expected an integer", key)
        number = self._to_int(key, value)
        self._check_range(key, value, number, min, max, choices)
        return number

    def _to_int(self, key: str, text: str) -> int:
        try:
            return int(text)
        except ValueError:
            # Python refuses to convert more than 4300 digits (sys.int_info.str_digits_check_threshold)
            raise self.error(f"{key}={text[:20]}...: integer of {len(text)} characters is too large", key) from None

    def get_float(self, key: str, default: float | None = None, *, required: bool = False,
                  min: float | None = None, max: float | None = None) -> float:
        value = self._required(key) if required else self.raw(key)
        if value is None:
            return default  # type: ignore[return-value]
        if not _FLOAT_RE.match(value):
            raise self.error(f"{key}={value}: expected a number", key)
        number = float(value)
        self._check_range(key, value, number, min, max, None)
        return number

    def get_bool(self, key: str, default: bool = False) -> bool:
        # Darknet reads flags with atoi: only 0/1 mean anything; "true" would silently be 0.
        return bool(self.get_int(key, int(default), choices=(0, 1)))

    def get_int_list(self, key: str, default: list[int] | None = None, *, required: bool = False) -> list[int]:
        items = self._list(key, required, _INT_RE, "integers")
        return default if items is None else [self._to_int(key, v) for v in items]  # type: ignore[return-value]

    def get_float_list(self, key: str, default: list[float] | None = None, *, required: bool = False) -> list[float]:
        items = self._list(key, required, _FLOAT_RE, "numbers")
        return default if items is None else [float(v) for v in items]  # type: ignore[return-value]

    def _list(self, key: str, required: bool, pattern, what: str) -> list[str] | None:
        value = self._required(key) if required else self.raw(key)
        if value is None:
            return None
        items = value.split(",")
        if items and items[-1] == "":  # "layers=-1," is common and Darknet tolerates it
            items = items[:-1]
        if not items or any(not pattern.match(v) for v in items):
            raise self.error(f"{key}={value}: expected a comma-separated list of {what}", key)
        return items

    def _check_range(self, key, text, number, lo, hi, choices) -> None:
        if choices is not None and number not in choices:
            raise self.error(f"{key}={text}: expected one of {', '.join(map(str, choices))}", key)
        if lo is not None and number < lo:
            raise self.error(f"{key}={text}: expected a value >= {lo}", key)
        if hi is not None and number > hi:
            raise self.error(f"{key}={text}: expected a value <= {hi}", key)

    def mark_used(self, keys: Iterable[str]) -> list[str]:
        """Accept keys that are kept but do not change inference (training keys); returns those present."""
        present = []
        for key in keys:
            if key in self.options:
                self.options[key].used = True
                present.append(key)
        return present

    def check_duplicates(self, harmless: Iterable[str] = ()) -> None:
        """A repeated key means different nets in Darknet (first wins) and OpenCV (last wins):
        an error, unless the key only matters to training (pjreddie's yolov3-openimages.cfg sets
        batch twice), where Darknet's reading, the first, is kept with a warning."""
        harmless = set(harmless)
        for dup in self.duplicates:
            first = self.options[dup.key]
            if dup.key in harmless:
                warnings.warn(f"{self.path}:{dup.line}: [{self.kind}] repeats '{dup.key}' (first at line "
                              f"{first.line}); using the first, {dup.key}={first.value}, as Darknet does", stacklevel=3)
                continue
            raise CfgError(f"duplicate key '{dup.key}' (also at line {first.line}): Darknet reads the first, "
                           "OpenCV the last", path=self.path, line=dup.line, section=self.kind, index=self.index)

    def unused(self) -> list[Option]:
        return [opt for opt in self.options.values() if not opt.used]

    def check_all_used(self, known: Iterable[str] = ()) -> None:
        """Darknet prints "Unused field" and carries on; a typo there silently changes the net."""
        leftovers = self.unused()
        if not leftovers:
            return
        opt = leftovers[0]
        candidates = sorted(set(known) | set(self.options))
        close = difflib.get_close_matches(opt.key, [c for c in candidates if c != opt.key], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise CfgError(f"unknown key '{opt.key}' (value '{opt.value}'){hint}", path=self.path, line=opt.line,
                       section=self.kind, index=self.index)

    def to_text(self) -> str:
        body = "".join(f"{o.key}={o.value}\n" for o in self.options.values())
        return f"[{self.kind}]\n{body}"


@dataclass
class CfgDocument:
    path: str | None
    sections: list[Section]
    text: str = ""  # the file as read (undecodable bytes in comments replaced): kept with checkpoints

    @property
    def net(self) -> Section:
        return self.sections[0]

    @property
    def layers(self) -> list[Section]:
        return self.sections[1:]


def _sniff_non_cfg(data: bytes, path: str | None) -> None:
    """HTML pages, Git LFS pointers and binaries are common mistakes; say so at line 1."""
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    # "<html" further in only counts when the text starts with markup ("<!-- x --><html>"): a cfg whose
    # first comment mentions "<html>" is still a cfg.
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")) or \
            (head.startswith(b"<") and b"<html" in head[:200]):
        raise CfgError("this looks like an HTML page, not a Darknet cfg (saved a web page? use the raw file)",
                       path=path, line=1)
    if head.startswith(b"version https://git-lfs"):
        raise CfgError("this is a Git LFS pointer, not the cfg itself (run 'git lfs pull' or download the raw file)",
                       path=path, line=1)
    if b"\x00" in data[:4096]:
        raise CfgError("this looks like a binary file (NUL bytes), not a Darknet cfg text", path=path, line=1)



def parse_cfg_text(data: bytes | str, path: PathLike | None = None) -> CfgDocument:
    """Parse cfg bytes/text. Errors name ``path:line``."""
    spath = os.fspath(path) if path is not None else None
    if isinstance(data, str):
        data = data.encode("utf-8")
    _sniff_non_cfg(data, spath)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 BOM makes darknet's first line a key line (segfault); drop it
    raw_lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")

    sections: list[Section] = []
    net_line: int | None = None
    for lineno, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            stripped = raw.lstrip(b" \t")
            if stripped[:1] in (b"#", b";"):
                warnings.warn(f"{spath}:{lineno}: undecodable bytes inside a comment ignored", stacklevel=2)
                continue
            raise CfgError(f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line",
                           path=spath, line=lineno) from None
        line = _WS_RE.sub("", line)
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise CfgError(f"malformed section header '{line}': expected '[name]'", path=spath, line=lineno)
            name = line[1:-1]
            if not _SECTION_NAME_RE.match(name):
                raise CfgError(f"malformed section header '{line}': expected '[name]'", path=spath, line=lineno)
            if raw.decode("utf-8").strip() != line:
                # whitespace inside or around the brackets is removed as darknet's strip() does
                inner = raw.decode("utf-8").strip()
                if inner[1:-1] != inner[1:-1].strip():
                    warnings.warn(f"{spath}:{lineno}: section header {inner!r} read as '[{name}]'", stacklevel=2)
            if name in ("net", "network"):
                if sections:
                    first = f"; the first is at line {net_line}" if net_line is not None else ""
                    raise CfgError(f"[{name}] must be the first section and appear once{first}",
                                   path=spath, line=lineno)
                net_line = lineno
            elif not sections:
                raise CfgError(f"first section must be [net] or [network], found [{name}]", path=spath, line=lineno)
            sections.append(Section(kind=name, line=lineno, index=len(sections) - 1, path=spath))
            continue
        # Inline comments: darknet's atoi/atof stop at '#', so "filters=255#x" is 255 there too.
        for mark in "#;":
            cut = line.find(mark)
            if cut >= 0:
                line = line[:cut]
        if "=" not in line:
            raise CfgError(f"expected 'key=value', found '{line}'", path=spath, line=lineno,
                           section=sections[-1].kind if sections else None)
        key, value = line.split("=", 1)
        if not sections:
            raise CfgError(f"option '{key}' outside any section (the file must start with [net])",
                           path=spath, line=lineno)
        sec = sections[-1]
        if not key:
            raise CfgError(f"empty key in '{line}'", path=spath, line=lineno, section=sec.kind, index=sec.index)
        if not value:
            raise CfgError(f"empty value for '{key}'", path=spath, line=lineno, section=sec.kind, index=sec.index)
        if key in sec.options:
            # Darknet reads the first, OpenCV the last; whether that matters depends on the key,
            # which the layer kind decides (Section.check_duplicates).
            sec.duplicates.append(Option(key, value, lineno))
            continue
        sec.options[key] = Option(key, value, lineno)
    if not sections:
        raise CfgError("no sections found (empty file or only comments)", path=spath)
    return CfgDocument(spath, sections, data.decode("utf-8", errors="replace"))


def read_cfg(path: PathLike) -> CfgDocument:
    """Read a cfg file (missing, directory and unreadable paths raise CfgError with the OS reason)."""
    spath = os.fspath(path)
    return parse_cfg_text(read_bytes(spath, "cfg", lambda message, p: CfgError(message, path=p)), spath)
