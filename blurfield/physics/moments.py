"""Second moments of a blur field's per-pixel kernels, in closed form from the basis.

A pixel's kernel is ``k_i = sum_b m_i^b k^b``; raw moments are linear in the kernel, so::

    E_i[x^p y^q] = sum_b m_i^b S_pq(k^b) / sum_b m_i^b S_00(k^b),
    S_pq(k) = sum_(x,y) k(y, x) x^p y^q        (x right, y down, from the kernel's centre)

and ``c_xx = E[x^2] - E[x]^2``, ``c_yy``, ``c_xy = E[xy] - E[x] E[y]`` (px²). No per-pixel
K x K kernel is materialised: the cost is one (B x 6) moment table and a (6 x B) x (B x HW)
product. The anisotropy vector ``a = (c_xx - c_yy, 2 c_xy)`` has ``|a| = λ1 - λ2`` (the
difference of the covariance's eigenvalues) and the angle ``2 θ`` of the principal axis
``θ``: two kernels have the same axis when their ``a`` point the same way, and axes 90°
apart give opposite ``a``. Used by the direction metric (``blurfield.evaluation.metrics``)
and the moment loss (``blurfield.losses``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def kernel_moments(kernels: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Raw moments ``S_00, S_10, S_01, S_20, S_02, S_11`` of (..., K, K) kernels: (..., 6)."""
    k, dev = kernels.shape[-1], kernels.device
    dtype = dtype or kernels.dtype
    r = torch.arange(k, dtype=dtype, device=dev) - (k - 1) / 2
    y, x = torch.meshgrid(r, r, indexing="ij")
    basis = torch.stack([torch.ones_like(x), x, y, x * x, y * y, x * y])  # (6, K, K)
    return torch.einsum("...ij,fij->...f", kernels.to(dtype), basis)


def field_covariance(kernels: Tensor, mixing: Tensor, dtype: torch.dtype | None = None
                     ) -> Tensor:
    """Per-pixel central second moments ``c_xx, c_yy, c_xy`` of a field's kernels.

    Args:
        kernels: (..., B, K, K); mixing: (..., B, H, W) (ground truth: layer kernels and
            masks). dtype: of the computation; None = float64 (float32 on MPS, which has
            no float64). Differentiable.
    Returns:
        (..., 3, H, W) in px²; 0 where the mixing is 0.
    """
    if dtype is None:
        dtype = torch.float32 if kernels.device.type == "mps" else torch.float64
    s = kernel_moments(kernels, dtype)  # (..., B, 6)
    raw = torch.einsum("...bf,...bhw->...fhw", s, mixing.to(dtype))
    mass = raw[..., :1, :, :]
    e = raw[..., 1:, :, :] / torch.where(mass > 0, mass, torch.ones_like(mass))
    ex, ey, exx, eyy, exy = e.unbind(-3)
    return torch.stack([exx - ex * ex, eyy - ey * ey, exy - ex * ey], -3)


def principal_variances(cov: Tensor) -> Tensor:
    """The covariance's eigenvalues ``λ1 >= λ2`` (px²): (..., 3, H, W) -> (..., 2, H, W),
    ``(c_xx + c_yy) / 2 ± |a| / 2`` (:func:`anisotropy`), ``λ2`` at least 0."""
    half = (cov[..., 0, :, :] + cov[..., 1, :, :]) / 2
    gap = anisotropy(cov).norm(dim=-3) / 2
    return torch.stack([half + gap, (half - gap).clamp(min=0)], -3)


def anisotropy(cov: Tensor) -> Tensor:
    """``a = (c_xx - c_yy, 2 c_xy)``: (..., 3, H, W) -> (..., 2, H, W); ``|a| = λ1 - λ2``."""
    return torch.stack([cov[..., 0, :, :] - cov[..., 1, :, :], 2 * cov[..., 2, :, :]], -3)
