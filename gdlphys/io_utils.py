"""Atomic file writes: a file is either the old one or the complete new one, never half of it.

Every writer in gdlphys (HDF5 frames, potentials, checkpoints) writes to a
temporary name in the target's directory and renames it onto the target only
after the data is complete and fsynced. ``os.replace`` is atomic on POSIX and
Windows when both names are on one filesystem, which the shared directory ensures.

    with atomic_write("model.pt") as tmp:
        torch.save(state, tmp)          # an exception here leaves model.pt untouched
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["AtomicWrite", "atomic_write", "temporary_path_for"]


def temporary_path_for(path: str | os.PathLike) -> Path:
    """A fresh hidden name next to ``path``: ``.{name}.tmp-{pid}-{random}``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicWrite:
    """A pending atomic write: write to ``.tmp``, then ``commit()`` or ``discard()``.

    For writers whose lifetime is not one ``with`` block (e.g. a streaming
    writer closed later); otherwise use :func:`atomic_write`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a directory, not a file")
        self.tmp = temporary_path_for(self.path)
        self.done = False

    def commit(self) -> Path:
        """fsync the temporary file and rename it onto ``path``."""
        if self.done:
            raise RuntimeError(f"atomic write of {self.path} already finished")
        if not self.tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file {self.tmp} for {self.path}")
        _fsync_file(self.tmp)
        os.replace(self.tmp, self.path)
        _fsync_directory(self.path.parent)
        self.done = True
        return self.path

    def discard(self) -> None:
        """Delete the temporary file; ``path`` keeps whatever it had."""
        self.done = True
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is deleted, ``path`` is left as it was
    and the exception propagates.
    """
    pending = AtomicWrite(path)
    try:
        yield pending.tmp
    except BaseException:
        pending.discard()
        raise
    try:
        pending.commit()
    except BaseException:
        pending.discard()
        raise
