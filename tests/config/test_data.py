"""Darknet's dataset configuration files (darknet_py.config): .data files, .names files and image lists,
each error naming the file and line."""
from __future__ import annotations

import pytest

from darknet_py.config.data import read_data_config
from darknet_py.config.lists import read_image_list
from darknet_py.config.names import read_names
from darknet_py.errors import DataError

from tests.helpers.config import touch
from tests.helpers.paths import ref_path


# --------------------------------------------------------------------------- .data and .names


def test_data_file_keys_lines_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "set" / "obj.names", b"a\r\nb\r\n")
    data = tmp_path / "set" / "obj.data"
    data.write_text("# comment\nclasses= 2\r\nnames = obj.names\neval=coco\nvalid = nowhere.txt\n")
    cfg = read_data_config(data)
    assert cfg.classes == 2 and cfg.eval == "coco" and cfg.line("eval") == 4
    assert cfg.file("names") == tmp_path / "set" / "obj.names"  # beside the .data file
    assert read_names(cfg.file("names"), 2) == ["a", "b"]       # CRLF trimmed
    with pytest.raises(DataError, match=r"obj.data:5: valid = nowhere.txt: no such file"):
        cfg.file("valid")
    with pytest.raises(DataError, match="no 'train' key"):
        cfg.require("train", "training images")
    assert cfg.results.as_posix() == "results"  # Darknet's default prefix


@pytest.mark.parametrize("text, pattern", [
    ("classes=two\n", r"x.data:1: classes = two: expected a positive integer"),
    ("classes=0\n", r"classes = 0"),
    ("eval=COCO\n", r"x.data:1: eval = COCO: expected one of voc, coco, imagenet"),
    ("classes=1\nclasses=2\n", r"x.data:2: 'classes' given twice \(first on line 1\)"),
    ("classes 80\n", r"x.data:1: expected 'key = value'"),
])
def test_data_file_errors_name_the_line(tmp_path, text, pattern):
    p = tmp_path / "x.data"
    p.write_text(text)
    with pytest.raises(DataError, match=pattern):
        cfg = read_data_config(p)
        _ = cfg.classes, cfg.eval  # the values are checked when read


def test_names_count_mismatch_and_bom(tmp_path):
    p = tmp_path / "n.names"
    p.write_bytes(b"\xef\xbb\xbfcat\ndog\n\n")
    assert read_names(p) == ["cat", "dog"]  # BOM dropped, trailing blank ignored
    with pytest.raises(DataError, match="2 names but the model has classes=3"):
        read_names(p, 3)


def test_more_names_than_classes_uses_the_first_with_a_warning(tmp_path):
    # Darknet's get_labels reads the whole list and indexes the first `classes` of it
    p = tmp_path / "n.names"
    p.write_text("cat\ndog\n\nextra\n")  # a blank past the used names does not matter
    with pytest.warns(UserWarning, match=f"{p}: 4 names for a model with classes=1; the first 1 are used"):
        assert read_names(p, 1) == ["cat"]
    with pytest.raises(DataError, match=r"n.names:3: blank class name"):
        read_names(p, 3)
    with pytest.raises(DataError, match=f"{p}: 4 names but the model has classes=5"):
        read_names(p, 5)


def test_imagenet_shortnames_for_a_1000_class_net():
    p = ref_path("pjreddie", "data", "imagenet.shortnames.list")
    with pytest.warns(UserWarning, match="21842 names for a model with classes=1000"):
        names = read_names(p, 1000)
    assert len(names) == 1000 and names == read_names(p)[:1000]


# --------------------------------------------------------------------------- image lists


def test_image_list_crlf_relative_and_trailing_blank(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "d" / "images" / "a.jpg")
    touch(tmp_path / "b.jpg")
    lst = tmp_path / "d" / "valid.txt"
    lst.write_bytes(b"images/a.jpg\r\n" + str(tmp_path / "b.jpg").encode() + b"\r\n\r\n\n")
    images = read_image_list(lst)
    assert [im.line for im in images] == [1, 2]
    assert images[0].path == tmp_path / "d" / "images" / "a.jpg" and images[0].base == tmp_path / "d"
    assert images[1].base is None
    # Darknet's rule first: a path that exists relative to the working directory wins.
    touch(tmp_path / "images" / "a.jpg")
    assert read_image_list(lst)[0].path.resolve() == (tmp_path / "images" / "a.jpg").resolve()


def test_image_list_blank_and_missing_lines_are_listed(tmp_path):
    touch(tmp_path / "a.jpg")
    lst = tmp_path / "list.txt"
    lst.write_text("a.jpg\n\nmissing1.jpg\na.jpg\nmissing2.jpg\n")
    with pytest.raises(DataError) as exc:
        read_image_list(lst)
    msg = str(exc.value)
    assert "list.txt:2:" in msg and "3 bad entries" in msg
    assert "line 2: blank line" in msg and "line 3: 'missing1.jpg' not found" in msg and "line 5:" in msg
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match="lists no images"):
        read_image_list(tmp_path / "empty.txt")
