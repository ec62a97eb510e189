"""Every command as a careless or hostile user runs it: an output named after an input, a device, a
name two results share, an existing file nobody named, two runs on one name, SIGTERM half way. Each
case ends in one line and a non-zero status before any work, or in a complete result -- and every
input's bytes are the same afterwards."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from darknet_py.cli import main
from darknet_py.files import OutputLock
from tests.helpers.paths import ROOT
from tests.helpers.processes import child_env

CFG = ROOT / "cfg" / "yolov3-tiny-shapes.cfg"
WEIGHTS = ROOT / "weights" / "yolov3-tiny-shapes.weights"
NAMES = ROOT / "cfg" / "shapes.names"
PHOTO = ROOT / "data" / "shapes.jpg"
OPTS = ["--names", str(NAMES), "--no-progress"]


def digests(*paths) -> dict:
    return {str(p): hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """Copies of the shipped model and photo (so no test can harm the checkout's), cwd tmp_path."""
    monkeypatch.chdir(tmp_path)
    cfg, weights, photo = tmp_path / "m.cfg", tmp_path / "m.weights", tmp_path / "x.jpg"
    shutil.copy(CFG, cfg)
    shutil.copy(WEIGHTS, weights)
    shutil.copy(PHOTO, photo)
    return cfg, weights, photo


def refused(argv, capsys, *pattern: str) -> str:
    """Run the command: exit status 1, exactly one line on stderr, containing every ``pattern``."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, (code, err)
    for p in pattern:
        assert p in err[0], err[0]
    return err[0]


def shapes_data(folder, photo, split: str, **keys):
    """A .data file in ``folder`` for the shapes model whose ``split`` list holds ``photo``."""
    (folder / f"{split}.txt").write_text(f"{photo}\n")
    data = folder / f"{split}.data"
    data.write_text(f"classes = 6\n{split} = {folder / f'{split}.txt'}\nnames = {NAMES}\n"
                    + "".join(f"{k} = {v}\n" for k, v in keys.items()))
    return data


def tiny_video(path, frames=6, size=(96, 64)):
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()


# ------------------------------------------------------------------ an output over an input


@pytest.mark.parametrize("flag", ["--json-out", "-o", "--save-video"])
def test_detect_output_over_the_photo_or_weights_is_refused(work, capsys, flag):
    cfg, weights, photo = work
    before = digests(cfg, weights, photo)
    target = weights if flag == "--json-out" else photo
    if flag == "--save-video":
        video = work[0].parent / "v.avi"
        tiny_video(video)
        before |= digests(video)
        refused(["detect", cfg, weights, video, *OPTS, flag, video], capsys, "v.avi", "is the video",
                "refusing to write over an input")
    else:
        refused(["detect", cfg, weights, photo, *OPTS, flag, target], capsys, str(target), "refusing to write over "
                "an input")
    assert digests(*before) == before


def test_json_out_through_a_link_to_the_photo_is_refused(work, capsys):
    cfg, weights, photo = work
    before = digests(photo)
    os.symlink(photo, photo.parent / "out.jsonl")
    refused(["detect", cfg, weights, photo, *OPTS, "--json-out", photo.parent / "out.jsonl"], capsys,
            "is the photo")
    assert digests(photo) == before


def test_save_txt_over_the_datasets_own_labels_is_refused_even_with_overwrite(work, capsys):
    cfg, weights, _ = work
    ds = work[0].parent / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "labels").mkdir()
    shutil.copy(PHOTO, ds / "images" / "a.jpg")
    (ds / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    before = digests(ds / "images" / "a.jpg", ds / "labels" / "a.txt")
    for extra in ([], ["--overwrite"]):
        refused(["detect", cfg, weights, ds / "images", *OPTS, "--save-txt", ds / "labels", *extra], capsys,
                "label file of", "refusing to write over an input")
    assert digests(*before) == before


def test_output_on_a_device_is_refused_and_the_device_kept(work, capsys):
    cfg, weights, photo = work
    st = os.stat("/dev/null")
    refused(["detect", cfg, weights, photo, *OPTS, "--json-out", "/dev/null"], capsys, "/dev/null",
            "character device")
    m = work[0].parent / "m.pt"
    assert main(["export", str(cfg), str(weights), "--format", "pt", "-o", str(m)]) == 0
    capsys.readouterr()
    for argv in (["convert", m, "/dev/null"], ["partial", cfg, weights, "/dev/null", "3"],
                 ["export", cfg, weights, "--format", "pt", "-o", "/dev/null"]):
        refused(argv, capsys, "/dev/null: is a character device")
    assert os.stat("/dev/null").st_rdev == st.st_rdev and os.stat("/dev/null").st_ino == st.st_ino


@pytest.mark.parametrize("case", ["convert onto itself", "partial onto its weights", "export pt without -o",
                                  "map report onto the data file"])
def test_commands_refuse_to_write_over_their_own_input(work, capsys, case):
    cfg, weights, photo = work
    tmp = cfg.parent
    m = tmp / "m.pt"
    assert main(["export", str(cfg), str(weights), "--format", "pt", "-o", str(m)]) == 0
    capsys.readouterr()
    data = shapes_data(tmp, photo, "valid")
    other = tmp / "other.cfg"
    shutil.copy(cfg, other)
    before = digests(cfg, weights, photo, m, data, other)
    argv = {"convert onto itself": ["convert", m, m],
            "partial onto its weights": ["partial", cfg, weights, weights, "5"],
            # the default name of a --format pt export of m.pt is m.pt itself
            "export pt without -o": ["export", other, m, "--format", "pt"],
            "map report onto the data file": ["detector", "map", data, cfg, weights, "--report", data]}[case]
    refused(argv, capsys, "refusing to write over an input")
    assert digests(*before) == before


# ------------------------------------------------------------------ two results, one name; names nobody gave


def test_two_photos_on_one_drawn_name_stop_before_any_work(work, capsys):
    cfg, weights, _ = work
    tmp = cfg.parent
    for d in ("a", "b"):
        (tmp / d).mkdir()
        shutil.copy(PHOTO, tmp / d / "x.jpg")
    refused(["detect", cfg, weights, tmp / "a" / "x.jpg", tmp / "b" / "x.jpg", *OPTS, "-o", "pred"], capsys,
            "pred-x.jpg", "two results would be written to this one file")
    assert not list(tmp.glob("pred*"))


def test_existing_files_in_an_output_folder_need_overwrite(work, capsys):
    cfg, weights, photo = work
    out = cfg.parent / "out"
    out.mkdir()
    (out / "x.txt").write_text("mine\n")
    msg = refused(["detect", cfg, weights, photo, *OPTS, "--save-txt", out], capsys, "x.txt exists", "--overwrite")
    assert "overwrite=True" not in msg  # the command line names its flag
    assert (out / "x.txt").read_text() == "mine\n"
    assert main(["detect", str(cfg), str(weights), str(photo), *OPTS, "--save-txt", str(out), "--overwrite"]) == 0
    rows = (out / "x.txt").read_text().splitlines()
    assert rows and all(len(r.split()) == 5 for r in rows)
    assert sorted(os.listdir(out)) == ["x.txt"] and not [n for n in os.listdir(out.parent) if ".tmp." in n]


def test_export_default_name_is_not_replaced_unless_asked(work, capsys):
    cfg, weights, _ = work
    default = weights.with_suffix(".pt")
    default.write_bytes(b"someone's checkpoint")
    refused(["export", cfg, weights, "--format", "pt"], capsys, "m.pt exists", "--overwrite")
    assert default.read_bytes() == b"someone's checkpoint"
    assert main(["export", str(cfg), str(weights), "--format", "pt", "--overwrite"]) == 0
    assert default.read_bytes()[:2] == b"PK"


def test_detector_valid_keeps_earlier_results_unless_asked(work, capsys):
    cfg, weights, photo = work
    tmp = cfg.parent
    data = shapes_data(tmp, photo, "valid", results=tmp / "res")
    argv = ["detector", "valid", data, cfg, weights, "--batch", "1", "--workers", "0", "--thresh", "0.2"]
    assert main([str(a) for a in argv]) == 0
    files = sorted((tmp / "res").iterdir())
    first = {f.name: f.read_bytes() for f in files}
    assert len(first) == 6 and any(first.values())  # comp4_det_test_<class>.txt, some with rows
    capsys.readouterr()
    refused(argv, capsys, "comp4_det_test_", "exists", "--overwrite")
    assert {f.name: f.read_bytes() for f in files} == first
    assert main([str(a) for a in argv] + ["--overwrite"]) == 0
    assert {f.name: f.read_bytes() for f in sorted((tmp / "res").iterdir())} == first


def test_synth_into_a_folder_with_a_dataset_of_the_same_names_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "train.txt").write_text("my own list\n")
    refused(["synth", out, "--train", "2", "--valid", "1"], capsys, "train.txt exists", "--overwrite")
    assert (out / "train.txt").read_text() == "my own list\n"
    assert sorted(os.listdir(out)) == ["train.txt"]  # refused before anything was written


# ------------------------------------------------------------------ two runs at once


def _detect_proc(work, extra):
    cfg, weights, photo = work
    return subprocess.Popen([sys.executable, "-m", "darknet_py", "detect", str(cfg), str(weights), *[str(photo)] * 30,
                             *OPTS, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(),
                            cwd=str(cfg.parent))


def test_two_runs_on_one_json_lines_file_are_refused_or_both_complete(work):
    out = work[0].parent / "same.jsonl"
    procs = [_detect_proc(work, ["--json-out", str(out)]) for _ in range(2)]
    results = [(p.wait(timeout=240), p.stderr.read().decode()) for p in procs]
    assert any(code == 0 for code, _ in results), results
    for code, err in results:
        assert code == 0 or (code == 1 and "another run is writing this output now" in err), err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 30 and all("detections" in r for r in lines)  # one run's result, whole
    assert not [n for n in os.listdir(out.parent) if ".tmp." in n or n.endswith(".lock")]


def test_a_second_training_on_the_same_backup_names_is_refused(work, capsys):
    cfg, weights, photo = work
    tmp = cfg.parent
    data = shapes_data(tmp, photo, "train", backup=tmp / "backup")
    (tmp / "backup").mkdir()
    with OutputLock(tmp / "backup" / "m", "training's backup names"):  # another training, running
        refused(["detector", "train", data, cfg, weights, "--max-batches", "1", "--device", "cpu"], capsys,
                "another run is writing this training's backup names")
    final = tmp / "backup" / "m_final.weights"
    final.write_bytes(b"an earlier run's result")
    refused(["detector", "train", data, cfg, weights, "--max-batches", "1", "--device", "cpu"], capsys,
            "m_final.weights exists", "--overwrite")
    assert final.read_bytes() == b"an earlier run's result"


# ------------------------------------------------------------------ SIGTERM half way


def test_sigterm_during_save_video_leaves_a_playable_video_and_no_temporary(tmp_path):
    video = tmp_path / "in.avi"
    tiny_video(video, frames=400, size=(160, 128))
    out = tmp_path / "out.avi"
    jsonl = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "darknet_py", "detect", str(CFG), str(WEIGHTS), str(video), *OPTS,
                             "--save-video", str(out), "--json-out", str(jsonl)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=child_env(), cwd=str(tmp_path))
    deadline = time.time() + 120
    while not any(n.startswith(".out.avi.tmp.") and os.path.getsize(tmp_path / n) > 0 for n in os.listdir(tmp_path)):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    # what ran, finished: every frame has its line (a frame whose drawing the signal cut short may
    # have its line without its picture)
    assert 0 < frames < 400 and len(lines) - 1 <= frames <= len(lines)
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".")) == []


@pytest.mark.parametrize("which", ["cfg", "names"])
def test_detect_json_out_over_the_cfg_or_names_is_refused(work, capsys, which):
    cfg, weights, photo = work
    names = cfg.parent / "n.names"
    names.write_text(NAMES.read_text())
    target = cfg if which == "cfg" else names
    before = digests(cfg, weights, photo, names)
    refused(["detect", cfg, weights, photo, "--names", names, "--no-progress", "--json-out", target], capsys,
            str(target), "refusing to write over an input")
    assert digests(*before) == before
