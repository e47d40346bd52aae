"""Test photos and the image comparisons the tests share."""

from __future__ import annotations

import numpy as np
import skimage.data
import skimage.transform
import torch

from blurfield.physics import to_display


def astronaut(size: int) -> torch.Tensor:
    """(1, 3, size, size) display values of scikit-image's astronaut photo."""
    img = skimage.transform.resize(skimage.data.astronaut(), (size, size), anti_aliasing=True)
    return torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None]


def psnr(a, b) -> float:
    """PSNR (dB, peak 1) of two images (tensors or arrays), in float64."""
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float(10 * np.log10(1 / max(mse, 1e-20)))


def display(x: torch.Tensor) -> torch.Tensor:
    """Linear light -> display values, clipped to [0, 1] first."""
    return to_display(x.clamp(0, 1))
