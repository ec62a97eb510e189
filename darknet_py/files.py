"""The one way darknet-py writes a whole file: to a fresh temporary file beside it, flushed to disk,
then renamed over the target in one step.

A reader (or a process killed half way) therefore sees the old file or the new one, never half of
it, and a failed write leaves nothing behind. The temporary name is unpredictable and created
exclusively (``tempfile.mkstemp``), so no one can plant a link under it; the final file gets the
permissions ``open()`` would have given it (0666 less the umask), not mkstemp's private 0600.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Union

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: PathLike, mode: str = "wb", encoding: str = "utf-8") -> Iterator[IO]:
    """``with atomic_output(path) as f: f.write(...)``: ``path`` is replaced only when the block
    ends without an exception. ``mode`` is "wb" or "w" (text, ``encoding``). OSError propagates
    (with the temporary file removed); callers turn it into their own typed error."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_output: mode must be 'wb' or 'w', got {mode!r}")
    target = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp.", dir=folder)  # hidden, and named after its file
    try:
        with os.fdopen(fd, mode, **({"encoding": encoding} if mode == "w" else {})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: PathLike, data: bytes) -> None:
    """``data`` as the whole content of ``path``, atomically (see :func:`atomic_output`)."""
    with atomic_output(path, "wb") as fh:
        fh.write(data)


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """``text`` as the whole content of ``path``, atomically (see :func:`atomic_output`)."""
    with atomic_output(path, "w", encoding) as fh:
        fh.write(text)


__all__ = ["atomic_output", "write_bytes", "write_text"]
