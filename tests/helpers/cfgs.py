"""The single home of cfg texts in the tests: the networks several test files share
(tests/fixtures/cfg/NAME.cfg, read with ``fixture_cfg_text``), the edits that make a variant of a
text (``locate``, ``set_key``, ``with_keys``, ``add_line``), and the builders that write sections,
so that a test states its small network in a few calls instead of pasting one.

The builders write Darknet's own layout: one ``key=value`` a line, a blank line between sections.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cfg"


# ------------------------------------------------------------------------------------ fixture files

def fixture_cfg_path(name: str) -> Path:
    """tests/fixtures/cfg/NAME.cfg."""
    path = FIXTURES / f"{name}.cfg"
    assert path.is_file(), f"no cfg fixture {path}"
    return path


def fixture_cfg_text(name: str) -> str:
    """The text of tests/fixtures/cfg/NAME.cfg."""
    return fixture_cfg_path(name).read_text()


# ------------------------------------------------------------------------------------ variants of a text

def locate(text: str, header: str, nth: int = 1, key: str | None = None) -> int:
    """1-based line of the nth ``[header]`` or, with ``key``, of ``key=`` inside that section."""
    lines = text.split("\n")
    seen = 0
    for i, line in enumerate(lines):
        if line.strip() == f"[{header}]":
            seen += 1
            if seen == nth:
                if key is None:
                    return i + 1
                for j in range(i + 1, len(lines)):
                    if lines[j].strip().startswith("["):
                        break
                    if lines[j].split("=")[0].strip() == key:
                        return j + 1
                raise AssertionError(f"no {key}= in [{header}] #{nth}")
    raise AssertionError(f"no [{header}] #{nth}")


def set_key(text: str, header: str, nth: int, key: str, value: str | None) -> str:
    """Replace the value of ``key`` in the nth ``[header]`` (None deletes the line)."""
    lines = text.split("\n")
    i = locate(text, header, nth, key) - 1
    if value is None:
        del lines[i]
    else:
        lines[i] = f"{key}={value}"
    return "\n".join(lines)


def with_keys(text: str, header: str, nth: int = 1, **values) -> str:
    """``set_key`` for several keys of the nth ``[header]``."""
    for key, value in values.items():
        text = set_key(text, header, nth, key, None if value is None else str(value))
    return text


def add_line(text: str, header: str, nth: int, line: str) -> str:
    """Insert ``line`` right after the nth ``[header]`` line."""
    lines = text.split("\n")
    lines.insert(locate(text, header, nth), line)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ builders

def sections(*parts: str) -> str:
    """Sections (each a text, indented or not) joined the way Darknet's cfgs are: a blank line between,
    one newline at the end."""
    return "\n".join(textwrap.dedent(p).strip() + "\n" for p in parts)


def net(width: int, height: int | None = None, channels: int = 3, **keys) -> str:
    """A [net] section: ``keys`` first (batch, subdivisions, ...), then width, height, channels."""
    lines = ["[net]"] + [f"{k}={v}" for k, v in keys.items()]
    lines += [f"width={width}", f"height={width if height is None else height}", f"channels={channels}"]
    return "\n".join(lines)


def cfg(*layers: str, width: int = 32, height: int | None = None, channels: int = 3) -> str:
    """A whole cfg: a [net] of width x height (square by default) and the layer sections."""
    return sections(net(width, height, channels), *layers)


def conv(filters: int, size: int = 3, extra: str = "", act: str = "leaky", bn: bool = True, stride: int = 1) -> str:
    """A [convolutional] section (pad=1); ``extra``: more key lines, written last."""
    bn_line = "batch_normalize=1\n" if bn else ""
    return (f"[convolutional]\n{bn_line}filters={filters}\nsize={size}\nstride={stride}\npad=1\n"
            f"activation={act}\n{extra}").rstrip()


def head_conv(filters: int, act: str = "linear") -> str:
    """The 1x1 convolution before a [yolo], in the key order of Darknet's yolov3 cfgs."""
    return f"[convolutional]\nsize=1\nstride=1\npad=1\nfilters={filters}\nactivation={act}"


def maxpool(size: int = 2, stride: int = 2) -> str:
    return f"[maxpool]\nsize={size}\nstride={stride}"


def upsample(stride: int = 2) -> str:
    return f"[upsample]\nstride={stride}"


def route(layers: str, extra: str = "") -> str:
    return f"[route]\nlayers={layers}\n{extra}".rstrip()


def shortcut(source: int, act: str = "linear") -> str:
    return f"[shortcut]\nfrom={source}\nactivation={act}"


def yolo(mask: str, anchors: str, classes: int, num: int, extra: str = "") -> str:
    """A [yolo] section; ``extra``: more key lines (jitter, scale_x_y, nms_kind, ...), written last."""
    return f"[yolo]\nmask={mask}\nanchors={anchors}\nclasses={classes}\nnum={num}\n{extra}".rstrip()
