"""What the layer-kind tests (tests/layers, tests/export/test_layer_keys.py, tests/parity/test_resnet50.py)
share: small generated cfgs (32 px input) with random weights written by our writer and reloaded, run
against a float64 reference (tests/helpers/float64_net.py); the tables of those cfgs per kind;
calibrated models, hand-written weights files and every layer's output for the AlexeyAB and pjreddie
kinds; and the check that a key without effect warns.

Tolerance (``RTOL``): max |ours - reference| / max |reference| per output, 1e-4 (float32 against
float64; measured <= 1e-6 for the small cfgs, 5e-6 for resnet50).
"""
from __future__ import annotations

import math
import struct
import warnings

import numpy as np
import pytest
import torch

from darknet_py.detector import load
from darknet_py.graph import build_model, parse_network
from tests.helpers.cfgs import conv
from tests.helpers.float64_net import RefNet
from tests.helpers.models import random_model
from tests.helpers.numeric import rel_err

RTOL = 1e-4
# A .weights header of version 0.2 (an 8-byte seen), seen = 0: what hand-written files start with.
HEADER = struct.pack("<iiiQ", 0, 2, 0, 0)


# ------------------------------------------------------------------------------------ models and files

def random_file_weights(model, seed: int = 0, std: float = 1.0):
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
        model = model or random_file_weights(build_model(path), seed, std)
    weights = tmp_path / f"{name}.weights"
    model.save_weights(weights)
    loaded = load(path, weights, channels_last=False)
    return path, weights, loaded


def make_input(size=32, channels=3, n=2, seed=1):
    """A batch of ``n`` uniform random square images."""
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def ours_out(model, x) -> np.ndarray:
    """The model's last output on ``x``, float64 NumPy."""
    with torch.no_grad():
        return model(x)[-1].double().numpy()


def check_against_ref(tmp_path, text, x=None, seed=0, std=1.0, tol=RTOL) -> float:
    """``written``'s model on ``x`` (default ``make_input()``) against RefNet from the same files: the
    relative error, asserted below ``tol``."""
    path, weights, model = written(tmp_path, text, seed=seed, std=std)
    x = make_input() if x is None else x
    ref = RefNet(text, weights.read_bytes()).forward(x.double().numpy())
    diff = rel_err(ours_out(model, x), ref)
    assert diff < tol, diff
    return diff


def write_float_weights(path, floats) -> bytes:
    """A .weights file of ``floats`` (float32, in the order given) after ``HEADER``; -> its bytes."""
    data = HEADER + np.asarray(floats, "<f4").tobytes()
    path.write_bytes(data)
    return data


def calibrated_model(text: str, seed: int = 0):
    """The model of a cfg text with calibrated random weights (convolutions and [implicit]), calibrated
    on a uniform random input drawn with ``seed``; in eval mode."""
    c, h, w = parse_network(text.encode()).input_shape
    return random_model(text, torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(seed)), seed=seed)


@torch.no_grad()
def layer_outputs(model, x):
    """Every layer's output (float64 NumPy), running the graph as DarknetModel does."""
    outs = []
    for i, layer in enumerate(model.layers):
        args = [x if j < 0 else outs[j] for j in model.inputs[i]]
        outs.append(layer(*args))
    return [o.double().numpy() for o in outs]


def expect_no_effect_warning(text: str, key: str, directory) -> None:
    """Parsing ``text`` (written to directory/w.cfg) warns, naming the file and the line of ``key=``,
    that the key has no effect."""
    path = directory / "w.cfg"
    path.write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith(f"{key}="))
    with pytest.warns(UserWarning, match=f"{path}:{line}: .*no effect"):
        parse_network(path)


# ------------------------------------------------------------------------------------ the cfgs per kind

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


MAXPOOL_CASES = {
    "depth1": conv(6, 3) + "\n\n[maxpool]\nmaxpool_depth=1",
    "depth2": conv(6, 3) + "\n\n[maxpool]\nmaxpool_depth=1\nout_channels=2",
    "depth4_uneven": conv(6, 3) + "\n\n[maxpool]\nmaxpool_depth=1\nout_channels=4\nsize=3\nstride=2",
    "antialiasing1": conv(4, 3) + "\n\n[maxpool]\nsize=2\nstride=2\nantialiasing=1",
    "antialiasing2": conv(4, 3) + "\n\n[maxpool]\nsize=3\nstride=2\nantialiasing=2",
    "stride_x_y": conv(4, 3) + "\n\n[maxpool]\nsize=3\nstride_x=2\nstride_y=1",
    "size_defaults_to_stride": conv(4, 3) + "\n\n[maxpool]\nstride=3",
}


UPSAMPLE_CASES = {
    "reverse2": conv(4, 3) + "\n\n[upsample]\nstride=-2",
    "reverse4_scale": conv(4, 3) + "\n\n[upsample]\nstride=-4\nscale=0.0625",
    "reverse3_not_dividing": conv(4, 3) + "\n\n[upsample]\nstride=-3",  # 32 = 10*3 + 2
    "reverse5_not_dividing": conv(3, 3, stride=2) + "\n\n[upsample]\nstride=-5\nscale=2.5",  # 16 = 3*5 + 1
    "scale": conv(4, 3) + "\n\n[upsample]\nstride=2\nscale=0.5",
}


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
