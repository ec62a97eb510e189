"""Darknet's ``.data`` files: ``key = value`` lines (``classes``, ``train``, ``valid``, ``names``,
``backup``, ``eval``, ``results``, ...), each value remembered with its line."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .text import read_text, text_lines

EVAL_KINDS = ("voc", "coco", "imagenet")


def resolve_data_path(value: str, data_path) -> Path:
    """Darknet opens .data paths relative to the working directory; also try beside the .data file,
    then the file name alone beside it (data/coco.names next to coco.data)."""
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p
    beside = Path(os.fspath(data_path)).parent / p
    if beside.exists():
        return beside
    alone = Path(os.fspath(data_path)).parent / p.name
    return alone if alone.exists() else p


def _entries(path) -> dict[str, tuple[str, int]]:
    """``key = value`` lines, ``#``/``;`` comments -> {key: (value, line)}. A repeated key is an
    error: Darknet's ``option_find`` would take the first one silently."""
    out: dict[str, tuple[str, int]] = {}
    for lineno, raw in enumerate(text_lines(read_text(path, "data file"), False), start=1):
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


@dataclass
class DataConfig:
    """A parsed ``.data`` file; paths resolve as :func:`resolve_data_path`."""

    path: Path
    entries: dict[str, tuple[str, int]]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.entries[key][0] if key in self.entries else default

    def line(self, key: str) -> int | None:
        return self.entries[key][1] if key in self.entries else None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, (v, _) in self.entries.items()}

    def file(self, key: str) -> Path | None:
        """The existing file a key names (None when the key is absent); a missing one is an error."""
        value = self.get(key)
        if value is None:
            return None
        p = resolve_data_path(value, self.path)
        if not p.exists():
            raise DataError(f"{key} = {value}: no such file (looked in {os.getcwd()} and beside the .data file)",
                            os.fspath(self.path), self.line(key))
        return p

    def require(self, key: str, why: str) -> Path:
        p = self.file(key)
        if p is None:
            raise DataError(f"no '{key}' key: {why}", os.fspath(self.path))
        return p

    @property
    def classes(self) -> int | None:
        value = self.get("classes")
        if value is None:
            return None
        if not re.fullmatch(r"\d+", value) or int(value) <= 0:
            raise DataError(f"classes = {value}: expected a positive integer", os.fspath(self.path),
                            self.line("classes"))
        return int(value)

    @property
    def eval(self) -> str:
        value = self.get("eval", "voc")
        # Darknet compares with strcmp and writes VOC files for anything else, typos included.
        if value not in EVAL_KINDS:
            raise DataError(f"eval = {value}: expected one of {', '.join(EVAL_KINDS)}", os.fspath(self.path),
                            self.line("eval"))
        return value

    @property
    def results(self) -> Path:
        # Darknet's default prefix, relative to the working directory like every Darknet output.
        return Path(self.get("results") or "results")

    def check_classes(self, model_classes: int) -> None:
        """``classes`` (when given) must agree with the network's heads."""
        classes = self.classes
        if classes is not None and classes != model_classes:
            raise DataError(f"classes = {classes} but the network's heads have classes={model_classes}",
                            os.fspath(self.path), self.line("classes"))


def read_data_config(path) -> DataConfig:
    return DataConfig(Path(os.fspath(path)), _entries(path))


__all__ = ["DataConfig", "EVAL_KINDS", "read_data_config", "resolve_data_path"]
