"""Local ranges that hold Richardson–Lucy on principal kernels (docs/design.md §5).

For a field on the simplex, row ``i`` of ``H`` is non-negative and sums to 1, so ``(H x)_i``
is a weighted mean of ``x`` over the pixels its kernel reaches, and the correction
``(H^T a)_j / (H^T 1)_j`` a weighted mean of ``a`` over the outputs whose kernels reach
``j``. The signed operator of principal kernels (:mod:`blurfield.physics.lowrank`) keeps
neither property; RL clamps its values into these ranges, which the exact values never
leave.

Per axis, with ``r = K // 2``: ``"same"`` reaches ``i - r .. i + r`` both ways (mirror
padding reflects within that distance); ``"valid"`` blurs from input ``i .. i + K - 1`` and
corrects input ``j`` from outputs ``j - K + 1 .. j``; ``"circular"`` wraps around, and
gets the global range. The side that matters is held locally — ``Hx`` from below (``v /
Hx`` must stay finite), the correction from above (a border pixel of ``"valid"`` that a
few kernel taps see must not run away) — the other at the global extreme. The local
extremes are bounded from outside, cheaply: over the channels together, and on blocks of
``BLOCK`` pixels (the maximum over the blocks that cover the window, at most
``2 BLOCK - 2`` pixels wider).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCK = 8


def _window_max(x: Tensor, dim: int, out_len: int, lo: int, hi: int) -> Tensor:
    """Along ``dim`` of ``x`` (length n): ``y[t] >= max x[t + lo .. t + hi]`` (clipped to
    ``0 .. n - 1``) for ``t = 0 .. out_len - 1``, from the maxima of blocks of BLOCK."""
    n = x.shape[dim]
    x = x.movedim(dim, -1)
    nb = math.ceil(n / BLOCK)
    blocks = F.pad(x, (0, nb * BLOCK - n), value=-math.inf)
    blocks = blocks.reshape(*x.shape[:-1], nb, BLOCK).amax(-1)  # (..., nb)
    t = torch.arange(out_len, device=x.device)
    first = ((t + lo).clamp(0, n - 1) // BLOCK)
    last = ((t + hi).clamp(0, n - 1) // BLOCK)
    width = int((last - first).max()) + 1
    slide = F.pad(blocks, (0, width - 1), value=-math.inf).unfold(-1, width, 1).amax(-1)
    # slide[q] = max blocks[q .. q + width - 1] covers blocks first[t] .. last[t]
    return slide.index_select(-1, first).movedim(-1, dim)


def _window_extreme(x: Tensor, size: tuple[int, int], lo: int, hi: int, top: bool) -> Tensor:
    """(N, 1, h, w): a bound of the max (``top``) or min of ``x`` (N, C, H, W) over every
    channel and the windows ``t + lo .. t + hi`` per axis, for an output of size (h, w)."""
    z = x.amax(1, keepdim=True) if top else -x.amin(1, keepdim=True)
    z = _window_max(_window_max(z, -2, size[0], lo, hi), -1, size[1], lo, hi)
    return z if top else -z


def _global(x: Tensor, top: bool) -> Tensor:
    return x.amax(dim=(1, 2, 3), keepdim=True) if top else x.amin(dim=(1, 2, 3), keepdim=True)


def blur_range(x: Tensor, kernel_size: int, padding: str) -> tuple[Tensor, Tensor]:
    """Bounds of ``(H x)_i`` for (N, C, H, W) ``x``: below, the local minimum of ``x`` where
    row ``i`` reaches (what keeps ``v / Hx`` finite); above, the global maximum."""
    k, (h, w) = kernel_size, x.shape[-2:]
    if padding == "circular":
        return _global(x, False), _global(x, True)
    if padding == "valid":
        return _window_extreme(x, (h - k + 1, w - k + 1), 0, k - 1, False), _global(x, True)
    return _window_extreme(x, (h, w), -(k // 2), k // 2, False), _global(x, True)


def correction_range(a: Tensor, kernel_size: int, padding: str) -> tuple[Tensor, Tensor]:
    """Bounds of ``(H^T a)_j / (H^T 1)_j`` for (N, C, H', W') ``a``: above, the local
    maximum of ``a`` over the outputs that reach input ``j`` (what keeps a pixel that few
    outputs see from running away); below, the global minimum."""
    k, (h, w) = kernel_size, a.shape[-2:]
    if padding == "circular":
        return _global(a, False), _global(a, True)
    if padding == "valid":
        return _global(a, False), _window_extreme(a, (h + k - 1, w + k - 1), -(k - 1), 0, True)
    return _global(a, False), _window_extreme(a, (h, w), -(k // 2), k // 2, True)
