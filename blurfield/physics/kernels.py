"""Drawn blur kernels: the straight-motion segment every part of the project uses (the line
dictionary of ``blurfield.models.basis_init``, the hand-made check of
``data_prep.handmade``, the direction tests). It lives in the physics layer so that the
data tools draw it without importing the models (docs/design.md §10)."""

from __future__ import annotations

import kornia
import torch.nn.functional as F
from torch import Tensor


def line_kernel(length: int, angle: float, kernel_size: int) -> Tensor:
    """(K, K) float32 line segment of odd ``length`` px at ``angle`` degrees (as
    ``kornia.filters.get_motion_kernel2d`` draws it, summing to 1 up to rounding), centred
    in a K x K zero frame."""
    return F.pad(kornia.filters.get_motion_kernel2d(length, angle)[0],
                 ((kernel_size - length) // 2,) * 4)
