"""Two Darknets (darknet_py.numerics): a model follows pjreddie's tree or AlexeyAB's, chosen from the
cfg (``auto``) or asked for. Each tree's batch-norm formula is checked against a float64 NumPy Darknet
written from its C (tests/helpers/float64_net.RefNet) on every AlexeyAB reference cfg, with weights
whose variances include values near 0, where the two formulas part; the photo preparation and the
printed training loss follow Darknet too."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.cli import main
from darknet_py.config.reader import parse_cfg_text, read_cfg
from darknet_py.detector import letterboxed, load
from darknet_py.errors import UsageError
from darknet_py.layers.convolutional import ConvBlock
from darknet_py.numerics import bn_denominator, choose, train_batchnorm, using
from darknet_py.postprocess import postprocess
from darknet_py.transforms import fit, letterbox
from tests.helpers.float64_net import RefNet
from tests.helpers.models import write_random_model
from tests.helpers.numeric import assert_detections_match
from tests.helpers.paths import ROOT, ref_path, sized_cfg_text

# Every AlexeyAB reference cfg, at a size small enough for the float64 reference, and the largest
# |ours - float64| / max |float64| of the heads allowed, ~3x the largest measured over both trees
# (on the weights below, whose near-dead channels pjreddie's formula amplifies): the shallow nets
# measure <= 6.2e-6 (float32 rounding); yolov4 5.2e-6; yolov7-tiny 5.2e-4 and yolov4-csp 1.6e-4
# (float32 drift through depth, as in tests/parity/test_yolov4.py, largest in pjreddie's tree).
SIZES = {"yolov3-tiny-prn": 128, "yolov3-tiny_3l": 128, "yolov4-tiny": 160, "yolov7-tiny": 96, "yolov4-csp": 96,
         "yolov4": 64}
# Detections are compared on the shallow nets; the deep ones, with random weights at these small
# sizes, saturate (scores of 1 on identical sliver boxes, whose order is a tie), where only the
# heads say anything.
DETECTIONS = ("yolov3-tiny-prn", "yolov3-tiny_3l", "yolov4-tiny")
# The shallow nets are checked in both trees; the deep ones (slow in float64) in the tree auto gives
# them, AlexeyAB's, whose formula their official weights were trained with.
BOTH_TREES = DETECTIONS + ("yolov7-tiny",)
# Low enough that the small random networks report boxes in both trees.
DET_THRESH = 0.05
TOLERANCE = {"yolov3-tiny-prn": 2e-5, "yolov3-tiny_3l": 2e-5, "yolov4-tiny": 2e-5, "yolov7-tiny": 1.5e-3,
             "yolov4-csp": 5e-4, "yolov4": 2e-5}


SCALE = 1.0


def near_dead_channels(model, every: int = 7) -> None:
    """Every ``every``-th channel of each batch-normalised conv gets a variance near 0 and a scale of
    its standard deviation's size, as trained networks' near-dead channels have: there pjreddie's
    ``sqrt(var) + 1e-6`` and the GPU's ``sqrt(var + 1e-5)`` differ about threefold."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ConvBlock) and m.bn is not None:
                idx = torch.arange(0, m.bn.running_var.numel(), every)
                var = 1e-6 * (0.5 + 1.5 * torch.rand(idx.numel(), generator=g))
                m.bn.running_var[idx] = var
                m.bn.weight[idx] = SCALE * var.sqrt() * (0.5 + torch.rand(idx.numel(), generator=g))


@pytest.mark.parametrize("name", list(SIZES))
def test_each_tree_matches_its_float64_darknet(name, photo_rgb, tmp_path):
    size = SIZES[name]
    text = sized_cfg_text(ref_path("alexeyab", "cfg", f"{name}.cfg"), size)
    x0 = letterbox(photo_rgb, size, size)[0][None]
    cfg, weights, model = write_random_model(tmp_path, name, text, x0, seed=2)
    near_dead_channels(model)
    model.save_weights(weights)
    blob = weights.read_bytes()
    tol = TOLERANCE[name]
    trees = (("pjreddie", "pjreddie-cpu"), ("alexeyab", "darknet-gpu"))
    for tree, numerics in trees if name in BOTH_TREES else trees[1:]:
        ours_model = load(cfg, weights, darknet=tree)
        assert ours_model.numerics == numerics
        # the photo as this tree prepares it: AlexeyAB's stretches these cfgs (no letter_box=1)
        x, info = fit(photo_rgb, size, size, letterboxed=letterboxed(ours_model))
        x = x[None]
        with torch.no_grad():
            ours = [h.double().numpy() for h in ours_model(x, raw=True)]
        ref_outs = RefNet(text, blob, bn=numerics).outputs(x.double().numpy())
        ref = [ref_outs[i] for i in ours_model.heads]
        for o, r in zip(ours, ref):
            assert r.std() > 1e-2, "a degenerate head says nothing"  # random weights kept alive
            err = np.abs(o - r).max() / np.abs(r).max()
            assert err <= tol, (tree, err)
        # detections: darknet_py.detect against the float64 heads through the same head layers and
        # post-process (both checked on their own elsewhere)
        if name not in DETECTIONS:
            continue
        dets = darknet_py.detect_batch(ours_model, [photo_rgb], DET_THRESH, 0.45)[0]
        with torch.no_grad():
            outs = [ours_model.layers[i](torch.from_numpy(r).float()) for i, r in zip(ours_model.heads, ref)]
        want = postprocess(ours_model, outs, [info], DET_THRESH, 0.45)[0]
        assert len(want) >= 1
        assert_detections_match(dets, list(zip(want.classes.tolist(), want.scores.tolist(), want.boxes.tolist())),
                                DET_THRESH, 5 * tol, 1 - 10 * tol)
    # the two formulas differ on these weights far beyond the tolerance: the checks above tell them apart
    with torch.no_grad():
        a = load(cfg, weights, darknet="pjreddie")(x0, raw=True)
        b = load(cfg, weights, darknet="alexeyab")(x0, raw=True)
    gap = max(float((p - q).abs().max() / q.abs().max()) for p, q in zip(a, b))
    assert gap > 30 * tol, gap


def test_bn_denominators():
    var = np.array([0.0, 1e-6, 1.0])
    assert np.allclose(bn_denominator(var, "pjreddie-cpu"), [1e-6, 1e-3 + 1e-6, 1 + 1e-6], rtol=1e-12)
    assert np.allclose(bn_denominator(var, "darknet-gpu"), np.sqrt([1e-5, 1.1e-5, 1 + 1e-5]), rtol=1e-12)


@pytest.mark.parametrize("fork, name, tree", [
    ("alexeyab", "yolov4", "alexeyab"), ("alexeyab", "yolov4-tiny", "alexeyab"), ("alexeyab", "yolov4-csp", "alexeyab"),
    ("alexeyab", "yolov7-tiny", "alexeyab"),
    # AlexeyAB's tree, but nothing in the cfg that pjreddie's parser does not read: auto cannot tell
    ("alexeyab", "yolov3-tiny-prn", "pjreddie"), ("alexeyab", "yolov3-tiny_3l", "pjreddie"),
    ("pjreddie", "yolov3", "pjreddie"), ("pjreddie", "yolov3-tiny", "pjreddie"), ("pjreddie", "yolov2", "pjreddie")])
def test_auto_decides_from_the_cfg(fork, name, tree):
    choice = choose("auto", read_cfg(ref_path(fork, "cfg", f"{name}.cfg")).sections)
    assert choice.tree == tree
    assert ("AlexeyAB's [" in choice.reason) == (tree == "alexeyab")


def test_auto_names_the_feature_and_its_line(tmp_path):
    text = (ROOT / "cfg" / "yolov3-tiny.cfg").read_text().replace("activation=leaky", "activation=mish", 1)
    lines = text.splitlines()
    line = next(i for i, ln in enumerate(lines, 1) if ln.strip() == "activation=mish")
    choice = choose(None, parse_cfg_text(text.encode()).sections)
    assert choice.tree == "alexeyab" and f"activation=mish (line {line})" in choice.reason


def test_alexeyab_stretches_unless_letter_box(tmp_path):
    text = (ROOT / "cfg" / "yolov3-tiny.cfg").read_text()
    assert letterboxed(darknet_py.graph.build_model(text.encode(), darknet="pjreddie"))
    assert not letterboxed(darknet_py.graph.build_model(text.encode(), darknet="alexeyab"))
    boxed = text.replace("[net]\n", "[net]\nletter_box=1\n", 1).encode()
    assert letterboxed(darknet_py.graph.build_model(boxed, darknet="alexeyab"))
    assert darknet_py.graph.build_model(boxed).darknet.tree == "alexeyab"  # letter_box is AlexeyAB's key


def test_the_tree_travels_in_a_checkpoint_and_using_sets_the_default(tmp_path):
    from darknet_py.checkpoint import load_checkpoint, save_checkpoint

    model = darknet_py.graph.build_model(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", darknet="alexeyab")
    save_checkpoint(model, tmp_path / "m.pt")
    assert load_checkpoint(tmp_path / "m.pt").darknet.tree == "alexeyab"
    assert load_checkpoint(tmp_path / "m.pt", darknet="auto").darknet.tree == "pjreddie"
    assert load(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", tmp_path / "m.pt").numerics == "darknet-gpu"
    with using("alexeyab"):
        assert darknet_py.graph.build_model(ROOT / "cfg" / "yolov3-tiny-shapes.cfg").numerics == "darknet-gpu"
    with pytest.raises(UsageError, match="darknet='gpu': expected one of auto, pjreddie, alexeyab"):
        darknet_py.graph.build_model(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", darknet="gpu")


def test_switching_trees_refolds_the_kernels(photo_rgb):
    model = load(ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights")
    x = letterbox(photo_rgb, *model.input_size)[0][None]
    with torch.no_grad():
        a = model(x)[0].clone()
        model.set_darknet("alexeyab")
        b = model(x)[0].clone()
        model.set_darknet("pjreddie")
        c = model(x)[0]
    assert torch.equal(a, c) and not torch.equal(a, b)


def test_cli_says_once_when_auto_follows_alexeyab(tmp_path, capsys, photo_rgb):
    text = (ROOT / "cfg" / "yolov3-tiny-shapes.cfg").read_text().replace("[net]\n", "[net]\nmosaic=1\n", 1)
    cfg = tmp_path / "m.cfg"
    cfg.write_text(text)
    weights = ROOT / "weights" / "yolov3-tiny-shapes.weights"
    photo = ROOT / "data" / "shapes.jpg"
    argv = ["detect", str(cfg), str(weights), str(photo), str(photo), "--names", str(ROOT / "cfg" / "shapes.names"),
            "-o", str(tmp_path / "p")]
    assert main(argv) == 0
    line = text.splitlines().index("mosaic=1") + 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if "following" in ln]
    assert len(err) == 1 and "alexeyab's Darknet (darknet-gpu arithmetic)" in err[0]
    assert f"mosaic= (line {line})" in err[0]
    assert main(argv + ["--darknet", "pjreddie"]) == 0
    assert "following" not in capsys.readouterr().err


def test_printed_training_loss_is_darknets_mean_over_heads(tmp_path, monkeypatch):
    """calc_network_cost averages the cost of the layers that have one: the iteration line's loss
    is (sum over heads / heads) / images, not the sum over heads."""
    from darknet_py.train import trainer
    from tests.helpers.train import log_lines, make_overfit_set, write_train_cfg

    _, data = make_overfit_set(tmp_path)
    cfg = write_train_cfg(tmp_path, max_batches=1)
    seen = []
    real = trainer.yolo_loss

    def spy(raw, truths, counts, specs, w, h):
        res = real(raw, truths, counts, specs, w, h)
        seen.append((res.cost, len(specs)))
        return res

    monkeypatch.setattr(trainer, "yolo_loss", spy)
    lines = []
    trainer.train(data, cfg, None, trainer.TrainOptions(device="cpu", workers=0, backup=str(tmp_path / "b"),
                                                        log=lines.append))
    (line,) = log_lines(lines)
    printed = float(line.split(":")[1].split(",")[0])
    (cost, heads), = seen
    assert heads == 2
    assert printed == pytest.approx(cost / heads / 4, rel=1e-6)  # batch 4


def test_nms_in_pixels_is_alexeyabs_validate_frame():
    """DIoU NMS on a wide photo: in photo pixels (AlexeyAB's validate_detector, relative=0 boxes) it
    keeps what the relative frame suppresses; both equal the plain-Python diounms_sort on the boxes
    of their frame."""
    from darknet_py.postprocess import postprocess_decoded
    from darknet_py.transforms import correct_boxes_rows, geometry_table, letterbox_info
    from tests.helpers.reference import do_nms_sort

    info = letterbox_info(1600, 200, 416, 416)  # a photo 8x wider than tall
    # two boxes of class 0 side by side (IoU .54): DIoU .50 in the relative frame, where the enclosing
    # box is tall, and .39 in pixels, where it is wide
    boxes = torch.tensor([[[0.50, 0.5, 0.10, 0.06], [0.53, 0.5, 0.10, 0.06]]], dtype=torch.float64)
    obj = torch.tensor([[0.9, 0.8]], dtype=torch.float64)
    cls = torch.tensor([[[1.0], [1.0]]], dtype=torch.float64)
    rel = correct_boxes_rows(boxes[0], geometry_table([info], "cpu").expand(2, -1))
    kept = {}
    for pixels in (False, True):
        dets = postprocess_decoded(boxes, obj, cls, [info], 0.25, 0.45, "diounms", 0.6, nms_in_pixels=pixels)[0]
        frame = rel * torch.tensor([1600, 200, 1600, 200], dtype=torch.float64) if pixels else rel
        want = do_nms_sort(frame.tolist(), [[0.9], [0.8]], 0.45, "diounms", 0.6)
        assert sorted(dets.box_index.tolist()) == [i for i, p in enumerate(want) if p[0] > 0]
        kept[pixels] = len(dets)
    assert kept == {False: 1, True: 2}  # the frame matters for DIoU on this photo


def test_valid_defaults_follow_the_tree(monkeypatch, tmp_path):
    """detector valid: pjreddie's thresh .005 / nms .45 in relative boxes; AlexeyAB's .001 / .6 with
    its NMS on photo pixels; a given value wins."""
    import darknet_py.validate as va

    seen = []

    def spy(model, images, ids, **kw):
        seen.append((kw["thresh"], kw["nms"], kw["nms_in_pixels"]))
        return va.ValidationRun([], [], [], [], 0.0)

    monkeypatch.setattr(va, "run_detections", spy)
    photo = tmp_path / "a.jpg"
    photo.write_bytes((ROOT / "data" / "shapes.jpg").read_bytes())
    (tmp_path / "list.txt").write_text(f"{photo}\n")
    data = tmp_path / "d.data"
    data.write_text(f"classes = 6\nvalid = {tmp_path / 'list.txt'}\nnames = {ROOT / 'cfg' / 'shapes.names'}\n"
                    f"results = {tmp_path / 'res'}\n")
    cfg, weights = ROOT / "cfg" / "yolov3-tiny-shapes.cfg", ROOT / "weights" / "yolov3-tiny-shapes.weights"
    for tree in ("pjreddie", "alexeyab"):
        va.detector_valid(data, cfg, weights, model=load(cfg, weights, darknet=tree), overwrite=True)
    va.detector_valid(data, cfg, weights, model=load(cfg, weights, darknet="alexeyab"), thresh=0.2, nms=0.3,
                      overwrite=True)
    assert seen == [(0.005, 0.45, False), (0.001, 0.6, True), (0.2, 0.3, True)]


@pytest.mark.parametrize("numerics", ["pjreddie-cpu", "darknet-gpu"])
def test_training_batchnorm_is_the_trees(numerics):
    """A conv block's training forward against a float64 reference of each tree's batch norm:
    pjreddie's CPU forward_batchnorm_layer (unbiased variance, sqrt(var) + 1e-6) or cuDNN's (biased
    variance inside the root with 1e-5); the rolling statistics move by .01 toward the batch's
    (unbiased) ones in both."""
    torch.manual_seed(0)
    block = ConvBlock(3, 4, 3, 1, 1, 1, True, "linear")
    block.numerics = numerics
    with torch.no_grad():
        block.bn.weight.uniform_(0.5, 1.5)
        block.bn.bias.uniform_(-0.5, 0.5)
    block.train()
    x = torch.randn(2, 3, 5, 6)
    rm, rv = block.bn.running_mean.clone().double(), block.bn.running_var.clone().double()
    got = block(x).double().detach().numpy()
    z = torch.nn.functional.conv2d(x.double(), block.conv.weight.double().detach(), None, 1, 1).numpy()
    n = z.shape[0] * z.shape[2] * z.shape[3]
    mean = z.mean((0, 2, 3))
    ss = ((z - mean[None, :, None, None]) ** 2).sum((0, 2, 3))
    if numerics == "pjreddie-cpu":
        denom = np.sqrt(ss / (n - 1)) + 1e-6
    else:
        denom = np.sqrt(ss / n + 1e-5)
    w, b = block.bn.weight.double().detach().numpy(), block.bn.bias.double().detach().numpy()
    c = (slice(None), None, None)  # per channel
    want = (z - mean[c]) / denom[c] * w[c] + b[c]
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    assert np.allclose(block.bn.running_mean.double(), 0.99 * rm + 0.01 * torch.from_numpy(mean), rtol=1e-5, atol=1e-6)
    assert np.allclose(block.bn.running_var.double(), 0.99 * rv + 0.01 * torch.from_numpy(ss / (n - 1)), rtol=1e-5,
                       atol=1e-6)


def darknet_cpu_bn_backward(x, delta, weight, unbiased=True):
    """pjreddie's backward_batchnorm_layer in float64 NumPy, loop by loop (src/batchnorm_layer.c):
    backward_bias, backward_scale_cpu on the forward's x_norm, scale_bias, mean_delta_cpu,
    variance_delta_cpu, normalize_delta_cpu (1e-5 inside the root there, n = spatial * batch)."""
    c = (slice(None), None, None)
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = x.mean((0, 2, 3))
    var = ((x - mean[c]) ** 2).sum((0, 2, 3)) / (n - 1 if unbiased else n)
    x_norm = (x - mean[c]) / (np.sqrt(var) + 1e-6)[c]
    bias_updates = delta.sum((0, 2, 3))
    scale_updates = (delta * x_norm).sum((0, 2, 3))
    d = delta * weight[c]
    mean_delta = d.sum((0, 2, 3)) * (-1. / np.sqrt(var + 1e-5))
    variance_delta = (d * (x - mean[c])).sum((0, 2, 3)) * (-.5 * (var + 1e-5) ** -1.5)
    dx = d / np.sqrt(var + 1e-5)[c] + variance_delta[c] * 2. * (x - mean[c]) / n + mean_delta[c] / n
    return dx, scale_updates, bias_updates


def test_pjreddie_training_backward_is_darknets():
    """The pjreddie-cpu training batch norm's gradients are Darknet's CPU backward's, which is not
    the derivative of its forward (1e-5 inside the root): on small-variance channels the two differ
    far beyond float32 rounding, and the gradients follow Darknet's."""
    torch.manual_seed(1)
    bn = torch.nn.BatchNorm2d(5, momentum=0.01)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    bn.train()
    scale = torch.tensor([1., 1e-2, 3e-3, 1e-3, 2.]).view(1, -1, 1, 1)  # variances 1 down to 1e-6
    x = (torch.randn(3, 5, 4, 6) * scale).requires_grad_()
    delta = torch.randn(3, 5, 4, 6)
    out = train_batchnorm(x, bn, "pjreddie-cpu")
    out.backward(delta)
    dx, dw, db = darknet_cpu_bn_backward(x.detach().double().numpy(), delta.double().numpy(),
                                         bn.weight.detach().double().numpy())
    assert np.abs(x.grad.double().numpy() - dx).max() <= 1e-4 * np.abs(dx).max()
    assert np.allclose(bn.weight.grad.double().numpy(), dw, rtol=1e-4, atol=1e-5)
    assert np.allclose(bn.bias.grad.double().numpy(), db, rtol=1e-5, atol=1e-5)
    # autograd of the forward formula alone would give another gradient on the small channels
    x2 = x.detach().clone().requires_grad_()
    m, v = x2.mean((0, 2, 3)), x2.var((0, 2, 3), unbiased=True)
    y = (x2 - m.view(1, -1, 1, 1)) / (v.sqrt() + 1e-6).view(1, -1, 1, 1) * bn.weight.view(1, -1, 1, 1)
    y.backward(delta)
    gap = (x2.grad.double().numpy() - dx)[:, 3]
    assert np.abs(gap).max() > 100 * 1e-4 * np.abs(dx).max()
