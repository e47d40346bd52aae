"""What the picture scripts of docs/demo share."""

import numpy as np
import torch

from blurfield.evaluation import metrics


def psnr(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    """PSNR of two (H, W, 3) display images in [0, 1] (blurfield.evaluation.metrics.psnr),
    ``border`` px left out at each side (the blur's reach)."""
    inner = slice(border, -border) if border else slice(None)
    a, b = (torch.from_numpy(np.asarray(x, dtype=np.float64)[inner, inner]).permute(2, 0, 1)
            for x in (a, b))
    return float(metrics.psnr(a, b))
