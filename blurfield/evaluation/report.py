"""What ``blurfield evaluate`` writes: the per-image CSV, the summary, pictures, index.html.

Every file is written to a temporary name in the same folder and renamed into place, so
an interrupted run never leaves a half-written file; ``results.csv`` is rewritten whole
after each image (it is small), which is what makes a run resumable.

Files in the output folder::

    results.csv        one row per image: id, the metrics, seconds, ...
    summary.md/.json   means of the numeric columns, image count, the gain over the blurry
                       input (mean, worst, how many lose more than 0.5 dB), the no-harm
                       rule's decisions, hardware, command
    index.html         the table with each image's side-by-side picture
    pictures/<id>.jpg  panels side by side (blurry | restored | ground truth | PSFs)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from blurfield.fileio import write_text_atomic

RESULTS = "results.csv"
INFO_KEYS = ("method", "images", "gain over the blurry input", "no-harm rule", "hardware",
             "checkpoint", "deblurrer", "command")  # what the summary says, in this order


# --------------------------------------------------------------------------- CSV


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a results CSV (empty if the file does not exist)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write all rows (columns: the union in first-seen order, ``id`` first), atomically."""
    cols: list[str] = ["id"]
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k, "")) for k in cols})
    write_text_atomic(path, buf.getvalue())


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean of every numeric column (``id`` and text columns skipped) over its finite values.

    A column is numeric when each non-empty value parses as a float (``nan``/``inf``
    included; those are left out of the mean).
    """
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and k != "id"]
    out: dict[str, float] = {}
    for k in keys:
        vals = []
        for r in rows:
            v = r.get(k, "")
            if v in ("", None):
                continue
            try:
                vals.append(float(v))
            except (TypeError, ValueError):
                vals = []
                break
        finite = [v for v in vals if math.isfinite(v)]
        if finite:
            out[k] = float(np.mean(finite))
    return out


# (restored, blurry) PSNR columns: the photo benchmarks', the synthetic protocol's
GAIN_COLUMNS = (("psnr", "blurry_psnr"), ("psnr_est", "psnr_blurry"))


def gains(rows: Sequence[dict[str, Any]], worse: float = 0.5) -> str | None:
    """The gain over the blurry input in words: ``psnr - blurry_psnr`` (dB; the synthetic
    protocol's ``psnr_est - psnr_blurry``) over the rows where both are finite, its mean,
    the worst, and how many rows lose more than ``worse`` dB; None when no row has both."""
    g = []
    for r in rows:
        for restored, blurry in GAIN_COLUMNS:
            try:
                d = float(r[restored]) - float(r[blurry])
            except (KeyError, TypeError, ValueError):
                continue
            if math.isfinite(d):
                g.append(d)
            break
    if not g:
        return None
    lost = sum(d < -worse for d in g)
    return (f"mean {np.mean(g):+.2f} dB, worst {min(g):+.2f} dB; {lost} of {len(g)} "
            f"more than {worse:g} dB worse")


def decisions(rows: Sequence[dict[str, Any]]) -> str | None:
    """How many rows the no-harm rule restored and left (their ``decision`` column), in
    words; None when no row has one."""
    said = [r["decision"] for r in rows if r.get("decision")]
    if not said:
        return None
    counts = {d: said.count(d) for d in dict.fromkeys(said)}
    return ", ".join(f"{n} {d}" for d, n in counts.items())


# --------------------------------------------------------------------------- summary


def hardware(device: torch.device | str | None = None) -> str:
    """A one-line description of what ran the evaluation: the GPU for a CUDA device (or
    ``None`` with CUDA present), else the CPU."""
    dev = torch.device(device) if device is not None else None
    if (dev is None and torch.cuda.is_available()) or (dev is not None and dev.type == "cuda"):
        return f"{torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads"


def summary_markdown(summary: dict[str, float], info: dict[str, Any]) -> str:
    """A markdown table of the means, preceded by what was run where."""
    lines = [f"# {info.get('benchmark', 'evaluation')}", ""]
    for k in INFO_KEYS:
        if info.get(k) is not None:
            v = f"`{info[k]}`" if k == "command" else info[k]
            lines.append(f"- {k}: {v}")
    lines += ["", "| metric | mean |", "|---|---|"]
    for k, v in summary.items():
        lines.append(f"| {k} | {v:.4f} |")
    return "\n".join(lines) + "\n"


def write_summary(out: Path, summary: dict[str, float], info: dict[str, Any]) -> str:
    """Write ``summary.md`` and ``summary.json``; returns the markdown."""
    md = summary_markdown(summary, info)
    write_text_atomic(out / "summary.md", md)
    write_text_atomic(out / "summary.json",
                      json.dumps({"info": info, "mean": summary}, indent=1, sort_keys=True))
    return md


# --------------------------------------------------------------------------- pictures


def to_array(image: Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) display tensor -> (H, W, C) float array; arrays pass through."""
    if isinstance(image, Tensor):
        return image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    return np.asarray(image)


def save_picture(path: Path, panels: Sequence[tuple[str, Tensor | np.ndarray]],
                 size: int = 512) -> None:
    """Labelled panels side by side (:func:`blurfield.viz.side_by_side`), each scaled to
    ``size`` px high (at most ``size`` wide for the first panel), written as JPEG."""
    from blurfield.imageio import write_image
    from blurfield.viz import side_by_side

    arrays = [to_array(im) for _, im in panels]
    h0, w0 = arrays[0].shape[:2]
    height = max(16, min(size, round(size * h0 / max(w0, 1))))
    pic = side_by_side(arrays, [label for label, _ in panels], height=height)
    write_image(path, pic, bit_depth=8)


def write_index(out: Path, rows: Sequence[dict[str, Any]], info: dict[str, Any],
                summary: dict[str, float], pictures: Iterable[str] = ()) -> None:
    """``index.html``: what was run, the means, every image's picture, the full table."""
    from blurfield import html

    done = set(pictures)
    about = "".join(html.paragraph(f"{k}: {info[k]}") for k in INFO_KEYS
                    if info.get(k) is not None)
    mean = html.table([{k: round(v, 4) for k, v in summary.items()}], floatfmt="{:.4f}")
    figs = []
    for r in rows:
        rid = str(r["id"])
        if rid in done:
            cap = rid + "  " + "  ".join(
                f"{k} {_fmt(_num(r[k]))}" for k in ("psnr", "ssim", "psnr_est", "kernel_error",
                                                    "reblur_psnr") if k in r)
            figs.append(html.figure(f"pictures/{rid}.jpg", cap))
    table = html.table([{k: _num(v) for k, v in r.items()} for r in rows], floatfmt="{:.4f}")
    page = html.page(str(info.get("benchmark", "evaluation")), about,
                     html.section("mean", mean),
                     html.section("pictures", "".join(figs)) if figs else "",
                     html.section("images", table))
    write_text_atomic(out / "index.html", page)


def _num(v: Any) -> Any:
    """CSV strings that are numbers -> float (for number formatting)."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v
