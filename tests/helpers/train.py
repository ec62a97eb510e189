"""The single home of what the training tests (tests/train, tests/cli) share: the small 6-class network
with a training [net] section, the overfitting set of four generated images, and the iteration lines
of a training log."""
from __future__ import annotations

import re
from pathlib import Path

from darknet_py.synth import make_dataset
from tests.helpers.cfgs import fixture_cfg_text


def train_cfg_text(size: int = 96, **net) -> str:
    """The small 6-class network (tests/fixtures/cfg/tiny-shapes.cfg) with a training [net] section."""
    keys = {"batch": 4, "subdivisions": 1, "learning_rate": 0.01, "momentum": 0.9, "decay": 0.0005,
            "burn_in": 10, "max_batches": 40, "policy": "steps", "steps": "30", "scales": ".1",
            "hue": 0, "saturation": 1, "exposure": 1, "flip": 0}
    keys.update(net)
    head = "[net]\n" + "".join(f"{k}={v}\n" for k, v in keys.items()) + f"width={size}\nheight={size}\nchannels=3\n"
    body = fixture_cfg_text("tiny-shapes").split("channels=3\n", 1)[1]
    return head + body.replace("num=6\n", "num=6\njitter=0\nrandom=0\n")


def write_train_cfg(directory: Path, name: str = "tiny-train.cfg", **net) -> Path:
    """``train_cfg_text(**net)`` written to directory/NAME."""
    p = directory / name
    p.write_text(train_cfg_text(**net))
    return p


def make_overfit_set(root: Path):
    """Four generated images under root/data; the valid list is the training list (an overfitting set):
    -> (the SynthDataset, its overfit.data)."""
    ds = make_dataset(root / "data", train=4, valid=1, seed=3, min_side=96, max_side=128, max_objects=3)
    data = ds.root / "overfit.data"
    data.write_text(ds.data.read_text().replace("valid = valid.txt", "valid = train.txt")
                    .replace("annotations = instances_valid.json", "annotations = instances_train.json"))
    return ds, data


def log_lines(lines):
    """The iteration lines ("N: loss, avg, rate ...") of a training log."""
    return [ln for ln in lines if re.match(r"^\d+: ", ln)]
