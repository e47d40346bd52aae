"""Pictures of blur fields: numpy uint8 (H, W, 3) images out, for the CLI, reports and logs.

Pictures show PSFs, the way papers draw them (docs/design.md §8): a PSF is the correlation kernel
flipped by 180°. Each basis element b has a colour ``palette(B)[b]``; the mixing map and the
frames of the PSF grid use the same colours, so the two can be read together.

    psf_grid(kernels (B, K, K))                 -> basis PSFs in a grid, coloured frames
    mixing_map(mixing (B, h, w))                -> sum_b m^b colour_b (the dominant basis shows)
    psf_overlay(image, kernels, mixing, grid)   -> per-pixel PSFs drawn over the photo
    side_by_side(images, labels)                -> panels in a row with labels on top
    save_png(path, image)                       -> atomic write
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from blurfield.imageio import to_uint, write_image

GOLDEN = 0.618033988749895


def _np(x) -> np.ndarray:
    """A torch tensor or array-like -> float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def palette(n: int) -> np.ndarray:
    """``n`` distinct saturated colours (n, 3) uint8, hues spaced by the golden ratio."""
    cols = [colorsys.hsv_to_rgb((i * GOLDEN) % 1.0, 0.85, 1.0) for i in range(n)]
    return np.round(np.array(cols).reshape(n, 3) * 255).astype(np.uint8)


def psf_tile(kernel, size: int) -> np.ndarray:
    """One PSF (correlation kernel flipped 180°), normalised to its max, nearest-upscaled
    by an integer to at most ``size`` pixels a side (area-shrunk to ``size`` if smaller than
    K): (s, s) float in [0, 1]."""
    k = _np(kernel)[::-1, ::-1]
    if size < k.shape[0]:  # shrink by area so thin PSFs stay visible
        k = np.asarray(Image.fromarray(k.astype(np.float32), mode="F").resize(
            (max(1, size), max(1, size)), Image.BOX), dtype=np.float64)
    k = k / max(k.max(), 1e-12)
    zoom = max(1, size // k.shape[0])
    return np.kron(k, np.ones((zoom, zoom)))


def psf_grid(kernels, tile: int = 96, frame: int = 3) -> np.ndarray:
    """kernels (B, K, K) (correlation orientation) -> (h, w, 3) uint8: the PSFs in a grid of
    ceil(sqrt(B)) columns, each normalised to its max, white on black, framed in its
    basis colour."""
    k = _np(kernels)
    if k.ndim != 3:
        raise ValueError(f"kernels: expected (B, K, K), got shape {k.shape}")
    b = k.shape[0]
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    side = max(1, tile // k.shape[-1]) * k.shape[-1]
    cell = side + 2 * frame
    out = np.zeros((rows * cell, cols * cell, 3), np.uint8)
    pal = palette(b)
    for i in range(b):
        r, c = divmod(i, cols)
        y, x = r * cell, c * cell
        out[y : y + cell, x : x + cell] = pal[i]
        out[y + frame : y + frame + side, x + frame : x + frame + side] = to_uint(
            psf_tile(k[i], side)[..., None].repeat(3, -1))
    return out


def mixing_map(mixing) -> np.ndarray:
    """mixing (B, h, w) -> (h, w, 3) uint8: ``sum_b m^b palette[b]``; where one basis
    dominates its colour shows, blends show as mixed colours."""
    m = _np(mixing)
    if m.ndim != 3:
        raise ValueError(f"mixing: expected (B, h, w), got shape {m.shape}")
    pal = palette(m.shape[0]).astype(np.float64)
    return np.round(np.clip(np.einsum("bhw,bc->hwc", m, pal), 0, 255)).astype(np.uint8)


def _rgb_uint8(image) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3): uint8 as is, uint16 scaled, floats as [0, 1] values."""
    a = _np(image) if hasattr(image, "detach") else np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, -1)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return np.round(a / 257.0).astype(np.uint8)
    return to_uint(a.astype(np.float64), 8)


def psf_overlay(image, kernels, mixing, grid: int = 6, color=(255, 230, 40)) -> np.ndarray:
    """Per-pixel PSFs drawn over the photo: (H, W, 3) uint8.

    image (H, W, C) display values (float in [0, 1] or uint8), kernels (B, K, K), mixing
    (B, h, w) at any resolution (grid points are mapped proportionally). At the centres of
    a ``grid x grid`` lattice the PSF ``flip(sum_b m^b k^b)`` is drawn, normalised to its
    max and enlarged (nearest) to fill most of its cell: shapes, not to scale.
    """
    img = _rgb_uint8(image).astype(np.float64)
    k, m = _np(kernels), _np(mixing)
    h_img, w_img = img.shape[:2]
    _, h, w = m.shape
    cell = min(h_img, w_img) / grid
    side = max(3, int(cell * 0.8))
    if side >= k.shape[-1]:
        side = side // k.shape[-1] * k.shape[-1]
    gy = max(1, round(h_img / cell))
    gx = max(1, round(w_img / cell))
    col = np.asarray(color, np.float64)
    for i in range(gy):
        for j in range(gx):
            cy, cx = (i + 0.5) * h_img / gy, (j + 0.5) * w_img / gx
            my = min(h - 1, int(cy * h / h_img))
            mx = min(w - 1, int(cx * w / w_img))
            psf = psf_tile(np.einsum("b,bkl->kl", m[:, my, mx], k), side)
            s = psf.shape[0]
            y0, x0 = int(cy - s / 2), int(cx - s / 2)
            ys, xs = slice(max(0, y0), min(h_img, y0 + s)), slice(max(0, x0), min(w_img, x0 + s))
            a = psf[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0, None]
            patch = img[ys, xs] * 0.5  # darken under the PSF box so it reads on any photo
            img[ys, xs] = patch * (1 - a) + col * a
    return np.round(np.clip(img, 0, 255)).astype(np.uint8)


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=14)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def side_by_side(images: list, labels: list[str] | None = None, height: int | None = None,
                 gap: int = 6) -> np.ndarray:
    """Panels in a row, each with its label on a strip above: (h, w, 3) uint8.

    images: (H, W, C) arrays (float display in [0, 1] or uint8; C in {1, 3}); ``height``:
    resize every panel to this height first (bilinear), else panels keep their size and
    are top-aligned on black.
    """
    labels = list(labels) if labels is not None else [""] * len(images)
    if len(labels) != len(images):
        raise ValueError(f"labels: {len(labels)} labels for {len(images)} images")
    panels = [_rgb_uint8(im) for im in images]
    if height is not None:
        panels = [np.asarray(Image.fromarray(p).resize(
            (max(1, round(p.shape[1] * height / p.shape[0])), height), Image.BILINEAR))
            for p in panels]
    font = _font()
    strip = (font.getbbox("Ag")[3] + 8) if any(labels) else 0
    h = max(p.shape[0] for p in panels) + strip
    w = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (w, h), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for p, label in zip(panels, labels):
        canvas.paste(Image.fromarray(p), (x, strip))
        if label:
            while len(label) > 1 and draw.textlength(label, font=font) > p.shape[1] - 6:
                label = label[:-2] + "…"
            draw.text((x + 4, 3), label, fill=(255, 255, 255), font=font)
        x += p.shape[1] + gap
    return np.asarray(canvas)


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 (H, W, 3) or (H, W) picture as PNG, atomically."""
    write_image(path, np.asarray(image), bit_depth=8)
