"""Small blur fields the tests build by hand."""

from __future__ import annotations

import torch

from blurfield.api import Field
from helpers.moments import splat_line


def line_field(h: int, w: int, k: int = 7) -> Field:
    """A horizontal and a vertical (k - 2) px line, mixed by a left-to-right ramp."""
    kernels = torch.zeros(2, k, k)
    kernels[0, k // 2, 1:-1] = 1
    kernels[1, 1:-1, k // 2] = 1
    kernels /= kernels.sum((-1, -2), keepdim=True)
    a = torch.linspace(0, 1, w).expand(h, w)
    return Field(kernels, torch.stack([a, 1 - a]), scale=1.0, image_size=(h, w))


def line_kernel(size: int, angle: float, length: float) -> torch.Tensor:
    """A (size, size) line kernel (:func:`helpers.moments.splat_line`), float32."""
    return torch.tensor(splat_line(size, angle, length), dtype=torch.float32)


def peaky_field(size: int, k: int = 9, cells: int = 4, sharpness: float = 0.5):
    """``cells x cells`` regions, each blurred by its own line kernel (B = cells²), mixed by a
    softmax of ``-sharpness x`` the distance (px) to each region: a pixel uses the kernels of
    the regions near it, the others get a tail (like an estimated field's): (1, B, k, k),
    (1, B, size, size)."""
    b = cells * cells
    kernels = torch.stack([line_kernel(k, 0.4 * i, (0.3 + 0.6 * i / b) * k) for i in range(b)])
    pos = torch.arange(size, dtype=torch.float32)
    edges = torch.linspace(0, size, cells + 1)
    lo, hi = edges[:-1, None], edges[1:, None] - 1
    dist = (lo - pos).clamp(min=0) + (pos - hi).clamp(min=0)  # (cells, size)
    d = dist[:, None, :, None] + dist[None, :, None, :]  # (cells_y, cells_x, y, x)
    logits = -sharpness * d.reshape(b, size, size)
    return kernels[None], logits.softmax(0)[None]
