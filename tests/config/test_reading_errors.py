"""Reading a cfg file: a missing or unreadable path, a file with no sections or no layers, a file that is
not a cfg (an HTML page, a Git LFS pointer, binary data), encodings, line endings and comments read
through a file, an option outside any section, [net] out of place, malformed headers and option lines.

Each case starts from TINY (tests/helpers/config.py), a small valid YOLO net, changes one thing, writes it
to tmp_path and asserts a CfgError whose text holds the file path, the line number the test computes from
its own text, and the offending value.
"""
from __future__ import annotations

import os
import re

import pytest

from darknet_py.config.reader import read_cfg
from darknet_py.errors import CfgError
from darknet_py.graph import parse_network

from tests.helpers.cfgs import locate, set_key
from tests.helpers.config import TINY, expect_error, parse_ok, write_cfg


# -- path --------------------------------------------------------------------------------------

def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope" / "yolov3.cfg"
    for fn in (read_cfg, parse_network):
        with pytest.raises(CfgError) as info:
            fn(path)
        assert str(path) in str(info.value) and "No such file" in str(info.value)


def test_directory_instead_of_a_file(tmp_path):
    with pytest.raises(CfgError) as info:
        parse_network(tmp_path)
    assert str(tmp_path) in str(info.value) and "directory" in str(info.value).lower()


def test_path_through_a_file(tmp_path):
    path = write_cfg(tmp_path, TINY) / "x.cfg"
    with pytest.raises(CfgError) as info:
        parse_network(path)
    assert str(path) in str(info.value) and "Not a directory" in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads mode-000 files")
def test_unreadable_file(tmp_path):
    path = write_cfg(tmp_path, TINY)
    path.chmod(0)
    try:
        with pytest.raises(CfgError) as info:
            parse_network(path)
    finally:
        path.chmod(0o644)
    assert str(path) in str(info.value) and "Permission denied" in str(info.value)


# -- empty -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [b"", b"\n\n\n", b"# only\n; comments\n   # here\n", b"\xef\xbb\xbf", b"  \t \r\n\r"])
def test_file_without_sections(tmp_path, text):
    expect_error(tmp_path, text, None, "no sections")


def test_net_without_layers(tmp_path):
    text = TINY.split("\n\n")[0] + "\n"
    expect_error(tmp_path, text, 1, "no layers")


# -- not a cfg ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, needle", [
    (b"<!DOCTYPE html>\n<html lang=en>\n<head><title>yolov3.cfg</title></head>\n", "HTML"),
    (b"\n\n  <html>\n<body>[net]</body></html>\n", "HTML"),
    (b"<!-- saved page --><html><body>\n", "HTML"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:4a5b\nsize 8342\n", "LFS"),
    (b"\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00" + bytes(range(256)), "binary"),
    (b"[net]\nwidth=64\x00\x00\n", "binary"),
])
def test_html_lfs_pointer_or_binary_is_not_a_cfg(tmp_path, text, needle):
    expect_error(tmp_path, text, 1, needle)


def test_html_hint_mentions_the_raw_file(tmp_path):
    expect_error(tmp_path, b"<!doctype html><html></html>", 1, "raw")


# -- encodings, line endings and comments through a file (details in test_reader.py) -------------

def test_invalid_utf8_in_a_file_names_the_byte(tmp_path):
    text = set_key(TINY, "convolutional", 2, "activation", "leaky").encode()
    line = locate(TINY, "convolutional", 2, "activation")
    lines = text.split(b"\n")
    lines[line - 1] = b"activation=leaky\xc3"
    expect_error(tmp_path, b"\n".join(lines), line, "0xc3")


def test_file_with_a_bom_parses(tmp_path):
    nd = parse_ok(tmp_path, b"\xef\xbb\xbf" + TINY.encode())
    assert nd.net.width == 64 and len(nd.specs) == 13


@pytest.mark.parametrize("ending", ["\r\n", "\r"])
def test_crlf_and_cr_files_give_the_same_network(tmp_path, ending):
    ref = parse_ok(tmp_path, TINY, "lf.cfg")
    other = parse_ok(tmp_path, TINY.replace("\n", ending), "other.cfg")
    assert other.shapes == ref.shapes and [s.line for s in other.specs] == [s.line for s in ref.specs]
    assert other.specs == ref.specs


def test_inline_comment_after_a_value(tmp_path):
    text = set_key(TINY, "convolutional", 4, "filters", "18 # three anchors * (1+5)")
    nd = parse_ok(tmp_path, text)
    assert nd.specs[6].filters == 18


# -- option outside a section ------------------------------------------------------------------

def test_option_before_the_first_section(tmp_path):
    text = "# yolo\n\nbatch=1\n" + TINY
    expect_error(tmp_path, text, 3, "outside any section", "batch")


# -- [net] placement ---------------------------------------------------------------------------

def test_first_section_must_be_net(tmp_path):
    text = "# no net\n[convolutional]\nfilters=16\nsize=3\n" + TINY
    expect_error(tmp_path, text, 2, "[net]", "[convolutional]")


def test_second_net_section_names_both_lines(tmp_path):
    text = TINY + "\n[network]\nwidth=32\n"
    second = len(TINY.split("\n")) + 1
    err = expect_error(tmp_path, text, second, "[network]")
    assert f"line {locate(TINY, 'net')}" in str(err)  # both line numbers


# -- malformed headers -------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["[convolutional", "[]", "[ ]", "convolutional]", "[conv-2]", "[1conv]", "[[net]]"])
def test_malformed_section_header(tmp_path, header):
    lines = TINY.split("\n")
    line = locate(TINY, "convolutional", 2)
    lines[line - 1] = header
    # headers are reported whitespace-free, as darknet's strip() reads them
    needle = header.replace(" ", "")
    if header == "convolutional]":  # no '[': a line without '='
        needle = "convolutional]"
    expect_error(tmp_path, "\n".join(lines), line, needle)


def test_spaces_inside_header_brackets_warn(tmp_path):
    lines = TINY.split("\n")
    line = locate(TINY, "maxpool", 1)
    lines[line - 1] = "[ maxpool ]"
    path = write_cfg(tmp_path, "\n".join(lines))
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}:{line}:.*\[maxpool\]"):
        nd = parse_network(path)
    assert nd.shapes[1] == (16, 32, 32)


# -- line shape -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, needle", [("filters", "filters"), ("filters 32", "filters32"),
                                         ("=32", "empty key"), ("filters=", "empty value"),
                                         ("filters =  ", "empty value"), ("filters=#32", "empty value")])
def test_option_line_without_key_or_value(tmp_path, bad, needle):
    lines = TINY.split("\n")
    line = locate(TINY, "convolutional", 2, "filters")
    lines[line - 1] = bad
    expect_error(tmp_path, "\n".join(lines), line, needle)
