"""darknet-py summary: BFLOPs and weights-file sizes against the figures the reference README
states (computed there independently, by walking each cfg with Darknet's rules)."""
from __future__ import annotations

import re
import warnings

import pytest

from darknet_py.cli.main import main
from darknet_py.graph import parse_network
from darknet_py.summary import summarize

from tests.helpers.paths import REF, ROOT, ref_path

# Reference cfgs whose README figures (weight floats, file bytes, BFLOPs) are checked here; that every
# reference cfg loads is tests/config/test_reference_cfgs.py's.
RUNNABLE = ("pjreddie/cfg/yolov3.cfg", "pjreddie/cfg/yolov3-tiny.cfg", "pjreddie/cfg/yolov3-spp.cfg",
            "pjreddie/cfg/yolov3-voc.cfg", "pjreddie/cfg/yolov3-openimages.cfg", "pjreddie/cfg/darknet53.cfg",
            "alexeyab/cfg/yolov4.cfg", "alexeyab/cfg/yolov4-tiny.cfg", "pjreddie/cfg/yolov2.cfg",
            "pjreddie/cfg/yolov2-tiny.cfg")
# The README's 128.39 for yolov4 is its convolutions alone: AlexeyAB's layer table also counts
# the three stride-1 SPP maxpools (size^2 * c * out_h * out_w = 0.0508 BFLOPs), which we print.
WITHOUT_MAXPOOL = {"alexeyab/cfg/yolov4.cfg"}


def _readme_figures():
    """{cfg: (floats, bytes or None, [(bflops, size or None)])} from the reference README's table."""
    text = (REF / "README.md").read_text()
    out = {}
    for row in re.findall(r"^\| `([\w/.-]+\.cfg)` \|(.*)$", text, re.M):
        name, rest = row
        floats = re.search(r"([\d,]{7,}) (?:weight )?floats", rest)
        size = re.search(r"\(.*?([\d,]{7,}) bytes\)", rest)
        flops = []
        m = re.search(r"([\d.]+) BFLOPs(?: at (\d+)(?:, ([\d.]+) at (\d+))?)?", rest)
        if m:  # "140.69 BFLOPs at 608, 65.86 at 416" or "5.57 BFLOPs" (at the cfg's own size)
            flops.append((float(m.group(1)), int(m.group(2)) if m.group(2) else None))
            if m.group(3):
                flops.append((float(m.group(3)), int(m.group(4))))
        out[name] = (int(floats.group(1).replace(",", "")) if floats else None,
                     int(size.group(1).replace(",", "")) if size else None, flops)
    return out


@pytest.mark.parametrize("name", RUNNABLE)
def test_floats_bytes_and_bflops_match_the_reference_readme(name):
    path = ref_path(*name.split("/"))
    floats, size, flops = _readme_figures()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # yolov3-openimages repeats [net] keys (a warning, by design)
        s = summarize(path)
        assert s.floats == floats
        if size is not None:
            assert s.weights_bytes() == size
        for value, at in flops:
            at_size = summarize(path, width=at, height=at) if at else s
            total = at_size.bflops
            if name in WITHOUT_MAXPOOL:
                pools = sum(r.flops for r in at_size.rows if r.kind == "maxpool") / 1e9
                assert 0.05 < pools < 0.052, pools  # 5x5, 9x9 and 13x13 over 19x19x512
                total -= pools
            assert round(total, 2) == value, (name, at, total)


def test_readme_table_is_parsed():
    if not REF.exists():
        pytest.skip("reference folder absent")
    figures = _readme_figures()
    # the parser must see the rows the test above relies on, with their BFLOPs
    assert figures["pjreddie/cfg/yolov3.cfg"][2] == [(140.69, 608), (65.86, 416)]
    assert figures["pjreddie/cfg/yolov3-tiny.cfg"][:2] == (8858734, 35434956)


def test_conv_flops_rule_by_hand():
    # one 3x3 conv, 16 filters, stride 1 on 32x32x3: 2 * 16 * 9 * 3 * 32 * 32 = 884,736
    cfg = b"[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=16\nsize=3\npad=1\nactivation=leaky\n"
    s = summarize(parse_network(cfg))
    assert s.rows[0].flops == 884736 and s.floats == 16 * 27 + 16 and s.weights_bytes() == 20 + 4 * (16 * 27 + 16)


def test_summary_command(capsys):
    assert main(["summary", str(ROOT / "cfg" / "yolov3-tiny.cfg")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == "Total BFLOPS 5.571"
    assert out[-1] == "24 layers, 2 [yolo] heads, 8858734 weight floats (35434956 bytes in a .weights file)"
    assert re.match(r"\s+0 conv\s+16\s+3 x 3 / 1\s+416 x 416 x\s+3 ->\s+416 x 416 x\s+16\s+0\.150 BF", out[1])
