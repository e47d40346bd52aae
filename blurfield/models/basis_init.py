"""Start the kernel head from a dictionary of line kernels (``train.init_kernels: lines``).

Why: trained from a random start on a short (CPU) budget, the estimator falls into a
shortcut: the kernel head draws every basis kernel as the image's average blur (a round
blob) and the mixing head stays nearly uniform (measured with B = 25: the largest mixing
weight at a pixel averages 0.07-0.15 in the shipped compact model, and 0.042 after one
epoch from a line start with the head free; uniform is 0.04), so the field is in effect one
blob. Starting the kernel head at a fixed dictionary (a delta and line segments of several
lengths and directions) and holding it there for the first epochs
(``train.freeze_kernels_epochs``) leaves selection as the only way to lower the loss, so
the mixing head has to learn where each direction and length of blur is.

- :func:`line_kernel` (from :mod:`blurfield.physics.kernels`): one centred straight-motion
  kernel, the dictionary's lines.
- :func:`line_dictionary`: (B, K, K) kernels, each summing to 1.
- :func:`fit_kernel_head`: Adam on the ``ker_*`` parameters only, cross-entropy of the head's
  softmax kernels against the dictionary, on random images (smooth and noisy, random
  colour and brightness) so that the fitted head draws the dictionary whatever the photo.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from blurfield.models.estimator import KernelEstimator
from blurfield.physics.kernels import line_kernel  # re-exported: its home was here


def line_dictionary(n_basis: int, kernel_size: int, angles: int = 8,
                    sigma: float = 0.8) -> Tensor:
    """(n_basis, K, K) float32: a delta, then centred line segments.

    The n_basis - 1 lines take ``angles`` directions ``0, 180/angles, ...`` degrees (as
    ``kornia.filters.get_motion_kernel2d`` measures them) at ``ceil((n_basis - 1) / angles)``
    odd lengths spaced evenly from 7 px to K - 6 px; shortest first, so a B that is not
    1 + a multiple of ``angles`` drops the longest. Every kernel is smoothed by a Gaussian
    of std ``sigma`` (no exact zeros for the head's softmax) and sums to 1.
    """
    if n_basis < 1 or kernel_size < 13 or kernel_size % 2 == 0:
        raise ValueError(f"n_basis={n_basis}, kernel_size={kernel_size}: need n_basis >= 1 "
                         "and an odd kernel_size >= 13")
    k = kernel_size
    out = [F.pad(torch.ones(1, 1), (k // 2,) * 4)]
    n_len = max(1, math.ceil((n_basis - 1) / angles))
    for length in torch.linspace(7, k - 6, n_len).tolist():
        odd = 2 * round((length - 1) / 2) + 1
        out += [line_kernel(odd, a * 180.0 / angles, k) for a in range(angles)]
    d = torch.stack(out[:n_basis])[:, None].float()
    r = max(1, math.ceil(3 * sigma))
    d = kornia.filters.gaussian_blur2d(d, (2 * r + 1, 2 * r + 1), (sigma, sigma))[:, 0]
    return d / d.sum((-1, -2), keepdim=True)


def _random_images(n: int, size: int, gen: torch.Generator) -> Tensor:
    """(n, 3, size, size) in [0, 1]: noise with random per-channel gain and offset,
    every other image smoothed."""
    x = torch.rand(n, 3, 1, 1, generator=gen) * torch.rand(n, 3, size, size, generator=gen)
    x = x + 0.3 * torch.rand(n, 3, 1, 1, generator=gen)
    smooth = kornia.filters.gaussian_blur2d(x, (9, 9), (2.0, 2.0))
    pick = (torch.arange(n) % 2 == 1).view(n, 1, 1, 1)
    return torch.where(pick, smooth, x).clamp(0, 1)


def fit_kernel_head(model: KernelEstimator, target: Tensor, steps: int = 1000,
                    lr: float = 3e-3, batch: int = 4, size: int = 64, seed: int = 0) -> float:
    """Fit ``model``'s kernel head so its basis kernels (N, B, K, K) equal ``target``
    (B, K, K) for any input; the other parameters are not changed.

    Minimises ``-sum target log k`` (mean over images and basis kernels) with Adam on the
    ``ker_*`` parameters. Returns the final mean L1 distance ``sum |k - target|`` per
    kernel (0 = exact, 2 = disjoint). About 0.1 s per step at base width 12 on a CPU core.
    """
    if target.shape != (model.n_basis, model.kernel_size, model.kernel_size):
        raise ValueError(f"target: shape {tuple(target.shape)} is not (B, K, K) = "
                         f"({model.n_basis}, {model.kernel_size}, {model.kernel_size})")
    gen = torch.Generator().manual_seed(seed)
    params = model.kernel_head_parameters()
    opt = torch.optim.Adam(params, lr=lr)
    dev = params[0].device
    target = target.to(dev)
    head = {id(p) for p in params}
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():  # no backward through the encoder
        p.requires_grad_(id(p) in head)
    dist = float("nan")
    try:
        for _ in range(steps):
            kernels, _ = model(_random_images(batch, size, gen).to(dev))
            loss = -(target * torch.log(kernels + 1e-12)).sum((-1, -2)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            dist = float((kernels.detach() - target).abs().sum((-1, -2)).mean())
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None
    return dist
