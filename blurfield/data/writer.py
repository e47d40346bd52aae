"""The one shard writer (docs/design.md §8): samples of the schema -> a webdataset tar,
written atomically and byte-reproducibly.

Every shard the project makes (``python -m data_prep shards``, ``gopro``, ``handmade``)
goes through :class:`ShardWriter`: ``webdataset.TarWriter`` into an
:class:`blurfield.fileio.AtomicFile` (``.<name>.<random>.tmp`` beside the shard, renamed
when complete), so a reader never sees half a shard and a killed writer leaves only a
temp file that :func:`blurfield.fileio.temp_files` finds.

The tar members are a pure function of the samples: USTAR headers with the fixed
:data:`MTIME`, mode 0644, uid/gid 0 and empty user/group names, members of a sample in
sorted order (``<key>.<member>``), samples in the order written. These are the header
fields of the hand-rolled writer that made the earlier shards, so the same samples give
the same bytes as before (``tests/test_shard_writer.py`` pins them).
"""

from __future__ import annotations

import contextlib
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from blurfield.fileio import AtomicFile

MTIME = 946684800  # 2000-01-01 00:00 UTC: every member's mtime (byte-identical reruns)
MODE = 0o644  # every member's permission bits


class ShardWriter:
    """One shard at ``path``: :meth:`write` samples, then :meth:`close` (rename into
    place, flushed to disk) or :meth:`abort` (temp file removed, ``path`` untouched).

    A sample is the dict of :func:`blurfield.data.schema.encode_sample`: ``__key__`` and
    members as bytes (``"blurry.png": b"..."``); keys starting with ``_`` are not written.
    As a context manager it closes on a normal exit and aborts on an exception.
    """

    def __init__(self, path: str | Path) -> None:
        import webdataset as wds

        self.path = Path(path)
        self.count = 0  # samples written
        self._file = AtomicFile(self.path)
        try:
            self._tar = wds.TarWriter(self._file.file, user="", group="", mode=MODE,
                                      mtime=MTIME, encoder=False)
            # TarWriter computes its `format` argument but opens the stream with tarfile's
            # default (PAX); pin USTAR, the format of every shard written so far.
            self._tar.tarstream.format = tarfile.USTAR_FORMAT
        except BaseException:
            self._file.discard()
            raise

    def write(self, sample: Mapping[str, Any]) -> None:
        """Append one sample (``__key__`` and bytes members)."""
        self._tar.write(dict(sample))
        self.count += 1

    def close(self) -> Path:
        """End the tar, flush it to disk and rename it to :attr:`path`; returns the path."""
        self._tar.close()
        return self._file.commit(fsync=True)

    def abort(self) -> None:
        """Drop the shard: the temp file is removed, an existing :attr:`path` untouched."""
        try:  # end the tar stream now (into the doomed file), not in a finaliser later
            with contextlib.suppress(Exception):
                self._tar.close()
        finally:
            self._file.discard()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_shard(path: str | Path, samples: Iterable[Mapping[str, Any]]) -> int:
    """Write ``samples`` (encoded sample dicts) as the shard ``path``, atomically; returns
    the number written. An exception (from the writer or the ``samples`` iterator) leaves
    no shard and no temp file."""
    with ShardWriter(path) as w:
        for s in samples:
            w.write(s)
    return w.count


__all__ = ["MODE", "MTIME", "ShardWriter", "write_shard"]
