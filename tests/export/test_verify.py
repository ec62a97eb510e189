"""The proof shared by every backend: detection matching and the calibration photos."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from darknet_py.errors import DataError
from darknet_py.export.calibrate import calibration_batches, listed_photos
from darknet_py.export.verify import match_detections, verify_runner
from darknet_py.synth import make_dataset


def dets(*rows):
    """(x1, y1, x2, y2, score, class) rows -> the (boxes, scores, classes) tuple match_detections takes."""
    a = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return a[:, :4], a[:, 4], a[:, 5].astype(int)


def test_same_detections_all_match():
    d = dets((0, 0, 10, 10, .9, 1), (20, 20, 40, 50, .5, 2))
    m = match_detections(d, d)
    assert (m.matched, m.missing, m.extra, m.matched_fraction) == (2, 0, 0, 1.0)


def test_other_class_or_shifted_box_does_not_match():
    ref = dets((0, 0, 100, 100, .9, 1), (200, 200, 300, 300, .8, 3))
    # the first moved by 1 px of 100 (IoU 0.98 < 0.99), the second relabelled
    got = dets((1, 0, 101, 100, .9, 1), (200, 200, 300, 300, .8, 4))
    m = match_detections(ref, got)
    assert (m.matched, m.missing, m.extra) == (0, 2, 2)
    assert m.matched_fraction == 0.0


def test_pairs_are_one_to_one_best_score_first():
    # two reference boxes on one backend box: the better-scored one takes it, the other is missing
    ref = dets((0, 0, 100, 100, .6, 0), (0, 0, 100, 100.5, .9, 0))
    got = dets((0, 0, 100, 100.4, .88, 0))
    m = match_detections(ref, got)
    assert (m.matched, m.missing, m.extra) == (1, 1, 0)
    assert m.max_score_diff == pytest.approx(.02)


def test_nothing_on_either_side_is_all_matched():
    m = match_detections(dets(), dets())
    assert m.matched_fraction == 1.0 and m.extra == 0


def test_verify_runner_sees_a_corrupted_head(shapes_model):
    model, photos = shapes_model
    exact = verify_runner(model, lambda x: [o.numpy() for o in model(torch.from_numpy(x))], photos)
    assert exact.max_abs_diff == 0 and exact.total.missing == exact.total.extra == 0
    assert exact.total.matched > 0

    def shifted(x):
        outs = [o.numpy().copy() for o in model(torch.from_numpy(x))]
        for o, spec in zip(outs, model.head_specs):
            o[:, 0::5 + spec.classes] += 0.5  # every anchor's tx: every box moves half a cell
        return outs
    bad = verify_runner(model, shifted, photos)
    assert bad.max_abs_diff == pytest.approx(0.5, rel=1e-5)
    assert bad.total.missing > 0


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory):
    import darknet_py
    from darknet_py.imageio import load_image
    from tests.helpers.paths import ROOT
    torch.manual_seed(0)
    model = darknet_py.load(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights")
    return model, [("shapes.jpg", load_image(ROOT / "data" / "shapes.jpg")[0])]


def test_calibration_photos_spread_over_the_list(tmp_path, shapes_model):
    model, _ = shapes_model
    data = make_dataset(tmp_path / "d", train=5, valid=1, seed=1, min_side=64, max_side=96).data
    paths = listed_photos(data, limit=3)
    every = listed_photos(data)
    assert len(paths) == 3 and paths[0] == every[0] and paths[-1] == every[-1]
    batches = calibration_batches(model, data, n=3, batch=2)
    assert [b.shape[0] for b in batches] == [2, 1]
    assert batches[0].shape[1:] == (3, *model.netdef.input_shape[1:])
    assert batches[0].dtype == np.float32 and 0 <= batches[0].min() and batches[0].max() <= 1


def test_calibration_needs_a_list(tmp_path):
    data = tmp_path / "x.data"
    data.write_text("classes = 2\n")
    with pytest.raises(DataError, match="no 'train' or 'valid' key"):
        listed_photos(data)
