"""darknet_py.config.reader on strings and bytes: line endings, whitespace, BOM, encodings,
comments, line numbers, the typed getters and check_all_used.

Every expected value below is written from the text the test builds, not from the reader's output.
"""
from __future__ import annotations

import warnings

import pytest

from darknet_py.config.reader import Option, Section, parse_cfg_text
from darknet_py.errors import CfgError

from tests.helpers.config import cfg_summary

# (kind, [(key, value), ...]) and the LF text that spells it, one option per line.
DOC = [
    ("net", [("width", "64"), ("height", "64"), ("channels", "3")]),
    ("convolutional", [("batch_normalize", "1"), ("filters", "16"), ("size", "3"), ("activation", "leaky")]),
    ("yolo", [("mask", "0,1,2"), ("anchors", "10,14,23,27,37,58"), ("classes", "1")]),
]
LF_TEXT = (
    "[net]\n"              # 1
    "width=64\n"           # 2
    "height=64\n"          # 3
    "channels=3\n"         # 4
    "\n"                   # 5
    "[convolutional]\n"    # 6
    "batch_normalize=1\n"  # 7
    "filters=16\n"         # 8
    "size=3\n"             # 9
    "activation=leaky\n"   # 10
    "\n"                   # 11
    "[yolo]\n"             # 12
    "mask=0,1,2\n"         # 13
    "anchors=10,14,23,27,37,58\n"  # 14
    "classes=1\n"          # 15
)
# line of each section header and of each option, read off the text above
EXPECTED = [
    ("net", 1, [("width", "64", 2), ("height", "64", 3), ("channels", "3", 4)]),
    ("convolutional", 6, [("batch_normalize", "1", 7), ("filters", "16", 8), ("size", "3", 9),
                          ("activation", "leaky", 10)]),
    ("yolo", 12, [("mask", "0,1,2", 13), ("anchors", "10,14,23,27,37,58", 14), ("classes", "1", 15)]),
]


def parse(data, path="t.cfg"):
    return parse_cfg_text(data, path)


def test_lf_text_reads_as_written():
    doc = parse(LF_TEXT)
    assert cfg_summary(doc) == EXPECTED
    assert [s.index for s in doc.sections] == [-1, 0, 1]
    assert doc.path == "t.cfg"
    assert doc.net.kind == "net" and [s.kind for s in doc.layers] == ["convolutional", "yolo"]


def _mixed_endings(text: str) -> str:
    endings = ["\r\n", "\r", "\n"]
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines[:-1]):
        ending = endings[i % 3]
        if out and out[-1].endswith("\r") and line == "":
            ending = "\r\n"  # a lone CR followed by an empty LF line would read as one CRLF
        out.append(line + ending)
    return "".join(out) + lines[-1]


def _per_line(fn):
    return lambda text: "\n".join(fn(line) for line in text.split("\n"))


def _spaced_equals(line):
    return line.replace("=", " = ") if "=" in line else line


def _tabs(line):
    return ("\t" + line.replace("=", "\t=\t")) if line else "\t"


def _trailing(line):
    return line + "   \t " if line else line


def _indent_and_list_spaces(line):
    # darknet's strip() deletes every space: "anchors = 10,14,  23,27" is one token
    return "  " + line.replace(",", ", ") if line else line


VARIANTS = {
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "lone_cr": lambda t: t.replace("\n", "\r"),
    "mixed": _mixed_endings,
    "tabs": _per_line(_tabs),
    "trailing_spaces": _per_line(_trailing),
    "spaces_around_eq": _per_line(_spaced_equals),
    "indent_and_list_spaces": _per_line(_indent_and_list_spaces),
    "no_final_newline": lambda t: t.rstrip("\n"),
    "all_together": lambda t: _mixed_endings(_per_line(lambda line: _trailing(_tabs(_spaced_equals(line))))(t)),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_formatting_gives_identical_parse(name):
    text = VARIANTS[name](LF_TEXT)
    assert text != LF_TEXT or name == "no_final_newline"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # formatting alone must not warn
        got = cfg_summary(parse(text))
    assert got == cfg_summary(parse(LF_TEXT)) == EXPECTED


@pytest.mark.parametrize("as_bytes", [False, True])
def test_bytes_and_str_agree(as_bytes):
    data = LF_TEXT.replace("\n", "\r\n").encode() if as_bytes else LF_TEXT
    assert cfg_summary(parse(data)) == EXPECTED


def test_cr_lf_is_one_line_break_and_lf_cr_two():
    # "\r\n" is one line end; "\n\r" is two
    doc = parse("[net]\r\nwidth=64\n\rheight=64\n")
    assert cfg_summary(doc) == [("net", 1, [("width", "64", 2), ("height", "64", 4)])]


# -- BOM and encodings -------------------------------------------------------------------------

def test_bom_is_stripped_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc = parse(b"\xef\xbb\xbf" + LF_TEXT.encode())
    assert cfg_summary(doc) == EXPECTED


def test_bom_with_crlf():
    assert cfg_summary(parse(b"\xef\xbb\xbf" + LF_TEXT.replace("\n", "\r\n").encode())) == EXPECTED


def test_non_ascii_utf8_in_a_comment_is_fine():
    text = "# Gewichte für die Türme — 検出\n" + LF_TEXT
    doc = parse(text.encode("utf-8"))
    assert doc.sections[0].line == 2 and doc.sections[0].options["width"].line == 3


def test_invalid_utf8_in_a_value_names_the_line_and_byte():
    lines = LF_TEXT.encode().split(b"\n")
    lines[8] = b"size=3\xff"  # line 9; 0xff at byte 7 of the line (1-based)
    data = b"\n".join(lines)
    with pytest.raises(CfgError) as info:
        parse(data, "bad.cfg")
    err = info.value
    assert err.line == 9 and err.path == "bad.cfg"
    assert str(err).startswith("bad.cfg:9:")
    assert "0xff" in str(err) and "byte 7" in str(err)


def test_latin1_cfg_is_an_error():
    data = "[net]\nwidth=64\nheight=64\n[convolutional]\nactivation=lin\xe9ar\n".encode("latin-1")
    with pytest.raises(CfgError) as info:
        parse(data, "latin.cfg")
    assert info.value.line == 5 and "latin.cfg:5" in str(info.value) and "0xe9" in str(info.value)


@pytest.mark.parametrize("comment", [b"# caf\xe9", b"; caf\xe9", b"   \t# caf\xe9 \xff\xfe"])
def test_invalid_utf8_in_a_full_line_comment_warns(comment):
    lines = LF_TEXT.encode().split(b"\n")
    lines.insert(7, comment)  # becomes line 8; everything after moves down one line
    with pytest.warns(UserWarning, match=r"t\.cfg:8"):
        doc = parse(b"\n".join(lines))
    shifted = [(k, n if n < 8 else n + 1, [(a, b, c if c < 8 else c + 1) for a, b, c in opts])
               for k, n, opts in EXPECTED]
    assert cfg_summary(doc) == shifted


def test_invalid_utf8_in_an_inline_comment_is_an_error():
    # only a full-line comment is skipped undecoded; an inline one shares the line with a value
    data = b"[net]\nwidth=64 # caf\xe9\nheight=64\n"
    with pytest.raises(CfgError) as info:
        parse(data)
    assert info.value.line == 2


# -- comments -----------------------------------------------------------------------------------

@pytest.mark.parametrize("comment", ["# a comment", "; a comment", "    # indented", "\t; tab indented",
                                     "#filters=1", ";[yolo]", "# [net]"])
def test_full_line_comments_are_skipped(comment):
    lines = LF_TEXT.split("\n")
    lines[7] = comment  # replaces "filters=16" on line 8
    doc = parse("\n".join(lines))
    conv = doc.sections[1]
    assert "filters" not in conv.options
    assert [(o.key, o.line) for o in conv.options.values()] == [("batch_normalize", 7), ("size", 9),
                                                                ("activation", 10)]
    assert len(doc.sections) == 3


@pytest.mark.parametrize("line, value", [
    ("filters=255 # x", "255"),
    ("filters=255# x", "255"),
    ("filters = 255 ; x", "255"),
    ("filters=255;x=3", "255"),
    ("filters=255 #", "255"),
    ("filters=2 55", "255"),  # darknet deletes the inner space too
])
def test_inline_comment_is_stripped(line, value):
    doc = parse(f"[net]\nwidth=64\nheight=64\n[convolutional]\n{line}\nsize=1\n")
    opt = doc.sections[1].options["filters"]
    assert (opt.value, opt.line) == (value, 5)
    assert doc.sections[1].get_int("filters") == int(value)
    assert list(doc.sections[1].options) == ["filters", "size"]


def test_inline_comment_leaving_an_empty_value_is_an_error():
    with pytest.raises(CfgError) as info:
        parse("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters= # 255\n", "c.cfg")
    assert info.value.line == 5 and "c.cfg:5" in str(info.value) and "filters" in str(info.value)


def test_html_word_in_a_leading_comment_is_still_a_cfg():
    # the HTML sniff must not fire on a cfg whose first comment mentions a tag
    doc = parse("# copied from the <html> page of the repo\n" + LF_TEXT)
    assert [s.kind for s in doc.sections] == ["net", "convolutional", "yolo"]


# -- line numbers -------------------------------------------------------------------------------

def test_line_numbers_with_blank_and_comment_lines():
    text = "\n\n# head\n[net]\n\n; c\nwidth=416\n\n\n[maxpool]\n  # x\nsize=2\n"
    doc = parse(text)
    assert cfg_summary(doc) == [("net", 4, [("width", "416", 7)]), ("maxpool", 10, [("size", "2", 12)])]


def test_error_line_after_crlf_and_cr():
    # line 4 has no '=', endings differ per line
    data = "[net]\r\nwidth=64\rheight=64\nfilters\r\n"
    with pytest.raises(CfgError) as info:
        parse(data, "e.cfg")
    assert info.value.line == 4 and "e.cfg:4" in str(info.value) and "filters" in str(info.value)


def test_section_error_points_at_option_line():
    doc = parse(LF_TEXT)
    conv = doc.sections[1]
    err = conv.error("bad", "size")
    assert (err.line, err.section, err.index, err.path) == (9, "convolutional", 0, "t.cfg")
    assert str(err) == "t.cfg:9: [convolutional] (layer 0): bad"
    assert conv.error("bad").line == 6  # no key: the header line
    assert str(doc.sections[0].error("x")) == "t.cfg:1: [net]: x"


# -- typed getters ------------------------------------------------------------------------------

def section(**options) -> Section:
    sec = Section(kind="convolutional", line=10, index=3, path="g.cfg")
    for i, (k, v) in enumerate(options.items()):
        sec.options[k] = Option(k, v, 11 + i)
    return sec


@pytest.mark.parametrize("value, expected", [("3", 3), ("-2", -2), ("+7", 7), ("0", 0), ("0012", 12)])
def test_get_int_accepts_integers(value, expected):
    assert section(n=value).get_int("n") == expected


@pytest.mark.parametrize("value", ["3.5", "abc", "true", "1e3", "0x10", "3a", "--1", "٣", "３", "1_000"])
def test_get_int_rejects_non_integers(value):
    # darknet's atoi reads these as 3 / 0 / 1 silently; non-ASCII digits are 0 to atoi
    sec = section(a="1", n=value)
    with pytest.raises(CfgError) as info:
        sec.get_int("n")
    assert info.value.line == 12 and f"n={value}" in str(info.value) and "g.cfg:12" in str(info.value)


def test_get_int_huge_number_is_cfg_error():
    digits = "9" * 5000  # beyond Python's int-from-string digit limit
    with pytest.raises(CfgError) as info:
        section(n=digits).get_int("n")
    assert info.value.line == 11
    with pytest.raises(CfgError):
        section(n=f"1,{digits}").get_int_list("n")


def test_get_int_default_required_and_range():
    sec = section(n="5")
    assert sec.get_int("missing", 7) == 7
    assert sec.get_int("missing") is None
    with pytest.raises(CfgError, match="missing required key 'other'") as info:
        sec.get_int("other", required=True)
    assert info.value.line == 10  # the section header
    with pytest.raises(CfgError, match=r">= 6"):
        section(n="5").get_int("n", min=6)
    with pytest.raises(CfgError, match=r"<= 4"):
        section(n="5").get_int("n", max=4)
    with pytest.raises(CfgError, match=r"one of 1, 3"):
        section(n="5").get_int("n", choices=(1, 3))
    assert section(n="5").get_int("n", min=5, max=5) == 5


@pytest.mark.parametrize("value, expected", [("0", False), ("1", True)])
def test_get_bool_accepts_0_1(value, expected):
    assert section(b=value).get_bool("b") is expected


@pytest.mark.parametrize("value", ["true", "false", "2", "-1", "yes", "1.0"])
def test_get_bool_rejects_other(value):
    with pytest.raises(CfgError) as info:
        section(b=value).get_bool("b")
    assert info.value.line == 11 and value in str(info.value)


def test_get_bool_default():
    assert section().get_bool("b") is False and section().get_bool("b", True) is True


@pytest.mark.parametrize("value, expected", [("1.5", 1.5), (".5", 0.5), ("5.", 5.0), ("-2", -2.0), ("1e-3", 1e-3),
                                             ("+3E2", 300.0)])
def test_get_float(value, expected):
    assert section(f=value).get_float("f") == expected


@pytest.mark.parametrize("value", ["abc", "1.2.3", "nan", "inf", "1,5", ".", "٠.٥"])
def test_get_float_rejects(value):
    with pytest.raises(CfgError) as info:
        section(f=value).get_float("f")
    assert info.value.line == 11


@pytest.mark.parametrize("value, expected", [("-1", [-1]), ("-1,", [-1]), ("-1,61", [-1, 61]), ("1,2,3,", [1, 2, 3])])
def test_get_int_list_trailing_comma(value, expected):
    assert section(layers=value).get_int_list("layers") == expected


@pytest.mark.parametrize("value", [",", "1,,2", "a,b", "1.5,2", "1,2,,"])
def test_get_int_list_rejects(value):
    with pytest.raises(CfgError) as info:
        section(layers=value).get_int_list("layers")
    assert info.value.line == 11 and value in str(info.value)


def test_get_float_list():
    assert section(a="10,13,16.5,30,").get_float_list("a") == [10.0, 13.0, 16.5, 30.0]
    with pytest.raises(CfgError):
        section(a="10,x").get_float_list("a")


def test_getters_mark_used_and_check_all_used_passes():
    sec = section(filters="16", size="3", jitter=".3")
    sec.get_int("filters")
    sec.get_str("size")
    assert [o.key for o in sec.unused()] == ["jitter"]
    assert sec.mark_used(["jitter", "random"]) == ["jitter"]
    sec.check_all_used(("filters", "size"))  # nothing left: no error


def test_check_all_used_did_you_mean():
    sec = section(size="3", filter="255")  # 'filter' at line 12
    sec.get_int("size")
    with pytest.raises(CfgError) as info:
        sec.check_all_used(("filters", "size", "stride"))
    msg = str(info.value)
    assert info.value.line == 12 and msg.startswith("g.cfg:12: [convolutional] (layer 3):")
    assert "unknown key 'filter'" in msg and "did you mean 'filters'" in msg and "255" in msg


def test_check_all_used_without_close_match():
    sec = section(zzzq="1")
    with pytest.raises(CfgError) as info:
        sec.check_all_used(("filters", "size"))
    assert "unknown key 'zzzq'" in str(info.value) and "did you mean" not in str(info.value)


def test_to_text_round_trip():
    doc = parse(LF_TEXT)
    text = "\n".join(s.to_text() for s in doc.sections)
    assert [(k, [(a, b) for a, b, _ in o]) for k, _, o in cfg_summary(parse(text))] == \
           [(k, [(a, b) for a, b, _ in o]) for k, _, o in EXPECTED]
