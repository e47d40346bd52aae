"""Image metrics: plain and masked PSNR / SSIM (docs/design.md §7); the per-pixel kernel error and
blur-direction agreement of an estimated field.

All images are tensors (N, C, H, W) or (C, H, W) with values in [0, data_range]; masks are
{0, 1} tensors broadcastable to the images (N, 1, H, W) or (N, C, H, W). Metrics are
computed in float64 and returned per image as a (N,) tensor (a 0-d tensor for 3-d input).

PSNR::

    psnr        = 10 log10( R^2 / mean(err^2) )
    masked_psnr = 10 log10( R^2 / (sum mask err^2 / sum mask) )      (RealBlur; mask over C)

SSIM is skimage's Gaussian SSIM (``gaussian_weights=True, sigma=1.5,
use_sample_covariance=False``): local means, variances and covariance from a Gaussian
window (sigma 1.5, truncated at 3.5 sigma, radius r = 5, normalised), then::

    S = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    C1 = (0.01 R)^2, C2 = (0.03 R)^2.

skimage filters the whole image and crops r pixels from each border before averaging; we
compute the map only where the window lies inside the image ("valid"), which is exactly
that cropped map, so no border mode is involved. ``ssim`` = mean of the map over pixels
and channels. ``masked_ssim`` (RealBlur): the map of the masked images ``x m`` and
``y m``, then per channel ``sum(S m) / sum(m)`` over the cropped region, then the mean over
channels. Multiplying by a mask and calling an unmasked metric instead counts the
masked-out pixels as perfect and inflates the score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from blurfield.physics.fields import mean_kernel  # noqa: F401 (re-exported)
from blurfield.physics.moments import anisotropy, field_covariance  # noqa: F401 (re-exported)

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
K1, K2 = 0.01, 0.03
ROUND_PX2 = 0.05  # direction_agreement: below this λ1 - λ2 (px²) an estimate is near round


def _batch(x: Tensor, name: str) -> tuple[Tensor, bool]:
    if x.dim() == 3:
        return x[None], True
    if x.dim() != 4:
        raise ValueError(f"{name}: expected (N, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    return x, False


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, bool]:
    x4, squeeze = _batch(x, "x")
    y4, _ = _batch(y, "y")
    if x4.shape != y4.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    dtype = torch.float32 if x4.device.type == "mps" else torch.float64  # MPS has no float64
    return x4.to(dtype), y4.to(dtype), squeeze


def _mask_like(mask: Tensor, x: Tensor) -> Tensor:
    m = mask[None] if mask.dim() == 3 else mask
    if m.dim() != 4:
        raise ValueError(f"mask: expected (N, 1|C, H, W), got {tuple(mask.shape)}")
    return m.double().expand_as(x)


def _out(v: Tensor, squeeze: bool) -> Tensor:
    return v[0] if squeeze else v


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Plain PSNR per image: ``10 log10(R^2 / mean((x - y)^2))`` over C, H, W."""
    x, y, sq = _pair(x, y)
    mse = ((x - y) ** 2).flatten(1).mean(1)
    return _out(10 * torch.log10(data_range**2 / mse), sq)


def batch_psnr(x: Tensor, y: Tensor) -> Tensor:
    """Mean over the batch of :func:`psnr` (images in [0, 1]), each capped at 100 dB (an
    MSE floor of 1e-10) so a perfect image logs a number."""
    return psnr(x, y).clamp(max=100.0).mean().float()


def masked_psnr(x: Tensor, y: Tensor, mask: Tensor, data_range: float = 1.0) -> Tensor:
    """RealBlur PSNR: ``10 log10(R^2 / (sum m (x - y)^2 / sum m))``, the mask over channels."""
    x, y, sq = _pair(x, y)
    m = _mask_like(mask, x)
    err = (m * (x - y) ** 2).flatten(1).sum(1) / m.flatten(1).sum(1)
    return _out(10 * torch.log10(data_range**2 / err), sq)


def gaussian_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> Tensor:
    """The normalised 1-d Gaussian of scipy's ``gaussian_filter``: radius int(t s + 0.5)."""
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def _filter_valid(x: Tensor, g: Tensor) -> Tensor:
    """Separable "valid" correlation of every channel of (N, C, H, W) with the 1-d ``g``."""
    n, c, h, w = x.shape
    k = g.numel()
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(flat, g.to(x).view(1, 1, k, 1))
    flat = F.conv2d(flat, g.to(x).view(1, 1, 1, k))
    return flat.reshape(n, c, h - k + 1, w - k + 1)


def ssim_map(x: Tensor, y: Tensor, data_range: float = 1.0, sigma: float = SSIM_SIGMA) -> Tensor:
    """Gaussian SSIM map (N, C, H - 2r, W - 2r): skimage's full map with r cropped per side."""
    x, y, sq = _pair(x, y)
    g = gaussian_window(sigma)
    if min(x.shape[-2:]) < g.numel():
        raise ValueError(f"images of {tuple(x.shape[-2:])} are smaller than the "
                         f"{g.numel()} px SSIM window")
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    vx = _filter_valid(x * x, g) - mx * mx
    vy = _filter_valid(y * y, g) - my * my
    cxy = _filter_valid(x * y, g) - mx * my
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return _out(s, sq)


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Mean Gaussian SSIM per image (= skimage ``structural_similarity`` with channel_axis)."""
    s = ssim_map(x, y, data_range)
    return s.flatten(-3).mean(-1)


def masked_ssim(x: Tensor, y: Tensor, mask: Tensor, data_range: float = 1.0) -> Tensor:
    """RealBlur SSIM: map of ``(x m, y m)``, then per channel sum(S m)/sum(m) over the crop.

    Returns the mean over channels, per image.
    """
    x, y, sq = _pair(x, y)
    m = _mask_like(mask, x)
    s = ssim_map(x * m, y * m, data_range)
    r = (x.shape[-1] - s.shape[-1]) // 2
    mc = m[..., r : m.shape[-2] - r, r : m.shape[-1] - r]
    per_channel = (s * mc).sum((-1, -2)) / mc.sum((-1, -2)).clamp(min=1)
    return _out(per_channel.mean(-1), sq)


def quantize(x: Tensor, levels: int = 255) -> Tensor:
    """Round display values to what an 8-bit file would hold: round(clip(x) * 255) / 255."""
    return torch.round(x.clamp(0, 1) * levels) / levels


def kernel_error(
    kernels: Tensor, mixing: Tensor, gt_kernels: Tensor, gt_masks: Tensor
) -> Tensor:
    """Mean over pixels of ``|| sum_b m_i^b k^b - sum_j M_j(i) k_j ||_2`` (per-pixel kernels).

    Args:
        kernels: (B, K, K) estimated basis; mixing: (B, H, W) estimated mixing.
        gt_kernels: (J, K', K') ground-truth layer kernels; gt_masks: (J, H, W) their masks.
            Kernels of different odd sizes are compared after zero-padding the smaller one
            about its centre.
    Returns:
        0-d float64 tensor. Uses ``q_i = m^T G m - 2 m^T C M + M^T G_gt M`` with the Gram
        matrices of the kernels, so no per-pixel K x K kernel is materialised.
    """
    k_est, k_gt = _same_support(kernels.double(), gt_kernels.double())
    if mixing.shape[-2:] != gt_masks.shape[-2:]:
        raise ValueError(f"mixing {tuple(mixing.shape)} and gt_masks {tuple(gt_masks.shape)} "
                         "cover different windows")
    a = k_est.flatten(1)  # (B, K*K)
    b = k_gt.flatten(1)  # (J, K*K)
    m = mixing.double().flatten(1)  # (B, P)
    mm = gt_masks.double().flatten(1)  # (J, P)
    q = ((a @ a.T) @ m * m).sum(0) - 2 * ((a @ b.T) @ mm * m).sum(0) + ((b @ b.T) @ mm * mm).sum(0)
    return q.clamp(min=0).sqrt().mean()


def _same_support(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    ka, kb = a.shape[-1], b.shape[-1]
    if ka == kb:
        return a, b
    if (ka - kb) % 2:
        raise ValueError(f"kernel sizes {ka} and {kb} differ by an odd number of pixels")
    if ka < kb:
        p = (kb - ka) // 2
        return F.pad(a, (p, p, p, p)), b
    p = (ka - kb) // 2
    return a, F.pad(b, (p, p, p, p))


def direction_agreement(cov_est: Tensor, cov_gt: Tensor) -> Tensor:
    """How well the estimated blur directions match the true ones, pixel by pixel.

    With ``a = (c_xx - c_yy, 2 c_xy)`` a pixel's anisotropy vector (``|a| = λ1 - λ2``, the
    difference of the covariance's eigenvalues; its angle is twice the principal axis's)::

        D = sum_i |a_i^gt| cos(2 Δθ_i) / sum_i |a_i^gt|
          = sum_i a_i^gt · a_i^est / |a_i^est|  /  sum_i |a_i^gt|

    in [-1, 1]: 1 = every principal axis right, 0 = round or randomly oriented estimates,
    -1 = every axis off by 90°. Pixels weigh by the ground truth's elongation (a round blur
    has no direction to get right). A kernel with ``|a| < ROUND_PX2`` (0.05 px², e.g. a
    Gaussian with σ 1 and 0.975 px) is all but round and its axis mostly rounding noise:
    such ground-truth pixels are left out, and such an estimate's term is scaled by
    ``|a| / ROUND_PX2`` (the division is by ``max(|a^est|, ROUND_PX2)``).

    Args:
        cov_est, cov_gt: (..., 3, H, W) from :func:`field_covariance`.
    Returns:
        (...) in ``cov_est``'s dtype; NaN where the ground truth is round at every pixel.
    """
    a_est, a_gt = anisotropy(cov_est), anisotropy(cov_gt.to(cov_est.dtype))
    a_gt = a_gt * (a_gt.norm(dim=-3, keepdim=True) >= ROUND_PX2)
    cos_w = (a_gt * a_est).sum(-3) / a_est.norm(dim=-3).clamp(min=ROUND_PX2)
    return cos_w.flatten(-2).sum(-1) / a_gt.norm(dim=-3).flatten(-2).sum(-1)
