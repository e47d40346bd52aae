"""Estimate small, restore big (docs/design.md §5): the downscale factor and the field's upscaling.

K = 33 bounds the blur length the estimator can see, so a large photo is estimated on a
copy downscaled by ``s`` (bilinear with antialiasing), and the field it gives is brought
back to full size before restoring:

- kernels (B, K, K) -> (B, K', K') with ``K' - 1 = 2 round(s (K - 1) / 2)`` (odd, about
  s·K): bilinear with ``align_corners=True`` maps the centre tap onto the centre tap and
  stretches the support by ``(K' - 1) / (K - 1) ≈ s``; then clamped >= 0 and renormalised
  to sum 1 (the mass of a PSF stretched by s grows by s²);
- mixing (B, h, w) -> (B, H, W): bilinear with ``align_corners=False`` (pixel centres, as
  the antialiased downscale), then renormalised onto the simplex. :func:`upscale_mixing`
  can compute any window of the full-size result alone, so tiled restoration never holds
  the full-size mixing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def parse_scale(value: float | str) -> float | str:
    """``"auto"`` or a number ``>= 1`` (a numeric string is read as a number); anything
    else raises ``ValueError``."""
    if str(value) == "auto":
        return "auto"
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not scale >= 1:
        raise ValueError(f"{value!r} is not a scale: neither 'auto' nor a number >= 1")
    return scale


def choose_scale(height: int, width: int, scale: float | str = "auto",
                 max_megapixels: float = 1.5) -> float:
    """The downscale factor ``s >= 1``: ``scale`` itself if a number, or with ``"auto"`` the
    smallest ``s`` for which the estimator sees at most ``max_megapixels``."""
    scale = parse_scale(scale)
    if scale != "auto":
        return scale
    if max_megapixels <= 0:
        raise ValueError(f"max_megapixels: must be > 0, got {max_megapixels}")
    return max(1.0, math.sqrt(height * width / (max_megapixels * 1e6)))


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The size (h, w) of the photo downscaled by ``scale``: ``max(1, round(H / s))``."""
    return max(1, round(height / scale)), max(1, round(width / scale))


def downscale_image(image: Tensor, scale: float) -> Tensor:
    """(N, C, H, W) -> (N, C, h, w) with h, w from :func:`scaled_size`; antialiased
    bilinear (a box-like average for integer factors). ``scale == 1``: unchanged."""
    h, w = scaled_size(*image.shape[-2:], scale)
    if (h, w) == tuple(image.shape[-2:]):
        return image
    return F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False,
                         antialias=True)


def upscaled_kernel_size(kernel_size: int, scale: float) -> int:
    """Odd ``K'`` with ``K' - 1 = 2 round(s (K - 1) / 2)``: about s·K."""
    return 2 * round(scale * (kernel_size - 1) / 2) + 1


def upscale_kernels(kernels: Tensor, scale: float) -> Tensor:
    """(..., K, K) kernels at the downscaled resolution -> (..., K', K') at full resolution,
    each >= 0 and summing to 1 (see the module doc). ``K' == K``: returned unchanged."""
    k = kernels.shape[-1]
    k2 = upscaled_kernel_size(k, scale)
    if k2 == k:
        return kernels
    lead = kernels.shape[:-2]
    flat = kernels.reshape(-1, 1, k, k)
    up = F.interpolate(flat, size=(k2, k2), mode="bilinear", align_corners=True).clamp(min=0)
    up = up / up.sum((-1, -2), keepdim=True).clamp(min=1e-12)
    return up.reshape(*lead, k2, k2)


def _axis(n_in: int, n_out: int, start: int, stop: int, device: torch.device):
    """Rows/columns ``start:stop`` of PyTorch's bilinear ``align_corners=False`` resize from
    ``n_in`` to ``n_out``: source indices i0, i1 and the weight of i1."""
    i = torch.arange(start, stop, device=device, dtype=torch.float64)
    src = ((i + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, (src - i0).clamp(0, 1)


def upscale_mixing(mixing: Tensor, size: tuple[int, int],
                   window: tuple[int, int, int, int] | None = None) -> Tensor:
    """(N, B, h, w) -> (N, B, H, W), or only its window ``(y0, y1, x0, x1)`` of shape
    (N, B, y1 - y0, x1 - x0); bilinear (``align_corners=False``, equal to
    ``F.interpolate``), then clamped >= 0 and renormalised to sum 1 over B. Returned as
    float32 (float16 input is cast first)."""
    height, width = size
    y0, y1, x0, x1 = window if window is not None else (0, height, 0, width)
    m = mixing.float() if mixing.dtype in (torch.float16, torch.bfloat16) else mixing
    h, w = m.shape[-2:]
    if (h, w) != (height, width):
        i0, i1, wy = _axis(h, height, y0, y1, m.device)
        j0, j1, wx = _axis(w, width, x0, x1, m.device)
        wy = wy.to(m.dtype)[:, None]
        wx = wx.to(m.dtype)
        rows = m.index_select(-2, i0) * (1 - wy) + m.index_select(-2, i1) * wy
        m = rows.index_select(-1, j0) * (1 - wx) + rows.index_select(-1, j1) * wx
    else:
        m = m[..., y0:y1, x0:x1]
    m = m.clamp(min=0)
    return m / m.sum(-3, keepdim=True).clamp(min=1e-12)
