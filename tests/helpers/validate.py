"""The single home of what the evaluation tests (tests/test_validate.py, tests/cli) share: a generated
shapes dataset with the small 6-class network's random weights, and variants of its .data file."""
from __future__ import annotations

from pathlib import Path

from darknet_py.synth import make_dataset
from tests.helpers.cfgs import fixture_cfg_text
from tests.helpers.models import write_random_model


def make_eval_set(root: Path):
    """16 validation images (and 2 training ones) under root/data, and tiny-shapes with random weights
    that give a fair number of detections at Darknet's valid threshold: -> (dataset, cfg, weights)."""
    ds = make_dataset(root / "data", train=2, valid=16, seed=5, min_side=96, max_side=320, max_objects=5)
    cfg, weights, _ = write_random_model(root, "tiny-shapes", fixture_cfg_text("tiny-shapes"), seed=11,
                                         objectness_rate=0.004)
    return ds, cfg, weights


def with_data_keys(ds, tmp_path: Path, **changes) -> Path:
    """A copy of the generated .data file (beside it, so its relative paths still resolve) with keys changed."""
    lines = {}
    for raw in ds.data.read_text().splitlines():
        if "=" in raw:
            k, v = (s.strip() for s in raw.split("=", 1))
            lines[k] = v
    for k, v in changes.items():
        if v is None:
            lines.pop(k, None)
        else:
            lines[k] = v
    p = ds.root / f"variant-{tmp_path.name}.data"
    p.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
    return p
