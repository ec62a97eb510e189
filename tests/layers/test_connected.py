"""[connected]: the activations it refuses, those Darknet computes only in [convolutional] and
[shortcut] (elsewhere its activate() has no case for them and outputs 0). Its arithmetic, against
OpenCV and float64, is tested with the classifiers (tests/test_classifier.py)."""
from __future__ import annotations

import pytest

from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of

BAD = [
    # (sections, the cfg line the error names, needles)
    (conv(4, 3) + "\n\n[connected]\noutput=4\nactivation=mish", "activation=mish",
     ["not supported on [connected]", "[convolutional], [shortcut]"]),
    (conv(4, 3) + "\n\n[connected]\noutput=4\nactivation=normalize_channels_softmax",
     "activation=normalize_channels_softmax", ["not supported on [connected]"]),
]


@pytest.mark.parametrize("sections, line, needles", BAD, ids=[b[1] for b in BAD])
def test_bad_values_name_the_line(sections, line, needles, tmp_path):
    text = cfg(sections)
    expect_cfg_error(text, line_of(text, line), *needles, path=tmp_path / "bad.cfg")
