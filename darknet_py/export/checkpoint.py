"""A PyTorch checkpoint (``.pt``, darknet_py.checkpoint) as an export: written, loaded back with
``torch.load(weights_only=True)`` and compared with the model on the sample photo."""
from __future__ import annotations

import os

import numpy as np
import torch

from ..checkpoint import checkpoint_names, load_checkpoint, save_checkpoint
from ..graph import DarknetModel
from .check import ExportReport, check_tolerance, compare, reference, sample_input
from .graphs import INPUT_NAME, RawHeads, check_model, eval_mode, output_names


def export_checkpoint(model: DarknetModel, path, *, sample: np.ndarray | None = None) -> ExportReport:
    """Write ``model`` as a checkpoint at ``path``; the reloaded file must give the model's outputs
    exactly (the same float32 tensors, the same cfg)."""
    check_model(model)
    spath = os.fspath(path)
    with eval_mode(model):
        save_checkpoint(model, spath)
        back = load_checkpoint(spath).eval()
        x = sample_input(model, sample).to(next(model.parameters()).device)
        names = output_names(model, decode=False)
        got = reference(RawHeads(back.to(x.device)).eval(), x)
        max_abs, max_rel = compare(got, reference(RawHeads(model).eval(), x), names)
    c, h, w = model.netdef.input_shape
    report = ExportReport(spath, "pt", None, [(INPUT_NAME, [1, c, h, w])],
                          [(n, [1, *model.netdef.shapes[i]]) for n, i in zip(names, model.heads)],
                          os.path.getsize(spath), max_abs, max_rel, "float32", [1],
                          f"torch.load(weights_only=True) (torch {torch.__version__})", "PyTorch (float32)", 0.0,
                          notes=[f"{len(checkpoint_names(back))} tensors in .weights order, the cfg text and the "
                                 "Darknet header; darknet-py convert writes it back as .weights"])
    return check_tolerance(report)


__all__ = ["export_checkpoint"]
