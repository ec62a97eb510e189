"""A float64 NumPy Darknet for the layer-key tests: ``RefNet`` reads a cfg text and the .weights bytes
itself and runs [convolutional], [maxpool], [upsample], [shortcut], [route], [avgpool] and [softmax]
batch-1 per image, written from Darknet's C (pjreddie and AlexeyAB src/*.c), indexing flat buffers as
the C loops do; ``act_c`` is every activation of src/activations.[ch]. No darknet_py code computes a
reference here: the cfg is read with the read_cfg port of tests/helpers/reference.py.
"""
from __future__ import annotations

import struct

import numpy as np

from tests.helpers.reference import cfg_sections

FLT_MAX = float(np.finfo(np.float32).max)


def act_c(x: np.ndarray, name: str) -> np.ndarray:
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


def conv_c(x, w, groups, stride, pad, dilation=1):
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


def blur_c(y, kind, stride):
    """make_convolutional_layer's antialiasing input_layer: depthwise 3x3 [1 2 1]/16 outer, pad 1 (kind 2:
    2x2 of 1/4, pad 0), linear, zero bias."""
    c = y.shape[1]
    if kind == 2:
        k, pad = np.full((2, 2), 1 / 4.), 0
    else:
        k, pad = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16., 1
    return conv_c(y, np.broadcast_to(k, (c, 1) + k.shape), c, stride, pad)


class RefNet:
    """A float64 Darknet forward (batch-1 semantics per image) for the keys under test."""

    def __init__(self, text: str, weights: bytes, bn: str = "pjreddie-cpu"):
        """``bn``: the batch-norm formula -- pjreddie's normalize_cpu (``sqrt(var) + .000001f``) or
        ``darknet-gpu``, AlexeyAB's normalize_cpu and every GPU build (``sqrt(var + .00001f)``)."""
        assert bn in ("pjreddie-cpu", "darknet-gpu"), bn
        self.bn = bn
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
        """The last layer's output."""
        return self.outputs(x)[-1]

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Every layer's output."""
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
                # AlexeyAB's groups/group_id: each input's channels cut in `groups`, part `group_id` taken
                groups, gid = int(opt.get("groups", 1)), int(opt.get("group_id", 0))
                parts = [outs[i + f if f < 0 else f] for f in map(int, opt["layers"].split(","))]
                y = np.concatenate([p[:, p.shape[1] // groups * gid:p.shape[1] // groups * (gid + 1)]
                                    for p in parts], 1)
            elif kind in ("yolo", "Gaussian_yolo"):
                y = prev  # the head's input: what DarknetModel(raw=True) returns, before the head's logistic
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
        return outs

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
        y = conv_c(x, w, groups, host, padding * dilation, dilation)
        # convolutional_out_height/width: Darknet's own size, which the dilated im2col must match
        h, w_ = x.shape[2:]
        assert y.shape[2:] == ((h + 2 * padding - k) // host[0] + 1, (w_ + 2 * padding - k) // host[1] + 1)
        if bn and self.bn == "darknet-gpu":  # AlexeyAB's normalize_cpu / cuDNN, then scale_bias, add_bias
            y = (y - mean[:, None, None]) / np.sqrt(var[:, None, None] + .00001)
            y = y * scales[:, None, None]
        elif bn:  # pjreddie's normalize_cpu, scale_bias, add_bias
            y = (y - mean[:, None, None]) / (np.sqrt(var[:, None, None]) + .000001)
            y = y * scales[:, None, None]
        y = act_c(y + biases[:, None, None], opt.get("activation", "logistic"))
        return blur_c(y, aa, (sy, sx)) if aa else y

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
        return blur_c(out, aa, (sy, sx)) if aa else out

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
            return act_c(out, act)
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
        return act_c(out.reshape(prev.shape), act)
