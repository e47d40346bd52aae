"""Pictures of a kernel bank: a sheet of kernels drawn as PSFs and histograms of its records.

Drawn with numpy and Pillow (no plotting library): ``kernel_sheet`` and ``histogram_panel``
return uint8 arrays; ``write_pictures`` saves ``sheet.png`` and ``hist.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from blurfield.fileio import write_atomic

from .render import correlation_to_psf


def kernel_sheet(kernels: np.ndarray, cols: int = 8, zoom: int = 4, gap: int = 2) -> np.ndarray:
    """A grid of correlation kernels ``(n, K, K)`` drawn as PSFs: ``(H, W)`` uint8.

    Each kernel is flipped to its PSF (docs/design.md §8: pictures show PSFs), divided by its own
    maximum, upscaled ``zoom`` x by repetition (nearest) and placed on a grey grid.
    """
    psf = correlation_to_psf(np.asarray(kernels, np.float64))
    n, K = len(psf), psf.shape[-1]
    peak = psf.max(axis=(1, 2), keepdims=True)
    psf = psf / np.where(peak > 0, peak, 1.0)
    big = psf.repeat(zoom, axis=1).repeat(zoom, axis=2)
    rows, s = (n + cols - 1) // cols, K * zoom
    img = np.full((gap + rows * (s + gap), gap + cols * (s + gap)), 96, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = gap + r * (s + gap), gap + c * (s + gap)
        img[y:y + s, x:x + s] = np.round(255 * big[i]).astype(np.uint8)
    return img


def histogram_panel(
    values: np.ndarray, title: str, bins: int = 40, size=(420, 240), integer: bool = False
) -> np.ndarray:
    """A bar histogram of ``values`` with its title, range and percentiles: ``(h, w, 3)`` uint8.

    ``integer``: one bar per integer value (no empty bars between integers)."""
    w, h = size
    left, right, top, bottom = 40, 10, 34, 30
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    lo, hi = (float(v.min()), float(v.max())) if len(v) else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    if integer:
        lo, hi = np.floor(lo) - 0.5, np.ceil(hi) + 0.5
        bins = int(hi - lo)
    counts, _ = np.histogram(v, bins=bins, range=(lo, hi))
    pw, ph = w - left - right, h - top - bottom
    top_count = max(int(counts.max()), 1) if len(v) else 1
    for i, cnt in enumerate(counts):
        x0 = left + pw * i / bins
        x1 = left + pw * (i + 1) / bins - 1
        y0 = top + ph * (1 - cnt / top_count)
        if cnt:
            d.rectangle([x0, y0, x1, top + ph], fill=(70, 110, 170))
    d.line([left, top + ph, left + pw, top + ph], fill="black")
    d.line([left, top, left, top + ph], fill="black")
    q = np.percentile(v, [5, 50, 95]) if len(v) else [0, 0, 0]
    d.text((left, 4), title, fill="black")
    d.text((left, 18), f"n={len(v)}  p5={q[0]:.1f}  p50={q[1]:.1f}  p95={q[2]:.1f}", fill="black")
    d.text((left, top + ph + 6), f"{lo:.1f}", fill="black")
    d.text((left + pw - 40, top + ph + 6), f"{hi:.1f}", fill="black")
    d.text((2, top), str(top_count), fill="black")
    return np.asarray(img)


def _save_png(img: np.ndarray, path: Path) -> None:
    write_atomic(path, lambda f: Image.fromarray(img).save(f, format="PNG"))


def write_pictures(bank, out: Path, n: int = 64) -> None:
    """``sheet.png`` (the first ``n`` kernels as PSFs) and ``hist.png`` (path length, extent)."""
    _save_png(kernel_sheet(bank[: min(n, len(bank))]), Path(out) / "sheet.png")
    p = bank.params
    panels = [histogram_panel(p["path_length"], "path length (px)"),
              histogram_panel(p["extent"], "extent: bbox > 1% of max (px)", integer=True)]
    _save_png(np.concatenate(panels, axis=1), Path(out) / "hist.png")
