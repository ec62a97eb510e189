"""darknet_py.files, the one way darknet-py writes: what it refuses (special files, folders, the
run's inputs by identity, existing files it was not told to replace, a name another run holds), and
that no death of the writer -- an exception, SIGTERM, SIGKILL at a random point -- leaves half a file
at the final name or a temporary file beside it."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from darknet_py.errors import OutputError, UsageError
from darknet_py.files import (GrowingFile, OutputLock, OutputPlan, StagedFolder, TempPath, atomic_output,
                              check_target, input_scope, note_input, release_input, write_bytes, write_text)
from tests.helpers.processes import child_env
from tests.helpers.paths import ROOT


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def leftovers(folder) -> list[str]:
    """Hidden temporary names, stages and locks darknet_py.files makes."""
    return sorted(n for n in os.listdir(folder) if ".tmp." in n or n.endswith(".lock"))


# ------------------------------------------------------------------ special files and folders


def test_refuses_a_device_and_leaves_it_a_device():
    before = os.stat("/dev/null")
    with pytest.raises(OutputError, match=r"/dev/null: is a character device"):
        write_bytes("/dev/null", b"x" * 100)
    after = os.stat("/dev/null")
    assert (after.st_mode, after.st_rdev, after.st_ino) == (before.st_mode, before.st_rdev, before.st_ino)


def test_refuses_a_named_pipe_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="is a named pipe"):
        write_text(fifo, "x")  # opening a pipe for writing with no reader would hang: never reached
    assert os.path.exists(fifo) and not os.path.isfile(fifo)
    assert leftovers(tmp_path) == []


def test_refuses_a_socket_a_folder_and_a_dangling_link(tmp_path):
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(OutputError, match="is a socket"):
            write_bytes(sock_path, b"x")
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "keep").write_text("k")
    with pytest.raises(OutputError, match="is a directory"):
        write_bytes(folder, b"x")
    assert (folder / "keep").read_text() == "k"
    link = tmp_path / "dangling"
    os.symlink(tmp_path / "nowhere", link)
    with pytest.raises(OutputError, match="symbolic link to nothing"):
        write_bytes(link, b"x")
    assert not (tmp_path / "nowhere").exists()
    assert leftovers(tmp_path) == []


def test_a_link_to_a_regular_file_replaces_the_file_and_keeps_the_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    os.symlink(real, link)
    write_text(link, "new")
    assert os.path.islink(link) and real.read_text() == "new"


# ------------------------------------------------------------------ the run's inputs, by identity


@pytest.mark.parametrize("spelling", ["same", "dotted", "hard link", "symbolic link"])
def test_an_input_is_refused_however_it_is_spelt(tmp_path, spelling):
    weights = tmp_path / "w.weights"
    weights.write_bytes(b"\x00" * 64)
    before = digest(weights)
    target = {"same": weights, "dotted": tmp_path / "." / "w.weights"}.get(spelling)
    if spelling == "hard link":
        target = tmp_path / "hard"
        os.link(weights, target)
    elif spelling == "symbolic link":
        target = tmp_path / "soft"
        os.symlink(weights, target)
    with input_scope():
        note_input(weights, "weights")
        with pytest.raises(OutputError, match="is the weights .*refusing to write over an input"):
            write_bytes(target, b"garbage")
    assert digest(weights) == before
    with input_scope():  # another run: not its input
        write_bytes(target, b"ok")
    assert open(target, "rb").read() == b"ok"


def test_a_deleted_input_whose_inode_is_reused_is_not_confused_with_a_new_file(tmp_path):
    old = tmp_path / "old.cfg"
    old.write_text("x")
    with input_scope():
        note_input(old, "cfg")
        ino = os.stat(old).st_ino
        old.unlink()
        new = tmp_path / "new.txt"
        for _ in range(50):  # try to get the inode back; whether or not we do, the write must pass
            new.write_text("y")
            if os.stat(new).st_ino == ino:
                break
            new.unlink()
        write_text(new, "fine")
    assert new.read_text() == "fine"


def test_release_input_lets_the_run_replace_its_resume_file(tmp_path):
    last = tmp_path / "net_last.weights"
    last.write_bytes(b"1")
    with input_scope():
        note_input(last, "weights")
        with pytest.raises(OutputError):
            write_bytes(last, b"2")
        release_input(last)
        write_bytes(last, b"2")
    assert last.read_bytes() == b"2"


# ------------------------------------------------------------------ what a run plans to write


def test_plan_refuses_two_results_on_one_file_and_unnamed_existing_files(tmp_path):
    plan = OutputPlan()
    plan.add(tmp_path / "a.txt", "labels of a/x.jpg", source="a")
    plan.add(tmp_path / "." / "a.txt", "labels of a/x.jpg", source="a")  # the same result twice: one file
    with pytest.raises(UsageError, match="two results would be written to this one file"):
        plan.add(tmp_path / "a.txt", "labels of b/x.jpg", source="b")
    (tmp_path / "old.txt").write_text("keep")
    with pytest.raises(UsageError, match=r"old.txt exists \(derived\).*overwrite=True") as err:
        OutputPlan().add(tmp_path / "old.txt", "derived", named=False)
    assert err.value.option == ("overwrite", "True")
    OutputPlan().add(tmp_path / "old.txt", "named by the user", named=True)
    OutputPlan(overwrite=True).add(tmp_path / "old.txt", "derived", named=False)
    assert (tmp_path / "old.txt").read_text() == "keep"  # planning writes nothing


# ------------------------------------------------------------------ whole files


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as fh:
            fh.write(b"half")
            raise RuntimeError("the export failed")
    assert target.read_bytes() == b"good"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]


def test_permissions_are_those_open_would_give(tmp_path):
    old = os.umask(0o027)
    try:
        write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "f").st_mode & 0o777 == 0o640


def _forked_writer(target, kind) -> int:
    """A forked child writing ``target``: "whole", 64 slow chunks of 64 KiB through atomic_output;
    "growing", JSON lines through GrowingFile. Returns the child's pid once its write is under way.
    (Forked, not a new interpreter: 20 of them cost no imports.)"""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            chunk = b"n" * 65536
            if kind == "whole":
                with atomic_output(target) as fh:
                    os.write(write_end, b"s")
                    for _ in range(64):
                        fh.write(chunk)
                        time.sleep(0.002)
            else:
                g = GrowingFile(target)
                os.write(write_end, b"s")
                for i in range(10 ** 6):
                    g.write(json.dumps({"line": i}) + "\n")
                    if i % 100 == 0:
                        g.flush()
                        time.sleep(0.001)
                g.finish()
        finally:
            os._exit(0)
    os.close(write_end)
    assert os.read(read_end, 1) == b"s"
    os.close(read_end)
    return pid


def test_killed_at_random_points_never_leaves_half_a_file_nor_a_temporary(tmp_path):
    """20 SIGKILLs at random points of a 4 MiB write: the final name holds the old file or the whole
    new one, and nothing else is left in the folder."""
    import random

    rng = random.Random(15)
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "yolov3.weights"
    old = b"o" * 1000
    new_digest = hashlib.sha256(b"n" * 65536 * 64).hexdigest()
    outcomes = set()
    for _ in range(20):
        target.write_bytes(old)
        pid = _forked_writer(target, "whole")
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        got = target.read_bytes()
        assert got == old or hashlib.sha256(got).hexdigest() == new_digest
        outcomes.add("old" if got == old else "new")
        assert sorted(os.listdir(folder)) == ["yolov3.weights"]
    assert "old" in outcomes  # the kills did land during the write


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_growing_file_killed_leaves_no_partial_file(tmp_path, sig):
    """Without the command line's handler (library use) SIGTERM kills as SIGKILL does: no file at
    the final name, no temporary beside it, and the name free for the next run."""
    target = tmp_path / "dets.jsonl"
    pid = _forked_writer(target, "growing")
    time.sleep(0.2)
    assert not target.exists()  # under a temporary name while it grows
    os.kill(pid, sig)
    os.waitpid(pid, 0)
    assert not target.exists() and leftovers(tmp_path) == []
    GrowingFile(target).finish()
    assert target.read_text() == "" and leftovers(tmp_path) == []


def test_a_growing_file_appears_whole_when_finished_and_a_second_writer_is_refused(tmp_path):
    target = tmp_path / "dets.jsonl"
    g = GrowingFile(target)
    g.write('{"a": 1}\n')
    with pytest.raises(OutputError, match="another run is writing this output now"):
        GrowingFile(target)
    assert not target.exists()
    g.finish()
    assert [json.loads(x) for x in target.read_text().splitlines()] == [{"a": 1}]
    assert leftovers(tmp_path) == []
    GrowingFile(target).finish()  # the name is free again


def test_a_lock_is_freed_when_its_holder_dies(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom darknet_py.files import OutputLock\n"
                             "lock = OutputLock(sys.argv[1]); print('held', flush=True); time.sleep(60)",
                             str(tmp_path / "backup" )], stdout=subprocess.PIPE, env=child_env(), cwd=str(ROOT))
    assert proc.stdout.readline().strip() == b"held"
    with pytest.raises(OutputError, match="another run"):
        OutputLock(tmp_path / "backup")
    proc.kill()
    proc.wait()
    OutputLock(tmp_path / "backup").release()


def test_temp_path_and_staged_folder(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"old video")
    tmp = TempPath(video)
    assert os.path.dirname(tmp.tmp) == str(tmp_path) and tmp.tmp.endswith(".mp4")
    open(tmp.tmp, "wb").write(b"new video")
    assert video.read_bytes() == b"old video"
    tmp.commit()
    assert video.read_bytes() == b"new video" and leftovers(tmp_path) == []

    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "other.txt").write_text("kept")
    staged = StagedFolder(labels)
    open(staged.path("sub/a.txt"), "w").write("0 0.5 0.5 0.1 0.1\n")
    assert not (labels / "sub").exists()  # nothing in the folder until the end
    staged.finish()
    assert (labels / "sub" / "a.txt").read_text() == "0 0.5 0.5 0.1 0.1\n"
    assert (labels / "other.txt").read_text() == "kept"
    assert leftovers(tmp_path) == [] and leftovers(labels) == []


def test_check_target_refuses_a_path_through_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_target(tmp_path / "f" / "out.txt")


def test_outside_a_run_nothing_is_recorded_and_a_library_user_may_opt_in(tmp_path):
    path = tmp_path / "w.weights"
    path.write_bytes(b"1")
    note_input(path, "weights")  # no scope: a long-lived process does not collect every file it read
    write_bytes(path, b"2")
    with input_scope():
        note_input(path, "weights")
        with pytest.raises(OutputError, match="is the weights"):
            write_bytes(path, b"3")
    assert path.read_bytes() == b"2"
