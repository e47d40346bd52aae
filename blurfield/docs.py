"""Regenerate docs/config.md, the configuration reference: ``python -m blurfield.docs``
(``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

from blurfield.config_reference import reference_markdown

ROOT = Path(__file__).resolve().parent.parent
CONFIG_MD = ROOT / "docs" / "config.md"

HEADER = """# Configuration reference

<!-- Generated from blurfield/config_schema.py by `make docs` (python -m blurfield.docs); do not
edit by hand. -->

Every command takes `--config FILE` (repeatable; a path or a name under `conf/`, e.g.
`experiment/tiny`) and `key=value` overrides, merged as *schema <- files <- overrides*;
`blurfield config show [--config ...] [key=value ...]` prints the resolved config. The schema
is `blurfield/config_schema.py`, where every key's default is written once. A key with a
fixed set of values (an `Enum` in the schema, e.g. `restore.padding`) refuses any other
value when the config is loaded, with one line naming the key and the allowed values.

"""


def render() -> str:
    """The text of docs/config.md for the current schema."""
    return HEADER + reference_markdown()


if __name__ == "__main__":
    CONFIG_MD.write_text(render(), encoding="utf-8")
    sys.exit(0)
