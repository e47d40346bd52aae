"""The configuration reference, generated from the schema (:mod:`blurfield.config`):
one table per section, key | default | meaning, the meaning being each field's inline comment
(or the comment lines above it). ``python -m blurfield.docs`` (``make docs``) writes it to
docs/config.md.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from enum import Enum
from typing import Any

from blurfield.config import Config

_FIELD = re.compile(r"\s+(\w+):[^=#]*=[^#]*(?:#\s*(.*))?$")


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """{field: its comment} of a dataclass, inherited fields included (a subclass's comment
    wins), read from the source of each class in the MRO once per class (do not change the
    dict)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        above: list[str] = []
        for line in inspect.getsource(klass).splitlines():
            m = _FIELD.match(line)
            if line.strip().startswith("#"):
                above.append(line.strip()[1:].strip())
            elif m:
                comments[m.group(1)] = (m.group(2) or " ".join(above)).replace("|", "\\|")
                above = []
            else:
                above = []
    return comments


def _default(f: dataclasses.Field) -> Any:
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return value.value if isinstance(value, Enum) else value


def _rows(cls: type, prefix: str) -> list[str]:
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            out += _rows(typ, f"{prefix}{f.name}.")
            continue
        out.append(f"| `{prefix}{f.name}` | `{_default(f)!r}` | {comments.get(f.name, '')} |")
    return out


def reference_markdown() -> str:
    """The reference: for each section of :class:`~blurfield.config.Config`, its docstring
    and a table of its keys (nested sections flattened, ``kernels.tremor.rate``)."""
    parts = []
    for f in dataclasses.fields(Config):
        cls = typing.get_type_hints(Config)[f.name]
        doc = " ".join((cls.__doc__ or "").split())
        parts.append(f"**`{f.name}`** — {doc}\n\n| key | default | meaning |\n|---|---|---|\n"
                     + "\n".join(_rows(cls, f"{f.name}.")))
    return "\n\n".join(parts) + "\n"


def key_comment(key: str) -> str:
    """The meaning of a dotted config key (``restore.checkpoint``), as the reference gives
    it: its field's comment; "" for a key the schema does not have."""
    cls: Any = Config
    *sections, name = key.split(".")
    for part in sections:
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
        cls = hints.get(part)
        if cls is None:
            return ""
    if not dataclasses.is_dataclass(cls):
        return ""
    return field_comments(cls).get(name, "").replace("\\|", "|")
