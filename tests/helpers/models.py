"""The single home of test models with calibrated random weights (darknet_py.random_weights.randomize):
built from a cfg and, for the readers that take files (OpenCV, the CLI, load), written out as a cfg
file and a .weights file."""
from __future__ import annotations

from pathlib import Path

import darknet_py
from darknet_py.random_weights import randomize


def random_model(cfg: str | Path, x=None, seed: int = 0, **randomize_kw):
    """darknet_py.build_model(cfg) (a cfg file, or a cfg text) with calibrated random weights:
    randomize on the input ``x`` (None: randomize's own smooth image); in eval mode."""
    model = darknet_py.build_model(cfg.encode() if isinstance(cfg, str) else cfg)
    return randomize(model, x, seed=seed, **randomize_kw)


def write_random_model(directory: Path, name: str, cfg_text: str, x=None, seed: int = 0,
                       **randomize_kw) -> tuple[Path, Path, darknet_py.graph.DarknetModel]:
    """``cfg_text`` written to directory/NAME.cfg, its ``random_model`` written to directory/NAME.weights:
    -> (cfg path, weights path, model)."""
    cfg = directory / f"{name}.cfg"
    cfg.write_text(cfg_text)
    model = random_model(cfg, x, seed, **randomize_kw)
    weights = directory / f"{name}.weights"
    model.save_weights(weights)
    return cfg, weights, model
