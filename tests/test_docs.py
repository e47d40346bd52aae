"""The documentation's relative links lead somewhere: every ``[text](path#anchor)`` in
README.md and docs/*.md names a file of the repository and, with an anchor, one of its
headings (GitHub's slug of the heading), so moving a section cannot leave a dead link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation other than ``-`` and ``_``
    dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def prose(page: Path) -> list[str]:
    """``page``'s lines outside code blocks (the fence lines dropped)."""
    out, fenced = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return out


def anchors(page: Path) -> set[str]:
    """The anchors of ``page``'s headings (outside code blocks); a repeated slug gets
    ``-1``, ``-2``, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(page):
        if not line.startswith("#"):
            continue
        base = slug(line.lstrip("#"))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    """The relative link targets of ``page`` (outside code blocks)."""
    return [t for line in prose(page) for t in LINK.findall(line)
            if "://" not in t and not t.startswith("mailto:")]


def test_slug_follows_github() -> None:
    assert slug("Long blur: estimated again at half size, or `--scale`") == \
        "long-blur-estimated-again-at-half-size-or---scale"
    assert slug("Model card: `blurfield/weights/compact.pt`") == \
        "model-card-blurfieldweightscompactpt"
    assert slug("Checks that changed nothing (twenty-first session)") == \
        "checks-that-changed-nothing-twenty-first-session"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    dead = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            dead.append(f"{target} (no file {file})")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            dead.append(f"{target} (no heading with that anchor in {file.name})")
    assert not dead, f"{page.name}: dead links: " + "; ".join(dead)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_blocks_close(page: Path) -> None:
    """Every code block opens with ```` ``` ```` or ```` ```lang ```` and is closed: a fence
    line with text after it (```` ``` The ... ````) does not close its block on GitHub and
    swallows the rest of the page."""
    fences = [(n, line) for n, line in enumerate(page.read_text(encoding="utf-8")
                                                 .splitlines(), 1) if FENCE.match(line)]
    bad = [f"line {n}: {line!r}" for n, line in fences if not re.fullmatch(r"(```|~~~)[\w+-]*",
                                                                            line.rstrip())]
    assert not bad, f"{page.name}: fence lines with text after them: " + "; ".join(bad)
    assert len(fences) % 2 == 0, f"{page.name}: a code block is not closed"
