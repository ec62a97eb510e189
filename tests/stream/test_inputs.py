"""darknet_py.stream.inputs: INPUT strings (folders, globs, image lists, files, standard input,
cameras, videos) -> items in order, and the output names refused up front."""
from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import pytest

from darknet_py.cli import main
from darknet_py.stream.inputs import expand_inputs
from tests.helpers.stream import BASE, OPTS, expected_record, records

# The decoding worker and the network share the 2 CI cores: the network gets one thread.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_glob_list_stdin_and_folder_inputs_agree(model, names, photos, tmp_path, capsys, monkeypatch):
    folder, good, corrupt = photos
    ok = good
    # a list beside its photos, with relative entries (resolved against the list's folder, as
    # darknet_py.dataset does) and one missing entry, reported with its line number
    lst = folder / "some.txt"
    lst.write_text("".join(f"{Path(p).name}\n" for p in ok[:3]) + "gone.jpg\n" + f"{ok[3]}\r\n\n")
    runs = {}
    for form, inputs in (("glob", [str(folder / "p0[0-9].jpg")]), ("list", [str(lst)]),
                         ("files", ok[:4])):
        out = tmp_path / f"{form}.jsonl"
        code = main(["detect", *BASE, *inputs, *OPTS, "--json-out", str(out)])
        runs[form] = (code, records(out.read_text()), capsys.readouterr().err)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(ok[:4]) + "\n"))
    assert main(["detect", *BASE, *OPTS, "--json-out", str(tmp_path / "stdin.jsonl")]) == 0
    runs["stdin"] = (0, records((tmp_path / "stdin.jsonl").read_text()), capsys.readouterr().err)

    want = {p: expected_record(model, names, p, p) for p in ok}
    assert runs["glob"][0] == 0 and runs["glob"][1] == [want[p] for p in ok]  # the corrupt p03b does not match
    code, recs, err = runs["list"]
    assert code == 1 and f"{lst}:4: 'gone.jpg' not found" in err and "4 ok, 1 failed" in err
    assert [r["image"] for r in recs] == [str(folder / Path(p).name) for p in ok[:4]]
    assert [r["detections"] for r in recs] == [want[p]["detections"] for p in ok[:4]]
    assert runs["files"][1] == runs["stdin"][1] == [want[p] for p in ok[:4]]


def test_inputs_and_refusals(photos, tmp_path, capsys):
    folder, good, _ = photos
    nested = tmp_path / "nested"
    (nested / "sub").mkdir(parents=True)
    shutil.copy(good[0], nested / "sub" / "a.jpg")
    shutil.copy(good[1], nested / "b.png.jpg")
    items = expand_inputs([str(nested)])
    assert [i.rel for i in items] == ["b.png.jpg"]
    items = expand_inputs([str(nested)], recursive=True)
    assert [i.rel for i in items] == ["b.png.jpg", "sub/a.jpg"] and all(i.kind == "image" for i in items)
    (empty := tmp_path / "empty" / "deeper").mkdir(parents=True)
    [e] = expand_inputs([str(empty.parent)])
    assert e.kind == "error" and "recursive=True" in e.error  # the library names its argument...
    assert main(["detect", *BASE, str(empty.parent), *OPTS]) == 1
    assert "--recursive" in capsys.readouterr().err  # ...the command line its option
    [e] = expand_inputs([str(tmp_path / "*.nothing")])
    assert e.kind == "error" and "no image or video files match" in e.error
    cams = expand_inputs(["0"], cameras=[2])
    assert [(c.kind, c.camera) for c in cams] == [("camera", 0), ("camera", 2)]
    assert expand_inputs(["clip.mp4"])[0].kind == "video"

    # two inputs that would write the same label file, or a drawn photo over its source: refused up front
    shutil.copy(good[2], nested / "sub" / "b.png.png")
    assert main(["detect", *BASE, str(nested / "b.png.jpg"), str(nested / "sub" / "b.png.png"), *OPTS,
                 "--save-txt", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would both be written" in err[0]
    assert main(["detect", *BASE, str(nested), *OPTS, "--save-dir", str(nested)]) == 1
    assert "would overwrite the input" in capsys.readouterr().err
    assert main(["detect", *BASE, good[0], *OPTS, "--save-video", str(tmp_path / "v.avi")]) == 1
    assert "needs a video or camera input" in capsys.readouterr().err
    assert main(["detect", *BASE, good[0], *OPTS, "--batch", "0"]) == 1
    assert "--batch 0: expected an integer >= 1" in capsys.readouterr().err
