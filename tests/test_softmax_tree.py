"""The YOLO9000 tree (darknet_py/softmax_tree.py): the reader against a port of src/tree.c
``read_tree``, and the tree files it refuses, each named with its line through the [region] that reads
it. (The tree's softmax and hierarchy in a [region] head: tests/layers/test_region.py.)"""
from __future__ import annotations

import pytest

from darknet_py.softmax_tree import parse_tree_text
from tests.helpers.errors import expect_cfg_error
from tests.helpers.heads import TREE, Tree, small_region_cfg


def test_tree_reader_matches_read_tree():
    tree = parse_tree_text(TREE, "t.tree")
    ref = Tree(TREE)
    assert tree.n == ref.n == 14 and tree.groups == ref.groups
    assert list(tree.parent) == ref.parent and list(tree.child) == ref.child
    assert list(tree.group_offset) == ref.group_offset and list(tree.group_size) == ref.group_size
    assert list(tree.group) == ref.group
    assert tree.group_offset == (0, 3, 6, 8, 11, 13) and tree.group_size == (3, 3, 2, 3, 2, 1)
    assert tree.leaf == tuple(c < 0 for c in ref.child)


@pytest.mark.parametrize("text, line, needle", [
    ("a -1\nb 0\nc 5\n", 3, "expected -1 or the index of an earlier line"),
    ("a -1\nb 2\nc 0\n", 2, "earlier line"),
    ("a -1\nb -1\nc 0\nd 1\ne 0\n", 5, "the children of node 0 are split"),
    ("a -1\n\nb -1\n", 2, "empty line"),
    ("a 0\n", 1, "must be a root"),
    ("a -1\nb x\n", 2, "expected an integer"),
    ("a -1 7\n", 1, "expected 'name parent'"),
])
def test_tree_file_errors(tmp_path, text, line, needle):
    (tmp_path / "bad.tree").write_text(text)
    cfg = small_region_cfg(3, "softmax=1\ntree=bad.tree\n")
    expect_cfg_error(cfg, cfg.splitlines().index("tree=bad.tree") + 1, needle, f"bad.tree:{line}:",
                     path=tmp_path / "bad.cfg")
