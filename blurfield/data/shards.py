"""Shard lists (docs/design.md §8): a ``data.*_shards`` pattern -> shard URLs, and the
number of samples they hold.

A pattern is local paths, globs or brace patterns (``train-{000000..000009}.tar``), several
joined with ``::``, or any URL webdataset opens (``pipe:curl -s URL``, ``s3:...``).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence

_URL = re.compile(r"^[a-z][a-z0-9+.-]*:")  # "pipe:", "http:", "s3:", ...


def expand_shards(spec: str | Sequence[str], name: str = "shards") -> list[str]:
    """Shard URLs from a pattern: ``::``-separated parts, braces, then globs on local paths.

    Raises ValueError naming ``name`` when nothing matches or a local file is missing.
    """
    import braceexpand

    parts = list(spec) if not isinstance(spec, str) else spec.split("::")
    urls: list[str] = []
    for part in parts:
        for url in braceexpand.braceexpand(str(part).strip()):
            if not url:
                continue
            if _URL.match(url) and not url.startswith("file:"):
                urls.append(url)
                continue
            path = url[5:] if url.startswith("file:") else url
            if glob.has_magic(path):
                found = sorted(glob.glob(path))
                if not found:
                    raise ValueError(f"{name}: no shard matches '{path}'; build shards with "
                                     "`make shards` or fix the pattern")
                urls += found
            elif not os.path.isfile(path):
                raise ValueError(f"{name}: shard '{path}' does not exist; build shards with "
                                 "`make shards` or fix the path")
            else:
                urls.append(path)
    if not urls:
        raise ValueError(f"{name}: the shard pattern '{spec}' names no shards")
    return urls


def count_samples(urls: Sequence[str]) -> int:
    """The number of samples (distinct keys) in the shards, unreadable parts skipped."""
    from webdataset.tariterators import tarfile_samples

    return sum(1 for _ in tarfile_samples(({"url": u} for u in urls), handler=lambda e: True))


__all__ = ["count_samples", "expand_shards"]
