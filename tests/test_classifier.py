"""Classifiers: [avgpool], [connected], [softmax], [dropout], [cost], the ImageNet cfgs against
OpenCV 4.x, float64 references where OpenCV lacks a feature, and `classifier predict`."""
from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.classifier import classify, top_k
from darknet_py.cli.main import main
from darknet_py.errors import CfgError
from darknet_py.imageio import save_image
from darknet_py.random_weights import randomize
from darknet_py.weights import count_floats
from tests.helpers.cfgs import cfg, conv, maxpool
from tests.helpers.opencv import needs_darknet_importer, opencv_forward
from tests.helpers.paths import ROOT, ref_path, sized_cfg_text

def small_text(bn: bool = False, groups: int = 1, temperature: float = 1) -> str:
    """A small classifier: conv, maxpool, [connected] (batch-normalised with bn), dropout, [connected] to 12
    outputs, [softmax] over ``groups`` groups."""
    bn_line = "batch_normalize=1\n" if bn else ""
    return cfg(conv(8), maxpool(), f"[connected]\noutput=20\n{bn_line}activation=leaky", "[dropout]\nprobability=.5",
               "[connected]\noutput=12\nactivation=linear", f"[softmax]\ngroups={groups}\ntemperature={temperature}",
               "[cost]\ntype=sse")


def _random_params(model, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        for mod in model.modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
    return model


def _small(tmp_path, bn=False, groups=1, temperature=1):
    """``small_text`` written to tmp_path with random weights: -> (cfg path, weights path)."""
    cfg = tmp_path / "small.cfg"
    cfg.write_text(small_text(bn, groups, temperature))
    weights = tmp_path / "small.weights"
    _random_params(darknet_py.build_model(cfg)).save_weights(weights)
    return cfg, weights


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    """The small classifier with its defaults (no BN, one softmax group), written once."""
    return _small(tmp_path_factory.mktemp("small"))


@needs_darknet_importer
def test_small_classifier_matches_opencv(small_classifier):
    # OpenCV reads [connected] without BN and [softmax] with groups=1, temperature=1 only
    cfg, weights = small_classifier
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = darknet_py.load(cfg, weights, channels_last=False)(x)[0].reshape(2, -1).numpy()
    theirs = opencv_forward(cfg, weights, x).reshape(2, -1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6 * np.abs(theirs).max())


def _reference(model, x: np.ndarray, groups: int, temperature: float) -> np.ndarray:
    """Darknet's definitions in float64: conv+BN+leaky, maxpool 2/2, connected(+BN)+leaky,
    dropout (identity), connected linear, softmax over `groups` blocks of the CHW-flattened input."""
    conv, fc1, fc2 = model.layers[0], model.layers[2], model.layers[4]
    w = conv.conv.weight.double().numpy()
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((x.shape[0], w.shape[0], 32, 32))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,kc->nkhw", xp[:, :, i:i + 32, j:j + 32], w[:, :, i, j])
    bn = conv.bn
    out = (out - bn.running_mean.double().numpy()[:, None, None]) / (np.sqrt(bn.running_var.double().numpy()) +
                                                                     1e-6)[:, None, None]
    out = out * bn.weight.double().numpy()[:, None, None] + bn.bias.double().numpy()[:, None, None]
    out = np.where(out > 0, out, 0.1 * out)
    out = out.reshape(x.shape[0], -1, 16, 2, 16, 2).max(axis=(3, 5))

    def connected(layer, v):
        y = v.reshape(v.shape[0], -1) @ layer.fc.weight.double().numpy().T
        if layer.bn is not None:  # normalize, scale, then add the biases (forward_connected_layer)
            b = layer.bn
            y = (y - b.running_mean.double().numpy()) / (np.sqrt(b.running_var.double().numpy()) + 1e-6)
            y = y * b.weight.double().numpy()
        return y + layer.fc.bias.double().numpy()

    h = connected(fc1, out)
    h = np.where(h > 0, h, 0.1 * h)
    logits = connected(fc2, h).reshape(x.shape[0], groups, -1) / temperature
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).reshape(x.shape[0], -1)


@pytest.mark.parametrize("bn, groups, temperature", [(True, 1, 1), (True, 3, 1), (False, 4, 2.5), (True, 2, 0.5)])
def test_connected_bn_and_softmax_groups_against_float64(tmp_path, bn, groups, temperature):
    cfg, weights = _small(tmp_path, bn, groups, temperature)
    model = darknet_py.load(cfg, weights, channels_last=False)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model(x)[0].reshape(2, -1).double().numpy()
    with torch.no_grad():
        ref = _reference(model, x.double().numpy(), groups, temperature)
    np.testing.assert_allclose(ours, ref, rtol=2e-4, atol=1e-7)
    np.testing.assert_allclose(ours.reshape(2, groups, -1).sum(-1), 1.0, rtol=1e-5)


def test_connected_file_order(tmp_path):
    """A hand-built file of consecutive floats: biases, weights (row-major), then scales, mean, variance."""
    cfg = tmp_path / "fc.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n\n[avgpool]\n\n[connected]\noutput=3\nbatch_normalize=1\n"
                   "activation=linear\n")
    n = 3 + 3 * 3 + 3 * 3  # 3 inputs (the averaged channels), 3 outputs
    path = tmp_path / "fc.weights"
    path.write_bytes(struct.pack("<iiiQ", 0, 2, 0, 0) + np.arange(n, dtype="<f4").tobytes())
    fc = darknet_py.build_model(cfg).load_weights(path).layers[1]
    assert fc.fc.bias.tolist() == [0, 1, 2]
    assert fc.fc.weight.tolist() == [[3, 4, 5], [6, 7, 8], [9, 10, 11]]  # outputs x inputs, row-major
    assert fc.bn.weight.tolist() == [12, 13, 14] and fc.bn.running_mean.tolist() == [15, 16, 17]
    assert fc.bn.running_var.tolist() == [18, 19, 20]


@needs_darknet_importer
@pytest.mark.parametrize("name, size", [("darknet19", 224), ("darknet53", 128)])
def test_imagenet_classifiers_match_opencv(name, size, tmp_path):
    text = sized_cfg_text(ref_path("pjreddie", "cfg", f"{name}.cfg"), size)
    g = torch.Generator().manual_seed(0)

    def smooth():
        return torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(size, size),
                                               mode="bilinear", align_corners=False)
    # Calibrate on one image and compare on another: on the calibration image itself every channel
    # is normalised to mean 0, so the [avgpool] outputs would be rounding noise.
    calibration, x = smooth(), smooth()
    for part, body in (("logits", text[:text.rindex("[softmax]")]), ("probabilities", text)):
        cfg = tmp_path / f"{name}-{part}.cfg"
        cfg.write_text(body)
        weights = tmp_path / f"{name}.weights"
        randomize(darknet_py.build_model(cfg), calibration, seed=1).save_weights(weights)
        with torch.no_grad():
            ours = darknet_py.load(cfg, weights)(x)[0].flatten().numpy()
        theirs = opencv_forward(cfg, weights, x).flatten()
        # float32 summation order only (oneDNN vs OpenCV); both relative to the largest output
        assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-4, part
        assert ours.argmax() == theirs.argmax()


def test_darknet53_weights_size_and_outputs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = darknet_py.build_model(ref_path("pjreddie", "cfg", "darknet53.cfg"), width=64, height=64)
    assert count_floats(model) == 41645640  # the reference README's figure
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 3, 64, 64))
    assert len(out) == 1 and out[0].shape == (1, 1000, 1, 1)


def test_top_k_is_darknets():
    v = torch.tensor([0.1, 0.5, 0.2, 0.5, 0.05])
    p = top_k(v, 3)
    assert p.indices == [1, 3, 2]  # equal values: the lower index first, as top_k's strict '>'
    assert top_k(v, 99).indices == [1, 3, 2, 0, 4]


def test_classifier_predict_command(small_classifier, tmp_path, capsys, photo_rgb):
    cfg, weights = small_classifier
    names = tmp_path / "labels.list"
    names.write_text("".join(f"class{i}\n" for i in range(12)))
    data = tmp_path / "small.data"
    data.write_text(f"classes=12\nlabels={names}\ntop=3\n")
    photo = tmp_path / "p.png"
    save_image(photo, photo_rgb[:200, :300])
    assert main(["classifier", "predict", str(data), str(cfg), str(weights), str(photo)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    pred = classify(darknet_py.load(cfg, weights), str(photo), top=3)
    # Darknet's predict_classifier prints the time line on standard output, before the classes (as `detect`)
    assert lines[0].startswith(f"{photo}: Predicted in ") and lines[0].endswith(" seconds.")
    assert lines[1:] == [f"{s * 100:5.2f}%: class{i}" for i, s in zip(pred.indices, pred.scores)]
    assert "Predicted in" not in captured.err
    assert main(["classifier", "predict", str(data), str(cfg), str(weights), str(photo), "-t", "5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 5
    # options before, between and after the inputs give the same classes as options last
    tail = [str(data), str(cfg), str(weights), str(photo), str(photo)]
    outs = []
    for argv in (["predict", *tail, "-t", "2"], ["-t", "2", "predict", *tail],
                 ["predict", *tail[:3], "-t", "2", *tail[3:]]):
        assert main(["classifier", *argv]) == 0
        outs.append([line.split(": Predicted in ")[0] for line in capsys.readouterr().out.splitlines()])
    assert outs[0] == outs[1] == outs[2] and len(outs[0]) == 2 * (1 + 2)


@pytest.fixture(scope="module")
def imagenet_sized(tmp_path_factory):
    """A tiny 1000-class classifier (conv, 1x1 conv to 1000, [avgpool], [softmax]) with random weights,
    and Darknet's imagenet.shortnames.list shape: 21,842 names, of which a 1000-class net uses the first."""
    d = tmp_path_factory.mktemp("imagenet")
    cfg_path = d / "tiny1k.cfg"
    cfg_path.write_text(cfg(conv(8), maxpool(), conv(1000, size=1, act="linear"), "[avgpool]", "[softmax]"))
    weights = d / "tiny1k.weights"
    _random_params(darknet_py.build_model(cfg_path), scale=0.3).save_weights(weights)
    names = d / "imagenet.shortnames.list"
    names.write_text("".join(f"name{i}\n" for i in range(21842)))
    return cfg_path, weights, names


def test_classifier_predict_takes_the_first_names_of_a_longer_list(imagenet_sized, tmp_path, capsys, photo_rgb):
    # Darknet's stock imagenet1k.data: labels=data/imagenet.shortnames.list (21,842 names), 1000 classes
    cfg_path, weights, names = imagenet_sized
    data = tmp_path / "imagenet1k.data"
    data.write_text(f"classes=1000\nlabels={names}\ntop=5\n")
    photo = tmp_path / "p.png"
    save_image(photo, photo_rgb[:64, :64])
    assert main(["classifier", "predict", str(data), str(cfg_path), str(weights), str(photo)]) == 0
    captured = capsys.readouterr()
    pred = classify(darknet_py.load(cfg_path, weights), str(photo), top=5)
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"{photo}: Predicted in ")  # Darknet's timing line first, on stdout
    assert lines[1:] == [f"{s * 100:5.2f}%: name{i}" for i, s in zip(pred.indices, pred.scores)]
    warned = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warned) == 1  # said once, naming the file and both counts
    assert str(names) in warned[0] and "21842 names" in warned[0] and "classes=1000" in warned[0]


def test_classifier_predict_refuses_fewer_names_than_outputs(imagenet_sized, tmp_path, capsys, photo_rgb):
    cfg_path, weights, _ = imagenet_sized
    short = tmp_path / "short.list"
    short.write_text("".join(f"name{i}\n" for i in range(999)))
    data = tmp_path / "short.data"
    data.write_text(f"classes=1000\nnames={short}\n")
    photo = tmp_path / "p.png"
    save_image(photo, photo_rgb[:64, :64])
    assert main(["classifier", "predict", str(data), str(cfg_path), str(weights), str(photo)]) == 1
    err = capsys.readouterr().err
    assert f"{short}: 999 names but the model has classes=1000" in err and len(err.splitlines()) == 1


def test_detector_and_classifier_are_told_apart(tmp_path, photo_rgb):
    with pytest.raises(CfgError, match=r"\[yolo\] head: it is a detector"):
        classify(darknet_py.build_model(ROOT / "cfg" / "yolov3-tiny.cfg").eval(), photo_rgb)
    text = small_text(groups=5)
    bad = tmp_path / "bad.cfg"
    bad.write_text(text)
    with pytest.raises(CfgError, match=r"bad.cfg:\d+: .*groups=5 does not divide the 12 inputs"):
        darknet_py.build_model(bad)
    bad.write_text(text.replace("groups=5", "groups=1\ntree=data/9k.tree"))
    with pytest.raises(CfgError, match="tree= .* not supported"):
        darknet_py.build_model(bad)


def test_alexeyab_tree_classifies_the_centre_crop(imagenet_sized, photo_rgb):
    """classifier predict in AlexeyAB's tree runs the network on resize_min + crop_image (checked
    against the C port in tests/test_transforms.py), pjreddie's on the letterbox."""
    from darknet_py.classifier import scores
    from darknet_py.transforms import letterbox, resize_min_crop

    cfg_path, weights, _ = imagenet_sized
    for tree, prepare in (("alexeyab", lambda m: resize_min_crop(photo_rgb, *m.input_size)),
                          ("pjreddie", lambda m: letterbox(photo_rgb, *m.input_size)[0])):
        model = darknet_py.load(cfg_path, weights, darknet=tree)
        with torch.no_grad():
            want = model(prepare(model)[None])[0].flatten().float()
        assert torch.equal(scores(model, photo_rgb), want), tree
    a = scores(darknet_py.load(cfg_path, weights, darknet="alexeyab"), photo_rgb)
    assert not torch.equal(a, scores(darknet_py.load(cfg_path, weights, darknet="pjreddie"), photo_rgb))
