"""Principal kernels: the same blur field with fewer basis elements (docs/design.md §1).

At pixel ``i`` the field blurs with ``k(i) = sum_b m^b_i k^b``. With ``m̄`` the mixing's
mean over the pixels and ``δm_i = m_i - m̄``,

    k(i) = k̄ + K^T δm_i,        k̄ = K^T m̄,

``K`` the (B, K²) matrix of the basis kernels. Over the pixels the deviations ``K^T δm_i``
have the covariance ``K^T C K``, ``C = mean_i δm_i δm_i^T`` (B x B); its leading
eigenvectors ``φ_1, ..., φ_R`` (the left singular vectors of ``K^T C^{1/2}``, (K², B)) are
the principal kernels, and

    k_R(i) = k̄ + sum_r c^r_i φ_r,      c^r_i = δm_i · (K φ_r),

is the best rank-R approximation of the pixels' kernels in the mean square. The operator
with kernels ``(k̄, φ_1, ..., φ_R)`` and mixing ``(1, c^1, ..., c^R)`` — R + 1 elements
instead of B — is ``H`` with ``k_R(i)`` in place of ``k(i)``: linear, its adjoint exact
(:class:`~blurfield.physics.BlurField` takes signed kernels and mixing with
``check=False``), and at every pixel

    |(H u)_i - (H_R u)_i| = |<k(i) - k_R(i), patch_i(P u)>|
                          <= ||k(i) - k_R(i)||_2 ||patch_i(P u)||_2.

R is the smallest for which ``error``, the largest relative kernel error over the pixels,
``max_i ||k(i) - k_R(i)||_2 / ||k(i)||_2``, is at most ``tol``, so that

    |(H u)_i - (H_R u)_i| <= tol ||k(i)||_2 ||patch_i(P u)||_2     at every pixel i checked.

It is computed from ``||k(i) - k_R(i)||² = δm_i^T K K^T δm_i - sum_{r<=R} (c^r_i)²`` and
``||k(i)||² = m_i^T K K^T m_i``, for every R in one pass, at every pixel of a window up to
512² and on a regular subgrid of at most :data:`MAX_ERROR_PIXELS` pixels beyond (every
other pixel of a 1024² tile: the mixing is smooth); ``C`` (which only chooses the
directions) on one of at most :data:`MAX_PIXELS`.

Estimated fields are far from uniform yet low-rank over a photo or a tile: the shipped
model's fields of 24 held-out 384² photos (8 hand-made, 16 synthetic) need 6 to 12 of 25
elements at ``tol`` 0.05, and Richardson–Lucy on them lands 49-69 dB (median 64) from the
exact one (``bench/restore.py``). The principal kernels are signed: RL on them holds ``Hx``
and its corrections in ranges the exact ones keep (:mod:`blurfield.restore.bounds`);
unheld, a photo with black regions diverged at ``error`` 0.10.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

MAX_PIXELS = 1 << 16
MAX_ERROR_PIXELS = 1 << 18


class PrincipalField(NamedTuple):
    """A field rewritten on its principal kernels (module doc).

    kernels: (N, R + 1, K, K): ``k̄`` then ``φ_1..φ_R`` (signed; ``k̄`` sums to 1).
    mean: (N, B) the mean mixing ``m̄``.
    weights: (N, B, R) ``K φ_r``: the new mixing is ``c^r = δm · weights[..., r]``.
    error: (N,) the largest relative kernel error of the module doc, per sample.
    """

    kernels: Tensor
    mean: Tensor
    weights: Tensor
    error: Tensor

    @property
    def rank(self) -> int:
        return self.weights.shape[-1]

    def mixing(self, mixing: Tensor) -> Tensor:
        """(N, B, H, W) mixing of the original field -> (N, R + 1, H, W): ones, then
        ``c^r = (m - m̄) · K φ_r`` (any window or resolution of the field's mixing)."""
        w = self.weights.to(mixing.dtype)
        delta = mixing - self.mean.to(mixing.dtype)[:, :, None, None]
        coef = torch.einsum("nbhw,nbr->nrhw", delta, w)
        return torch.cat([torch.ones_like(mixing[:, :1]), coef], 1)


def _subgrid(mixing: Tensor, most: int = MAX_PIXELS) -> Tensor:
    """(B, H, W) -> (P, B): the pixels of a regular subgrid, P <= ``most``."""
    h, w = mixing.shape[-2:]
    step = max(1, math.ceil(math.sqrt(h * w / most)))
    return mixing[:, ::step, ::step].reshape(mixing.shape[0], -1).T


def _relative_errors(mixing: Tensor, mean: Tensor, kmat: Tensor, weights: Tensor) -> Tensor:
    """(R_max + 1,): for R = 0, 1, ..., ``max_i ||k(i) - k_R(i)||_2 / ||k(i)||_2`` over the
    pixels of (B, H, W) ``mixing`` (a subgrid of at most :data:`MAX_ERROR_PIXELS`), from
    ``||k(i) - k_R(i)||² = δm_i^T K K^T δm_i - sum_{r<=R} (c^r_i)²`` (float32: the squared
    ratio is off by ~1e-7)."""
    m = _subgrid(mixing, MAX_ERROR_PIXELS)  # (P, B)
    gram = (kmat @ kmat.T).to(m.dtype)
    d = m - mean.to(m.dtype)
    total = ((d @ gram) * d).sum(1, keepdim=True)
    norm2 = ((m @ gram) * m).sum(1, keepdim=True).clamp(min=1e-30)
    captured = torch.cumsum((d @ weights.to(m.dtype)).square(), 1)
    res = torch.cat([total, total - captured], 1).clamp(min=0)
    return (res / norm2).amax(0).double().sqrt()


def principal_kernels(kernels: Tensor, mixing: Tensor, tol: float,
                      max_rank: int | None = None) -> PrincipalField | None:
    """The field (kernels (N, B, K, K), mixing (N, B, H, W)) on its principal kernels, with
    the smallest rank R (one for the whole batch, at most ``max_rank``, default B - 2) whose
    ``error`` is <= ``tol`` in every sample; None when no such R exists (the full field is
    then as cheap). The small matrices in float64."""
    if tol < 0:
        raise ValueError(f"rank_tol: must be >= 0, got {tol}")
    n, b, k = kernels.shape[0], kernels.shape[1], kernels.shape[-1]
    max_rank = b - 2 if max_rank is None else min(max_rank, b - 2)
    parts = []
    for i in range(n):
        kmat = kernels[i].reshape(b, -1).double()  # (B, K²)
        m = _subgrid(mixing[i].detach()).double()  # (P, B)
        mean = m.mean(0)
        delta = m - mean
        val, vec = torch.linalg.eigh(delta.T @ delta / m.shape[0])
        root = vec * val.clamp(min=0).sqrt()  # C = root root^T
        phi = torch.linalg.svd(kmat.T @ root, full_matrices=False)[0]  # (K², B)
        parts.append((kmat, mean, phi, kmat @ phi))
    errors = torch.stack([_relative_errors(mixing[i].detach(), mean, kmat, w)
                          for i, (kmat, mean, _, w) in enumerate(parts)])  # (N, B + 1)
    ok = (errors <= tol).all(0)[: max_rank + 1].nonzero()
    if ok.numel() == 0:
        return None
    r = int(ok[0])
    basis = [torch.cat([(mean @ kmat)[None], phi[:, :r].T]) for kmat, mean, phi, _ in parts]
    return PrincipalField(
        kernels=torch.stack(basis).reshape(n, r + 1, k, k).to(kernels.dtype),
        mean=torch.stack([p[1] for p in parts]).to(kernels.dtype),
        weights=torch.stack([p[3][:, :r] for p in parts]).to(kernels.dtype),
        error=errors[:, r].to(kernels.dtype),
    )
