"""A tiny HTML page builder: headings, sections, image grids, tables, inline SVG line charts.

Every function returns an HTML fragment (a string); :func:`page` wraps fragments into one
self-contained document and :func:`write_page` writes it atomically. Text arguments are
escaped; fragments passed as ``parts`` are HTML already and are not. The output is also
well-formed XML (void elements self-closed, only XML entities), so tests can parse it with
``xml.etree``.

Charts map data to pixels linearly (or in log10 when ``log_y``)::

    px(x) = left + (x - x0) / (x1 - x0) * plot_width
    py(y) = top + (y1 - y) / (y1 - y0) * plot_height      (y grows downwards in SVG)

with ``[x0, x1] x [y0, y1]`` the range of the finite data points, widened to "nice" tick
values (1, 2, 2.5 or 5 x 10^n); non-finite points break a line into pieces.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from blurfield.fileio import write_text_atomic

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;"
    "color:#222}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{padding:3px 10px;border:1px solid #ddd}"
    "th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".grid{display:grid;gap:10px;align-items:start}figure{margin:0}"
    "figure img{width:100%;image-rendering:auto;border:1px solid #ccc}"
    "figcaption{font-size:.85em;color:#444;text-align:center}"
    "svg{max-width:100%;height:auto}svg text{font-family:system-ui,sans-serif}"
    ".note{background:#fff6d6;padding:.5em 1em;"
    "border-left:4px solid #e0b000}code{background:#f4f4f4;padding:0 3px}"
    "pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.85em}"
)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")


def esc(text: Any) -> str:
    """Escape text (and attribute values) for HTML/XML: & < > " '."""
    return _html.escape(str(text), quote=True)


def heading(text: str, level: int = 2) -> str:
    return f"<h{level}>{esc(text)}</h{level}>"


def paragraph(text: str, cls: str | None = None) -> str:
    """A paragraph of plain (escaped) text; ``cls`` e.g. ``"note"`` for a highlighted one."""
    c = f' class="{esc(cls)}"' if cls else ""
    return f"<p{c}>{esc(text)}</p>"


def code_block(text: str) -> str:
    return f"<pre><code>{esc(text)}</code></pre>"


def section(title: str, *parts: str, level: int = 2) -> str:
    """``<section>`` with a heading and the given HTML fragments."""
    return "<section>" + heading(title, level) + "".join(parts) + "</section>"


def figure(src: str, caption: str = "") -> str:
    """An image (linked to itself) with a caption; ``src`` relative to the page."""
    s = esc(src)
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return (f'<figure><a href="{s}"><img src="{s}" alt="{esc(caption or src)}" '
            f'loading="lazy"/></a>{cap}</figure>')


def grid(parts: Iterable[str], columns: int | None = None) -> str:
    """HTML fragments side by side, ``columns`` per row (default: all in one row)."""
    parts = list(parts)
    n = max(1, columns or len(parts))
    return (f'<div class="grid" style="grid-template-columns:repeat({n},minmax(0,1fr))">'
            f"{''.join(parts)}</div>")


def image_grid(items: Iterable[tuple[str, str]], columns: int | None = None) -> str:
    """Figures ``(src, caption)`` side by side, ``columns`` per row (default: all in one)."""
    return grid((figure(src, cap) for src, cap in items), columns)


def format_value(v: Any, floatfmt: str = "{:.2f}") -> str:
    """Floats with ``floatfmt`` (NaN and None as an em dash), anything else as ``str``."""
    if v is None:
        return "\u2014"
    if isinstance(v, float):
        return "\u2014" if math.isnan(v) else floatfmt.format(v)
    return str(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
          floatfmt: str = "{:.2f}", caption: str | None = None) -> str:
    """A table of ``rows`` (dicts); columns: ``columns`` or the union of keys in first-seen
    order. Missing cells are empty; numbers are right-aligned (class ``num``)."""
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>")
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cls = ' class="num"' if _is_number(v) else ""
            cells.append(f"<td{cls}>{esc(format_value(v, floatfmt))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
               floatfmt: str = "{:.2f}") -> str:
    """The same table as plain text with aligned columns (for a terminal)."""
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]
    cells = [[format_value(r.get(c, ""), floatfmt) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    for row, r in zip(cells, rows, strict=True):
        lines.append("  ".join(
            v.rjust(w) if _is_number(r.get(c)) else v.ljust(w)
            for v, w, c in zip(row, widths, columns, strict=True)))
    return "\n".join(lines)


# --------------------------------------------------------------------------- charts


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]``: steps of 1, 2, 2.5 or 5 x 10^n, about
    ``count`` of them, the first <= lo and the last >= hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"nice_ticks: bounds must be finite, got {lo}, {hi}")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.5 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count - 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = math.floor(lo / step + 1e-9) * step
    ticks = [first]
    while ticks[-1] < hi - 1e-9 * step:
        ticks.append(first + len(ticks) * step)
    return [round(t, 12) for t in ticks]


def _fmt_tick(v: float) -> str:
    return f"{v:.4g}"


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], *, title: str = "",
               xlabel: str = "", ylabel: str = "", width: int = 520, height: int = 300,
               log_y: bool = False, vlines: Sequence[tuple[float, str]] = ()) -> str:
    """An inline SVG line chart: one polyline per series of ``(x, y)`` points, a legend
    (one row under the title), axes with nice ticks. ``log_y``: a log10 axis (non-positive
    values are dropped). ``vlines``: labelled dashed vertical lines at ``x`` (drawn when
    inside the axis range). A chart with no finite point says so instead of drawing axes."""
    left, right, top, bottom = 64, 16, 46, 44
    pw, ph = width - left - right, height - top - bottom

    def ty(y: float) -> float:
        return math.log10(y) if log_y else y

    clean: dict[str, list[tuple[float, float] | None]] = {}
    for name, pts in series.items():
        seq: list[tuple[float, float] | None] = []
        for x, y in pts:
            ok = math.isfinite(x) and math.isfinite(y) and (y > 0 or not log_y)
            seq.append((float(x), ty(float(y))) if ok else None)
        clean[name] = seq
    finite = [p for seq in clean.values() for p in seq if p is not None]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">'
            f'<title>{esc(title or ylabel)}</title>'
            f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="13">'
            f"{esc(title)}</text>")
    if not finite:
        return (head + f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" '
                'font-size="12">no data</text></svg>')
    xt = nice_ticks(min(p[0] for p in finite), max(p[0] for p in finite))
    yt = nice_ticks(min(p[1] for p in finite), max(p[1] for p in finite))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * ph

    out = [head, f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" '
           'stroke="#999"/>']
    for t in yt:
        label = _fmt_tick(10.0 ** t) if log_y else _fmt_tick(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
                   'stroke="#eee"/>'
                   f'<text x="{left - 4}" y="{py(t) + 4:.1f}" text-anchor="end" '
                   f'font-size="10">{esc(label)}</text>')
    for t in xt:
        out.append(f'<text x="{px(t):.1f}" y="{top + ph + 14}" text-anchor="middle" '
                   f'font-size="10">{esc(_fmt_tick(t))}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" '
               f'font-size="11">{esc(xlabel)}</text>')
    out.append(f'<text x="12" y="{top + ph / 2:.1f}" text-anchor="middle" font-size="11" '
               f'transform="rotate(-90 12 {top + ph / 2:.1f})">'
               f"{esc(ylabel + (' (log)' if log_y else ''))}</text>")
    lx = left
    for i, (name, seq) in enumerate(clean.items()):
        color = PALETTE[i % len(PALETTE)]
        for piece in _pieces(seq):
            pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in piece)
            if len(piece) == 1:
                x, y = piece[0]
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" '
                           f'fill="{color}"/>')
            else:
                out.append(f'<polyline class="series" data-name="{esc(name)}" points="{pts}" '
                           f'fill="none" stroke="{color}" stroke-width="1.6"/>')
        out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="30" y2="30" stroke="{color}" '
                   f'stroke-width="2"/><text x="{lx + 22}" y="34" font-size="10">'
                   f"{esc(name)}</text>")
        lx += 34 + 6 * len(name)
    for x, label in vlines:
        if x0 <= x <= x1:
            out.append(f'<line class="vline" x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" '
                       f'y2="{top + ph}" stroke="#555" stroke-dasharray="4 3"/>'
                       f'<text x="{px(x) + 3:.1f}" y="{top + ph - 4}" font-size="10" '
                       f'fill="#555">{esc(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def chart_row(charts: Sequence[str], *, width: int, height: int) -> str:
    """One standalone SVG document holding ``charts`` (each ``width`` x ``height``, e.g. from
    :func:`line_chart`) side by side."""
    inner = "".join(f'<g transform="translate({width * i},0)">{c}</g>'
                    for i, c in enumerate(charts))
    total = width * len(charts)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{height}" '
            f'viewBox="0 0 {total} {height}">{inner}</svg>\n')


def _pieces(seq: Sequence[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    """Runs of consecutive finite points (a None ends a run)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for p in seq:
        if p is None:
            runs.append([])
        else:
            runs[-1].append(p)
    return [r for r in runs if r]


# --------------------------------------------------------------------------- pages


def page(title: str, *parts: str, style: str = STYLE) -> str:
    """A complete HTML document: ``<h1>title</h1>`` then the fragments."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
            f"<title>{esc(title)}</title><style>{style}</style></head>"
            f"<body><h1>{esc(title)}</h1>{''.join(parts)}</body></html>\n")


def write_page(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temp file in the same folder and a rename."""
    path = Path(path)
    write_text_atomic(path, text)
    return path


__all__ = ["esc", "heading", "paragraph", "code_block", "section", "figure", "grid", "image_grid",
           "format_value", "table", "text_table", "nice_ticks", "line_chart", "page",
           "write_page"]
