"""Does the photo's spectrum fall off where the field's blur does?

A photo ``y = k * x + n`` has the expected power ``E|Y(ω)|² = |K(ω)|² |X(ω)|² + σ²``
(``σ²`` the noise variance per pixel, white). A natural photo's ``|X(ω)|²`` changes with the
radius ``ρ = |ω|`` far more than with the direction, while a motion blur's ``|K(ω)|²``
changes with the direction: a line along ``d`` removes the frequencies along ``d`` and
keeps those across it. So within a ring of radii, ``log(|Y|² − σ²)`` follows
``log |K|²`` with slope 1 when the photo has that blur, and with slope near 0 when the photo
is sharp (or blurred another way). The slope is the pooled within-ring least-squares fit

    slope = Σ_rings Σ_ω∈ring (a − ā)(b − b̄) / Σ_rings Σ_ω∈ring (a − ā)²,
    a = log max(|K|², 10⁻³),   b = log max(|Y|² − σ², σ² / 10)

over rings of width ``RING`` cycles/px from ``LOW`` to ``HIGH`` (below: the photo's layout;
above: demosaicing and compression). ``|Y|²`` is the Hann-windowed periodogram averaged over
channels and smoothed over 3 x 3 frequencies; for a field (kernels mixed per pixel) ``|K|²``
is its mean over the square, ``Σ_bc C_bc K_b K_c*`` with ``C_bc`` the mean of
``m_b m_c`` over the pixels (:func:`field_power`).

The no-harm rule (:mod:`blurfield.restore.noharm`, step 4) leaves a photo as it is when the
slope of its chosen kernels is below ``no_harm_slope``: a nearly sharp photo on which the
estimator reads a blur with a direction (README, "Deblur does no harm").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOW, HIGH, RING = 0.05, 0.45, 0.025  # cycles per pixel
KERNEL_FLOOR = 1e-3  # |K|² below this counts as removed
NOISE_FLOOR = 0.1  # |Y|² − σ² is taken as at least this x σ²


def periodogram(v: Tensor) -> Tensor:
    """(N, C, h, w) -> (N, h, w) float64: ``|FFT(w (v − mean))|² / Σ w²`` with ``w`` the 2-D
    Hann window, averaged over channels and over each 3 x 3 block of frequencies (circular).
    White noise of variance σ² has expectation σ² at every frequency."""
    h, w = v.shape[-2:]
    win = torch.outer(torch.hann_window(h, periodic=False, dtype=torch.float64),
                      torch.hann_window(w, periodic=False, dtype=torch.float64))
    x = v.double() - v.double().mean((-2, -1), keepdim=True)
    p = (torch.fft.fft2(x * win).abs() ** 2).mean(1) / (win**2).sum()
    return F.avg_pool2d(F.pad(p[:, None], (1, 1, 1, 1), mode="circular"), 3, 1)[:, 0]


def field_power(kernels: Tensor, mixing: Tensor) -> Tensor:
    """``E|K(ω)|²`` (N, h, w) float64 of a field on (N, ·, h, w) squares: kernels (1 or N,
    B, K, K) (K <= h, w), mixing (N, B, h, w); for one kernel (B = 1) its ``|K|²``. The
    kernels' DFTs are taken uncentred: centring multiplies every one by the same phase,
    which ``K_b K_c*`` cancels."""
    n, b, h, w = mixing.shape
    otf = torch.fft.fft2(kernels.double(), s=(h, w))
    m = mixing.double().flatten(2)
    c = torch.einsum("nbp,ncp->nbc", m, m) / m.shape[-1]  # (N, B, B)
    otf = otf.expand(n, *otf.shape[1:])
    return torch.einsum("nbc,nbhw,nchw->nhw", c.to(otf.dtype), otf, otf.conj()).real


def rings(h: int, w: int, device: torch.device | None = None) -> Tensor:
    """(h, w) long: the ring index of each FFT frequency (``LOW + i RING <= ρ < LOW + (i + 1)
    RING``), −1 outside ``[LOW, HIGH)``."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=device)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64, device=device)[None]
    rho = (fy**2 + fx**2).sqrt()
    index = ((rho - LOW) / RING).floor().long()
    count = round((HIGH - LOW) / RING)
    return torch.where((index >= 0) & (index < count), index, torch.full_like(index, -1))


def spectral_slope(v: Tensor, kernels: Tensor, mixing: Tensor, sigma: float) -> Tensor:
    """The slope of the module doc for each of the (N, C, h, w) linear squares ``v`` under
    the field (kernels (1 or N, B, K, K), mixing (N, B, h, w)) with noise σ: (N,) float64,
    NaN where the kernel's power hardly changes within the rings (a round blur)."""
    b = torch.log((periodogram(v) - sigma**2).clamp(min=NOISE_FLOOR * sigma**2 + 1e-30))
    a = torch.log(field_power(kernels, mixing).clamp(min=KERNEL_FLOOR))
    ring = rings(*v.shape[-2:], device=v.device).flatten()
    keep = ring >= 0
    ring = ring[keep]
    count = torch.bincount(ring).double().clamp(min=1)
    out = []
    for an, bn in zip(a.flatten(1)[:, keep], b.flatten(1)[:, keep]):
        ac = an - (torch.bincount(ring, an) / count)[ring]
        bc = bn - (torch.bincount(ring, bn) / count)[ring]
        var = float((ac * ac).sum())
        out.append(float((ac * bc).sum()) / var if var > 1e-6 * len(ac) else math.nan)
    return torch.tensor(out, dtype=torch.float64)
