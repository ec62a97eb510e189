"""PyTorch checkpoints (``.pt``) of a Darknet model, and the way back to ``.weights``.

A checkpoint is a plain ``torch.save`` dict that loads with ``torch.load(weights_only=True)``:

- ``state_dict``: the tensors of the ``.weights`` file, float32, in file order, named
  ``"<layer>_<kind>.<tensor>"`` (``"000_convolutional.bn.weight"``, ``"105_convolutional.conv.bias"``);
- ``cfg``: the cfg text the model was built from, so the file alone defines the network;
- ``input_size``: (width, height) of the network input (a cfg's size may have been overridden);
- ``header``: the Darknet header (major, minor, revision, seen, seen width), so that
  ``.weights -> .pt -> .weights`` is byte-identical.

Loading is strict, like ``load_state_dict(strict=True)``: every missing, unexpected or
mis-shaped tensor is listed in one error.
"""
from __future__ import annotations

import os
import warnings
import zipfile

import torch

from . import limits as budgets
from .errors import UsageError, WeightsError
from .files import atomic_output, note_input
from .graph import DarknetModel, build_model
from .weights import Header, count_floats, foreign_model, is_torch_file_head, layer_tensors, value_problems

FORMAT = "darknet-py checkpoint"
VERSION = 1


def checkpoint_names(model: DarknetModel) -> list[tuple]:
    """(readable name, tensor) for every tensor of the weights file, in file order."""
    out = []
    for i, tensors in layer_tensors(model):
        kind = model.netdef.sections[i + 1].kind
        out += [(f"{i:03d}_{kind}.{name}", t) for name, t in tensors]
    return out


def save_checkpoint(model: DarknetModel, path) -> None:
    """Write ``model`` as a checkpoint, atomically (darknet_py.files)."""
    if not model.netdef.cfg_text:
        raise UsageError("the model carries no cfg text (build it from a cfg file or bytes)")
    h = model.header or Header()
    state = {name: t.detach().to("cpu", torch.float32).contiguous().clone() for name, t in checkpoint_names(model)}
    payload = {"format": FORMAT, "version": VERSION, "cfg": model.netdef.cfg_text,
               "input_size": list(model.input_size), "state_dict": state,
               "header": [h.major, h.minor, h.revision, h.seen, h.seen_bytes],
               "darknet": model.darknet.tree}  # the tree it follows, so a reload computes the same
    spath = os.fspath(path)
    try:
        with atomic_output(spath) as fh:
            torch.save(payload, fh)
    except OSError as exc:
        raise WeightsError(f"cannot write checkpoint: {exc.strerror or exc}", spath) from None


def is_checkpoint(path) -> bool:
    """A zip (torch.save's format) or pickle file, by its magic bytes: a .pt given where weights
    are expected is read as what it is."""
    if budgets.special_file_problem(path):  # a FIFO would block the read forever
        return False
    try:
        with open(os.fspath(path), "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return is_torch_file_head(head)


def check_not_foreign(path: str) -> None:
    """Refuse a TorchScript module or an ONNX model given as a checkpoint, saying what it is and
    what a checkpoint is (torch.load's own message for them advises an unsafe load)."""
    budgets.check_regular_file(path, WeightsError)
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise WeightsError(f"cannot read checkpoint: {exc.strerror or exc}", path) from None
    kind = foreign_model(head, path)
    if kind:
        raise WeightsError(f"this is {kind} (an export), not a darknet-py checkpoint; a checkpoint is the .pt that "
                           "`darknet-py export --format pt` (darknet_py.checkpoint.save_checkpoint) writes, and only "
                           "a checkpoint or Darknet .weights can be read back or converted to .weights", path)


def check_checkpoint_size(path, model: DarknetModel | None = None, *, limits: bool | None = None) -> None:
    """Refuse, before torch.load reads anything, a checkpoint whose content would be larger than
    the tensors of ``model`` allow (or, without a model, than darknet_py.limits.MAX_PARAM_BYTES):
    the sizes come from the zip's directory (a few MB of deflated zeros can declare gigabytes) or,
    for a bare pickle, from stat."""
    spath = os.fspath(path)
    budgets.check_regular_file(spath, WeightsError)
    if model is not None:
        allowed, what = 4 * count_floats(model), "the cfg's tensors"
    elif budgets.enforced(limits):
        allowed, what = budgets.MAX_PARAM_BYTES, "the weights budget of darknet_py.limits"
    else:
        return
    allowed += budgets.CHECKPOINT_OVERHEAD_BYTES
    try:
        if zipfile.is_zipfile(spath):
            with zipfile.ZipFile(spath) as zf:
                size = sum(info.file_size for info in zf.infolist())
        else:
            size = os.path.getsize(spath)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise WeightsError(f"not a loadable PyTorch checkpoint: {exc}", spath) from None
    if size > allowed:
        err = WeightsError(f"checkpoint content is {size} bytes ({budgets.gib(size)}) uncompressed, more than "
                           f"{what} take ({allowed} bytes with {budgets.gib(budgets.CHECKPOINT_OVERHEAD_BYTES)} for "
                           "the rest); not read" + ("" if model is not None else "; pass limits=False to read it"),
                           spath)
        if model is None:
            err.option = ("limits", "False")
        raise err


def read_checkpoint(path, model: DarknetModel | None = None, *, limits: bool | None = None) -> dict:
    """The checkpoint's dict, after :func:`check_checkpoint_size` (against ``model`` when given)."""
    spath = os.fspath(path)
    note_input(spath, "checkpoint")
    check_not_foreign(spath)
    check_checkpoint_size(spath, model, limits=limits)
    try:
        payload = torch.load(spath, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise WeightsError(f"cannot read checkpoint: {exc.strerror or exc}", spath) from None
    except Exception as exc:  # the unpickler's errors have no common base class
        text = str(exc)
        if "weights_only" in text:
            # torch's text advises loading with weights_only=False, which runs the file's code
            text = ("it holds objects other than tensors and plain containers, which torch.load(weights_only=True) "
                    "refuses (darknet-py loads checkpoints no other way)")
        raise WeightsError(f"not a loadable darknet-py checkpoint: {text.splitlines()[0] if text else exc!r}",
                           spath) from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise WeightsError("not a darknet-py checkpoint (expected a dict with 'state_dict' and 'cfg')", spath)
    return payload


def load_state(model: DarknetModel, state: dict[str, torch.Tensor], path: str | None = None) -> None:
    """Copy a checkpoint's tensors into ``model``; all problems are reported together."""
    expected = dict(checkpoint_names(model))
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        problems.append(f"missing: {', '.join(missing[:5])}{more}")
    if unexpected:
        problems.append(f"unexpected: {', '.join(unexpected[:5])}"
                        + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else ""))
    for k, t in expected.items():
        if k in state and tuple(state[k].shape) != tuple(t.shape):
            problems.append(f"size mismatch for {k}: checkpoint {tuple(state[k].shape)}, cfg {tuple(t.shape)}")
    if problems:
        raise WeightsError("checkpoint does not fit the cfg: " + "; ".join(problems), path)
    where = {f"{i:03d}_{model.netdef.sections[i + 1].kind}.{name}": (i, name)
             for i, tensors in layer_tensors(model) for name, _ in tensors}
    with torch.no_grad():
        for k, t in expected.items():
            t.copy_(state[k])
            for problem in value_problems(model, *where[k], state[k].detach().to("cpu", torch.float32).numpy()):
                warnings.warn(f"{path or '<checkpoint>'}: {problem}", stacklevel=2)


def load_checkpoint(path, cfg=None, *, limits: bool | None = None, darknet: str | None = None) -> DarknetModel:
    """Build the model a checkpoint defines (or ``cfg`` when given) and load its tensors
    (``limits``: the budgets of darknet_py.limits, see :func:`check_checkpoint_size`). The model
    follows the Darknet tree stored in the checkpoint unless ``darknet`` names one (auto included)."""
    payload = read_checkpoint(path, limits=limits)
    width, height = payload.get("input_size", (None, None))
    if cfg is None:
        if "cfg" not in payload:
            raise WeightsError("checkpoint holds no cfg text: pass the cfg", os.fspath(path))
        model = build_model(payload["cfg"].encode("utf-8"), width=width, height=height, limits=limits)
    else:
        model = build_model(cfg, width=width, height=height, limits=limits)
    load_state(model, payload["state_dict"], os.fspath(path))
    header = payload.get("header")
    if header is not None:
        model.header = Header(*[int(v) for v in header])
    follow_stored_tree(model, payload, darknet)
    return model


def follow_stored_tree(model: DarknetModel, payload: dict, darknet: str | None = None) -> None:
    """``model`` follows the Darknet tree a checkpoint stored, unless ``darknet`` names one (auto
    included); a checkpoint written before trees were stored: auto."""
    stored = payload.get("darknet")
    model.set_darknet(darknet if darknet is not None else stored if isinstance(stored, str) else None)
