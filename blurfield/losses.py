"""Training losses of the kernel estimator and their reduction (docs/design.md §4, §8).

Shapes: predicted ``kernels`` (N, B, K, K) and ``mixing`` (N, B, H, W); ground-truth layer
kernels ``gt_kernels`` (N, J, K, K) and smoothed layer masks ``gt_masks`` (N, J, H, W);
per-pixel ``weights`` (N, H, W). The per-pixel predicted kernel is ``sum_b m_i^b k^b`` and
the per-pixel ground truth ``sum_j M_j(i) k_j^GT``. The weights themselves
(``w_i = 1 / (sum_j M_j(i) A_j + 1)``) come with the batch: ``blurfield.data.weights``.

Reduction (docs/design.md §8): mean over channels, then a weighted mean over pixels per image,
``sum_i w_i e_i / sum_i w_i``, then the mean over the batch.

- :func:`reblur_loss` (eq. 5): squared error between the blurry image and the reblur of
  the sharp image by the predicted field, eq. 3 without noise, in display space.
- :func:`kernel_loss` (eq. 6): the **unsquared** p-norm of the per-pixel kernel error.
  p = 2 uses a closed form over Gram matrices (no per-pixel K x K kernel is built); p = 1
  builds the per-pixel kernels a chunk of pixels at a time, each chunk recomputed in the
  backward pass (``torch.utils.checkpoint``), so memory is one chunk's kernels.
  :func:`pixel_grid` keeps every s-th pixel per axis: with a random offset per step the
  loss on that grid is an unbiased estimate of the full one at 1/s² of p = 1's cost.

The DeblurGAN fine-tune's terms (docs/design.md §6): :func:`gradient_penalty` (WGAN-GP)
and :func:`reblur_consistency` (the restoration reblurred by its field vs the blurry photo).

Optional terms of the estimator (off in the paper's recipe): :func:`moment_loss` on the
field's per-pixel second moments, :func:`mixing_entropy` on how many basis kernels a pixel
blends, :func:`mixing_usage` on how many an image uses over all its pixels.

Losses run with autocast off, half-precision inputs cast to float32 (bf16 would lose the
cancellation in ``q``); float64 inputs stay float64 (the tests).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from blurfield.physics import blur, reblur, saturate, to_linear
from blurfield.physics.blur import PADDINGS
from blurfield.physics.moments import anisotropy, field_covariance

Q_EPS = 1e-12  # floor of the squared L2 kernel error before the square root


def _f32(*xs: Tensor) -> list[Tensor]:
    """Half-precision tensors cast up to float32; float32/float64 left as they are."""
    return [x.float() if x.dtype in (torch.float16, torch.bfloat16) else x for x in xs]


def _no_autocast(x: Tensor) -> torch.autocast:
    return torch.autocast(device_type=x.device.type, enabled=False)


def weighted_mean(error: Tensor, weights: Tensor | None = None,
                  sample_valid: Tensor | None = None) -> Tensor:
    """``mean_n [ sum_i w_ni e_ni / sum_i w_ni ]``: a scalar.

    error (N, H, W) or (N, P); weights of the same shape or None (uniform);
    sample_valid (N,) bool: samples left out of the batch mean (all out -> 0, with a graph).
    """
    e = error.flatten(1)
    if weights is None:
        per_image = e.mean(1)
    else:
        w = weights.to(e.dtype).flatten(1)
        per_image = (w * e).sum(1) / w.sum(1).clamp(min=torch.finfo(e.dtype).tiny)
    if sample_valid is None:
        return per_image.mean()
    v = sample_valid.to(per_image.dtype)
    return (per_image * v).sum() / v.sum().clamp(min=1.0)


# --------------------------------------------------------------------------- reblur


def reblur_prediction(kernels: Tensor, mixing: Tensor, sharp_linear: Tensor, *,
                      gamma: float = 2.2, space: str = "display") -> Tensor:
    """Eq. 3 without noise over the valid region: ``R(H u)`` in display or linear space.

    sharp_linear (N, C, H + K - 1, W + K - 1) -> (N, C, H, W).
    ``space="display"``: ``to_display(R(H u), gamma)`` (the paper); ``"linear"``: ``R(H u)``
    (the authors' code).
    """
    if space not in ("display", "linear"):
        raise ValueError(f"space: {space!r} is not 'display' or 'linear'")
    if space == "display":
        return reblur(sharp_linear, kernels, mixing, gamma=gamma, check=False)
    return saturate(blur(sharp_linear, kernels, mixing, padding="valid", check=False))


def reblur_loss(
    kernels: Tensor,
    mixing: Tensor,
    sharp_linear: Tensor,
    blurry: Tensor,
    weights: Tensor | None = None,
    *,
    gamma: float = 2.2,
    space: str = "display",
    sample_valid: Tensor | None = None,
) -> Tensor:
    """Eq. 5: weighted mean of ``mean_c (v̂ - v)^2`` with ``v̂`` the reblur of the sharp image.

    Args:
        kernels: (N, B, K, K) predicted basis kernels; mixing: (N, B, H, W).
        sharp_linear: (N, C, H + K - 1, W + K - 1) linear light around the blurry crop.
        blurry: (N, C, H, W) display values.
        weights: (N, H, W) per-pixel weights or None (uniform).
        space: "display" compares ``to_display(R(H u))`` with ``blurry``; "linear" compares
            ``R(H u)`` with ``to_linear(blurry)`` (the authors' code).
        sample_valid: (N,) bool, samples to include (None = all).
    Returns:
        scalar.
    """
    with _no_autocast(blurry):
        kernels, mixing, sharp_linear, blurry = _f32(kernels, mixing, sharp_linear, blurry)
        pred = reblur_prediction(kernels, mixing, sharp_linear, gamma=gamma, space=space)
        target = blurry if space == "display" else to_linear(blurry, gamma)
        err = (pred - target).square().mean(1)
        return weighted_mean(err, weights, sample_valid)


def reblur_psnr(kernels: Tensor, mixing: Tensor, sharp_linear: Tensor, blurry: Tensor, *,
                gamma: float = 2.2) -> Tensor:
    """Mean over the batch of the display-space PSNR (peak 1, dB) of the reblur. Scalar."""
    with torch.no_grad(), _no_autocast(blurry):
        kernels, mixing, sharp_linear, blurry = _f32(kernels, mixing, sharp_linear, blurry)
        pred = reblur_prediction(kernels, mixing, sharp_linear, gamma=gamma)
        mse = (pred - blurry).square().flatten(1).mean(1).clamp(min=1e-10)
        return (-10.0 * torch.log10(mse)).mean()


# --------------------------------------------------------------------------- kernel


def _masked_gt(gt_masks: Tensor, layer_valid: Tensor | None) -> Tensor:
    if layer_valid is None:
        return gt_masks
    return gt_masks * layer_valid.to(gt_masks.dtype)[:, :, None, None]


def kernel_error_l2(kernels: Tensor, mixing: Tensor, gt_kernels: Tensor, gt_masks: Tensor,
                    eps: float = Q_EPS) -> Tensor:
    """Per-pixel ``|| sum_b m_i^b k^b - sum_j M_j(i) k_j ||_2`` by the closed form -> (N, H, W).

        q_i = m_i^T G m_i - 2 m_i^T C M_i + M_i^T G_gt M_i,     e_i = sqrt(max(q_i, eps))

    with ``G = <k^b, k^c>`` (N, B, B), ``C = <k^b, k_j>`` (N, B, J), ``G_gt = <k_j, k_l>``
    (N, J, J). Cost O(N (B + J)^2 H W), no K x K kernel per pixel.
    """
    kf = kernels.flatten(2)  # (N, B, K²)
    gf = gt_kernels.flatten(2)  # (N, J, K²)
    g = kf @ kf.transpose(1, 2)
    c = kf @ gf.transpose(1, 2)
    g_gt = gf @ gf.transpose(1, 2)
    m = mixing.flatten(2)  # (N, B, P)
    mm = gt_masks.flatten(2)  # (N, J, P)
    q = ((g @ m) * m).sum(1) - 2.0 * ((c @ mm) * m).sum(1) + ((g_gt @ mm) * mm).sum(1)
    return q.clamp(min=eps).sqrt().reshape(mixing.shape[0], *mixing.shape[2:])


def _l1_chunk(m: Tensor, mm: Tensor, kf: Tensor, gf: Tensor) -> Tensor:
    """(N, B, P), (N, J, P), (N, B, K²), (N, J, K²) -> (N, P) L1 norms of the kernel errors.

    One product ``[m; -M]^T [k; k^GT]`` (N, P, K²) (measured 1.5x faster than two products
    and a difference on CPU).
    """
    diff = torch.cat([m, -mm], 1).transpose(1, 2) @ torch.cat([kf, gf], 1)
    return torch.linalg.vector_norm(diff, ord=1, dim=2)


def kernel_error_l1(kernels: Tensor, mixing: Tensor, gt_kernels: Tensor, gt_masks: Tensor,
                    chunk: int = 4096) -> Tensor:
    """Per-pixel ``|| sum_b m_i^b k^b - sum_j M_j(i) k_j ||_1`` -> (N, H, W).

    Pixels go ``chunk`` at a time; with gradients on, each chunk runs under
    ``torch.utils.checkpoint`` so at most one chunk's (N, chunk, K²) kernels exist, in the
    forward and in the backward pass.
    """
    if chunk < 1:
        raise ValueError(f"chunk: {chunk} must be >= 1")
    kf, gf = kernels.flatten(2), gt_kernels.flatten(2)
    m, mm = mixing.flatten(2), gt_masks.flatten(2)
    grad = torch.is_grad_enabled() and (kf.requires_grad or m.requires_grad)
    parts = []
    for s in range(0, m.shape[-1], chunk):
        args = (m[..., s : s + chunk], mm[..., s : s + chunk], kf, gf)
        parts.append(checkpoint(_l1_chunk, *args, use_reentrant=False) if grad
                     else _l1_chunk(*args))
    return torch.cat(parts, 1).reshape(mixing.shape[0], *mixing.shape[2:])


def kernel_error(
    kernels: Tensor,
    mixing: Tensor,
    gt_kernels: Tensor,
    gt_masks: Tensor,
    *,
    p: int = 2,
    layer_valid: Tensor | None = None,
    chunk: int = 4096,
) -> Tensor:
    """Per-pixel p-norm (p in {1, 2}) of the kernel error (at least float32) -> (N, H, W).

    Layers with ``layer_valid`` (N, J) false are dropped (their masks zeroed).
    """
    if p not in (1, 2):
        raise ValueError(f"p: {p!r} is not 1 or 2")
    if gt_kernels.shape[:2] != gt_masks.shape[:2] or kernels.shape[:2] != mixing.shape[:2]:
        raise ValueError(
            f"gt_masks: (N, J) = {tuple(gt_masks.shape[:2])} must match gt_kernels' "
            f"{tuple(gt_kernels.shape[:2])}, and mixing's (N, B) = {tuple(mixing.shape[:2])} "
            f"kernels' {tuple(kernels.shape[:2])}"
        )
    if gt_masks.shape[-2:] != mixing.shape[-2:]:
        raise ValueError(f"gt_masks: size {tuple(gt_masks.shape[-2:])} != mixing's "
                         f"{tuple(mixing.shape[-2:])}")
    with _no_autocast(mixing):
        kernels, mixing, gt_kernels, gt_masks = _f32(kernels, mixing, gt_kernels, gt_masks)
        gt_masks = _masked_gt(gt_masks, layer_valid)
        if p == 2:
            return kernel_error_l2(kernels, mixing, gt_kernels, gt_masks)
        return kernel_error_l1(kernels, mixing, gt_kernels, gt_masks, chunk)


def pixel_grid(stride: int, offset: tuple[int, int], *maps: Tensor | None
               ) -> list[Tensor | None]:
    """Every ``stride``-th pixel of each (..., H, W) map along both axes, starting at
    ``offset`` = (row, column), each in [0, stride); None passes through.

    With uniform weights and H, W multiples of ``stride``, the mean of the per-pixel error
    over the ``stride²`` offsets is the mean over all pixels, so a random offset per step
    makes :func:`kernel_loss` on the grid an unbiased estimate of the full loss.
    """
    if stride < 1 or not all(0 <= o < stride for o in offset):
        raise ValueError(f"stride {stride} must be >= 1 and offset {offset} in [0, stride)")
    oy, ox = offset
    return [None if m is None else m[..., oy::stride, ox::stride] for m in maps]


def kernel_loss(
    kernels: Tensor,
    mixing: Tensor,
    gt_kernels: Tensor,
    gt_masks: Tensor,
    weights: Tensor | None = None,
    *,
    p: int = 2,
    layer_valid: Tensor | None = None,
    chunk: int = 4096,
) -> Tensor:
    """Eq. 6: weighted mean over pixels of ``|| sum_b m_i^b k^b - sum_j M_j(i) k_j ||_p``.

    Args:
        kernels: (N, B, K, K); mixing: (N, B, H, W) predicted field.
        gt_kernels: (N, J, K, K); gt_masks: (N, J, H, W) ground-truth layers.
        weights: (N, H, W) or None (uniform).
        p: 2 (closed form) or 1 (chunks of ``chunk`` pixels, checkpointed).
        layer_valid: (N, J) bool or None; samples with no valid layer (pairs without a
            field) are left out of the batch mean.
    Returns:
        scalar (0, with a graph, if no sample has a field).
    """
    err = kernel_error(kernels, mixing, gt_kernels, gt_masks, p=p, layer_valid=layer_valid,
                       chunk=chunk)
    valid = None if layer_valid is None else layer_valid.any(1)
    return weighted_mean(err, weights, valid)


# --------------------------------------------------------------------------- moments

ROUND_PX2 = 0.05  # |a| (px²) below which a kernel is all but round (its axis is noise)


def moment_loss(
    kernels: Tensor,
    mixing: Tensor,
    gt_kernels: Tensor,
    gt_masks: Tensor,
    weights: Tensor | None = None,
    *,
    layer_valid: Tensor | None = None,
    size_weight: float = 1.0,
) -> Tensor:
    """Per-pixel blur direction and size, from the field's second moments (no K x K kernel).

    With ``c_i`` the covariance of pixel i's kernel (``blurfield.physics.moments``),
    ``a_i = (c_xx - c_yy, 2 c_xy)`` its anisotropy (``|a| = λ1 - λ2``, angle 2θ) and
    ``t_i = c_xx + c_yy`` its trace, per image::

        direction = sum_i w_i |a_i^gt| (1 - cos 2Δθ_i) / sum_i w_i |a_i^gt|
                  = 1 - sum_i w_i a_i^gt · a_i / max(|a_i|, r)  /  sum_i w_i |a_i^gt|
        size      = sum_i w_i |log(1 + t_i) - log(1 + t_i^gt)| / sum_i w_i

    ``r`` = ROUND_PX2: a near-round estimate scores cos 2Δθ ≈ 0 and still gets a gradient
    towards the right axis. ``direction`` is 0 when every elongated pixel has the right
    axis, 1 for round estimates, 2 for every axis turned 90° (it is 1 minus the weighted
    ``direction_agreement`` of ``val/direction``); ground-truth pixels with
    ``|a^gt| < r`` carry no direction. The size term compares traces on a log scale, so a
    30 px blur does not drown the direction of a 3 px one. Returns
    ``mean_n [direction_n + size_weight * size_n]`` (images without elongated ground truth
    add only their size term; images without a field are left out).

    Shapes: kernels (N, B, K, K), mixing (N, B, H, W), gt_kernels (N, J, K, K), gt_masks
    (N, J, H, W), weights (N, H, W) or None, layer_valid (N, J) or None.
    """
    with _no_autocast(mixing):
        kernels, mixing, gt_kernels, gt_masks = _f32(kernels, mixing, gt_kernels, gt_masks)
        dtype, tiny = kernels.dtype, torch.finfo(kernels.dtype).tiny
        gt_masks = _masked_gt(gt_masks, layer_valid)
        cov = field_covariance(kernels, mixing, dtype)
        cov_gt = field_covariance(gt_kernels, gt_masks, dtype).detach()
        a, a_gt = anisotropy(cov), anisotropy(cov_gt)
        w = torch.ones_like(cov[:, 0]) if weights is None else weights.to(dtype)
        mag_gt = a_gt.norm(dim=1)
        w_dir = (w * (mag_gt >= ROUND_PX2)).flatten(1)
        cos_w = (a_gt * a).sum(1) / a.norm(dim=1).clamp(min=ROUND_PX2)  # |a_gt| cos 2Δθ
        den = (w_dir * mag_gt.flatten(1)).sum(1)
        direction = 1 - (w_dir * cos_w.flatten(1)).sum(1) / den.clamp(min=tiny)
        direction = torch.where(den > 0, direction, torch.zeros_like(direction))
        t, t_gt = cov[:, 0] + cov[:, 1], cov_gt[:, 0] + cov_gt[:, 1]
        size = (torch.log1p(t.clamp(min=0)) - torch.log1p(t_gt.clamp(min=0))).abs()
        size = (w * size).flatten(1).sum(1) / w.flatten(1).sum(1).clamp(min=tiny)
        per_image = direction + size_weight * size
        if layer_valid is None:
            return per_image.mean()
        v = layer_valid.any(1).to(dtype)
        return (per_image * v).sum() / v.sum().clamp(min=1)


def mixing_entropy(mixing: Tensor, weights: Tensor | None = None) -> Tensor:
    """How many basis kernels each pixel blends: the normalised entropy of its mixing.

    ``h_i = -sum_b m_i^b log m_i^b / log B`` is 1 where pixel i weighs all B basis kernels
    equally (their average: a round blob however elongated each one is) and 0 where it uses
    one; ``exp(h_i log B)`` is the effective number of kernels. Returns
    ``mean_n [sum_i w_i h_i / sum_i w_i]`` (:func:`weighted_mean`); a penalty on it pushes
    each pixel to commit to a few kernels. Shapes: mixing (N, B, H, W) on the simplex,
    weights (N, H, W) or None. B = 1 gives 0.
    """
    with _no_autocast(mixing):
        (m,) = _f32(mixing)
        return weighted_mean(_normalised_entropy(m), weights)


def mixing_usage(mixing: Tensor, weights: Tensor | None = None) -> Tensor:
    """How many basis kernels each image uses over all its pixels: the normalised entropy of
    its mean mixing.

    ``p^b = sum_i w_i m_i^b / sum_i w_i`` and ``u = -sum_b p^b log p^b / log B``: 1 where the
    image uses all B basis kernels equally often, 0 where every pixel uses the same one (a
    uniform blur). :func:`mixing_entropy` alone is lowest for one kernel everywhere; a reward
    on ``u`` beside it asks each pixel to commit to a kernel without all pixels committing
    to the same one. Returns the mean of ``u`` over the N images. Shapes: mixing
    (N, B, H, W) on the simplex, weights (N, H, W) or None (all 1). B = 1 gives 0.
    """
    with _no_autocast(mixing):
        (m,) = _f32(mixing)
        w = torch.ones_like(m[:, 0]) if weights is None else weights.to(m.dtype)
        tiny = torch.finfo(m.dtype).tiny
        p = (m * w[:, None]).sum((2, 3)) / w.sum((1, 2)).clamp(min=tiny)[:, None]
        return _normalised_entropy(p).mean()


def _normalised_entropy(p: Tensor) -> Tensor:
    """``-sum_b p^b log p^b / log B`` over dim 1 of p (N, B, ...) on the simplex; 0 for B = 1
    (0 log 0 = 0, finite gradient there)."""
    b = p.shape[1]
    if b == 1:
        return p.sum(1) * 0
    return -(p * p.clamp(min=torch.finfo(p.dtype).tiny).log()).sum(1) / math.log(b)


# --------------------------------------------------------------------------- fine-tune


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017), without the λ factor.

    ``x̂_n = α_n real_n + (1 - α_n) fake_n``; the critic's value of sample n is the mean of
    its patch map ``f(x̂_n) = mean D(x̂_n)`` (the quantity the Wasserstein estimate uses);
    returns ``mean_n (||∇_x f(x̂_n)||_2 - 1)^2`` with the norm over (C, H, W).
    real, fake: (N, C, H, W); alpha: (N, 1, 1, 1) in [0, 1]. Differentiable in the critic.
    """
    x = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    scores = critic(x).flatten(1).mean(1)  # (N,)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def reblur_consistency(
    restored: Tensor,
    blurry: Tensor,
    kernels: Tensor,
    mixing: Tensor,
    *,
    gamma: float = 2.2,
    padding: str = "same",
    norm: str = "l1",
) -> Tensor:
    """The reblur-consistency loss of the fine-tune.

    ``B̂ = reblur(to_linear(restored), kernels, mixing)`` through the camera model, then the
    mean over channels, pixels and batch of ``|B̂ - B|`` (l1) or ``(B̂ - B)^2`` (l2).

    Args:
        restored: (N, 3, H, W) display, the generator's output Ŝ (gradients flow into it).
        blurry: (N, 3, H, W) display, the generator's input B.
        kernels: (N, B, K, K); mixing: (N, B, H, W) — the field of B.
        padding: "same"/"circular" compare all H x W pixels; "valid" compares the centre
            (H - K + 1, W - K + 1) of ``blurry`` (mixing cropped the same way).
    """
    if padding not in PADDINGS:
        raise ValueError(f"reblur padding '{padding}': expected one of {PADDINGS}")
    if norm not in ("l1", "l2"):
        raise ValueError(f"reblur norm '{norm}': expected l1 or l2")
    if padding == "valid":
        k = kernels.shape[-1]
        o, h, w = (k - 1) // 2, blurry.shape[-2] - k + 1, blurry.shape[-1] - k + 1
        blurry = blurry[..., o : o + h, o : o + w]
        mixing = mixing[..., o : o + h, o : o + w]
    with torch.autocast(restored.device.type, enabled=False):
        b_hat = reblur(to_linear(restored.float(), gamma), kernels.float(), mixing.float(),
                       gamma=gamma, padding=padding, check=False)
        diff = b_hat - blurry.float()
        return diff.abs().mean() if norm == "l1" else (diff * diff).mean()
