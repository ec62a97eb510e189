"""The .weights files of SMALL_CFG that several tests of tests/weights/ read without changing them,
each written once."""
from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.weights import SMALL_FLOATS, SMALL_LAYOUT, header_v2, random_floats, write_file


@pytest.fixture(scope="session")
def golden_weights(tmp_path_factory):
    """A 0.2 header, then the floats 0, 1, 2, ... SMALL_FLOATS - 1: every value says where it was read."""
    floats = np.arange(SMALL_FLOATS, dtype="<f4")
    return write_file(tmp_path_factory.mktemp("golden"), "golden.weights", header_v2() + floats.tobytes())


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory):
    """A 0.2 header, then random_floats(SMALL_LAYOUT) (seed 0): a valid file of SMALL_CFG."""
    data = header_v2() + random_floats(SMALL_LAYOUT).tobytes()
    return write_file(tmp_path_factory.mktemp("small"), "x.weights", data)
