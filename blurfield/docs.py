"""Regenerate the configuration reference in README.md: ``python -m blurfield.docs``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from blurfield.config import reference_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- CONFIG-REFERENCE:BEGIN -->", "<!-- CONFIG-REFERENCE:END -->"


def render(text: str) -> str:
    """README text with the block between the markers replaced by the current reference."""
    block = f"{BEGIN}\n{reference_markdown()}{END}"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"README.md has no {BEGIN} ... {END} block")
    return pattern.sub(lambda _: block, text)


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
    sys.exit(0)
