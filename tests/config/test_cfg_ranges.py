"""Integer cfg values that parse but mean nothing (a 65536-pixel side, a 20001-wide kernel, a 4096x
upsampling, 10^8 classes) are CfgErrors naming the key's line and the bound; the bounds hold
whatever ``limits`` says, and every real cfg is within them."""
from __future__ import annotations

import pytest

from darknet_py import limits
from darknet_py.errors import CfgError
from darknet_py.graph import parse_network
from tests.helpers.cfgs import cfg, conv, head_conv, locate, upsample, with_keys, yolo

YOLO = cfg(conv(4), head_conv(3 * 7), yolo("0,1,2", "4,5,8,9,12,13", 2, 3))

CASES = [
    (cfg(conv(4), width=65536), "net", 1, "width", "expected at most 16384"),
    (cfg(conv(4), width=32, height=100000), "net", 1, "height", "expected at most 16384"),
    (cfg(conv(4, 20001)), "convolutional", 1, "size", "expected at most 16384"),
    (cfg(conv(4, 3, stride=40000)), "convolutional", 1, "stride", "expected at most 16384"),
    (cfg(conv(4), upsample(4096)), "upsample", 1, "stride", "expected at most 64"),
    (cfg(conv(4), upsample(-4096)), "upsample", 1, "stride", "expected at least -64"),
    (with_keys(YOLO, "yolo", 1, classes="100000000"), "yolo", 1, "classes", "expected at most 1000000"),
    (with_keys(YOLO, "yolo", 1, num="1000000"), "yolo", 1, "num", "expected at most 4096"),
    (cfg(conv(4, extra="dilation=99999")), "convolutional", 1, "dilation", "expected at most 16384"),
    (cfg(conv(4, extra="groups=99999999999")), "convolutional", 1, "groups", "within a C int"),
]


@pytest.mark.parametrize("text,header,nth,key,expect", CASES, ids=[c[3] + "-" + c[1] for c in CASES])
def test_absurd_values_are_refused_with_their_line(text, header, nth, key, expect):
    for enforced in (True, False):  # ranges are not budgets: limits=False does not lift them
        with pytest.raises(CfgError, match=expect) as e:
            parse_network(text.encode(), limits=enforced)
        assert e.value.line == locate(text, header, nth, key), str(e.value)
        assert f"{key}=" in str(e.value)


def test_non_integer_and_non_positive_values_stay_refused():
    for text, what in [(with_keys(YOLO, "yolo", 1, classes="1e8"), "expected an integer"),
                       (cfg(conv(0)), "expected a value >= 1"), (cfg(conv(-5)), "expected a value >= 1"),
                       (cfg(conv(4), width=0), "expected a value >= 1")]:
        with pytest.raises(CfgError, match=what):
            parse_network(text.encode())


def test_size_override_beyond_the_side_bound():
    with pytest.raises(CfgError, match="width=20000: expected 1..16384"):
        parse_network(cfg(conv(4)).encode(), width=20000, height=32)


def test_bounds_are_generous():
    # the largest value of each bounded key that any cfg here uses, far inside its bound
    parse_network(cfg(conv(4, 7, stride=2), upsample(4), width=limits.MAX_INPUT_SIDE // 16).encode())
    parse_network(cfg(conv(4), head_conv(3 * (9418 + 5)), yolo("0,1,2", "4,5,8,9,12,13", 9418, 3)).encode())
