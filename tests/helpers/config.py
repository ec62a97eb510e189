"""The single home of what the cfg-reader, cfg-error and layer-graph tests share: TINY, a small valid YOLO
network that each test changes in one place, the calls that write a cfg text to a file and read it back
(as a network, or as the CfgError it must raise), a read cfg as plain data (``cfg_summary``); and
``touch``, which lays out the files a .data file or an image list names."""
from __future__ import annotations

from pathlib import Path

from darknet_py.errors import CfgError
from darknet_py.graph import NetworkDef, parse_network

from tests.helpers.cfgs import conv, head_conv, maxpool, route, sections, shortcut, upsample, yolo
from tests.helpers.errors import expect_cfg_error

# Layers: 0 conv 16 3x3 BN leaky, 1 maxpool 2/2, 2 conv 32, 3 maxpool 2/2, 4 conv 32 1x1,
# 5 shortcut from -2 (layer 3), 6 conv 18 linear, 7 yolo (mask 3,4,5), 8 route -4 (layer 4),
# 9 upsample, 10 route -1,2 (layers 9 and 2), 11 conv 18 linear, 12 yolo (mask 0,1,2).
# At 64x64 the shapes (C,H,W) are: 0 16x64x64, 1 16x32x32, 2 32x32x32, 3..5 32x16x16,
# 6/7 18x16x16, 8 32x16x16, 9 32x32x32, 10 64x32x32, 11/12 18x32x32.
YOLO_KEYS = "jitter=.3\nignore_thresh=.7\ntruth_thresh=1\nrandom=1"
ANCHORS = "10,14, 23,27, 37,58, 81,82, 135,169, 344,319"
TINY = sections(
    "[net]\n# Testing\nbatch=1\nsubdivisions=1\nwidth=64\nheight=64\nchannels=3",
    conv(16), maxpool(), conv(32), maxpool(), conv(32, 1), shortcut(-2),
    head_conv(18), yolo("3,4,5", ANCHORS, 1, 6, YOLO_KEYS),
    route("-4"), upsample(), route("-1,2"),
    head_conv(18), yolo("0,1,2", ANCHORS, 1, 6, YOLO_KEYS))


def write_cfg(tmp_path: Path, text: str | bytes, name: str = "net.cfg") -> Path:
    """``text`` (UTF-8 when a str) written to tmp_path/NAME."""
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def expect_error(tmp_path: Path, text: str | bytes, line: int | None, *needles: str,
                 name: str = "net.cfg") -> CfgError:
    """The text, written to tmp_path/NAME, is refused at ``line`` (tests.helpers.errors.expect_cfg_error)."""
    return expect_cfg_error(text, line, *needles, path=tmp_path / name)


def parse_ok(tmp_path: Path, text: str | bytes, name: str = "net.cfg") -> NetworkDef:
    """parse_network of the text written to tmp_path/NAME."""
    return parse_network(write_cfg(tmp_path, text, name))


def cfg_summary(doc) -> list:
    """A read cfg (darknet_py.config.reader's document) as plain data: [(kind, header line, [(key, value,
    line), ...]), ...], sections and options in file order."""
    return [(s.kind, s.line, [(o.key, o.value, o.line) for o in s.options.values()]) for s in doc.sections]


def touch(path: Path, data: bytes = b"x") -> Path:
    """A file at ``path`` (its folders made) holding ``data``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
