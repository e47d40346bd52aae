"""``blurfield report RUN_DIR ...``: final metrics against B, from local run directories.

Reads each run's ``summary.json`` (written by ``blurfield train``; a directory without one
is searched one level down, so ``blurfield report runs/`` takes every run in it) and writes,
with no server involved:

    <out>/report.md    a markdown table: run, group, B, epochs, final and best metrics
    <out>/report.csv   the same table
    <out>/report.svg   one chart per metric against B, one line per group (W&B group)
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

from omegaconf import DictConfig

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
    """``--out DIR``: the output folder."""
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
    from blurfield.html import chart_row, line_chart

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
    return chart_row(charts, width=560, height=320)


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


def report_chart(rows: list[dict[str, Any]]) -> str:
    """An SVG with one chart per metric against B, one line per group, side by side."""
    from blurfield.html import chart_row, line_chart

    charts = []
    for key, title, _ in METRICS:
        series: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            if r["n_basis"] is not None:
                series.setdefault(str(r["group"]) or "(no group)", []).append(
                    (float(r["n_basis"]), r[key]))
        charts.append(line_chart({k: sorted(v) for k, v in series.items()}, title=title,
                                 xlabel="B (n_basis)", ylabel=key, width=420, height=320))
    return chart_row(charts, width=420, height=320)


def write_report(run_dirs: list[str | Path], out: str | Path) -> dict[str, Path]:
    """Write report.md, report.csv, report.svg and curves.svg into ``out``; returns their
    paths."""
    summaries = find_summaries(run_dirs)
    rows = read_rows(summaries)
    out = Path(out)
    paths = {"md": out / "report.md", "csv": out / "report.csv", "chart": out / "report.svg",
             "svg": out / "curves.svg"}
    write_text_atomic(paths["svg"], learning_curves(summaries))
    write_text_atomic(paths["md"], markdown_table(rows))
    write_text_atomic(paths["csv"], csv_table(rows))
    write_text_atomic(paths["chart"], report_chart(rows))
    return paths


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    """Write the report of the run directories named on the command line; print its table."""
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
