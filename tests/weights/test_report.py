"""weights_report: per layer of the file, its cfg line, float count and the statistics of each tensor,
which show a file that loads but belongs to another cfg."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from darknet_py.weights import load_weights, weights_report

from tests.helpers.weights import (MODULE_NAME, SMALL_LAYOUT, header_v2, layer_floats, numel, random_floats,
                                   small_model, tensor_offsets, write_file)


def test_weights_report_per_layer_statistics(golden_weights):
    model = small_model()
    load_weights(model, golden_weights)  # the floats 0, 1, 2, ... in file order
    rows = weights_report(model)
    assert [r["layer"] for r in rows] == [e[0] for e in SMALL_LAYOUT]
    assert [r["line"] for r in rows] == [e[1] for e in SMALL_LAYOUT]
    assert [r["floats"] for r in rows] == [layer_floats(e) for e in SMALL_LAYOUT]
    assert all(r["kind"] == "convolutional" for r in rows)
    for i, _, bn, name, shape, start in tensor_offsets(SMALL_LAYOUT):
        row = rows[[r["layer"] for r in rows].index(i)]
        stats, n = row[MODULE_NAME[(name, bn)]], numel(shape)
        # a run of n consecutive integers from start
        assert stats["min"] == start and stats["max"] == start + n - 1
        assert stats["mean"] == pytest.approx(start + (n - 1) / 2)
        assert stats["std"] == pytest.approx(math.sqrt(n * (n + 1) / 12) if n > 1 else 0.0)


def test_same_size_wrong_cfg_is_visible_in_the_report(tmp_path):
    """Layers 2 and 3 swapped in the file: same size, loads, and the report shows a negative variance."""
    floats = random_floats(SMALL_LAYOUT, seed=41)
    offs = {(o[0], o[3]): o for o in tensor_offsets(SMALL_LAYOUT)}
    s2, s3, s7 = offs[(2, "biases")][5], offs[(3, "biases")][5], offs[(7, "biases")][5]
    swapped = np.concatenate([floats[:s2], floats[s3:s7], floats[s2:s3], floats[s7:]])
    assert swapped.size == floats.size
    p = write_file(tmp_path, "swapped.weights", header_v2() + swapped.tobytes())
    model = small_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_weights(model, p)
    rows = {r["layer"]: r for r in weights_report(model)}
    # Layer 3's variance slot now holds kernel values of layer 2 (normal noise): some are negative.
    v3 = offs[(3, "rolling_variance")][5]
    expect_min = float(swapped[v3:v3 + 16].min())
    assert expect_min < 0
    assert rows[3]["bn.running_var"]["min"] == pytest.approx(expect_min)
    assert any("negative variances" in str(w.message) for w in caught)
