"""The library's argument checks: the same refusals the command line shows, named by keyword
(``thresh=-1: expected ...``) with ``option`` set, before any file is read; and the network stride
they check sizes against, measured from the cfg."""
from __future__ import annotations

import math

import pytest

from darknet_py.anchors import calc_anchors
from darknet_py.checks import check_count, check_range
from darknet_py.classifier import classify
from darknet_py.detector import load
from darknet_py.errors import UsageError
from darknet_py.export import check_export_options
from darknet_py.graph import parse_network
from darknet_py.stream import StreamOptions
from darknet_py.synth import make_dataset
from darknet_py.train.trainer import TrainOptions
from darknet_py.validate import detector_map, detector_recall, detector_valid
from tests.helpers.paths import ROOT

CFG = ROOT / "cfg" / "yolov3-tiny-shapes.cfg"
WEIGHTS = ROOT / "weights" / "yolov3-tiny-shapes.weights"
NO = ("missing.data", "missing.cfg", "missing.weights")  # never read: the checks come first

# (call, keyword, value as the message shows it)
CASES = [
    (lambda: StreamOptions(thresh=-1.0), "thresh", "-1"),
    (lambda: StreamOptions(thresh=math.nan), "thresh", "nan"),
    (lambda: StreamOptions(nms=1.5), "nms", "1.5"),
    (lambda: StreamOptions(batch=0), "batch", "0"),
    (lambda: StreamOptions(workers=-1), "workers", "-1"),
    (lambda: StreamOptions(max_frames=0), "max_frames", "0"),
    (lambda: TrainOptions(workers=-1), "workers", "-1"),
    (lambda: TrainOptions(max_batches=0), "max_batches", "0"),
    (lambda: TrainOptions(save_every=0), "save_every", "0"),
    (lambda: TrainOptions(seed=-1), "seed", "-1"),
    (lambda: TrainOptions(time_limit=-5.0), "time_limit", "-5"),
    (lambda: detector_valid(*NO, thresh=math.nan), "thresh", "nan"),
    (lambda: detector_valid(*NO, batch=0), "batch", "0"),
    (lambda: detector_map(*NO, iou=-1.0), "iou", "-1"),
    (lambda: detector_map(*NO, iou=1.0), "iou", "1"),
    (lambda: detector_map(*NO, conf_thresh=2.0), "conf_thresh", "2"),
    (lambda: detector_map(*NO, nms=-0.5), "nms", "-0.5"),
    (lambda: detector_map(*NO, width=0), "width", "0"),
    (lambda: detector_recall(*NO, iou=1.0), "iou", "1"),
    (lambda: detector_recall(*NO, workers=-1), "workers", "-1"),
    (lambda: calc_anchors("missing.data", 0, 416, 416), "k", "0"),
    (lambda: calc_anchors("missing.data", 9, 0, 416), "width", "0"),
    (lambda: calc_anchors("missing.data", 9, 416, -1), "height", "-1"),
    (lambda: parse_network(CFG, width=31), "width", "31"),
    (lambda: parse_network(CFG, width=320, height=100), "height", "100"),
    (lambda: parse_network(CFG, width=0), "width", "0"),
    (lambda: load(CFG, "missing.weights", width=33, height=33), "width", "33"),
    (lambda: load(CFG, WEIGHTS, upto=-1), "upto", "-1"),
    (lambda: load(CFG, WEIGHTS, upto=25), "upto", "25"),
    (lambda: check_export_options(batch=0), "batch", "0"),
    (lambda: check_export_options(opset=14), "opset", "14"),
]


@pytest.mark.parametrize("call, keyword, value", CASES, ids=[f"{k}={v}-{i}" for i, (_, k, v) in enumerate(CASES)])
def test_bad_argument_names_its_keyword(call, keyword, value):
    with pytest.raises(UsageError) as info:
        call()
    assert str(info.value).startswith(f"{keyword}={value}: expected "), str(info.value)
    assert info.value.option == (keyword, value)
    assert isinstance(info.value, ValueError)


def test_make_dataset_checks_before_writing(tmp_path):
    for kwargs, keyword in [({"train": -1}, "train"), ({"seed": -1}, "seed"), ({"max_objects": 0}, "max_objects")]:
        with pytest.raises(UsageError, match=f"^{keyword}=") as info:
            make_dataset(tmp_path / "out", **kwargs)
        assert info.value.option[0] == keyword
    assert not (tmp_path / "out").exists()


def test_classify_top_must_be_positive():
    model = load(CFG, WEIGHTS)
    with pytest.raises(UsageError, match=r"^top=0: expected an integer >= 1"):
        classify(model, ROOT / "data" / "shapes.jpg", 0)


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 1, 1.0])
def test_threshold_edges_are_accepted(value):
    assert check_range("thresh", value) == value
    assert StreamOptions(thresh=float(value), nms=float(value)).thresh == value


def test_iou_edges():
    check_range("iou", 0.0, high_open=True)
    check_range("iou", 0.999, high_open=True)
    with pytest.raises(UsageError, match=r"\[0, 1\)"):
        check_range("iou", 1.0, high_open=True)


def test_counts_refuse_other_types():
    for bad in (1.5, True, "3"):
        with pytest.raises(UsageError, match="expected an integer >= 1"):
            check_count("batch", bad)
    assert check_count("batch", None) is None


def _cfg(tmp_path, layers: str, size: int = 64):
    path = tmp_path / "n.cfg"
    path.write_text(f"[net]\nwidth={size}\nheight={size}\nchannels=3\n\n{layers}")
    return path


CONV = "[convolutional]\nfilters=4\nsize=3\nstride={s}\npad=1\nactivation=leaky\n\n"
POOL = "[maxpool]\nsize=2\nstride=2\n\n"


def test_strides_are_measured_from_the_layers(tmp_path):
    assert parse_network(CFG).strides == (32, 32)
    assert parse_network(ROOT / "cfg" / "yolov3.cfg").stride == 32
    assert parse_network(_cfg(tmp_path, CONV.format(s=1))).strides == (1, 1)
    assert parse_network(_cfg(tmp_path, CONV.format(s=2) + POOL)).strides == (4, 4)
    six = (CONV.format(s=2) + POOL) * 3  # 64
    assert parse_network(_cfg(tmp_path, six, size=128)).stride == 64
    # an upsample after the deepest layer does not lower the stride; a global average pool does not count
    up = CONV.format(s=2) + POOL + "[upsample]\nstride=2\n\n" + "[avgpool]\n\n"
    assert parse_network(_cfg(tmp_path, up)).strides == (4, 4)
    # stride_x / stride_y: one per axis
    xy = "[convolutional]\nfilters=4\nsize=3\nstride_x=2\nstride_y=1\npad=1\nactivation=leaky\n\n"
    assert parse_network(_cfg(tmp_path, xy)).strides == (2, 1)


def test_explicit_size_uses_the_measured_stride(tmp_path):
    cfg = _cfg(tmp_path, CONV.format(s=2) + POOL)  # stride 4
    assert parse_network(cfg, width=12, height=20).input_shape == (3, 20, 12)
    with pytest.raises(UsageError, match=r"^width=10: expected a multiple of 4, the network's stride \(e.g. 8 or 12\)"):
        parse_network(cfg, width=10)


def test_cfg_own_size_off_the_stride_only_warns(tmp_path):
    # Darknet (AlexeyAB) warns about its own [net] size and runs; only a size asked for is refused
    cfg = _cfg(tmp_path, (CONV.format(s=2) + POOL) * 3, size=80)
    with pytest.warns(UserWarning, match="not multiples of 32"):
        net = parse_network(cfg)
    assert net.stride == 64 and net.net.width == 80
