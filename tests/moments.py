"""Second moments of a kernel: the tests' independent check of a blur's length and direction."""

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
