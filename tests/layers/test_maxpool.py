"""[maxpool]'s Darknet keys: maxpool_depth / out_channels, antialiasing, stride_x / stride_y, size
defaulting to stride; against the float64 ``RefNet`` (tests/helpers/float64_net.py, written from
maxpool_layer.c), the shapes, and the refused values.

Tolerance ``RTOL`` (tests/helpers/layers.py): 1e-4 relative, float32 against float64.
"""
from __future__ import annotations

import pytest

from darknet_py.graph import parse_network
from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import MAXPOOL_CASES, check_against_ref, expect_no_effect_warning


@pytest.mark.parametrize("case", list(MAXPOOL_CASES))
def test_maxpool_keys_match_float64_reference(case, tmp_path):
    check_against_ref(tmp_path, cfg(MAXPOOL_CASES[case]))


def test_maxpool_shapes(tmp_path):
    nd = parse_network(cfg(*[MAXPOOL_CASES[k] for k in ("depth4_uneven",)]).encode())
    assert nd.shapes[-1] == (4, 32, 32)  # width and height kept, size/stride ignored
    nd = parse_network(cfg(MAXPOOL_CASES["stride_x_y"]).encode())
    assert nd.shapes[-1] == (4, 32, 16)  # (32 + 2 - 3)/1 + 1 high, (32 + 2 - 3)/2 + 1 wide
    nd = parse_network(cfg(MAXPOOL_CASES["size_defaults_to_stride"]).encode())
    assert nd.specs[-1].size == 3 and nd.shapes[-1] == (4, 11, 11)


BAD = [
    # (sections, the cfg line the error names, needles)
    (conv(4, 3) + "\n\n[maxpool]\nmaxpool_depth=1\nout_channels=5", "out_channels=5", ["exceeds the 4 input"]),
    (conv(4, 3) + "\n\n[maxpool]\nmaxpool_depth=1\nantialiasing=1", "antialiasing=1", ["maxpool_depth", "blur"]),
    (conv(4, 3) + "\n\n[maxpool]\nsize=2\nantialiasing=4", "antialiasing=4", ["expected one of 0, 1, 2"]),
    (conv(4, 3) + "\n\n[maxpool]\nsize=2\nmaxpool_zero_nonmax=1", "maxpool_zero_nonmax=1", ["not supported", "CUDA"]),
    (conv(4, 3) + "\n\n[maxpool]\nstride_y=0", "stride_y=0", ["expected a value >= 1"]),
]


@pytest.mark.parametrize("sections, line, needles", BAD, ids=[b[1] for b in BAD])
def test_bad_values_name_the_line(sections, line, needles, tmp_path):
    text = cfg(sections)
    expect_cfg_error(text, line_of(text, line), *needles, path=tmp_path / "bad.cfg")


def test_out_channels_without_maxpool_depth_warns(tmp_path):
    expect_no_effect_warning(cfg(conv(4, 3) + "\n\n[maxpool]\nsize=2\nout_channels=2"), "out_channels", tmp_path)
