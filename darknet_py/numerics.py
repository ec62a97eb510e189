"""Which Darknet a network is compared with: pjreddie's tree or AlexeyAB's, and the arithmetic that
differs between them (plain data and small functions; torch only for the formulas on tensors).

The two trees read the same files but compute some things differently. The one that matters most
is batch normalisation at inference:

- ``pjreddie-cpu``: pjreddie's CPU ``normalize_cpu``, ``(x - mean) / (sqrt(var) + .000001f)``.
- ``darknet-gpu``: ``(x - mean) / sqrt(var + .00001f)``, what AlexeyAB's ``normalize_cpu`` and
  ``fuse_conv_batchnorm`` compute and what pjreddie's own GPU build (cuDNN) computes. The official
  weights of both trees were trained on GPUs, in this form.

The two agree where variances are large and part where they are small (near-dead channels of a
trained network): at var = 1e-6 the denominators are 2e-6 and 3.3e-3.

A *tree* is ``pjreddie``, ``alexeyab`` or ``auto``; :func:`choose` turns it into a :class:`Choice`
(the tree followed, its numerics and why). ``auto`` follows AlexeyAB's tree when the cfg uses
anything pjreddie's parser does not read (a key, a layer kind or an activation of AlexeyAB's), and
pjreddie's otherwise: a plain YOLOv3 cfg is compared with pjreddie's CPU Darknet, the reference the
project's parity tests were built on.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .errors import UsageError

TREES = ("auto", "pjreddie", "alexeyab")
NUMERICS = ("pjreddie-cpu", "darknet-gpu")
TREE_NUMERICS = {"pjreddie": "pjreddie-cpu", "alexeyab": "darknet-gpu"}

# pjreddie's epsilon, added to the standard deviation (normalize_cpu, src/blas.c).
PJREDDIE_CPU_BN_EPS = 1e-6
# AlexeyAB's and every GPU build's epsilon, added to the variance inside the root (.00001f).
DARKNET_GPU_BN_EPS = 1e-5

# Everything pjreddie/darknet's src/parser.c reads (option_find* keys, section names) and
# src/activations.c names: what a cfg may use and still be one of pjreddie's.
PJREDDIE_KEYS = frozenset("""
B1 B2 absolute activation adam alpha anchors angle aspect background batch batch_normalize beta bias_match
binary burn_in center channels class_scale classes classfix clip coord_scale coords crop_height crop_width decay
dontload dontloadscales dontsave dot eps exposure extra filters flatten flip flipped forced from gamma groups
height hidden_filters hue ids ignore_thresh inputs jitter kappa layers learning_rate log map mask mask_scale max
max_batches max_crop max_ratio min_crop min_ratio momentum noadjust noloss noobj noobject_scale notruth num
numload object_scale onlyforward output output_filters pad padding policy power probability random ratio reorg
rescore reverse saturation scale scales shift shortcut side size smooth softmax spatial sqrt step steps
stopbackward stride subdivisions tanh temperature thresh time_steps tree truth truth_thresh type width xnor
""".split())
PJREDDIE_KINDS = frozenset("""
shortcut crop cost detection region yolo iseg local conv convolutional deconv deconvolutional activation logistic
l2norm net network crnn gru lstm rnn conn connected max maxpool reorg avg avgpool dropout lrn normalization
batchnorm soft softmax route upsample
""".split())
PJREDDIE_ACTIVATIONS = frozenset("logistic loggy relu elu selu relie plse hardtan lhtan linear ramp leaky tanh "
                                 "stair".split())


def bn_denominator(var, numerics: str):
    """The divisor of batch normalisation at inference for ``numerics`` (a tensor or an array of
    variances): ``sqrt(var) + 1e-6`` (pjreddie-cpu) or ``sqrt(var + 1e-5)`` (darknet-gpu)."""
    if numerics == "darknet-gpu":
        return (var + DARKNET_GPU_BN_EPS) ** 0.5
    if numerics == "pjreddie-cpu":
        return var ** 0.5 + PJREDDIE_CPU_BN_EPS
    raise ValueError(f"numerics must be one of {', '.join(NUMERICS)}, got {numerics!r}")


def train_batchnorm(y, bn, numerics: str):
    """Batch normalisation of a training forward pass, ``bn`` an ``nn.BatchNorm2d`` holding the
    scales, biases and rolling statistics (which move by .01 a batch either way):

    - ``darknet-gpu``: ``bn`` itself, the cuDNN form every GPU build uses (biased variance inside
      the root with 1e-5);
    - ``pjreddie-cpu``: pjreddie's CPU forward_batchnorm_layer: the unbiased variance
      (``variance_cpu`` divides by n - 1), ``(x - mean) / (sqrt(var) + 1e-6)``, in float32, and its
      backward_batchnorm_layer, which is not this formula's derivative (see
      :func:`pjreddie_cpu_batchnorm`).
    """
    if numerics != "pjreddie-cpu":
        return bn(y)
    import torch  # only a training pass gets here: the rest of this module stays torch-free

    x = y.float()
    dims = (0, 2, 3)
    with torch.no_grad():  # Darknet's backward carries the statistics' share itself
        mean = x.mean(dims)
        var = x.var(dims, unbiased=True)
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.running_mean.mul_(1 - bn.momentum).add_(bn.momentum * mean)
            bn.running_var.mul_(1 - bn.momentum).add_(bn.momentum * var)
            bn.num_batches_tracked += 1
    return pjreddie_cpu_batchnorm(x, bn.weight, bn.bias, mean, var).to(y.dtype)


_PJREDDIE_BN = None


def pjreddie_cpu_batchnorm(x, weight, bias, mean, var):
    """pjreddie's CPU batch norm in training, forward and backward, as an autograd function.

    Forward: ``(x - mean) / (sqrt(var) + 1e-6) * weight + bias``. Backward is Darknet's
    backward_batchnorm_layer, which differentiates the GPU form instead: mean_delta_cpu,
    variance_delta_cpu and normalize_delta_cpu put ``var + 1e-5`` inside the root (and divide the
    variance's share by n, not the forward's n - 1); the scale's gradient uses the forward's x_norm.
    ``mean`` and ``var`` are the batch's (no gradient of their own: the formulas carry it).
    """
    global _PJREDDIE_BN
    if _PJREDDIE_BN is None:
        _PJREDDIE_BN = _make_pjreddie_bn()
    return _PJREDDIE_BN.apply(x, weight, bias, mean, var)


def _make_pjreddie_bn():
    import torch

    shape = (1, -1, 1, 1)
    dims = (0, 2, 3)

    class PjreddieCpuBatchNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias, mean, var):
            centred = x - mean.view(shape)
            x_norm = centred / (var.sqrt() + PJREDDIE_CPU_BN_EPS).view(shape)
            ctx.save_for_backward(centred, x_norm, weight, var)
            return x_norm * weight.view(shape) + bias.view(shape)

        @staticmethod
        def backward(ctx, delta):
            centred, x_norm, weight, var = ctx.saved_tensors
            n = centred.numel() // centred.shape[1]  # spatial * batch
            bias_updates = delta.sum(dims)                      # backward_bias
            scale_updates = (delta * x_norm).sum(dims)          # backward_scale_cpu
            d = delta * weight.view(shape)                      # scale_bias(l.delta, l.scales)
            root = var + DARKNET_GPU_BN_EPS                     # Darknet's CPU backward: 1e-5 inside
            mean_delta = d.sum(dims) * -root.rsqrt()            # mean_delta_cpu
            variance_delta = (d * centred).sum(dims) * (-.5 * root.pow(-1.5))  # variance_delta_cpu
            dx = (d * root.rsqrt().view(shape) + variance_delta.view(shape) * 2. * centred / n
                  + mean_delta.view(shape) / n)                 # normalize_delta_cpu
            return dx, scale_updates, bias_updates, None, None

    return PjreddieCpuBatchNorm


@dataclass(frozen=True)
class Choice:
    """The Darknet a network follows: ``tree`` (pjreddie or alexeyab), its ``numerics`` and why."""

    tree: str
    numerics: str
    reason: str

    def line(self) -> str:
        """One line for stderr, so a user knows which Darknet the results are comparable with."""
        return f"following {self.tree}'s Darknet ({self.numerics} arithmetic): {self.reason}"


def alexeyab_feature(sections: Iterable) -> str | None:
    """The first thing in the cfg that only AlexeyAB's tree reads -- ``[kind] key=value (line N)``
    -- or None. ``sections`` are darknet_py.config.reader Sections (kind, line, options)."""
    for section in sections:
        kind = section.kind.lower()
        if kind not in PJREDDIE_KINDS:
            return f"[{section.kind}] (line {section.line})"
        for key, opt in section.options.items():
            if key not in PJREDDIE_KEYS:
                return f"[{section.kind}] {key}= (line {opt.line})"
            if key == "activation" and str(opt.value).strip().lower() not in PJREDDIE_ACTIVATIONS:
                return f"[{section.kind}] activation={opt.value} (line {opt.line})"
    return None


_DEFAULT_TREE: contextvars.ContextVar[str | None] = contextvars.ContextVar("darknet_py_tree", default=None)
_REPORT: contextvars.ContextVar[Callable[[Choice], None] | None] = contextvars.ContextVar("darknet_py_tree_report",
                                                                                         default=None)


@contextlib.contextmanager
def using(tree: str | None, report: Callable[[Choice], None] | None = None) -> Iterator[None]:
    """Inside the block, a model whose tree is not given follows ``tree`` (None: auto), and every
    choice made is passed to ``report`` (the command line's ``--darknet`` and its stderr line)."""
    if tree is not None:
        _choose(tree.lower(), ())  # a bad name fails here, before any work
    t1, t2 = _DEFAULT_TREE.set(tree), _REPORT.set(report)
    try:
        yield
    finally:
        _DEFAULT_TREE.reset(t1)
        _REPORT.reset(t2)


def choose(tree: str | None, sections: Iterable) -> Choice:
    """The :class:`Choice` for ``tree`` (None: the :func:`using` block's, else ``auto``) and the
    cfg's sections."""
    choice = _choose((tree or _DEFAULT_TREE.get() or "auto").lower(), sections)
    report = _REPORT.get()
    if report is not None:
        report(choice)
    return choice


def _choose(tree: str, sections: Iterable) -> Choice:
    if tree not in TREES:
        err = UsageError(f"darknet={tree!r}: expected one of {', '.join(TREES)}")
        err.option = ("darknet", tree)
        raise err
    if tree != "auto":
        return Choice(tree, TREE_NUMERICS[tree], "asked for")
    feature = alexeyab_feature(sections)
    if feature is not None:
        return Choice("alexeyab", TREE_NUMERICS["alexeyab"], f"the cfg uses AlexeyAB's {feature}")
    return Choice("pjreddie", TREE_NUMERICS["pjreddie"], "the cfg uses nothing beyond pjreddie's Darknet")


__all__ = ["Choice", "DARKNET_GPU_BN_EPS", "NUMERICS", "PJREDDIE_ACTIVATIONS", "PJREDDIE_CPU_BN_EPS",
           "PJREDDIE_KEYS", "PJREDDIE_KINDS", "TREES", "TREE_NUMERICS", "alexeyab_feature", "bn_denominator",
           "choose", "pjreddie_cpu_batchnorm", "train_batchnorm", "using"]
