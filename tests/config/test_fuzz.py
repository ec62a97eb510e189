"""Property tests for the cfg reader and parse_network.

(a) Round trip: a generated document, rendered with random but legal formatting (spaces around
    '=', tabs, CRLF/LF/CR, BOM, comment lines, inline comments, blank lines), reads back as the
    same kinds, keys, values and line numbers the renderer recorded.
(b) Mutation fuzz: random byte and line edits of real cfgs; parse_network either succeeds or raises
    CfgError whose line lies inside the file. Any other exception is a bug in darknet-py.
"""
from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darknet_py.config.reader import parse_cfg_text
from darknet_py.errors import CfgError
from darknet_py.graph import parse_network
from darknet_py.layers.activations import ACTIVATIONS
from darknet_py.layers.registry import LAYERS

from tests.helpers.cfgs import conv, head_conv, maxpool, net, route, sections, shortcut, upsample, yolo
from tests.helpers.config import cfg_summary
from tests.helpers.paths import ref_path

# ------------------------------------------------------------------------------------------------
# (a) round trip
# ------------------------------------------------------------------------------------------------

NET_KEYS = ["batch", "subdivisions", "width", "height", "channels", "momentum", "decay", "angle", "saturation",
            "exposure", "hue", "learning_rate", "burn_in", "max_batches", "policy", "steps", "scales"]
LAYER_KEYS = ["batch_normalize", "filters", "size", "stride", "pad", "padding", "groups", "activation", "layers",
              "from", "mask", "anchors", "classes", "num", "jitter", "ignore_thresh", "truth_thresh", "random",
              "scale", "scale_x_y"]
# every registered kind (a new one is drawn without editing this), a Darknet kind we do not run, and a made-up one
LAYER_KINDS = LAYERS.names() + ["lstm", "whatever"]

_int = st.integers(-100000, 100000).map(str)
_float = st.builds(lambda sign, i, f, lead: f"{sign}{i if lead else ''}.{f}", st.sampled_from(["", "-", "+"]),
                   st.integers(0, 9999), st.integers(0, 999), st.booleans())
_int_list = st.lists(st.integers(-200, 1000), min_size=1, max_size=8).flatmap(
    lambda xs: st.sampled_from([",".join(map(str, xs)), ",".join(map(str, xs)) + ","]))
_word = st.builds(str.__add__, st.sampled_from(["steps", "x", "_", "Ab"]),
                  st.text(alphabet="aZ09_.+-", max_size=6))
_with_eq = st.builds("{}={}".format, st.sampled_from(["a", "iou"]), st.integers(0, 999))  # split at the first '='

VALUES = st.one_of(_int, _float, _int_list, st.sampled_from(sorted(ACTIVATIONS)), _word, _with_eq)


@st.composite
def documents(draw) -> list[tuple[str, list[tuple[str, str]]]]:
    def options(keys):
        chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=6))
        return [(k, draw(VALUES)) for k in chosen]

    doc = [(draw(st.sampled_from(["net", "network"])), options(NET_KEYS))]
    for kind in draw(st.lists(st.sampled_from(LAYER_KINDS), max_size=6)):
        doc.append((kind, options(LAYER_KEYS)))
    return doc


_ws = st.text(alphabet=" \t", max_size=3)
_comment_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=20)


@st.composite
def rendered(draw, doc):
    """Render ``doc``; returns (bytes, expected summary with the line numbers used)."""
    lines: list[str] = []
    expected = []

    def filler():
        for _ in range(draw(st.integers(0, 2))):
            what = draw(st.sampled_from(["blank", "spaces", "comment"]))
            if what == "blank":
                lines.append("")
            elif what == "spaces":
                lines.append(draw(_ws))
            else:
                lines.append(draw(_ws) + draw(st.sampled_from("#;")) + draw(_comment_text))

    for kind, opts in doc:
        filler()
        lines.append(f"{draw(_ws)}[{kind}]{draw(_ws)}")
        header_line = len(lines)
        got = []
        for key, value in opts:
            filler()
            shown = value.replace(",", ", ") if draw(st.booleans()) else value
            text = f"{draw(_ws)}{key}{draw(_ws)}={draw(_ws)}{shown}{draw(_ws)}"
            if draw(st.booleans()):
                text += draw(_ws) + draw(st.sampled_from("#;")) + draw(_comment_text)
            lines.append(text)
            got.append((key, value, len(lines)))
        expected.append((kind, header_line, got))
    filler()

    out = []
    prev = ""
    for i, line in enumerate(lines):
        if i == len(lines) - 1 and draw(st.booleans()):
            out.append(line)  # no final line end
            break
        ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))
        if prev == "\r" and line == "" and ending == "\n":
            ending = "\r\n"  # "\r" + "\n" would read as one CRLF
        out.append(line + ending)
        prev = ending
    data = "".join(out).encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return data, expected


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_round_trip(data):
    doc = data.draw(documents())
    raw, expected = data.draw(rendered(doc))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # formatting alone must never warn
        parsed = parse_cfg_text(raw, "fuzz.cfg")
    assert cfg_summary(parsed) == expected
    assert [(k, [(a, b) for a, b, _ in o]) for k, _, o in cfg_summary(parsed)] == doc
    assert [s.index for s in parsed.sections] == list(range(-1, len(doc) - 1))


# ------------------------------------------------------------------------------------------------
# (b) mutation fuzz
# ------------------------------------------------------------------------------------------------

ANCHORS = "10,14, 23,27, 37,58"
SMALL = sections(
    net(64, batch=64, subdivisions=16),
    conv(16), maxpool(), conv(16), shortcut(-2),
    head_conv(18), yolo("0,1,2", ANCHORS, 1, 3, "jitter=.3\nignore_thresh=.7\ntruth_thresh=1\nrandom=1"),
    route("-3"), upsample(), route("-1,0"),
    head_conv(18), yolo("0,1,2", ANCHORS, 1, 3)).encode()

# bytes that steer mutations towards the parser's decisions
INTERESTING = list(b"0123456789-+.,=#;[]\r\n \t") + [0x00, 0xef, 0xbb, 0xbf, 0xff, 0xc3, 0x80]
TOKENS = [b"0", b"1", b"-1", b"-2", b"-3", b"2", b"3", b"5", b"32", b"99", b"-99", b"0.5", b"1e999", b"", b",",
          b"#", b"=", b"[yolo]", b"[route]", b"[shortcut]", b"[upsample]", b"[maxpool]", b"[convolutional]",
          b"[net]", b"[lstm]", b"layers", b"from", b"mask", b"num", b"size", b"stride", b"padding", b"groups",
          b"filters", b"classes", b"anchors", b"width", b"height", b"channels", b"scale", b"activation", b"pad",
          b"batch_normalize", b"9" * 5000, "\u0663".encode(), b"\xef\xbb\xbf", b"<html>"]


def _n_lines(data: bytes) -> int:
    return len(data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"))


def check(data: bytes) -> None:
    """The property: success, or a CfgError pointing inside the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parse_network(data)
        except CfgError as err:
            assert err.line is None or 1 <= err.line <= _n_lines(data), (err.line, _n_lines(data), str(err))
            assert str(err)  # renders
    # any other exception propagates and fails the test with hypothesis' minimal example


byte_edits = st.lists(st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.floats(0, 1),
                                st.one_of(st.integers(0, 255), st.sampled_from(INTERESTING))),
                      min_size=1, max_size=8)


def apply_byte_edits(src: bytes, edits) -> bytes:
    data = bytearray(src)
    for op, where, byte in edits:
        pos = min(int(where * len(data)), len(data))
        if op == "insert":
            data[pos:pos] = bytes([byte])
        elif data and pos < len(data):
            if op == "delete":
                del data[pos]
            else:
                data[pos] = byte
    return bytes(data)


line_edits = st.lists(st.tuples(st.sampled_from(["delete", "duplicate", "move", "value", "key", "insert"]),
                                st.floats(0, 1), st.floats(0, 1), st.sampled_from(TOKENS), st.sampled_from(TOKENS)),
                      min_size=1, max_size=6)


def apply_line_edits(src: bytes, edits) -> bytes:
    lines = src.split(b"\n")
    for op, a, b, t1, t2 in edits:
        i, j = min(int(a * len(lines)), len(lines) - 1), min(int(b * len(lines)), len(lines) - 1)
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(j, lines[i])
        elif op == "move":
            lines.insert(j, lines.pop(i))
        elif op in ("value", "key") and b"=" in lines[i]:
            key, _, value = lines[i].partition(b"=")
            lines[i] = key + b"=" + t1 if op == "value" else t1 + b"=" + value
        elif op == "insert":
            lines.insert(i, t1 + b"=" + t2 if b < 0.7 else t1)
    return b"\n".join(lines)


def _reference(name: str) -> bytes:
    return ref_path("pjreddie", "cfg", name).read_bytes()


def test_sources_are_valid():
    # the fuzz starts from cfgs that parse; otherwise every mutation would stop at the same error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nd = parse_network(SMALL)
    assert nd.yolo_indices == [5, 10]


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(FUZZ, max_examples=300)
@given(edits=byte_edits)
def test_byte_mutations_small(edits):
    check(apply_byte_edits(SMALL, edits))


@settings(FUZZ, max_examples=300)
@given(edits=line_edits)
def test_line_mutations_small(edits):
    check(apply_line_edits(SMALL, edits))


@pytest.mark.parametrize("name, examples", [("yolov3-tiny.cfg", 200), ("yolov3.cfg", 80)])
def test_byte_mutations_reference(name, examples):
    src = _reference(name)

    @settings(FUZZ, max_examples=examples)
    @given(edits=byte_edits)
    def run(edits):
        check(apply_byte_edits(src, edits))

    run()


@pytest.mark.parametrize("name, examples", [("yolov3-tiny.cfg", 200), ("yolov3.cfg", 80)])
def test_line_mutations_reference(name, examples):
    src = _reference(name)

    @settings(FUZZ, max_examples=examples)
    @given(edits=line_edits)
    def run(edits):
        check(apply_line_edits(src, edits))

    run()


@pytest.mark.parametrize("data", [
    b"", b"\xef\xbb\xbf", b"[", b"]", b"=", b"[net]", b"[net]\n[yolo]", b"[net]\nwidth=1\nheight=1\n[maxpool]\n",
    b"[net]\nwidth=1\nheight=1\n[convolutional]\nfilters=1\nsize=3\n", b"[net]\nw=64\nh=64\nc=1\n[upsample]\n",
    b"[net]\nwidth=64\nheight=64\n[route]\nlayers=-1\n", b"[net]\nwidth=64\nheight=64\n[shortcut]\nfrom=-1\n",
    b"[net]\nwidth=64\nheight=64\n[yolo]\nmask=0\nanchors=1,1\nclasses=1\n",
    b"[net]\nwidth=64\nheight=64\n[yolo]\nmask=0\nanchors=1,1\nclasses=1\nnum=" + b"9" * 5000 + b"\n",
    b"\r\r\r[net]\r\rwidth=\r", b"\n" * 10000 + b"\x00", b"[net]\n" + b"\xff" * 10,
])
def test_edge_inputs(data):
    check(data)
