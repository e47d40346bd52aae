"""``blurfield report RUN_DIR ...``: final metrics against B, from local run directories.

Reads each run's ``summary.json`` (written by ``blurfield train``; a directory without one
is searched one level down, so ``blurfield report runs/`` takes every run in it) and writes,
with no server involved:

    <out>/report.md    a markdown table: run, group, B, epochs, final and best metrics
    <out>/report.csv   the same table
    <out>/report.png   one panel per metric against B, one line per group (W&B group)
    <out>/curves.svg   learning curves: blur-direction agreement and per-pixel kernel error
                       against samples seen, one line per run
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from blurfield.fileio import write_text_atomic

HELP = "table and plot of final metrics against B: blurfield report RUN_DIR ... [--out DIR]"
ALIASES: dict[str, str] = {}
# (summary key, column title, higher is better)
METRICS = (
    ("val/reblur_psnr", "reblur PSNR (dB)", True),
    ("val/kernel_error", "per-pixel kernel error (L2)", False),
    ("val/direction", "blur-direction agreement", True),
    ("val/loss", "val loss", False),
)
COLUMNS = ("run", "group", "n_basis", "epochs", *(m for m, _, _ in METRICS), "best val/loss",
           "best epoch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="report", help="output folder (default: report)")


# --------------------------------------------------------------------------- reading


def find_summaries(paths: list[str | Path]) -> list[Path]:
    """``summary.json`` of each run directory (or of its sub-directories). ValueError when
    a path has none."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name == "summary.json":
            found.append(p)
        elif (p / "summary.json").is_file():
            found.append(p / "summary.json")
        elif p.is_dir() and sorted(p.glob("*/summary.json")):
            found += sorted(p.glob("*/summary.json"))
        else:
            raise ValueError(f"{p}: no summary.json here or one level down (a run directory "
                             "of `blurfield train`, e.g. runs/<run_name>)")
    return found


def read_rows(summaries: list[Path]) -> list[dict[str, Any]]:
    """One row per run, sorted by group then B."""
    rows = []
    for path in summaries:
        try:
            s = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable summary ({e})") from None
        final, best = s.get("final") or {}, s.get("best") or {}
        row = {
            "run": s.get("run_name") or path.parent.name,
            "group": s.get("group") or "",
            "n_basis": s.get("n_basis"),
            "epochs": f"{s.get('epochs_completed', '?')}/{s.get('epochs_planned', '?')}",
            **{m: final.get(m, math.nan) for m, _, _ in METRICS},
            "best val/loss": best.get("val/loss", math.nan),
            "best epoch": best.get("epoch", ""),
        }
        rows.append(row)
    return sorted(rows, key=lambda r: (str(r["group"]), r["n_basis"] or 0, str(r["run"])))


CURVES = (("val/direction", "blur-direction agreement"),
          ("val/kernel_error", "per-pixel kernel error (L2)"))


def learning_curves(summaries: list[Path]) -> str:
    """An SVG of ``CURVES`` against samples seen ((epoch + 1) x samples_per_epoch), one line
    per run, from the validated epochs of each run's history."""
    from blurfield.html import line_chart

    charts = []
    for key, title in CURVES:
        series = {}
        for path in summaries:
            s = json.loads(path.read_text())
            per = s.get("samples_per_epoch") or 1
            series[s.get("run_name") or path.parent.name] = [
                ((h["epoch"] + 1) * per, h[key]) for h in s.get("history", []) if key in h]
        charts.append(line_chart(series, title=title, xlabel="training samples seen",
                                 ylabel=key, width=560, height=320))
    inner = "".join(f'<g transform="translate({560 * i},0)">{c}</g>'
                    for i, c in enumerate(charts))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{560 * len(charts)}" '
            f'height="320" viewBox="0 0 {560 * len(charts)} 320">{inner}</svg>\n')


# --------------------------------------------------------------------------- writing


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_fmt(r[c]) for c in COLUMNS])
    return buf.getvalue()


# --------------------------------------------------------------------------- plotting


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def line_panel(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str,
               size: tuple[int, int] = (420, 320)) -> np.ndarray:
    """A line plot of ``series`` (label -> [(x, y), ...]) with axes, ticks, markers and a
    legend: (h, w, 3) uint8."""
    from PIL import Image, ImageDraw

    from blurfield.viz import palette

    w, h = size
    left, right, top, bottom = 62, 12, 28, 44
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    pts = [(x, y) for s in series.values() for x, y in s if math.isfinite(y)]
    d.text((left, 6), title, fill=(0, 0, 0))
    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    if not pts:
        d.text((left + 10, top + 10), "no data", fill=(120, 120, 120))
        return np.asarray(img)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xt, yt = sorted(set(xs)), _ticks(min(ys), max(ys))
    x0, x1 = (min(xt) - 1, max(xt) + 1) if len(xt) == 1 else (min(xt), max(xt))
    pad = 0.06 * (x1 - x0)
    x0, x1, y0, y1 = x0 - pad, x1 + pad, yt[0], yt[-1]

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    for t in xt:
        u, _ = px(t, y0)
        d.line([u, h - bottom, u, h - bottom + 4], fill=(0, 0, 0))
        d.text((u - 6, h - bottom + 6), _fmt(float(t)), fill=(0, 0, 0))
    for t in yt:
        _, v = px(x0, t)
        d.line([left - 4, v, left, v], fill=(0, 0, 0))
        d.line([left + 1, v, w - right - 1, v], fill=(232, 232, 232))
        d.text((4, v - 6), _fmt(float(t)), fill=(0, 0, 0))
    d.text(((left + w - right) // 2 - 20, h - 18), xlabel, fill=(0, 0, 0))
    colours = palette(max(1, len(series)))
    for i, (label, s) in enumerate(series.items()):
        c = tuple(int(v * 0.75) for v in colours[i])  # darker: lines on white
        s = sorted((x, y) for x, y in s if math.isfinite(y))
        line = [px(x, y) for x, y in s]
        if len(line) > 1:
            d.line(line, fill=c, width=2)
        for u, v in line:
            d.ellipse([u - 4, v - 4, u + 4, v + 4], fill=c)
        d.text((left + 8, top + 6 + 14 * i), label or "(no group)", fill=c)
    return np.asarray(img)


def report_picture(rows: list[dict[str, Any]]) -> np.ndarray:
    """One panel per metric against B, one line per group, side by side."""
    from blurfield.viz import side_by_side

    panels = []
    for key, title, _ in METRICS:
        series: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            if r["n_basis"] is not None:
                series.setdefault(str(r["group"]), []).append((float(r["n_basis"]), r[key]))
        panels.append(line_panel(series, title, "B (n_basis)"))
    return side_by_side(panels)


def write_report(run_dirs: list[str | Path], out: str | Path) -> dict[str, Path]:
    """Write report.md, report.csv and report.png into ``out``; returns their paths."""
    from blurfield.viz import save_png

    summaries = find_summaries(run_dirs)
    rows = read_rows(summaries)
    out = Path(out)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "png": out / "report.png",
             "svg": out / "curves.svg"}
    write_text_atomic(paths["svg"], learning_curves(summaries))
    write_text_atomic(paths["md"], markdown_table(rows))
    write_text_atomic(paths["csv"], csv_table(rows))
    save_png(paths["png"], report_picture(rows))
    return paths


def run(cfg: Any, args: argparse.Namespace) -> int:
    from blurfield.errors import UserError

    if not args.inputs:
        raise UserError("name at least one run directory (e.g. runs/ablation_B15 or runs/)")
    try:
        paths = write_report(args.inputs, args.out)
    except ValueError as e:
        raise UserError(str(e)) from None
    print(paths["md"].read_text(), end="")
    print(f"blurfield report: wrote {', '.join(str(p) for p in paths.values())}")
    return 0
