"""The one way darknet-py writes a file, and what it refuses to write over.

Every output, whole or growing, goes to a temporary file in the target's own folder and is renamed
over the target in one step when it is complete, so a reader (or a process killed half way) sees
the old file or the new one, never half of one:

- :func:`atomic_output` / :func:`write_bytes` / :func:`write_text`: a whole file (weights,
  checkpoints, exports, result files, drawn photos).
- :class:`GrowingFile`: a file that grows while the run goes (JSON lines); renamed into place when
  the run ends, Ctrl-C and SIGTERM included, so what ran is kept.
- :class:`TempPath`: a temporary *name* for writers that need one (OpenCV's video writer).
- :class:`StagedFolder`: a folder of outputs (label files, drawn photos) filled in a hidden
  folder beside it and moved in at the end.

Before anything is written, :func:`check_target` refuses a target that is a folder, a device, a
pipe or a socket (renaming over ``/dev/null`` would replace the device node), a dangling link, or
one of the run's inputs (the cfg, weights, names, data, lists, photos, videos, labels) -- by the
file's identity (device and inode), not by its spelling, so ``./w.weights``, a hard link and a
symbolic link to the weights are all refused. Readers record their files with :func:`note_input`;
the command line opens one :func:`input_scope` per command.

Temporary files: on Linux an anonymous file (``O_TMPFILE``), which the kernel removes with its
last descriptor, so even SIGKILL leaves nothing behind; it gets a name only in the instant before
the rename. Elsewhere an exclusively created, unpredictable ``.NAME.tmp.XXXX`` (``mkstemp``: no one
can plant a link under it), removed on every failure. The final file gets the permissions
``open()`` would have given it (0666 less the umask).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import IO, Union

from .errors import OutputError, UsageError

PathLike = Union[str, "os.PathLike[str]"]


# ---------------------------------------------------------------------------- the run's inputs

class InputSet:
    """Files a run reads, by identity. A file is matched by (device, inode) only while the path it
    was recorded under still leads to it, so a deleted input whose inode the system reuses is not
    mistaken for a new file."""

    def __init__(self) -> None:
        self._by_id: dict[tuple[int, int], set[str]] = {}
        self._lock = threading.Lock()

    def add(self, path: PathLike, what: str = "input") -> None:
        p = os.fspath(path)
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            return
        if not stat.S_ISREG(st.st_mode):
            return
        with self._lock:
            self._by_id.setdefault((st.st_dev, st.st_ino), set()).add(f"{what}\0{os.path.abspath(p)}")

    def discard(self, path: PathLike) -> None:
        with contextlib.suppress(OSError, ValueError):
            st = os.stat(os.fspath(path))
            with self._lock:
                self._by_id.pop((st.st_dev, st.st_ino), None)

    def match(self, st: os.stat_result) -> tuple[str, str] | None:
        """(what, path) of the input that is the file ``st`` describes, or None."""
        with self._lock:
            entries = list(self._by_id.get((st.st_dev, st.st_ino), ()))
        for entry in entries:
            what, path = entry.split("\0", 1)
            with contextlib.suppress(OSError):
                now = os.stat(path)
                if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                    return what, path
        return None


_scope = threading.local()
_NO_SCOPE = InputSet()  # stays empty: outside a scope nothing is recorded


def _inputs() -> InputSet:
    return getattr(_scope, "inputs", None) or _NO_SCOPE


@contextlib.contextmanager
def input_scope() -> Iterator[InputSet]:
    """A fresh set of inputs for one run: every command runs in one. Library code that wants the
    same protection opens its own (``with darknet_py.files.input_scope(): ...``); outside any
    scope inputs are not recorded (a long-lived process would otherwise collect every file it
    ever read), and only the special-file checks apply."""
    previous = getattr(_scope, "inputs", None)
    _scope.inputs = InputSet()
    try:
        yield _scope.inputs
    finally:
        _scope.inputs = previous


def note_input(path: PathLike, what: str = "input") -> None:
    """Record ``path`` (if it is a regular file) as an input of the current run (see
    :func:`input_scope`): no output of the run may replace it."""
    inputs = _inputs()
    if inputs is not _NO_SCOPE:
        inputs.add(path, what)


def note_inputs(paths: Iterable[PathLike], what: str = "input") -> None:
    for p in paths:
        note_input(p, what)


def release_input(path: PathLike) -> None:
    """Let the run replace an input it read (training's resume file ``NAME_last.weights``)."""
    _inputs().discard(path)


# ---------------------------------------------------------------------------- target checks

def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for messages (readers' and writers' alike)."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_target(path: PathLike) -> str:
    """The path to write for the output ``path``, after the checks every output gets: not a
    folder, device, pipe or socket, not a dangling link, not an input of this run. A link to a
    regular file is followed (the link stays, the file it names is replaced)."""
    target = os.fspath(path)
    if not target:
        raise OutputError("an empty file name", target)
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputError("a part of the path is not a folder", target) from None
    except OSError as e:
        raise OutputError(f"cannot write: {e.strerror or e}", target) from None
    if st is None:
        if os.path.islink(target):
            raise OutputError("is a symbolic link to nothing (" + os.readlink(target) + "); refusing to write "
                              "through it", target)
        return target
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"is {file_kind(st.st_mode)}; an output must be a regular file (refusing to replace it)",
                          target)
    hit = _inputs().match(st)
    if hit is not None:
        what, source = hit
        same = "" if os.path.abspath(target) == source else f" ({source})"
        raise OutputError(f"is the {what}{same} of this run; refusing to write over an input: name another "
                          "output", target)
    return os.path.realpath(target) if os.path.islink(target) else target


def _fsync_folder(folder: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_name(name: str, suffix: str = "") -> str:
    return f".{name}.tmp.{secrets.token_hex(4)}{suffix}"


class _TempFile:
    """A temporary file in ``folder``: anonymous where the system allows (nothing to remove after
    any death), else a named, exclusively created one. ``commit`` renames it over the target."""

    def __init__(self, target: str, mode: str = "wb", encoding: str = "utf-8") -> None:
        if mode not in ("wb", "w"):
            raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
        self.target = target
        self.folder, self.name = os.path.split(os.path.abspath(target))
        self.tmp: str | None = None
        fd = self._anonymous()
        if fd is None:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{self.name}.tmp.", dir=self.folder)
        try:
            self.file: IO = os.fdopen(fd, mode, **({"encoding": encoding} if mode == "w" else {}))
        except BaseException:
            os.close(fd)
            self._remove()
            raise

    def _anonymous(self) -> int | None:
        flag = getattr(os, "O_TMPFILE", 0)
        if not flag or not os.path.isdir("/proc/self/fd"):
            return None
        try:
            return os.open(self.folder, flag | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.EXDEV):
                return None  # a file system without O_TMPFILE: a named temporary file instead
            raise

    def _remove(self) -> None:
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        if self.tmp is None:  # anonymous: give it a name for the instant before the rename
            for _ in range(100):
                name = os.path.join(self.folder, _tmp_name(self.name))
                # os.link follows /proc/self/fd/N (the anonymous file) only through linkat, which a
                # dir_fd selects; a plain link() would link the /proc entry itself
                folder_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
                try:
                    os.link(f"/proc/self/fd/{self.file.fileno()}", os.path.basename(name), dst_dir_fd=folder_fd,
                            follow_symlinks=True)
                except FileExistsError:
                    continue
                finally:
                    os.close(folder_fd)
                self.tmp = name
                break
        else:
            os.chmod(self.tmp, 0o666 & ~_umask())
        self.file.close()
        try:
            check_target(self.target)  # the target may have become something else meanwhile
            os.replace(self.tmp, self.target)
        except BaseException:
            self._remove()
            raise
        self.tmp = None
        _fsync_folder(self.folder)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self._remove()

@contextlib.contextmanager
def atomic_output(path: PathLike, mode: str = "wb", encoding: str = "utf-8") -> Iterator[IO]:
    """``with atomic_output(path) as f: f.write(...)``: ``path`` (checked with
    :func:`check_target`) is replaced only when the block ends without an exception. ``mode`` is
    "wb" or "w" (text, ``encoding``). OSError propagates, the temporary file gone; callers turn it
    into their own typed error."""
    tmp = _TempFile(check_target(path), mode, encoding)
    try:
        yield tmp.file
    except BaseException:
        tmp.discard()
        raise
    try:
        tmp.commit()
    finally:
        tmp.discard()


def write_bytes(path: PathLike, data: bytes) -> None:
    """``data`` as the whole content of ``path``, atomically (see :func:`atomic_output`)."""
    with atomic_output(path, "wb") as fh:
        fh.write(data)


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """``text`` as the whole content of ``path``, atomically (see :func:`atomic_output`)."""
    with atomic_output(path, "w", encoding) as fh:
        fh.write(text)


# ---------------------------------------------------------------------------- outputs that grow

class OutputLock:
    """An exclusive claim on an output name for the life of a run: a second run writing the same
    name is refused at its start instead of the two interleaving or one silently replacing the
    other's result. The claim dies with the process, however it dies, and leaves no file: on Linux
    it is a Unix socket bound in the abstract namespace under a hash of the name's folder (device,
    inode) and file name; elsewhere ``fcntl.flock`` on a hidden ``.NAME.lock`` beside the output."""

    def __init__(self, path: PathLike, what: str = "output") -> None:
        target = os.path.abspath(os.fspath(path))
        folder, name = os.path.split(target)
        self.what, self.shown = what, os.fspath(path)
        self.sock: socket.socket | None = None
        self.fd: int | None = None
        self.path: str | None = None
        if sys.platform.startswith("linux"):
            try:
                st = os.stat(folder)
            except OSError as e:
                raise OutputError(f"cannot write: {e.strerror or e}", self.shown) from None
            key = hashlib.sha256(f"{st.st_dev}:{st.st_ino}:{name}".encode("utf-8", "surrogateescape")).hexdigest()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind("\0darknet-py-output-" + key[:64])
            except OSError as e:
                sock.close()
                if e.errno == errno.EADDRINUSE:
                    raise self._busy() from None
                raise OutputError(f"cannot take the output's lock: {e.strerror or e}", self.shown) from None
            self.sock = sock
            return
        self.path = os.path.join(folder, f".{name}.lock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0),
                         0o666)
        except OSError as e:
            raise OutputError(f"cannot take the lock {self.path}: {e.strerror or e}", self.shown) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise self._busy() from None
        self.fd = fd

    def _busy(self) -> OutputError:
        return OutputError(f"another run is writing this {self.what} now; wait for it or choose another name",
                           self.shown)

    def release(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path or "")
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class _NoLock:
    def release(self) -> None:
        pass


class GrowingFile:
    """A file written while the run goes (JSON lines): to a temporary file under a lock on the
    name, renamed over ``path`` by :meth:`finish` -- called when the run ends, by an error, Ctrl-C
    or SIGTERM as well, so the lines of what ran are kept and none is half written."""

    def __init__(self, path: PathLike, mode: str = "w", encoding: str = "utf-8") -> None:
        self.path = check_target(path)
        self.lock = OutputLock(self.path)
        try:
            self._tmp: _TempFile | None = _TempFile(self.path, mode, encoding)
        except BaseException:
            self.lock.release()
            raise

    def write(self, text) -> None:
        assert self._tmp is not None, "write after finish"
        self._tmp.file.write(text)

    def flush(self) -> None:
        if self._tmp is not None:
            self._tmp.file.flush()

    def finish(self) -> None:
        """Rename the file into place (once)."""
        if self._tmp is None:
            return
        tmp, self._tmp = self._tmp, None
        try:
            tmp.commit()
        finally:
            tmp.discard()
            self.lock.release()

    def abort(self) -> None:
        if self._tmp is not None:
            self._tmp.discard()
            self._tmp = None
        self.lock.release()


class TempPath:
    """A temporary name beside ``path`` for a writer that needs a name (OpenCV's ``VideoWriter``),
    keeping the extension the writer chooses its format by. :meth:`commit` renames it over
    ``path``; :meth:`discard` removes it."""

    def __init__(self, path: PathLike) -> None:
        self.target = check_target(path)
        self.lock = OutputLock(self.target)
        folder, name = os.path.split(os.path.abspath(self.target))
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{name}.tmp.", suffix=os.path.splitext(name)[1], dir=folder)
        except BaseException:
            self.lock.release()
            raise
        os.close(fd)
        self.done = False

    def commit(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(self.tmp, 0o666 & ~_umask())
            check_target(self.target)
            os.replace(self.tmp, self.target)
            _fsync_folder(os.path.dirname(os.path.abspath(self.target)))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            raise
        finally:
            self.lock.release()

    def discard(self) -> None:
        if not self.done:
            self.done = True
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.lock.release()


class StagedFolder:
    """A folder of outputs (YOLO label files, drawn photos, annotated videos) filled in a hidden
    ``.NAME.tmp.XXXX`` folder beside ``folder`` and moved into it by :meth:`finish`, so an
    interrupted run leaves the folder as it was and no half-written file in it. The names to be
    written are checked before the run (:class:`OutputPlan`); :meth:`finish` checks each again."""

    def __init__(self, folder: PathLike, lock: bool = True) -> None:
        """``lock=False``: the other processes of one run (torchrun ranks) stage beside the one that
        holds the folder's lock."""
        self.folder = os.path.abspath(os.fspath(folder))
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise OutputError("is not a folder", os.fspath(folder))
        parent, name = os.path.split(self.folder)
        os.makedirs(parent, exist_ok=True)
        self.lock = OutputLock(self.folder, "folder") if lock else _NoLock()
        try:
            self.stage: str | None = tempfile.mkdtemp(prefix=f".{name}.tmp.", dir=parent)
        except BaseException:
            self.lock.release()
            raise

    def path(self, rel: PathLike) -> str:
        """Where the output ``folder/rel`` is written until :meth:`finish` (its folders made)."""
        assert self.stage is not None, "path after finish"
        p = os.path.join(self.stage, os.fspath(rel))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def finish(self) -> None:
        """Move every staged file into the folder (once); the stage is removed."""
        if self.stage is None:
            return
        stage, self.stage = self.stage, None
        try:
            for root, _, files in os.walk(stage):
                for f in sorted(files):
                    src = os.path.join(root, f)
                    dst = os.path.join(self.folder, os.path.relpath(src, stage))
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    check_target(dst)
                    os.replace(src, dst)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            self.lock.release()

    def abort(self) -> None:
        if self.stage is not None:
            shutil.rmtree(self.stage, ignore_errors=True)
            self.stage = None
        self.lock.release()


# ---------------------------------------------------------------------------- what a run will write

class OutputPlan:
    """Every file a run will write, known before the run starts. :meth:`add` refuses, before any
    work: a target :func:`check_target` refuses; two results on one file; and an existing file whose
    name darknet-py made up (``named=False``: a file in an output folder, a default name) unless
    ``overwrite`` -- a file the user named is theirs to replace."""

    def __init__(self, overwrite: bool = False) -> None:
        self.overwrite = overwrite
        self.targets: dict[str, tuple[str, str]] = {}

    def add(self, path: PathLike, what: str, named: bool = True, source: str | None = None) -> str:
        """Plan ``path`` for the result described by ``what``; ``source`` identifies the result (one
        photo given twice makes the same result twice, which may go to one file)."""
        target = check_target(path)
        key = os.path.normcase(os.path.realpath(target))
        if key in self.targets:
            if source is not None and self.targets[key][1] == source:
                return target
            raise UsageError(f"{os.fspath(path)}: two results would be written to this one file "
                             f"({self.targets[key][0]} and {what}); give them different names")
        self.targets[key] = (what, source or what)
        if not named and not self.overwrite and os.path.lexists(target):
            raise exists_error(os.fspath(path), what)
        return target


def exists_error(path: str, what: str) -> UsageError:
    """An existing file that a run would replace without the user having named it."""
    err = UsageError(f"{path} exists ({what}): darknet-py replaces only a file named on the command line; "
                     "remove it, choose another output, or pass overwrite=True")
    err.option = ("overwrite", "True")
    return err


# ---------------------------------------------------------------------------- SIGTERM

class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C is: outputs that grow are finalised, temporary files removed."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` in this process (the main thread), so the
    ``finally`` clauses that finish outputs run as they do on Ctrl-C. Processes forked meanwhile
    (photo decoding workers) die of SIGTERM as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked worker: the default action
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["GrowingFile", "InputSet", "OutputLock", "OutputPlan", "StagedFolder", "TempPath", "Terminated",
           "atomic_output", "check_target", "exists_error", "file_kind", "input_scope", "note_input", "note_inputs",
           "release_input", "terminate_as_interrupt", "write_bytes", "write_text"]
