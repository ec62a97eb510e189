"""YOLO9000's class hierarchy (Darknet's ``tree``: src/tree.c ``read_tree``, ``hierarchy_predictions``,
``hierarchy_top_prediction``) and the grouped softmax of a ``[region] tree=`` head.

A tree file has one node per line, ``name parent`` with ``parent`` the line index (from 0) of the
parent node, -1 for a root. ``read_tree`` cuts the nodes into *groups*: a new group starts at
every line whose parent differs from the previous line's, so consecutive siblings form one group;
``child[p]`` is the group of p's children. The head applies a softmax within each group (the
conditional probability of a node given its parent); at detection time each node's probability
is multiplied by its parent's (``hierarchy_predictions``) and ``hierarchy_top_prediction`` walks
down from group 0 while the accumulated probability stays above ``hier_thresh``.

Files Darknet reads without complaint but would use inconsistently are refused with the line:
a parent that is not an earlier line (``hierarchy_predictions`` runs once over the lines in
order, so it would multiply by a not-yet-final parent; a parent past the end reads out of
bounds), the children of one node split in two runs (``child[p]`` would only know the last run),
a first line that is not a root (Darknet then opens an empty group 0 and every top prediction is
class 0), and blank or malformed lines (``sscanf`` would make them roots named "" or with a
garbage parent).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch

from .config.text import read_text
from .errors import DataError

Tensor = torch.Tensor
_INT_RE = re.compile(r"[+-]?\d+\Z", re.ASCII)


@dataclass(frozen=True)
class SoftmaxTree:
    """Darknet's ``tree`` struct, as plain tuples (node i is line i of the file)."""

    path: str | None
    names: tuple[str, ...]
    parent: tuple[int, ...]
    child: tuple[int, ...]          # group holding node i's children, -1 for a leaf
    group: tuple[int, ...]          # group of node i
    group_offset: tuple[int, ...]   # first node of each group
    group_size: tuple[int, ...]
    _depth_levels: tuple[tuple[int, ...], ...] = field(default=(), repr=False, compare=False)

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def groups(self) -> int:
        return len(self.group_size)

    @property
    def leaf(self) -> tuple[bool, ...]:
        return tuple(c < 0 for c in self.child)


def parse_tree_text(text: str, path: str | None = None) -> SoftmaxTree:
    """The text of a tree file -> SoftmaxTree (DataError with the file line on a bad file)."""
    names: list[str] = []
    parents: list[int] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the newline ending the last line
        lines = lines[:-1]
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        fields = line.split()
        if not fields:
            raise DataError("empty line: Darknet's read_tree would make it a root node named ''", path, lineno)
        if len(fields) > 2:
            raise DataError(f"expected 'name parent', found {line.strip()!r}", path, lineno)
        parent = -1  # sscanf("%s %d") leaves the parent at -1 when the line holds a name only
        if len(fields) == 2:
            if not _INT_RE.match(fields[1]):
                raise DataError(f"parent {fields[1]!r} of {fields[0]!r}: expected an integer line index "
                                "(-1 for a root)", path, lineno)
            parent = int(fields[1])
        n = len(names)
        if n == 0 and parent != -1:
            raise DataError(f"the first node {fields[0]!r} has parent {parent}: the first line must be a root "
                            "(parent -1)", path, lineno)
        if parent < -1 or parent >= n:
            raise DataError(f"parent {parent} of {fields[0]!r}: expected -1 or the index of an earlier line "
                            f"(0..{n - 1}); Darknet's hierarchy_predictions needs parents before children",
                            path, lineno)
        names.append(fields[0])
        parents.append(parent)
    if not names:
        raise DataError("the tree file holds no nodes", path)
    # Groups: runs of consecutive lines with one parent (read_tree's last_parent test).
    group, offsets, sizes = [], [], []
    run_of_parent = {}
    for i, p in enumerate(parents):
        if i == 0 or p != parents[i - 1]:
            if p in run_of_parent:
                first = offsets[run_of_parent[p]]
                raise DataError(f"the children of node {p} are split: lines {first + 1}.. and {i + 1}.. (Darknet "
                                "softmaxes each run on its own and descends into the last only); list siblings "
                                "together", path, i + 1)
            run_of_parent[p] = len(offsets)
            offsets.append(i)
            sizes.append(0)
        group.append(len(offsets) - 1)
        sizes[-1] += 1
    child = [-1] * len(names)
    for g, off in enumerate(offsets):
        if parents[off] >= 0:
            child[parents[off]] = g
    depth = [0] * len(names)
    for i, p in enumerate(parents):
        depth[i] = depth[p] + 1 if p >= 0 else 0
    levels = tuple(tuple(i for i in range(len(names)) if depth[i] == d) for d in range(max(depth) + 1))
    return SoftmaxTree(path, tuple(names), tuple(parents), tuple(child), tuple(group), tuple(offsets), tuple(sizes),
                       levels)


def read_tree(path) -> SoftmaxTree:
    return parse_tree_text(read_text(path, "Darknet tree file"), os.fspath(path))


# -- tensor code -------------------------------------------------------------------------------

def _group_index(tree: SoftmaxTree, device) -> Tensor:
    return torch.tensor(tree.group, dtype=torch.long, device=device)


def group_softmax(x: Tensor, tree: SoftmaxTree, dim: int) -> Tensor:
    """Softmax within each group of ``x``'s ``dim`` (of size ``tree.n``), temperature 1.

    As Darknet's ``softmax_tree`` (the GPU kernel, and AlexeyAB's CPU function): for each group,
    ``exp(x - max) / sum``. pjreddie's CPU ``forward_region_layer`` calls ``softmax_cpu`` with the
    never-parsed ``l.temperature`` (0) and an anchor-crossing stride: that path is not followed.
    """
    dim = dim % x.dim()
    xt = x.movedim(dim, -1)
    index = _group_index(tree, x.device).expand_as(xt)
    shape = xt.shape[:-1] + (tree.groups,)
    gmax = torch.full(shape, float("-inf"), dtype=x.dtype, device=x.device).scatter_reduce(
        -1, index, xt, reduce="amax", include_self=True)
    e = torch.exp(xt - gmax.gather(-1, index))
    gsum = torch.zeros(shape, dtype=x.dtype, device=x.device).scatter_add(-1, index, e)
    return (e / gsum.gather(-1, index)).movedim(-1, dim)


def hierarchy_predictions(probs: Tensor, tree: SoftmaxTree) -> Tensor:
    """``hierarchy_predictions(..., only_leaves=0)``: each node's conditional probability times its
    parent's already-absolute one, over the last dim. Parents precede children (checked when the
    tree is read), so level by level gives the same float products as Darknet's in-order loop."""
    out = probs.clone()
    parent = torch.tensor(tree.parent, dtype=torch.long, device=probs.device)
    for level in tree._depth_levels[1:]:
        nodes = torch.tensor(level, dtype=torch.long, device=probs.device)
        out[..., nodes] = probs[..., nodes] * out[..., parent[nodes]]
    return out


def top_prediction(abs_probs: Tensor, tree: SoftmaxTree, thresh: float) -> Tensor:
    """``hierarchy_top_prediction`` for every row of ``abs_probs (..., n)`` -> class index (...).

    From group 0: take the group's largest value (strict ``>`` from 0, so the first of equal
    values; index 0 when none is above 0); while ``p*max > thresh`` go down, ``p *= max`` (Darknet
    multiplies the *absolute* probabilities, already products along the path: kept as is);
    a leaf is returned; a group that fails returns max_i in group 0, else the group's parent.
    """
    shape = abs_probs.shape[:-1]
    vals = abs_probs.reshape(-1, tree.n)
    rows = vals.shape[0]
    dev = vals.device
    offset = torch.tensor(tree.group_offset, dtype=torch.long, device=dev)
    size = torch.tensor(tree.group_size, dtype=torch.long, device=dev)
    k = torch.arange(max(tree.group_size), device=dev)
    members = torch.where(k < size[:, None], offset[:, None] + k, -1)  # (groups, width), -1 = padding
    child = torch.tensor(tree.child, dtype=torch.long, device=dev)
    parent = torch.tensor(tree.parent, dtype=torch.long, device=dev)
    group = torch.zeros(rows, dtype=torch.long, device=dev)
    p = torch.ones(rows, dtype=vals.dtype, device=dev)
    result = torch.zeros(rows, dtype=torch.long, device=dev)
    active = torch.ones(rows, dtype=torch.bool, device=dev)
    zero = torch.zeros((), dtype=vals.dtype, device=dev)
    for _ in range(len(tree._depth_levels) + 1):  # one group per level at most
        if not bool(active.any()):
            break
        idx = members[group]                                          # (rows, width)
        v = torch.where(idx >= 0, vals.gather(1, idx.clamp_min(0)), zero)
        best, arg = v.max(1)                                           # first maximum
        found = best > 0
        max_i = torch.where(found, idx.gather(1, arg[:, None])[:, 0], torch.zeros_like(arg))
        best = torch.where(found, best, zero)
        down = p * best > thresh
        leaf = child[max_i] < 0
        stop_here = active & ((down & leaf) | (~down & (group == 0)))
        stop_parent = active & ~down & (group != 0)
        result = torch.where(stop_here, max_i, result)
        result = torch.where(stop_parent, parent[offset[group]], result)
        go = active & down & ~leaf
        p = torch.where(go, p * best, p)
        group = torch.where(go, child[max_i], group)
        active = go
    return result.reshape(shape)


__all__ = ["SoftmaxTree", "group_softmax", "hierarchy_predictions", "parse_tree_text", "read_tree", "top_prediction"]
