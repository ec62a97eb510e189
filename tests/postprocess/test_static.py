"""darknet_py.postprocess.static: StaticPostprocess, the batch post-processing with static shapes (for
CUDA graphs), against the batch-wide path, bit for bit; and its overflow report when the capacities are
too small or its fixed point has not settled."""
from __future__ import annotations

import pytest
import torch

from darknet_py.layers.head import decode_heads
from darknet_py.postprocess import StaticPostprocess, postprocess_decoded
from darknet_py.transforms import geometry_table
from tests.helpers.detections import assert_identical

# These tests check numbers, not speed: one thread keeps the file fast on a busy 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("thresh,nms,kind", [(0.5, 0.45, "default"), (0.25, 0.45, "default"),
                                             (0.25, 0.45, "diounms"), (0.3, 0.0, "default")])
def test_static_postprocess_identical(tiny, tiny_outputs, thresh, nms, kind):
    _, infos, outs = tiny_outputs
    n = len(infos) - 1
    boxes, obj, cls = decode_heads(outs, tiny.head_specs, 416, 416)
    want = postprocess_decoded(boxes[:n], obj[:n], cls[:n], infos[:n], thresh, nms, kind, 0.6)
    # a padded batch: the last row is real data that n_valid must hide; capacities just large
    # enough for these photos (the sums over the batch are what count)
    keep = obj[:n] > thresh
    n_cand = int(keep.sum())
    n_entries = int(((obj[:n, :, None] * cls[:n] > thresh) & keep[..., None]).sum())
    b = len(infos)
    post = StaticPostprocess(b, boxes.shape[1], cls.shape[2], thresh, nms, kind, 0.6,
                             cand_cap=-(-n_cand // b), entry_cap=-(-n_entries // b))
    geom = geometry_table(infos, "cpu")
    got = post.unpack(post(boxes, obj, cls, geom, torch.tensor(n)), n)
    assert got is not None and sum(len(d) for d in want) >= 20
    assert_identical(want, got)


def test_static_postprocess_reports_overflow(tiny, tiny_outputs):
    _, infos, outs = tiny_outputs
    boxes, obj, cls = decode_heads(outs, tiny.head_specs, 416, 416)
    geom = geometry_table(infos, "cpu")
    keep = obj > 0.25
    n_cand = int(keep.sum())
    n_entries = int(((obj[..., None] * cls > 0.25) & keep[..., None]).sum())
    b = len(infos)
    for cand, entries in ((n_cand - 1, n_entries), (n_cand, n_entries - 1)):  # one too few
        post = StaticPostprocess(1, boxes.shape[1] * b, cls.shape[2], 0.25, 0.45, cand_cap=cand, entry_cap=entries)
        flat = boxes.reshape(1, -1, 4), obj.reshape(1, -1), cls.reshape(1, -1, cls.shape[2])
        assert post.unpack(post(*flat, geom[:1], torch.tensor(1)), 1) is None
    post = StaticPostprocess(1, boxes.shape[1] * b, cls.shape[2], 0.25, 0.45, cand_cap=n_cand, entry_cap=n_entries)
    assert post.unpack(post(*flat, geom[:1], torch.tensor(1)), 1) is not None  # exactly enough
    post = StaticPostprocess(b, boxes.shape[1], cls.shape[2], 0.25, 0.45, cand_cap=-(-n_cand // b),
                             entry_cap=-(-n_entries // b), rounds=0)  # the fixed point has not settled
    assert post.unpack(post(boxes, obj, cls, geom, torch.tensor(len(infos))), len(infos)) is None
