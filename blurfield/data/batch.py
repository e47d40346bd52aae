"""One sample's training tensors and the batch of several (docs/design.md §8).

:func:`crop_window` places a blurry crop, :func:`prepare_sample` cuts the sample's tensors
for it (the sharp window ``K - 1`` larger, the ground-truth field, the weights) and
:func:`collate` stacks items into the binding batch format, :data:`BATCH_KEYS` (shapes in
:mod:`blurfield.data.datamodule`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from blurfield.data.schema import Sample, SampleError, gt_field, image_tensor
from blurfield.data.weights import segment_weights
from blurfield.physics.camera import to_linear

BATCH_KEYS = ("blurry", "sharp_linear", "kernels", "masks", "layer_valid", "weights",
              "has_field")


def crop_window(
    shape: tuple[int, int], crop: int, kernel_size: int, rng: np.random.Generator | None
) -> tuple[int, int, int, int]:
    """A blurry crop ``(top, left, crop, crop)`` at least ``K // 2`` from every border, so
    the sharp window ``K - 1`` larger around it fits (:func:`schema.sharp_window`).

    ``rng=None`` gives the centre crop. Raises SampleError if the image is too small.
    """
    h, w = shape
    o = (kernel_size - 1) // 2
    hi_t, hi_l = h - crop - kernel_size // 2, w - crop - kernel_size // 2
    if hi_t < o or hi_l < o:
        raise SampleError(f"image {h} x {w} is smaller than crop + K - 1 = "
                          f"{crop + kernel_size - 1}")
    if rng is None:
        return (min(max((h - crop) // 2, o), hi_t), min(max((w - crop) // 2, o), hi_l),
                crop, crop)
    return int(rng.integers(o, hi_t + 1)), int(rng.integers(o, hi_l + 1)), crop, crop


def prepare_sample(
    sample: Sample, window: tuple[int, int, int, int], kernel_size: int
) -> dict[str, Tensor]:
    """One sample's tensors for the blurry crop ``window = (top, left, c, c)``.

    Returns ``blurry`` (3, c, c), ``sharp_linear`` (3, c + K - 1, c + K - 1) (cropped as
    uint8 before linearising), ``kernels`` (J, K, K), ``masks`` (J, c, c), ``weights``
    (c, c) and ``has_field`` () bool; ``J = 1`` of zeros without a field.
    """
    top, left, h, w = window
    o = (kernel_size - 1) // 2
    st, sl = top - o, left - o
    size = (h + kernel_size - 1, w + kernel_size - 1)
    blurry = image_tensor(sample.blurry[top : top + h, left : left + w])
    sharp = image_tensor(sample.sharp[st : st + size[0], sl : sl + size[1]])
    sharp = to_linear(sharp, float(sample.meta["gamma"])) * float(sample.meta["brightness"])
    if sample.has_field:
        g = gt_field(sample, window)
        kernels, masks = g.kernels.float(), g.masks.float()
        weights = segment_weights(masks, g.counts)
    else:
        kernels = torch.zeros(1, kernel_size, kernel_size)
        masks = torch.zeros(1, h, w)
        weights = torch.ones(h, w)
    return {"blurry": blurry, "sharp_linear": sharp, "kernels": kernels, "masks": masks,
            "weights": weights, "has_field": torch.tensor(sample.has_field)}


def collate(items: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Items of :func:`prepare_sample` -> a batch; layers padded to ``J = max`` with zeros.

    ``layer_valid[n, j]`` is true for the real layers of samples with a field.
    """
    n = len(items)
    j = max(int(it["kernels"].shape[0]) for it in items)
    k = items[0]["kernels"].shape[-1]
    h, w = items[0]["masks"].shape[-2:]
    kernels = torch.zeros(n, j, k, k)
    masks = torch.zeros(n, j, h, w)
    valid = torch.zeros(n, j, dtype=torch.bool)
    for i, it in enumerate(items):
        ji = it["kernels"].shape[0]
        kernels[i, :ji] = it["kernels"]
        masks[i, :ji] = it["masks"]
        valid[i, :ji] = bool(it["has_field"])
    return {
        "blurry": torch.stack([it["blurry"] for it in items]),
        "sharp_linear": torch.stack([it["sharp_linear"] for it in items]),
        "kernels": kernels,
        "masks": masks,
        "layer_valid": valid,
        "weights": torch.stack([it["weights"] for it in items]),
        "has_field": torch.stack([it["has_field"] for it in items]),
    }


__all__ = ["BATCH_KEYS", "collate", "crop_window", "prepare_sample"]
