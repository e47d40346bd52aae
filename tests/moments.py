"""Second moments of a kernel: the tests' independent check of a blur's length and direction."""

from __future__ import annotations

import numpy as np


def axes(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors (columns, (y, x) order, y pointing down) of
    the kernel's second-moment matrix about its centroid."""
    y, x = np.mgrid[0 : kernel.shape[0], 0 : kernel.shape[1]].astype(np.float64)
    w = kernel / kernel.sum()
    cy, cx = (w * y).sum(), (w * x).sum()
    c = np.array([[(w * (y - cy) ** 2).sum(), (w * (y - cy) * (x - cx)).sum()],
                  [(w * (y - cy) * (x - cx)).sum(), (w * (x - cx) ** 2).sum()]])
    return np.linalg.eigh(c)
