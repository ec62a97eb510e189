"""What a Darknet user meets first: --version, --help without importing torch, messages that name
real flags and say what a file is, where drawn photos go, and names printed one line each."""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys

import pytest

import darknet_py
from darknet_py.cli.main import main
from tests.helpers.paths import ROOT
from tests.helpers.processes import child_env

CFG = str(ROOT / "cfg" / "yolov3-tiny-shapes.cfg")
WEIGHTS = str(ROOT / "weights" / "yolov3-tiny-shapes.weights")
PHOTO = str(ROOT / "data" / "shapes.jpg")
NAMES = str(ROOT / "cfg" / "shapes.names")

NO_TORCH = """
import runpy, sys
for argv in {runs!r}:
    sys.argv = ["darknet-py", *argv]
    try:
        runpy.run_module("darknet_py", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        assert exc.code in (0, 2), (argv, exc.code)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy", "cv2"))
    assert not loaded, (argv, loaded[:5])
print("ok")
"""


def test_help_version_and_argument_errors_do_not_import_torch():
    runs = [["--help"], ["detect", "--help"], ["detector", "--help"], ["--version"], ["detect"],
            ["detect", CFG, WEIGHTS, "--thresh", "x"], ["nope"]]
    res = subprocess.run([sys.executable, "-c", NO_TORCH.format(runs=runs)], capture_output=True, text=True,
                         env=child_env(), timeout=120)
    assert res.returncode == 0 and res.stdout.endswith("ok\n"), res.stderr[-2000:]


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"darknet-py {darknet_py.__version__}\n"


def test_public_names_still_import():
    for name in darknet_py.__all__:
        assert getattr(darknet_py, name) is not None
    assert darknet_py.graph.DarknetModel is darknet_py.DarknetModel  # submodules too, as before
    with pytest.raises(AttributeError):
        darknet_py.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------------ what a file is

@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    d = tmp_path_factory.mktemp("exports")
    out = {}
    for fmt in ("torchscript", "onnx"):
        out[fmt] = d / f"m.{fmt}"
        assert main(["export", CFG, WEIGHTS, "--format", fmt, "--size", "64", "-o", str(out[fmt])]) == 0
    return out


@pytest.mark.parametrize("fmt, kind", [("torchscript", "a TorchScript module"), ("onnx", "an ONNX model")])
def test_convert_says_what_an_export_is(exports, tmp_path, capsys, fmt, kind):
    capsys.readouterr()
    assert main(["convert", str(exports[fmt]), str(tmp_path / "o.weights")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"this is {kind}" in err and "export --format pt" in err, err
    assert "weights_only" not in err  # torch's text advises an unsafe load
    assert not (tmp_path / "o.weights").exists()
    # given as weights, the same
    assert main(["detect", CFG, str(exports[fmt]), PHOTO, "-o", str(tmp_path / "p.jpg")]) == 1
    err = capsys.readouterr().err
    assert f"this is {kind}" in err and "weights_only" not in err, err


# ------------------------------------------------------------------------------------ real flags

@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    out = tmp_path_factory.mktemp("backbone") / "bb.weights"
    assert main(["partial", CFG, WEIGHTS, str(out), "5"]) == 0
    return str(out)


def test_backbone_message_names_the_flag(backbone, tmp_path, capsys):
    capsys.readouterr()
    assert main(["inspect-weights", CFG, backbone]) == 1
    err = capsys.readouterr().err
    assert "pass --partial 6 to load a backbone" in err and "upto=" not in err, err
    assert main(["detect", CFG, backbone, PHOTO, "-o", str(tmp_path / "p.jpg")]) == 1
    err = capsys.readouterr().err
    assert "--partial 6 to `darknet-py inspect-weights`" in err and "upto=" not in err, err


def test_inspect_weights_partial_lists_only_the_layers_read(backbone, capsys):
    capsys.readouterr()
    assert main(["inspect-weights", CFG, backbone, "--partial", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    layers = [int(line.split()[0]) for line in lines[1:-1]]
    assert layers == [0, 2, 4]  # the convolutions among layers 0..4 (1 and 3 are maxpools: no weights)
    assert lines[-1] == "layers 5..23: not read (--partial 5)"
    assert main(["inspect-weights", CFG, WEIGHTS]) == 0
    assert max(int(line.split()[0]) for line in capsys.readouterr().out.splitlines()[1:]) > 5


def test_implausible_header_names_force_header(tmp_path, capsys):
    data = bytearray(open(WEIGHTS, "rb").read())
    data[8:12] = struct.pack("<i", -1)  # revision -1: implausible, same size
    bad = tmp_path / "bad.weights"
    bad.write_bytes(bytes(data))
    capsys.readouterr()
    for argv in (["detect", CFG, str(bad), PHOTO, "-o", str(tmp_path / "p.jpg")], ["inspect-weights", CFG, str(bad)],
                 ["export", CFG, str(bad), "--format", "pt", "-o", str(tmp_path / "m.pt")],
                 ["partial", CFG, str(bad), str(tmp_path / "bb.weights"), "3"]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "implausible header" in err and "(--force-header reads it anyway)" in err, (argv, err)
        assert main([*argv, "--force-header"]) == 0, argv
        capsys.readouterr()


# ------------------------------------------------------------------------------------ what was written

def test_several_photos_say_where_drawn_photos_go(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copy(PHOTO, folder / name)
    base = [CFG, WEIGHTS, "--names", NAMES]
    assert main(["detect", *base, str(folder)]) == 0
    err = capsys.readouterr().err
    assert "no drawn photos written (-o NAME writes NAME-<stem>.jpg" in err and "--save-dir DIR" in err, err
    assert main(["detect", *base, str(folder / "a.jpg"), str(folder / "b.jpg")]) == 0
    assert "drawn photos written to predictions-<stem>.jpg" in capsys.readouterr().err
    assert (tmp_path / "predictions-a.jpg").exists() and (tmp_path / "predictions-b.jpg").exists()
    assert main(["detect", *base, str(folder), "-o", "mine"]) == 0
    assert "drawn photos written to mine-<stem>.jpg" in capsys.readouterr().err
    assert (tmp_path / "mine-a.jpg").exists()
    for chosen in (["--save-dir", "drawn"], ["--json-out", "d.jsonl"], ["--save-txt", "labels"]):
        assert main(["detect", *base, str(folder), *chosen]) == 0  # outputs chosen: they say where
        assert "drawn photos" not in capsys.readouterr().err
    assert main(["detect", *base, str(folder / "a.jpg"), "-o", "one.jpg"]) == 0  # one photo: Darknet's quiet
    assert "drawn photos" not in capsys.readouterr().err


@pytest.mark.parametrize("image", [True, False])
def test_export_names_the_image_it_compared_on(tmp_path, capsys, image):
    extra = ["--image", PHOTO] if image else []
    assert main(["export", CFG, WEIGHTS, "--format", "pt", "-o", str(tmp_path / "m.pt"), *extra]) == 0
    out = capsys.readouterr().out
    assert (f"on {PHOTO} (" in out) if image else ("on the synthetic sample image (" in out), out


# ------------------------------------------------------------------------------------ names printed

def test_control_characters_in_names_are_escaped(tmp_path, capsys):
    photo = tmp_path / "x\nperson: 99%\t.jpg"
    shutil.copy(PHOTO, photo)
    names = tmp_path / "odd.names"
    names.write_text("".join(f"c\x1b[31m{i}\r\n" for i in range(6)))
    missing = tmp_path / "gone\nrectangle: 100%.jpg"
    assert main(["detect", CFG, WEIGHTS, str(photo), str(missing), "--names", str(names), "-thresh", "0.25",
                 "-o", str(tmp_path / "p")]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"{tmp_path}/x\\nperson: 99%\\t.jpg: Predicted in "), lines[0]
    assert len(lines) > 1 and all(line.startswith("c\\x1b[31m") and line.endswith("%") for line in lines[1:]), lines
    assert "\x1b" not in captured.out and "\x1b" not in captured.err
    assert "gone\\nrectangle: 100%.jpg" in captured.err and not any(
        line.startswith("rectangle") for line in captured.err.splitlines())


def test_seen_width_hint_names_the_flag(tmp_path, capsys):
    data = open(WEIGHTS, "rb").read()
    bad = tmp_path / "bad.weights"
    bad.write_bytes(struct.pack("<iii", 0, 1, 0) + data[12:])  # version 0.1: a 4-byte seen, the file has 8
    capsys.readouterr()
    assert main(["inspect-weights", CFG, str(bad)]) == 1
    err = capsys.readouterr().err
    assert "pass --seen-bytes 8" in err and "seen_bytes=" not in err, err
