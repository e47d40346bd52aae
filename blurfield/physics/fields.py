"""Blur fields as data (docs/design.md §1): the kernel at a pixel, a field's mean kernel, a
uniform field, and the layer masks of Algorithm 1 on the simplex.

Shapes as in :mod:`blurfield.physics.blur`: ``kernels`` (N, B, K, K), ``mixing``
(N, B, H, W) on the simplex over B.
"""

from __future__ import annotations

import torch
from torch import Tensor

from blurfield.physics.blur import correlate


def per_pixel_kernels(kernels: Tensor, mixing: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
    """The kernel at pixels (ys[p], xs[p]): ``sum_b m^b_p k^b``.

    kernels (N, B, K, K), mixing (N, B, H, W), ys/xs (P,) long -> (N, P, K, K).
    """
    m = mixing[:, :, ys, xs]  # (N, B, P)
    return torch.einsum("nbp,nbkl->npkl", m, kernels)


def mean_kernel(kernels: Tensor, mixing: Tensor) -> Tensor:
    """The mean over pixels of the per-pixel kernels: ``sum_b mean_i(m_i^b) k^b``.

    kernels (..., B, K, K), mixing (..., B, H, W) -> (..., K, K), float64."""
    w = mixing.double().flatten(-2).mean(-1)
    return (w[..., None, None] * kernels.double()).sum(-3)


def uniform_field(kernel: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """A spatially uniform field: kernel (K, K) or (N, K, K) -> kernels (N, 1, K, K) and
    mixing of ones (N, 1, height, width)."""
    if kernel.dim() == 2:
        kernel = kernel[None]
    return kernel[:, None], kernel.new_ones(kernel.shape[0], 1, height, width)


def normalize_masks(soft: Tensor, hard: Tensor, eps: float = 1e-6) -> Tensor:
    """Soft layer masks onto the simplex: ``M_j / sum_j M_j``, the hard mask where the sum
    is at most ``eps`` (no layer's kernel reaches the pixel).

    soft (N, J, H, W) >= 0 (e.g. :func:`smooth_masks` with ``normalize=False``), hard
    (N, J, H, W) in {0, 1} on the same pixels -> (N, J, H, W) summing to 1 over J. The same
    rule as ``smooth_masks(normalize=True)``, for callers that compute the correlations
    themselves (the shard synthesiser works on each layer's support only).
    """
    total = soft.sum(1, keepdim=True)
    return torch.where(total > eps, soft / total.clamp(min=eps), hard.to(soft.dtype))


def smooth_masks(
    hard_masks: Tensor,
    layer_kernels: Tensor,
    padding: str = "valid",
    normalize: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """Algorithm 1's soft masks: each layer mask correlated with its own kernel.

    ``M_j = k_j ⋆ mask_j``, then (``normalize``) ``M_j / sum_j M_j`` so the masks are a
    mixing on the simplex (docs/design.md §2 choice); where the sum is below ``eps`` (no layer's
    kernel reaches the pixel) the cropped hard mask is used.

    hard_masks (N, J, H, W) in {0, 1} summing to 1 over J; layer_kernels (N, J, K, K)
    -> (N, J, H', W') with H' as for :func:`blur`.
    """
    n, j, h, w = hard_masks.shape
    k = layer_kernels.shape[-1]
    x = hard_masks.reshape(n * j, 1, h, w)
    soft = correlate(x, layer_kernels.reshape(n * j, k, k), padding)
    soft = soft.reshape(n, j, *soft.shape[-2:]).clamp(min=0)
    if not normalize:
        return soft
    if padding == "valid":
        o = (k - 1) // 2
        hard_masks = hard_masks[:, :, o : o + soft.shape[-2], o : o + soft.shape[-1]]
    return normalize_masks(soft, hard_masks, eps)
