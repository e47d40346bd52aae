"""Per-pixel segment weights of the training losses (docs/design.md §4, the authors' code).

    w_i = 1 / ( sum_j M_j(i) A_j + 1 )

``M_j`` are the smoothed (normalised) layer masks of the blurry crop and ``A_j`` the
hard-mask pixel count of layer ``j`` inside that crop (:class:`GTField.counts`). Where the
masks are one-hot, ``w_i`` is the inverse size of the segment of ``i`` (plus one), so a
small object weighs as much in a weighted mean as the whole background; across a blurred
boundary it interpolates. Losses use ``sum_i w_i e_i / sum_i w_i``, so the scale of ``w``
does not matter.
"""

from __future__ import annotations

import torch
from torch import Tensor


def segment_weights(masks: Tensor, counts: Tensor) -> Tensor:
    """``w = 1 / (sum_j masks_j * counts_j + 1)``.

    Args:
        masks: (J, h, w) or (N, J, h, w) smoothed layer masks (zeros for padded layers).
        counts: (J,) or (N, J) hard-mask pixel counts of each layer inside the crop.
    Returns:
        (h, w) or (N, h, w) float32 weights in (0, 1].
    """
    if masks.dim() not in (3, 4) or counts.shape != masks.shape[:-2]:
        raise ValueError(f"segment_weights: masks {tuple(masks.shape)} must be (N, J, h, w) "
                         f"or (J, h, w) and counts {tuple(counts.shape)} their leading dims")
    area = torch.einsum("...jhw,...j->...hw", masks.float(), counts.float())
    return 1.0 / (area + 1.0)
