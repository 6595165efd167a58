"""Atomic writes that heal: a file or directory is built under a temporary name beside its final
path and renamed into place, so a reader (or a run killed with ``kill -9``) sees the old version or
the new one, never half of it.

Every temporary name is ``.<final name>.tmp-<pid>-<random>``. A process that dies mid-write leaves
its temporary behind; the next write of the same path removes the temporaries whose process is gone
(live ones, another process's write in progress, are kept), so a rerun leaves no debris.

Caches of many small files (a file per image) write with ``cache=True``: no ``fsync`` (a lost entry is
computed again), and a folder's dead temporaries are swept the first time a process writes there, not
on every write (listing a folder of a thousand entries per write would cost ten times the write).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_dir", "atomic_file", "remove_stale", "write_text_atomic"]

_swept: set[Path] = set()  # cache folders this process has swept already


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _temporary(final: Path) -> Path:
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale(final: str | Path, *, folder: bool = False) -> None:
    """Remove the temporaries of ``final`` left by processes that died, and the old versions a
    replaced directory left (``.<name>.old-*``); with ``folder``, those of every file in its folder."""
    final = Path(final)
    if not final.parent.is_dir():
        return
    name = "*" if folder else final.name
    for p in final.parent.glob(f".{name}.tmp-*"):
        try:
            pid = int(p.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _alive(pid):
            _remove(p)
    for p in final.parent.glob(f".{name}.old-*"):
        _remove(p)


@contextmanager
def atomic_file(final: str | Path, *, cache: bool = False) -> Iterator[Path]:
    """A temporary path to write ``final``'s new content to; on a clean exit it replaces ``final``
    (after an ``fsync``), on an exception it is removed and ``final`` is left as it was.

    ``cache``: ``final`` is one entry of a cache of many small files (no ``fsync``; the folder's dead
    temporaries swept once per process)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if not cache:
        remove_stale(final)
    elif final.parent not in _swept:
        remove_stale(final, folder=True)
        _swept.add(final.parent)
    tmp = _temporary(final)
    try:
        yield tmp
        if not cache:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


class atomic_dir:
    """Build a directory under a temporary name next to ``final`` and rename it into place.

    On success an existing ``final`` is replaced; on an exception the temporary directory is
    removed and ``final`` is left as it was. Readers never see a half-written directory.
    """

    def __init__(self, final: str | Path):
        self.final = Path(final)
        self.tmp = _temporary(self.final)

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(self.final)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.final.exists():
            old = self.final.parent / f".{self.final.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it and :func:`os.replace`: a reader (or an
    interrupted run) sees the old file or the new one, never half of it."""
    p = Path(path)
    with atomic_file(p) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return p
