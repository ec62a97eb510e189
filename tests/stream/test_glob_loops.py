"""A quoted ``**`` glob walks each real folder once: a symlink back to a parent folder does not repeat
its photos (Python's glob.glob followed it until the path grew too long: 82 matches for 2 photos),
while photos reached only through a symlinked folder are still found, once."""
from __future__ import annotations

import glob
import os

from darknet_py.stream.inputs import expand_inputs


def make_tree(root):
    (root / "a" / ".hidden").mkdir(parents=True)
    (root / "y.jpg").write_bytes(b"")
    (root / "a" / "x.jpg").write_bytes(b"")
    (root / "a" / "notes.txt").write_bytes(b"")
    (root / "a" / ".hidden" / "h.jpg").write_bytes(b"")
    os.symlink("..", root / "a" / "loop")


def test_symlink_loop_gives_each_photo_once(tmp_path):
    make_tree(tmp_path)
    assert len(glob.glob(f"{tmp_path}/**/*.jpg", recursive=True)) > 2  # the loop Python's glob follows
    names = [it.name for it in expand_inputs([f"{tmp_path}/**/*.jpg"])]
    assert names == [f"{tmp_path}/a/x.jpg", f"{tmp_path}/y.jpg"]


def test_recursive_glob_matches_glob_without_loops(tmp_path):
    make_tree(tmp_path)
    os.remove(tmp_path / "a" / "loop")
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "z.png").write_bytes(b"")
    for pattern in ("**/*.jpg", "**/*.png", "a/**/*.jpg", "**/c/*.png", "**/*", "*/**/x.jpg"):
        full = f"{tmp_path}/{pattern}"
        want = sorted(m for m in glob.glob(full, recursive=True)
                      if os.path.isfile(m) and m.endswith((".jpg", ".png")))
        got = [it.name for it in expand_inputs([full]) if it.kind == "image"]
        assert got == want, pattern


def test_photos_behind_a_folder_symlink_are_found_once(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "p.jpg").write_bytes(b"")
    (tmp_path / "top").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "top" / "link")
    names = [it.name for it in expand_inputs([f"{tmp_path}/top/**/*.jpg"])]
    assert names == [f"{tmp_path}/top/link/p.jpg"]
