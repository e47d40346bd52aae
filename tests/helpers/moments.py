"""The tests' independent kernel references: a splatted straight-motion kernel, and the second
moments of a kernel (a check of a blur's length and direction)."""

from __future__ import annotations

import numpy as np


def covariance(kernel: np.ndarray) -> np.ndarray:
    """The kernel's 2 x 2 second-moment matrix about its centroid, (y, x) order."""
    y, x = np.mgrid[0 : kernel.shape[0], 0 : kernel.shape[1]].astype(np.float64)
    w = kernel / kernel.sum()
    cy, cx = (w * y).sum(), (w * x).sum()
    return np.array([[(w * (y - cy) ** 2).sum(), (w * (y - cy) * (x - cx)).sum()],
                     [(w * (y - cy) * (x - cx)).sum(), (w * (x - cx) ** 2).sum()]])


def axes(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors (columns, (y, x) order, y pointing down) of
    the kernel's second-moment matrix about its centroid."""
    return np.linalg.eigh(covariance(kernel))


def splat_line(size: int, angle: float, length: float) -> np.ndarray:
    """A straight motion blur of ``length`` px at ``angle`` (radians) on a ``size`` x ``size``
    grid: 200 points along the segment, bilinear splats, sum 1 (float64)."""
    k = np.zeros((size, size))
    c = size // 2
    for t in np.linspace(-length / 2, length / 2, 200):
        y, x = c + t * np.sin(angle), c + t * np.cos(angle)
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        fy, fx = y - y0, x - x0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                k[y0 + dy, x0 + dx] += wy * wx
    return k / k.sum()
