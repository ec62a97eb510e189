"""The Darknet keys of [convolutional], [maxpool], [upsample] and [shortcut], and every activation.

Each case is a small generated cfg (32 px input): random weights written with our writer, the file
reloaded, and the output compared with OpenCV 4.x's Darknet importer where it implements the key
(groups / depthwise, and the activations it knows: logistic, leaky, relu, tanh, swish, mish), and
otherwise with ``RefNet``: a float64 NumPy Darknet written here from Darknet's C (pjreddie and
AlexeyAB src/*.c), which reads the cfg text and the .weights bytes itself and indexes flat
buffers as the C loops do. No darknet_py code computes a reference.

Tolerance: max |ours - reference| / max |reference| per output, 1e-4 (float32 against float64;
measured <= 1e-6 for the small cfgs, 5e-6 for resnet50).
"""
from __future__ import annotations

import math
import struct
import warnings

import numpy as np
import pytest
import torch

import darknet_py
from darknet_py.export import export_onnx
from darknet_py.layers.activations import ACTIVATIONS, Activation
from darknet_py.random_weights import randomize
from darknet_py.weights import weights_bytes
from tests.helpers.cfgs import cfg, conv
from tests.helpers.errors import expect_cfg_error, line_of
from tests.helpers.numeric import rel_err
from tests.helpers.opencv import needs_darknet_importer, opencv_forward
from tests.helpers.paths import ref_path, sized_cfg_text
from tests.helpers.reference import cfg_sections

cv2 = pytest.importorskip("cv2")
RTOL = 1e-4
FLT_MAX = float(np.finfo(np.float32).max)


# ============================================================================ float64 reference

def _act_c(x: np.ndarray, name: str) -> np.ndarray:
    """activate() / the named activate_array_* of src/activations.[ch], in float64, channel axis 1."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if name == "linear":
            return x
        if name == "logistic":
            return 1.0 / (1.0 + np.exp(-x))
        if name == "loggy":
            return 2.0 / (1.0 + np.exp(-x)) - 1
        if name == "relu":
            return x * (x > 0)
        if name == "relu6":  # AlexeyAB's CUDA relu6_activate_kernel (its CPU activate() returns 0)
            return np.minimum(np.maximum(x, 0), 6)
        if name == "elu":
            return (x >= 0) * x + (x < 0) * (np.exp(x) - 1)
        if name == "selu":
            return (x >= 0) * 1.0507 * x + (x < 0) * 1.0507 * 1.6732 * (np.exp(x) - 1)
        if name == "gelu":
            return 0.5 * x * (1 + np.tanh(0.797885 * x + 0.035677 * x ** 3))
        if name == "relie":
            return np.where(x > 0, x, .01 * x)
        if name == "ramp":
            return x * (x > 0) + .1 * x
        if name in ("leaky", "revleaky"):
            return np.where(x > 0, x, .1 * x)
        if name == "tanh":  # AlexeyAB's form; pjreddie's (e^2x-1)/(e^2x+1) is the same where finite
            return 2 / (1 + np.exp(-2 * x)) - 1
        if name == "plse":
            return np.where(x < -4, .01 * (x + 4), np.where(x > 4, .01 * (x - 4) + 1, .125 * x + .5))
        if name == "stair":
            n = np.floor(x)
            return np.where(np.fmod(n, 2) == 0, np.floor(x / 2.), (x - n) + np.floor(x / 2.))  # C's n%2
        if name == "hardtan":
            return np.clip(x, -1, 1)
        if name == "lhtan":
            return np.where(x < 0, .001 * x, np.where(x > 1, .001 * (x - 1) + 1, x))
        if name == "swish":
            return x / (1.0 + np.exp(-x))
        if name == "mish":  # softplus_activate(x, 20)
            sp = np.where(x > 20, x, np.where(x < -20, np.exp(x), np.log(np.exp(x) + 1)))
            return x * (2 / (1 + np.exp(-2 * sp)) - 1)
        if name == "hard_mish":
            return np.where(x > 0, x, np.where(x > -2, x * x / 2 + x, 0))
        if name == "normalize_channels":
            total = 0.0001 + np.where(x > 0, x, 0).sum(1, keepdims=True)  # sum = eps; sum += val if val > 0
            return np.where(x > 0, x / total, 0)
        if name in ("normalize_channels_softmax", "normalize_channels_softmax_maxval"):
            m = x.max(1, keepdims=True) if name.endswith("maxval") else 0.0
            e = np.exp(x - m)
            return e / (0.0001 + e.sum(1, keepdims=True))
    raise AssertionError(name)


def _conv_c(x, w, groups, stride, pad, dilation=1):
    """im2col_cpu_ext + gemm: output (oy, ox) reads input row -pad + ky*dilation + oy*stride_y,
    zero outside; per group, filters [g*m, (g+1)*m) read channels [g*c/groups, (g+1)*c/groups)."""
    n, c, h, wd = x.shape
    f, cg, k, _ = w.shape
    sy, sx = stride
    oh = (h + 2 * pad - (dilation * (k - 1) + 1)) // sy + 1
    ow = (wd + 2 * pad - (dilation * (k - 1) + 1)) // sx + 1
    xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad))
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    cols = np.stack([xp[:, :, ky * dilation:ky * dilation + (oh - 1) * sy + 1:sy,
                        kx * dilation:kx * dilation + (ow - 1) * sx + 1:sx]
                     for ky in range(k) for kx in range(k)], 2)  # n, c, k*k, oh, ow
    m = f // groups
    out = np.empty((n, f, oh, ow))
    for g in range(groups):
        col = cols[:, g * cg:(g + 1) * cg].reshape(n, cg * k * k, oh * ow)
        out[:, g * m:(g + 1) * m] = (w[g * m:(g + 1) * m].reshape(m, cg * k * k) @ col).reshape(n, m, oh, ow)
    return out


def _blur_c(y, kind, stride):
    """make_convolutional_layer's antialiasing input_layer: depthwise 3x3 [1 2 1]/16 outer, pad 1 (kind 2:
    2x2 of 1/4, pad 0), linear, zero bias."""
    c = y.shape[1]
    if kind == 2:
        k, pad = np.full((2, 2), 1 / 4.), 0
    else:
        k, pad = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16., 1
    return _conv_c(y, np.broadcast_to(k, (c, 1) + k.shape), c, stride, pad)


class RefNet:
    """A float64 Darknet forward (batch-1 semantics per image) for the keys under test."""

    def __init__(self, text: str, weights: bytes):
        self.sections = cfg_sections(text)
        net = self.sections[0][1]
        self.input = (int(net.get("channels", 3)), int(net["height"]), int(net["width"]))
        major, minor = struct.unpack_from("<ii", weights, 0)
        header = 12 + (8 if major * 10 + minor >= 2 else 4)
        self.floats = np.frombuffer(weights, "<f4", offset=header).astype(np.float64)
        self.cursor = 0

    def take(self, count: int) -> np.ndarray:
        out = self.floats[self.cursor:self.cursor + count]
        assert out.size == count, "weights file too short"
        self.cursor += count
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.cursor = 0
        outs = []
        for i, (kind, opt, _) in enumerate(self.sections[1:]):
            prev = x if i == 0 else outs[-1]
            if kind in ("convolutional", "conv"):
                y = self.conv(prev, opt)
            elif kind in ("maxpool", "max"):
                y = self.maxpool(prev, opt)
            elif kind == "upsample":
                y = self.upsample(prev, opt)
            elif kind == "shortcut":
                froms = [int(v) for v in opt["from"].split(",")]
                y = self.shortcut(prev, [outs[i + f if f < 0 else f] for f in froms], opt)
            elif kind == "route":
                y = np.concatenate([outs[i + f if f < 0 else f] for f in map(int, opt["layers"].split(","))], 1)
            elif kind == "avgpool":
                y = prev.mean((2, 3), keepdims=True)
            elif kind == "softmax":
                flat = prev.reshape(prev.shape[0], -1)
                e = np.exp(flat - flat.max(1, keepdims=True))
                y = (e / e.sum(1, keepdims=True)).reshape(prev.shape)
            else:
                raise AssertionError(kind)
            outs.append(y)
        assert self.cursor == self.floats.size, f"{self.floats.size - self.cursor} floats left in the file"
        return outs[-1]

    def conv(self, x, opt):
        c = x.shape[1]
        n, k = int(opt["filters"]), int(opt.get("size", 1))
        stride = int(opt.get("stride", 1))
        sx, sy = int(opt.get("stride_x", stride)), int(opt.get("stride_y", stride))
        padding = k // 2 if int(opt.get("pad", 0)) else int(opt.get("padding", 0))
        groups = int(opt.get("groups", 1))
        dilation = 1 if k == 1 else int(opt.get("dilation", 1))
        bn = int(opt.get("batch_normalize", 0))
        aa = int(opt.get("antialiasing", 0))
        biases = self.take(n)
        if bn:
            scales, mean, var = self.take(n), self.take(n), self.take(n)
        w = self.take(n * c // groups * k * k)
        if int(opt.get("flipped", 0)):  # transpose_matrix(weights, c/groups*size*size, n)
            w = w.reshape(c // groups * k * k, n).T
        w = w.reshape(n, c // groups, k, k)
        if int(opt.get("binary", 0)) or int(opt.get("xnor", 0)):  # binarize_weights
            m = np.abs(w).reshape(n, -1).mean(1)[:, None, None, None]
            w = np.where(w > 0, m, -m)
        if int(opt.get("xnor", 0)):  # binarize_cpu
            x = np.where(x > 0, 1.0, -1.0)
        host = (1, 1) if aa else (sy, sx)
        y = _conv_c(x, w, groups, host, padding * dilation, dilation)
        # convolutional_out_height/width: Darknet's own size, which the dilated im2col must match
        h, w_ = x.shape[2:]
        assert y.shape[2:] == ((h + 2 * padding - k) // host[0] + 1, (w_ + 2 * padding - k) // host[1] + 1)
        if bn:  # normalize_cpu, scale_bias, add_bias
            y = (y - mean[:, None, None]) / (np.sqrt(var[:, None, None]) + .000001)
            y = y * scales[:, None, None]
        y = _act_c(y + biases[:, None, None], opt.get("activation", "logistic"))
        return _blur_c(y, aa, (sy, sx)) if aa else y

    def maxpool(self, x, opt):
        n, c, h, w = x.shape
        stride = int(opt.get("stride", 1))
        sx, sy = int(opt.get("stride_x", stride)), int(opt.get("stride_y", stride))
        size = int(opt.get("size", stride))
        padding = int(opt.get("padding", size - 1))
        if int(opt.get("maxpool_depth", 0)):
            out_c = int(opt.get("out_channels", 1))
            out = np.full((n, out_c, h, w), -FLT_MAX)
            for g in range(out_c):
                for k in range(g, c, out_c):
                    out[:, g] = np.maximum(out[:, g], x[:, k])
            return out
        aa = int(opt.get("antialiasing", 0))
        hy, hx = (1, 1) if aa else (sy, sx)
        oh, ow = (h + padding - size) // hy + 1, (w + padding - size) // hx + 1
        off = -(padding // 2)  # C's -l.pad/2 truncates toward zero
        big = np.full((n, c, h + size + hy * oh, w + size + hx * ow), -FLT_MAX)  # invalid taps: -FLT_MAX
        big[:, :, -off:-off + h, -off:-off + w] = x
        out = np.full((n, c, oh, ow), -FLT_MAX)
        for dy in range(size):
            for dx in range(size):
                out = np.maximum(out, big[:, :, dy:dy + (oh - 1) * hy + 1:hy, dx:dx + (ow - 1) * hx + 1:hx])
        return _blur_c(out, aa, (sy, sx)) if aa else out

    def upsample(self, x, opt):
        stride, scale = int(opt.get("stride", 2)), float(opt.get("scale", 1))
        n, c, h, w = x.shape
        if stride > 0:  # upsample_cpu(forward=1)
            j, i = np.arange(h * stride) // stride, np.arange(w * stride) // stride
            return scale * x[:, :, j][:, :, :, i]
        s = -stride
        oh, ow = h // s, w // s
        out = np.zeros((n, c * oh * ow))
        k, j, i = (a.ravel() for a in np.meshgrid(np.arange(c), np.arange(oh * s), np.arange(ow * s), indexing="ij"))
        in_index = k * ow * oh + (j // s) * ow + i // s  # upsample_cpu's "in" is l.output here
        out_index = k * ow * oh * s * s + j * ow * s + i  # and its "out" is net.input
        for b in range(n):
            np.add.at(out[b], in_index, scale * x[b].ravel()[out_index])
        return out.reshape(n, c, oh, ow)

    def shortcut(self, prev, froms, opt):
        act = opt.get("activation", "linear")
        wtype = opt.get("weights_type", "none")
        if len(froms) == 1 and wtype == "none":
            out, add = prev.copy(), froms[0]  # pjreddie's shortcut_cpu
            _, c2, h2, w2 = out.shape
            _, c1, h1, w1 = add.shape
            stride, sample = w1 // w2, w2 // w1
            assert stride == h1 // h2 and sample == h2 // h1
            stride, sample = max(stride, 1), max(sample, 1)
            k, j, i = np.meshgrid(np.arange(min(c1, c2)), np.arange(min(h1, h2)), np.arange(min(w1, w2)), indexing="ij")
            out[:, k, j * sample, i * sample] += add[:, k, j * stride, i * stride]
            return _act_c(out, act)
        # AlexeyAB's shortcut_multilayer_cpu on flat per-image buffers
        norm = {"none": 0, "relu": 1, "avg_relu": 1, "softmax": 2}[opt.get("weights_normalization", "none")]
        n, c, h, w = prev.shape
        src_outputs = c * h * w
        nfrom = len(froms)
        nweights = {"none": 0, "per_feature": nfrom + 1, "per_layer": nfrom + 1, "per_channel": (nfrom + 1) * c}[wtype]
        weights = self.take(nweights) if nweights else None
        out = np.empty((n, src_outputs))
        src_i = np.arange(src_outputs)
        if weights is not None:
            layer_step = nweights // (nfrom + 1)
            step = src_outputs // layer_step
            ws = np.stack([weights[src_i // step + i * layer_step] for i in range(nfrom + 1)])
            if norm:
                max_val = ws.max(0) if norm == 2 else -FLT_MAX
                total = 0.0001 + (np.maximum(ws, 0) if norm == 1 else np.exp(ws - max_val)).sum(0)
                ws = np.maximum(ws, 0) / total if norm == 1 else np.exp(ws - max_val) / total
        for b in range(n):
            out[b] = prev[b].ravel() * (ws[0] if weights is not None else 1)
            for i, add in enumerate(froms):
                add_outputs = add[b].size
                sel = src_i < add_outputs
                term = add[b].ravel()[src_i[sel]]
                out[b, sel] += term * (ws[i + 1][sel] if weights is not None else 1)
        return _act_c(out.reshape(prev.shape), act)


# ============================================================================ helpers

def random_weights(model, seed: int = 0, std: float = 1.0):
    """Plain random tensors (kernels ~ N(0, std^2/fan_in), BN statistics near 1) in every layer's file
    tensors, and each weighted non-conv layer's randomize_."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            if hasattr(layer, "randomize_"):
                layer.randomize_(generator=g)
                continue
            for name, t in (layer.darknet_tensors() if hasattr(layer, "darknet_tensors") else []):
                if name == "conv.weight":
                    w = layer.conv.weight  # t is its file view (transposed when flipped)
                    w.copy_(torch.randn(w.shape, generator=g) * std / math.sqrt(w[0].numel()))
                    w[:, 0, 0, 0] = 0.0  # an exact zero per filter: binarize_weights makes it -mean (w > 0 ? m : -m)
                elif name in ("bn.running_var", "bn.weight"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g))
                else:
                    t.copy_(0.2 * torch.randn(t.shape, generator=g))
    return model


def written(tmp_path, text: str, model=None, seed: int = 0, std: float = 1.0, name: str = "net"):
    """cfg file, weights file (random, from our writer) and the model reloaded from both."""
    path = tmp_path / f"{name}.cfg"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these cfgs deserves a warning
        model = model or random_weights(darknet_py.build_model(path), seed, std)
    weights = tmp_path / f"{name}.weights"
    model.save_weights(weights)
    loaded = darknet_py.load(path, weights, channels_last=False)
    return path, weights, loaded


def make_input(size=32, channels=3, n=2, seed=1):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def ours_out(model, x) -> np.ndarray:
    with torch.no_grad():
        return model(x)[-1].double().numpy()


def check_against_ref(tmp_path, text, x=None, seed=0, std=1.0, tol=RTOL) -> float:
    path, weights, model = written(tmp_path, text, seed=seed, std=std)
    x = make_input() if x is None else x
    ref = RefNet(text, weights.read_bytes()).forward(x.double().numpy())
    diff = rel_err(ours_out(model, x), ref)
    assert diff < tol, diff
    return diff


# ============================================================================ [convolutional]

CONV_CASES = {
    "groups": conv(4, 1) + "\n\n" + conv(8, extra="groups=2", bn=False) + "\n\n" + conv(8, 1, "groups=4"),
    "depthwise": conv(6, 1) + "\n\n" + conv(6, 3, "groups=6", bn=False, act="linear"),
    "depthwise_x2": conv(4, 1) + "\n\n" + conv(8, 3, "groups=4"),
    "dilation2": conv(6, 3, "dilation=2"),
    "dilation3_stride2": conv(6, 3, "dilation=3", bn=False, stride=2),
    "dilation2_size5": conv(4, 5, "dilation=2", act="linear"),
    "dilation_size1": conv(4, 1, "dilation=3"),  # parse_convolutional: ignored for a 1x1 kernel
    "stride_x_y": conv(5, 3, "stride_x=2\nstride_y=1") + "\n\n" + conv(4, 3, "stride_y=2"),
    "size1_stride2": conv(4, 1, stride=2, act="linear"),  # AlexeyAB's (and the CUDA) 1x1 stride-2 conv
    "flipped": conv(5, 3, "flipped=1"),
    "flipped_groups": conv(6, 1) + "\n\n" + conv(4, 3, "flipped=1\ngroups=2", bn=False),
    "binary": conv(6, 3, "binary=1"),
    "binary_nobn": conv(6, 3, "binary=1", bn=False, act="linear"),
    "xnor": conv(6, 3, "xnor=1", act="linear"),
    "xnor_bn_groups": conv(6, 3, "xnor=1\ngroups=3"),
    "xnor_after_pool": "[maxpool]\nsize=2\nstride=2\n\n" + conv(6, 3, "xnor=1\nbin_output=1"),
    "antialiasing1": conv(6, 3, "antialiasing=1", stride=2),
    "antialiasing2": conv(6, 3, "antialiasing=2", stride=2, act="mish"),
    "antialiasing_stride1": conv(6, 3, "antialiasing=1", bn=False),
    "training_keys": conv(6, 3, "stopbackward=1\ntrain_only_bn=1"),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_keys_match_float64_reference(case, tmp_path):
    x = make_input()
    if "xnor" in case:
        x = x * 2 - 1
        x[:, :, ::3, ::5] = 0.0  # exact zeros: binarize_cpu maps them to -1 (x > 0 ? 1 : -1)
    check_against_ref(tmp_path, cfg(CONV_CASES[case]), x)


def test_xnor_and_binary_change_the_output(tmp_path):
    # the same weights without the keys give another output (a test that cannot pass by accident)
    text = cfg(conv(6, 3, "xnor=1", act="linear", bn=False))
    path, weights, model = written(tmp_path, text)
    plain = tmp_path / "plain.cfg"
    plain.write_text(text.replace("xnor=1", "binary=1"))
    binary = darknet_py.load(plain, weights, channels_last=False)
    plain.write_text(text.replace("xnor=1", ""))
    real = darknet_py.load(plain, weights, channels_last=False)
    x = make_input() * 2 - 1
    outs = [ours_out(m, x) for m in (model, binary, real)]
    assert rel_err(outs[0], outs[1]) > 0.1 and rel_err(outs[1], outs[2]) > 0.1
    # binary: each filter's kernel is +-mean|w| (binarize_weights), the file's kernels unchanged
    block = binary.layers[0]
    w = block.conv.weight.detach()
    bw = block.fused_weight
    assert torch.allclose(bw.abs(), w.abs().mean((1, 2, 3), keepdim=True).expand_as(bw), rtol=1e-6)
    assert torch.equal(bw > 0, w > 0)
    assert weights_bytes(binary) == weights.read_bytes()


@pytest.mark.parametrize("extra", ["xnor=1", "binary=1", "dilation=2", "antialiasing=1\nstride=2"])
def test_conv_keys_train_like_they_infer(extra, tmp_path):
    """Training mode (no BN, so no batch statistics) computes what inference computes, and the
    gradient reaches the real-valued kernels (straight through the binarisation, as Darknet's
    update of l.weights does)."""
    text = cfg(conv(4, 3, act="leaky", bn=False), conv(6, 3, extra, act="leaky", bn=False).replace("stride=1\n", ""
               if "stride=2" in extra else "stride=1\n"))
    path, weights, model = written(tmp_path, text)
    x = make_input() * 2 - 1
    infer = ours_out(model.eval(), x)
    model.train()
    out = model(x)[-1]
    assert rel_err(out.detach().double().numpy(), infer) < 1e-6
    out.square().sum().backward()
    for block in model.layers:
        assert block.conv.weight.grad is not None and block.conv.weight.grad.abs().sum() > 0


@needs_darknet_importer
@pytest.mark.parametrize("case", ["groups", "depthwise", "depthwise_x2"])
def test_conv_groups_match_opencv(case, tmp_path):
    text = cfg(CONV_CASES[case])
    path, weights, model = written(tmp_path, text)
    x = make_input()
    diff = rel_err(ours_out(model, x), opencv_forward(path, weights, x))
    assert diff < RTOL, diff


def test_flipped_file_order(tmp_path):
    """A hand-built file of consecutive floats: the kernels stored as the (c*k*k) x n transpose."""
    text = cfg(conv(4, 2, "flipped=1", bn=False, act="linear"))
    n, c, k = 4, 3, 2
    floats = np.arange(n + n * c * k * k, dtype="<f4")
    path = tmp_path / "f.cfg"
    path.write_text(text)
    weights = tmp_path / "f.weights"
    weights.write_bytes(struct.pack("<iiiQ", 0, 2, 0, 0) + floats.tobytes())
    model = darknet_py.build_model(path).load_weights(weights)
    w = model.layers[0].conv.weight.detach().numpy()
    for f in range(n):
        for ci in range(c):
            for ky in range(k):
                for kx in range(k):
                    assert w[f, ci, ky, kx] == floats[n + (ci * k * k + ky * k + kx) * n + f]
    assert weights_bytes(model) == weights.read_bytes()  # written back transposed: byte-identical


# ============================================================================ activations

@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_matches_float64_reference(name, tmp_path):
    # pre-activations ~ N(0, 4^2) with a spread bias: every kink and tail is reached
    # (relu6's 6, plse's +-4, hard_mish's -2, stair's steps, softplus's 20 for mish)
    text = cfg(conv(6, 3, act=name, bn=False))
    path, weights, model = written(tmp_path, text, std=8.0)
    x = make_input()
    with torch.no_grad():
        pre = torch.nn.functional.conv2d(x, model.layers[0].conv.weight, model.layers[0].conv.bias, 1, 1)
    assert float(pre.min()) < -4.5 and float(pre.max()) > 6.5
    ref = RefNet(text, weights.read_bytes()).forward(x.double().numpy())
    assert rel_err(ours_out(model, x), ref) < RTOL


@needs_darknet_importer
@pytest.mark.parametrize("name", ["linear", "logistic", "leaky", "relu", "tanh", "swish", "mish"])
def test_activations_opencv_knows_match_it(name, tmp_path):
    text = cfg(conv(6, 3, act=name, bn=False)) + "\n[shortcut]\nfrom=-1\nactivation=" + (
        name if name in ("linear", "leaky", "swish", "mish", "logistic") else "linear") + "\n"
    path, weights, model = written(tmp_path, text, std=8.0)
    x = make_input()
    diff = rel_err(ours_out(model, x), opencv_forward(path, weights, x))
    assert diff < RTOL, diff


def test_activation_formulas_in_float64():
    """Each activation in float64 on a grid through every kink (0, +-2, +-4, 6, the integers, 20)
    against the C formulas: constants and branches exactly, beyond float32's resolution."""
    grid = torch.cat([torch.linspace(-30, 30, 6001, dtype=torch.float64), torch.arange(-25, 26, dtype=torch.float64)])
    x = grid[: grid.numel() // 4 * 4].view(1, 4, -1, 1)  # 4 channels for the normalize_channels family
    for name in sorted(ACTIVATIONS):
        with torch.no_grad():
            ours = Activation(name)(x.clone()).numpy()
        ref = _act_c(x.numpy(), name)
        assert np.abs(ours - ref).max() <= 1e-12 * max(1.0, np.abs(ref).max()), name


@pytest.mark.parametrize("name, shift", [("normalize_channels", 0.0), ("normalize_channels_softmax", -12.0)])
def test_normalize_channels_eps(name, shift, tmp_path):
    # small sums, where activate_array_normalize_channels*'s eps = 1e-4 in the denominator counts
    text = cfg(conv(4, 1, act=name, bn=False))
    model = darknet_py.build_model(text.encode())
    with torch.no_grad():
        model.layers[0].conv.weight.copy_(torch.randn(4, 3, 1, 1, generator=torch.Generator().manual_seed(3)) * 1e-3)
        model.layers[0].conv.bias.fill_(shift)  # values ~1e-3 (normalize_channels), exp(-12) (softmax)
    path, weights, model = written(tmp_path, text, model=model)
    x = make_input()
    ours = ours_out(model, x)
    ref = RefNet(text, weights.read_bytes()).forward(x.double().numpy())
    assert rel_err(ours, ref) < RTOL
    assert np.median(ours.sum(1)) < 0.98 and ours.max() > 0.01  # the eps is a visible share of each sum


@pytest.mark.parametrize("name", ["normalize_channels", "normalize_channels_softmax",
                                  "normalize_channels_softmax_maxval"])
def test_normalize_channels_sum_to_one_over_channels(name, tmp_path):
    path, weights, model = written(tmp_path, cfg(conv(5, 3, act=name, bn=False)), std=3.0)
    y = ours_out(model, make_input())
    total = y.sum(1)
    assert np.all(total <= 1.0 + 1e-6) and np.median(total) > 0.99  # the eps keeps each sum just below 1
    if name == "normalize_channels":
        assert (y == 0).any() and (y >= 0).all()


# ============================================================================ [maxpool]

MAXPOOL_CASES = {
    "depth1": conv(6, 3) + "\n\n[maxpool]\nmaxpool_depth=1",
    "depth2": conv(6, 3) + "\n\n[maxpool]\nmaxpool_depth=1\nout_channels=2",
    "depth4_uneven": conv(6, 3) + "\n\n[maxpool]\nmaxpool_depth=1\nout_channels=4\nsize=3\nstride=2",
    "antialiasing1": conv(4, 3) + "\n\n[maxpool]\nsize=2\nstride=2\nantialiasing=1",
    "antialiasing2": conv(4, 3) + "\n\n[maxpool]\nsize=3\nstride=2\nantialiasing=2",
    "stride_x_y": conv(4, 3) + "\n\n[maxpool]\nsize=3\nstride_x=2\nstride_y=1",
    "size_defaults_to_stride": conv(4, 3) + "\n\n[maxpool]\nstride=3",
}


@pytest.mark.parametrize("case", list(MAXPOOL_CASES))
def test_maxpool_keys_match_float64_reference(case, tmp_path):
    check_against_ref(tmp_path, cfg(MAXPOOL_CASES[case]))


def test_maxpool_shapes(tmp_path):
    nd = darknet_py.parse_network(cfg(*[MAXPOOL_CASES[k] for k in ("depth4_uneven",)]).encode())
    assert nd.shapes[-1] == (4, 32, 32)  # width and height kept, size/stride ignored
    nd = darknet_py.parse_network(cfg(MAXPOOL_CASES["stride_x_y"]).encode())
    assert nd.shapes[-1] == (4, 32, 16)  # (32 + 2 - 3)/1 + 1 high, (32 + 2 - 3)/2 + 1 wide
    nd = darknet_py.parse_network(cfg(MAXPOOL_CASES["size_defaults_to_stride"]).encode())
    assert nd.specs[-1].size == 3 and nd.shapes[-1] == (4, 11, 11)


# ============================================================================ [upsample]

UPSAMPLE_CASES = {
    "reverse2": conv(4, 3) + "\n\n[upsample]\nstride=-2",
    "reverse4_scale": conv(4, 3) + "\n\n[upsample]\nstride=-4\nscale=0.0625",
    "reverse3_not_dividing": conv(4, 3) + "\n\n[upsample]\nstride=-3",  # 32 = 10*3 + 2
    "reverse5_not_dividing": conv(3, 3, stride=2) + "\n\n[upsample]\nstride=-5\nscale=2.5",  # 16 = 3*5 + 1
    "scale": conv(4, 3) + "\n\n[upsample]\nstride=2\nscale=0.5",
}


@pytest.mark.parametrize("case", list(UPSAMPLE_CASES))
def test_upsample_matches_float64_reference(case, tmp_path):
    check_against_ref(tmp_path, cfg(UPSAMPLE_CASES[case]))


@pytest.mark.filterwarnings("ignore:.*not multiples of 32")
def test_upsample_reverse_is_a_scaled_block_sum():
    # hand-computed: a 1x4x4 ramp, stride -2, scale 1 -> the 2x2 block sums
    model = darknet_py.build_model(cfg("[upsample]\nstride=-2", width=4, channels=1).encode()).eval()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert model(x)[0].flatten().tolist() == [0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15]
    # 5x5, stride -2: Darknet reads the first 16 floats as a 4x4 image (row stride 4, not 5)
    model = darknet_py.build_model(cfg("[upsample]\nstride=-2", width=5, channels=1).encode()).eval()
    x = torch.arange(25.0).view(1, 1, 5, 5)
    assert model(x)[0].flatten().tolist() == [0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15]


# ============================================================================ [shortcut]

SHORTCUT_CASES = {
    # resnet50's downsampling block: the from layer is twice as large (sub-sampled) with fewer channels
    "from_larger": conv(4, 3) + "\n\n" + conv(8, 3, stride=2) + "\n\n[shortcut]\nfrom=-2\nactivation=leaky",
    # the from layer smaller: added at every 2nd pixel, the others pass through
    "from_smaller": conv(6, 3, stride=2) + "\n\n" + conv(4, 3, stride=2) + "\n\n[upsample]\nstride=2\n\n"
                    "[shortcut]\nfrom=-2",
    "from_larger_not_integer": conv(4, 3, stride=2) + "\n\n[maxpool]\nsize=3\nstride=3\n\n" + conv(4, 3) +
                               "\n\n[shortcut]\nfrom=0",  # 16x16 from, 6x6 previous: stride 2
    "ratio_not_integer": conv(4, 3, stride=2) + "\n\n[maxpool]\nsize=3\nstride=3\n\n" + conv(4, 3) +
                         "\n\n[upsample]\nstride=3\n\n[shortcut]\nfrom=0",  # 16x16 from, 18x18 previous
    "channels_differ": conv(8, 3) + "\n\n" + conv(5, 3) + "\n\n[shortcut]\nfrom=-2\nactivation=swish",
    "multi": conv(6, 3) + "\n\n" + conv(4, 3) + "\n\n" + conv(6, 3) + "\n\n[shortcut]\nfrom=-2,-3\nactivation=mish",
    "multi_wider": conv(6, 3) + "\n\n" + conv(9, 3) + "\n\n" + conv(6, 3) + "\n\n[shortcut]\nfrom=-2,-3,-3",
}
for _wt in ("per_feature", "per_channel"):
    for _wn in ("none", "relu", "softmax"):
        SHORTCUT_CASES[f"{_wt}_{_wn}"] = (conv(6, 3) + "\n\n" + conv(4, 3) + "\n\n" + conv(6, 3) +
                                          f"\n\n[shortcut]\nfrom=-2,-3\nweights_type={_wt}\n"
                                          f"weights_normalization={_wn}\nactivation=leaky")
SHORTCUT_CASES["per_layer_avg_relu_single"] = (conv(6, 3) + "\n\n" + conv(6, 3) + "\n\n[shortcut]\nfrom=-2\n"
                                               "weights_type=per_layer\nweights_normalization=avg_relu")


@pytest.mark.parametrize("case", list(SHORTCUT_CASES))
def test_shortcut_matches_float64_reference(case, tmp_path):
    check_against_ref(tmp_path, cfg(SHORTCUT_CASES[case]))


@pytest.mark.filterwarnings("ignore:.*not multiples of 32")
def test_shortcut_sampling_by_hand():
    # previous 1x4x4 of zeros (a conv with zero weights), from = the 1x2x2 input: added at (0,0),
    # (0,2), (2,0), (2,2); from = an 8x8 input on a 4x4 previous: every second pixel, row and column
    small = cfg("[convolutional]\nfilters=1\nsize=1\nstride=1\nactivation=linear", "[upsample]\nstride=2",
                "[shortcut]\nfrom=-2", width=2, channels=1)
    model = darknet_py.build_model(small.encode()).eval()
    with torch.no_grad():
        model.layers[0].conv.weight.fill_(1.0)
        model.layers[0].conv.bias.zero_()
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    expect = [[2, 1, 4, 2], [1, 1, 2, 2], [6, 3, 8, 4], [3, 3, 4, 4]]
    assert model(x)[0][0, 0].tolist() == expect
    # previous = 2x2 block maxima of a 4x4 ramp, from = the ramp: from[2j, 2i] added
    large = cfg("[convolutional]\nfilters=1\nsize=1\nstride=1\nactivation=linear", "[maxpool]\nsize=2\nstride=2",
                "[shortcut]\nfrom=-2", width=4, channels=1)
    model = darknet_py.build_model(large.encode()).eval()
    with torch.no_grad():
        model.layers[0].conv.weight.fill_(1.0)
        model.layers[0].conv.bias.zero_()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert model(x)[0][0, 0].tolist() == [[5 + 0, 7 + 2], [13 + 8, 15 + 10]]


def test_shortcut_weights_file_order_and_round_trip(tmp_path):
    """per_channel with 2 from layers and 6 channels: (2+1)*6 floats, [input][channel]."""
    text = cfg(SHORTCUT_CASES["per_channel_softmax"])
    path, weights, model = written(tmp_path, text)
    shortcut = model.layers[3]
    assert tuple(shortcut.weights.shape) == (3, 6)
    data = weights.read_bytes()
    convs = sum(t.numel() for layer in model.layers[:3] for _, t in layer.darknet_tensors())
    tail = np.frombuffer(data, "<f4", offset=20 + 4 * convs)
    assert tail.size == 18 and np.array_equal(tail.reshape(3, 6), shortcut.weights.detach().numpy())
    assert weights_bytes(model) == data  # load -> save: byte-identical
    again = tmp_path / "again.weights"
    model.save_weights(again)
    assert again.read_bytes() == data
    per_feature = darknet_py.build_model(cfg(SHORTCUT_CASES["per_feature_relu"]).encode())
    assert tuple(per_feature.layers[3].weights.shape) == (3,)
    assert per_feature.layers[3].weights.tolist() == [1.0, 1.0, 1.0]  # make_shortcut_layer's initial weights


def test_shortcut_weights_reach_the_output(tmp_path):
    text = cfg(SHORTCUT_CASES["per_channel_relu"])
    path, weights, model = written(tmp_path, text)
    x = make_input()
    before = ours_out(model, x)
    with torch.no_grad():
        model.layers[3].weights[1].fill_(-1.0)  # relu: input 1 (layer 2) drops out
    after = ours_out(model, x)
    assert rel_err(before, after) > 1e-2
    ref = RefNet(text, weights_bytes(model)).forward(x.double().numpy())
    assert rel_err(after, ref) < RTOL


@needs_darknet_importer
def test_shortcut_channels_differ_matches_opencv(tmp_path):
    text = cfg(conv(8, 3) + "\n\n" + conv(5, 3) + "\n\n[shortcut]\nfrom=-2\nactivation=leaky")
    path, weights, model = written(tmp_path, text)
    x = make_input()
    assert rel_err(ours_out(model, x), opencv_forward(path, weights, x)) < RTOL


# ============================================================================ resnet50

def test_resnet50_matches_float64_reference(tmp_path):
    """pjreddie's resnet50.cfg at 64 px: shortcuts from 2x larger layers with half the channels.
    OpenCV 4.x cannot run it (its Eltwise asserts equal shapes), so the reference is RefNet."""
    text = sized_cfg_text(ref_path("pjreddie", "cfg", "resnet50.cfg"), 64)
    logits_text = text[:text.rindex("[softmax]")]
    path = tmp_path / "resnet50.cfg"
    path.write_text(logits_text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = darknet_py.build_model(path)
    nd = model.netdef
    sampled = [s for s in nd.specs
               if type(s).__name__ == "ShortcutSpec" and nd.shapes[s.source][1:] != nd.shapes[s.index][1:]]
    assert len(sampled) == 3 and all(nd.shapes[s.source][1] == 2 * nd.shapes[s.index][1] for s in sampled)
    g = torch.Generator().manual_seed(0)

    def smooth():
        return torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear",
                                               align_corners=False)
    calibration, x = smooth(), smooth()
    randomize(model, calibration, seed=1)
    weights = tmp_path / "resnet50.weights"
    model.save_weights(weights)
    loaded = darknet_py.load(path, weights)
    ours = ours_out(loaded, x).reshape(-1)
    ref = RefNet(logits_text, weights.read_bytes()).forward(x.double().numpy()).reshape(-1)
    assert rel_err(ours, ref) < RTOL
    assert ours.argmax() == ref.argmax() and np.std(ref) > 1e-3


# ============================================================================ export

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
# darknet_py/export.py's _FusedConv re-creates a conv from stride/padding/groups and the folded
# kernel: it needs the dilation, the xnor input binarisation and the antialiasing blur from the block.
NEEDS_EXPORT_CHANGE = {
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
def test_new_keys_export_to_onnx(case, tmp_path):
    _export(tmp_path, EXPORTABLE[case])


@pytest.mark.parametrize("case", list(NEEDS_EXPORT_CHANGE))
def test_conv_keys_export_to_onnx(case, tmp_path):
    _export(tmp_path, NEEDS_EXPORT_CHANGE[case])


# ============================================================================ refused values

BAD = [
    # (sections, the cfg line the error names, needles)
    (conv(4, 3, "dilation=2").replace("pad=1", "pad=0"), "dilation=2", ["dilation=2", "padding = (size-1)/2"]),
    (conv(4, 3, "dilation=0"), "dilation=0", ["expected a value >= 1"]),
    (conv(4, 3, "xnor=2"), "xnor=2", ["expected one of 0, 1"]),
    (conv(4, 3, "binary=yes"), "binary=yes", ["expected an integer"]),
    (conv(4, 3, "flipped=-1"), "flipped=-1", ["expected one of 0, 1"]),
    (conv(4, 3, "antialiasing=3"), "antialiasing=3", ["expected one of 0, 1, 2"]),
    (conv(4, 3, "stride_x=0"), "stride_x=0", ["expected a value >= 1"]),
    (conv(4, 3, "share_index=0"), "share_index=0", ["not supported", "another layer's weights"]),
    (conv(4, 3, "assisted_excitation=1"), "assisted_excitation=1", ["not supported"]),
    (conv(4, 3, "coordconv=1"), "coordconv=1", ["not supported", "CUDA"]),
    (conv(4, 3, "numload=2"), "numload=2", ["not supported", ".weights"]),
    (conv(4, 3) + "\n\n[maxpool]\nmaxpool_depth=1\nout_channels=5", "out_channels=5", ["exceeds the 4 input"]),
    (conv(4, 3) + "\n\n[maxpool]\nmaxpool_depth=1\nantialiasing=1", "antialiasing=1", ["maxpool_depth", "blur"]),
    (conv(4, 3) + "\n\n[maxpool]\nsize=2\nantialiasing=4", "antialiasing=4", ["expected one of 0, 1, 2"]),
    (conv(4, 3) + "\n\n[maxpool]\nsize=2\nmaxpool_zero_nonmax=1", "maxpool_zero_nonmax=1", ["not supported", "CUDA"]),
    (conv(4, 3) + "\n\n[maxpool]\nstride_y=0", "stride_y=0", ["expected a value >= 1"]),
    (conv(4, 3) + "\n\n[upsample]\nstride=-33", "stride=-33", ["to nothing"]),
    (conv(4, 3) + "\n\n[upsample]\nstride=0", "stride=0", ["non-zero"]),
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nweights_type=per_pixel", "weights_type=per_pixel",
     ["not supported", "per_feature, per_layer, per_channel"]),
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nweights_type=per_feature\nweights_normalization=l2",
     "weights_normalization=l2", ["not supported", "relu, avg_relu, softmax"]),
    # w ratio 32/32 = 1 but h ratio 32/16 = 2: Darknet's shortcut_cpu asserts
    (conv(4, 3) + "\n\n" + conv(4, 3, "stride_y=2\nstride_x=1") + "\n\n[shortcut]\nfrom=-2", "[shortcut]",
     ["layer 0 of shape 32x32x4", "layer 1 of shape 32x16x4", "ratios differ"]),
    (conv(4, 3) + "\n\n" + conv(4, 3, stride=2) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2,-3", "from=-2,-3",
     ["layer 0 of shape 32x32x4", "several from layers", "not supported"]),
    (conv(4, 3) + "\n\n" + conv(4, 3, stride=2) + "\n\n[shortcut]\nfrom=-2\nweights_type=per_channel", "from=-2",
     ["weights_type=per_channel", "equal in width x height"]),
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nalpha=0.5", "alpha=0.5", ["not supported"]),
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nactivation=hard_mish", "activation=hard_mish",
     ["not supported on [shortcut]", "[convolutional]", "outputs 0"]),
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nactivation=normalize_channels",
     "activation=normalize_channels", ["not supported on [shortcut]"]),
    (conv(4, 3) + "\n\n[connected]\noutput=4\nactivation=mish", "activation=mish",
     ["not supported on [connected]", "[convolutional], [shortcut]"]),
    (conv(4, 3) + "\n\n[connected]\noutput=4\nactivation=normalize_channels_softmax",
     "activation=normalize_channels_softmax", ["not supported on [connected]"]),
    (conv(4, 3, act="normalise_channels"), "activation=normalise_channels", ["did you mean 'normalize_channels'"]),
]


@pytest.mark.parametrize("sections, line, needles", BAD, ids=[b[1] for b in BAD])
def test_bad_values_name_the_line(sections, line, needles, tmp_path):
    text = cfg(sections)
    expect_cfg_error(text, line_of(text, line), *needles, path=tmp_path / "bad.cfg")


@pytest.mark.parametrize("sections, key", [
    (conv(4, 3) + "\n\n[maxpool]\nsize=2\nout_channels=2", "out_channels"),
    (conv(4, 3) + "\n\n" + conv(4, 3) + "\n\n[shortcut]\nfrom=-2\nweights_normalization=relu", "weights_normalization"),
])
def test_keys_without_effect_warn(sections, key, tmp_path):
    text = cfg(sections)
    path = tmp_path / "w.cfg"
    path.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith(f"{key}="))
    with pytest.warns(UserWarning, match=f"{path}:{line}: .*no effect"):
        darknet_py.parse_network(path)


def test_conv_training_keys_and_bin_output_are_accepted(tmp_path):
    text = cfg(conv(4, 3, "stopbackward=1\ntrain_only_bn=1\nbin_output=1"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nd = darknet_py.parse_network(text.encode())
    assert nd.shapes[0] == (4, 32, 32)
