"""Layer keys and kinds beyond YOLOv3's in an ONNX export (darknet_py.export.export_onnx, which runs
the written file in onnxruntime and compares it with PyTorch): maxpool_depth, antialiasing, reverse
upsample, sampled and weighted [shortcut]s, the [convolutional] keys, normalize_channels, and
AlexeyAB's [sam], [local_avgpool], [reorg3d], [implicit], [scale_channels] with a dynamic batch.
"""
from __future__ import annotations

import pytest

from darknet_py.export import export_onnx
from tests.helpers.cfgs import cfg, conv
from tests.helpers.layers import CONV_CASES, MAXPOOL_CASES, SHORTCUT_CASES, UPSAMPLE_CASES, calibrated_model, written

EXPORTABLE = {
    "maxpool_depth": MAXPOOL_CASES["depth4_uneven"],
    "maxpool_antialiasing": MAXPOOL_CASES["antialiasing1"],
    "upsample_reverse": UPSAMPLE_CASES["reverse3_not_dividing"],
    "shortcut_sampled": SHORTCUT_CASES["from_larger"],
    "shortcut_spread": SHORTCUT_CASES["from_smaller"],
    "shortcut_weighted": SHORTCUT_CASES["per_channel_softmax"],
    "conv_binary_flipped": conv(6, 3, "binary=1\nflipped=1\ngroups=3"),
    "conv_stride_x_y": CONV_CASES["stride_x_y"],
    "normalize_channels": conv(6, 3, act="normalize_channels_softmax_maxval"),
}
# The exported graph re-creates each convolution from stride/padding/groups and the folded kernel
# (darknet_py.layers.convolutional.FoldedConv): the dilation, the xnor input binarisation and the
# antialiasing blur have to travel from the block with it.
CONV_KEYS_BEYOND_THE_KERNEL = {
    "conv_dilation": CONV_CASES["dilation2"],
    "conv_xnor": CONV_CASES["xnor"],
    "conv_antialiasing": CONV_CASES["antialiasing1"],
}


def _export(tmp_path, text):
    pytest.importorskip("onnxruntime")
    path, weights, model = written(tmp_path, cfg(text))
    report = export_onnx(model, tmp_path / "m.onnx", dynamic=True)
    assert report.max_rel_diff <= report.tolerance


@pytest.mark.parametrize("case", list(EXPORTABLE))
def test_layer_keys_export_to_onnx(case, tmp_path):
    _export(tmp_path, EXPORTABLE[case])


@pytest.mark.parametrize("case", list(CONV_KEYS_BEYOND_THE_KERNEL))
def test_conv_keys_beyond_the_kernel_export_to_onnx(case, tmp_path):
    _export(tmp_path, CONV_KEYS_BEYOND_THE_KERNEL[case])


def test_alexeyab_kinds_export_with_a_dynamic_batch(tmp_path):
    # every kind here keeps the batch symbolic (a reshape with a traced batch size breaks batch 3)
    pytest.importorskip("onnxruntime")
    text = cfg(conv(8, size=3, stride=2), conv(8, 1, act="logistic", bn=False), "[sam]\nfrom=-2",
               "[local_avgpool]\nsize=3\nstride=2", "[reorg3d]\nstride=2", "[implicit]\nfilters=32\nmean=1",
               "[scale_channels]\nfrom=-2", conv(21, 1, act="linear", bn=False),
               "[yolo]\nmask=0,1,2\nanchors=6,8,12,10,20,30\nclasses=2\nnum=3", width=64)
    model = calibrated_model(text, seed=11)
    report = export_onnx(model, tmp_path / "m.onnx", dynamic=True)
    assert report.checked_batches == [1, 3] and report.max_rel_diff < 1e-4
