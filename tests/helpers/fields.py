"""Small blur fields the tests build by hand."""

from __future__ import annotations

import torch

from blurfield.api import Field


def line_field(h: int, w: int, k: int = 7) -> Field:
    """A horizontal and a vertical (k - 2) px line, mixed by a left-to-right ramp."""
    kernels = torch.zeros(2, k, k)
    kernels[0, k // 2, 1:-1] = 1
    kernels[1, 1:-1, k // 2] = 1
    kernels /= kernels.sum((-1, -2), keepdim=True)
    a = torch.linspace(0, 1, w).expand(h, w)
    return Field(kernels, torch.stack([a, 1 - a]), scale=1.0, image_size=(h, w))
