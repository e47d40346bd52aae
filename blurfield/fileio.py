"""Atomic file writes: write to a temp file beside the target, then rename over it.

The project's one atomic writer (docs/design.md §10: a bottom utility); every file a
run, a command or the data tools leave behind goes through :class:`AtomicFile` (or
:func:`write_atomic`, its one-call form), so a killed process leaves either the old file
or the new one, and at most a hidden ``.<name>.<random>.tmp`` that no reader lists
(:func:`temp_files` finds those of one target)."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO


def _default_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


class AtomicFile:
    """A binary temp file ``.<name>.<random>.tmp`` beside ``path`` (its folder created),
    open as :attr:`file`; :meth:`commit` renames it to ``path``, :meth:`discard` removes it.

    As a context manager it commits on a normal exit and discards on an exception, leaving
    an existing ``path`` untouched. The file gets the mode ``open()`` would give it (not
    ``mkstemp``'s 0o600), so shards and manifests stay readable by the group.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        self.tmp = Path(tmp)
        try:
            os.fchmod(fd, _default_mode())
            self.file: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise

    def commit(self, fsync: bool = False) -> Path:
        """Close the temp file (``fsync``: flushed to the disk first, so a renamed file
        survives a crash of the machine) and rename it to :attr:`path`; returns it."""
        try:
            if fsync:
                self.file.flush()
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        """Close and remove the temp file (idempotent); :attr:`path` is left as it was."""
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def temp_files(path: str | Path) -> list[Path]:
    """The temp files that :class:`AtomicFile` writers of ``path`` left behind (killed
    before their rename), sorted; a resumable job removes them before it rebuilds ``path``."""
    path = Path(path)
    return sorted(path.parent.glob(glob.escape(f".{path.name}.") + "*tmp"))


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on the binary temp file of an :class:`AtomicFile` of ``path`` and
    rename it to ``path``; on any error the temp file is removed and the error re-raised,
    leaving an existing ``path`` untouched."""
    with AtomicFile(path) as a:
        write(a.file)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """:func:`write_atomic` of ``data``."""
    write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_atomic` of ``text``, UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"))
