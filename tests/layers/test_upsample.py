"""[upsample]: scale, and the negative strides (Darknet's reverse upsample, a scaled block sum that
reads the input as the C's flat buffer), against the float64 ``RefNet`` (tests/helpers/float64_net.py)
and by hand; and the refused strides.

Tolerance ``RTOL`` (tests/helpers/layers.py): 1e-4 relative, float32 against float64.
"""
from __future__ import annotations

import pytest
import torch

from darknet_py.graph import build_model
from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.layers import UPSAMPLE_CASES, check_against_ref


@pytest.mark.parametrize("case", list(UPSAMPLE_CASES))
def test_upsample_matches_float64_reference(case, tmp_path):
    check_against_ref(tmp_path, cfg(UPSAMPLE_CASES[case]))


@pytest.mark.filterwarnings("ignore:.*not multiples of 32")
def test_upsample_reverse_is_a_scaled_block_sum():
    # hand-computed: a 1x4x4 ramp, stride -2, scale 1 -> the 2x2 block sums
    model = build_model(cfg("[upsample]\nstride=-2", width=4, channels=1).encode()).eval()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert model(x)[0].flatten().tolist() == [0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15]
    # 5x5, stride -2: Darknet reads the first 16 floats as a 4x4 image (row stride 4, not 5)
    model = build_model(cfg("[upsample]\nstride=-2", width=5, channels=1).encode()).eval()
    x = torch.arange(25.0).view(1, 1, 5, 5)
    assert model(x)[0].flatten().tolist() == [0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15]


BAD = [
    # (sections, the cfg line the error names, needles)
    (conv(4, 3) + "\n\n[upsample]\nstride=-33", "stride=-33", ["to nothing"]),
    (conv(4, 3) + "\n\n[upsample]\nstride=0", "stride=0", ["non-zero"]),
]


@pytest.mark.parametrize("sections, line, needles", BAD, ids=[b[1] for b in BAD])
def test_bad_values_name_the_line(sections, line, needles, tmp_path):
    text = cfg(sections)
    expect_cfg_error(text, line_of(text, line), *needles, path=tmp_path / "bad.cfg")
