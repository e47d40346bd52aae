"""Atomic file writes: write to a temp file beside the target, then rename over it.

The project's one atomic writer (docs/design.md §10: a bottom utility); every file a
run, a command or the data tools leave behind goes through :func:`write_atomic`, so a
killed process leaves either the old file or the new one, and at most a hidden
``.<name>.<random>.tmp`` that no reader lists."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Create ``path``'s folder, call ``write(f)`` on a binary temp file
    ``.<name>.<random>.tmp`` in that folder and rename it to ``path``; on any error the temp
    file is removed and the error re-raised, leaving an existing ``path`` untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """:func:`write_atomic` of ``data``."""
    write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_atomic` of ``text``, UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"))
