"""Blind refinement of the estimated blur: the network's kernel sharpened against the photo.

The compact estimator gets the size and the direction of a blur but draws it as a soft
blob where the true path is a thin curve (README, "Refining the kernel"); Richardson–Lucy
with a blob gains a fraction of what the true kernel gains. Here the field's mean kernel
``k0 = sum_b mean(m^b) k^b`` starts an alternation between a sharp image and the kernel
on the photo's grey linear values ``y`` (a window of it), as in L0-gradient blind
deblurring (Xu, Zheng & Jia 2013; Pan et al. 2014), with convolution kernels ``c``
(``c`` is the field's correlation kernel flipped; the maths below is circular, on ``y``
padded to be smooth when wrapped, :func:`periodic_pad`):

1. sharp image: ``x = argmin |c * x - y|² + lam |∇x|_0``, by half-quadratic splitting
   (:func:`sharp_latent`): ``g = ∇x`` where ``|∇x|² >= lam / beta`` else 0, then
   ``x = F^-1[(conj(C) Y + beta sum_d conj(D_d) G_d) / (|C|² + beta sum_d |D_d|²)]``,
   ``beta`` doubling from ``2 lam`` to ``BETA_MAX``;
2. kernel: ``c = argmin sum_d |∇_d x * c - ∇_d y|² + gamma |c|²`` over K x K kernels, by
   least squares on the window (:func:`kernel_from_gradients`; the per-frequency closed
   form over the whole image, cut to K x K afterwards, restored worse on every tuning and
   held-out set but one: docs/experiments.md), then cleaned (:func:`prune_kernel`:
   non-negative, taps below ``PRUNE`` of the peak and 8-connected pieces with less than
   ``COMPONENT`` of the heaviest piece's mass removed) and centred on its centroid
   (:func:`centre_kernel`, the convention of the training kernels);
3. ``lam <- max(LAMBDA_DECAY lam, LAMBDA_MIN)``.

The result is one kernel for the photo. It replaces the network's field only when the
photo says so (:func:`refine_field`): it must be at least ``MIN_BLUR`` px long (on a sharp
photo the alternation ends near a delta), have at most ``EDGE_MASS`` of its mass on the
border of its K x K window, and after ``probe`` RL iterations on the no-harm rule's probe
windows the share of the reblur error it leaves must be below the field's by ``margin`` in
log (``log(U_field / U_refined) > margin``). The uniform kernel cannot hold several
motions, so on a photo that has them the field is kept.

The border test: on smooth or finely textured photos (the L0 prior's weak case) the
alternation can spread the kernel over its whole window, 30+ px long, and such a kernel
may still explain the photo's reblur error better than the field while RL with it costs
several dB. On the tuning set (docs/experiments.md, "Refining the kernel"), of the 11
refined kernels with more than 3% of their mass on the border (4–9%) 10 restored worse than
the field (by 0.1 to 11 dB) and one better (0.6 dB); every other kernel that restored
better had at most 1.7%.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import torch
from kornia.contrib import connected_components
from torch import Tensor

from blurfield.models.tiled import estimate_tiled
from blurfield.physics import mean_kernel, to_linear, uniform_field
from blurfield.physics.moments import field_covariance, principal_variances
from blurfield.restore.noharm import PROBE_OPTIONS, blur_extent, probe_windows, unexplained

LAMBDA = 4e-3  # weight of the L0 gradient prior, linear values in [0, 1]
LAMBDA_DECAY = 0.9  # per alternation
LAMBDA_MIN = 1e-4
GAMMA = 2.0  # Tikhonov weight of the kernel step
BETA_MAX = 1e5  # half-quadratic splitting ends here
PRUNE = 0.05  # kernel taps below this fraction of the peak are removed
COMPONENT = 0.1  # connected pieces with less than this fraction of the heaviest's mass go
MIN_BLUR = 2.5  # px; a refined kernel shorter than this says the photo is nearly sharp
EDGE_MASS = 0.03  # a refined kernel with more of its mass on its window's border is not used
MARGIN = 0.2  # log(U_field / U_refined) above which the refined kernel replaces the field
LINE_LIKE = 0.35  # a kernel estimated again downscaled must be this elongated (minor / major axis)
CUT_OFF = "cut off or not converged"  # in the note of a refined kernel turned away at its border
NETWORK_FIELD = "network's field"  # how every note on a field the network drew begins


def periodic_pad(y: Tensor, pad: int) -> Tensor:
    """(..., H, W) -> (..., H + 2 pad, W + 2 pad): ``y`` in the middle, each border strip a
    linear blend from one edge of ``y`` to the opposite one, so the result has no jump
    when wrapped around (circular convolution then rings less at the photo's border)."""
    def along_last(a: Tensor) -> Tensor:
        t = torch.arange(1, 2 * pad + 1, dtype=a.dtype, device=a.device) / (2 * pad + 1)
        blend = a[..., -1:] * (1 - t) + a[..., :1] * t  # from the last column to the first
        return torch.cat([blend[..., pad:], a, blend[..., :pad]], -1)

    return along_last(along_last(y).transpose(-1, -2)).transpose(-1, -2)


def _otf(kernel: Tensor, shape: tuple[int, int]) -> Tensor:
    """Real FFT (``rfft2``, half the spectrum) at ``shape`` of a (K, K) convolution kernel
    centred at ``K // 2``."""
    k = kernel.shape[-1]
    z = kernel.new_zeros(shape)
    z[:k, :k] = kernel
    return torch.fft.rfft2(torch.roll(z, (-(k // 2), -(k // 2)), (0, 1)))


def _difference_otfs(shape: tuple[int, int], dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Real FFTs of the forward differences ``x[i+1] - x[i]`` along x and y (circular)."""
    dx, dy = torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)
    dx[0, 0] = dy[0, 0] = -1
    dx[0, -1] = dy[-1, 0] = 1
    return torch.fft.rfft2(dx), torch.fft.rfft2(dy)


def _gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    return torch.roll(x, -1, -1) - x, torch.roll(x, -1, -2) - x


def sharp_latent(y: Tensor, kernel: Tensor, lam: float, beta_max: float = BETA_MAX) -> Tensor:
    """``argmin_x |kernel * x - y|² + lam |∇x|_0`` (circular; half-quadratic splitting, module
    doc step 1). y (H, W); kernel (K, K) convolution kernel. Returns (H, W)."""
    shape = tuple(y.shape[-2:])
    c = _otf(kernel.to(y.dtype), shape)
    dx, dy = _difference_otfs(shape, y.dtype)
    data = c.conj() * torch.fft.rfft2(y)
    den_c, den_d = c.abs().square(), dx.abs().square() + dy.abs().square()
    x, beta = y, 2 * lam
    while beta < beta_max:
        gx, gy = _gradients(x)
        keep = (gx.square() + gy.square()) >= lam / beta
        num = data + beta * (dx.conj() * torch.fft.rfft2(gx * keep)
                             + dy.conj() * torch.fft.rfft2(gy * keep))
        x = torch.fft.irfft2(num / (den_c + beta * den_d), s=shape)
        beta *= 2
    return x


@functools.lru_cache(maxsize=4)
def _tap_offsets(size: int) -> tuple[Tensor, Tensor]:
    """The offsets ``p`` (size², 2) of a (size, size) kernel's taps from its centre tap
    ``size // 2``, row-major, and their differences ``p - q`` (size², size², 2)."""
    o = torch.arange(size) - size // 2
    p = torch.stack(torch.meshgrid(o, o, indexing="ij"), -1).reshape(-1, 2)
    return p, p[:, None] - p[None]


def kernel_from_gradients(x: Tensor, y: Tensor, size: int, gamma: float = GAMMA) -> Tensor:
    """``argmin_c sum_d |∇_d x * c - ∇_d y|² + gamma |c|²`` over convolution kernels ``c`` on
    the (size, size) window centred at ``size // 2`` (circular): the normal equations
    ``(A + gamma I) c = b`` with ``A[p, q] = R(p - q)``, ``R = sum_d ∇_d x ⋆ ∇_d x`` the
    gradients' autocorrelation and ``b[p] = (sum_d ∇_d x ⋆ ∇_d y)(p)``, both by FFT, solved
    by Cholesky (a Gram matrix plus ``gamma I``: positive definite for ``gamma > 0``;
    size² unknowns). Not yet cleaned. x, y (H, W)."""
    shape = tuple(x.shape[-2:])
    auto, cross = 0, 0
    for gx, gy in zip(_gradients(x), _gradients(y)):
        fx = torch.fft.rfft2(gx)
        auto = auto + fx.abs().square()
        cross = cross + fx.conj() * torch.fft.rfft2(gy)
    auto, cross = torch.fft.irfft2(auto, s=shape), torch.fft.irfft2(cross, s=shape)
    p, d = _tap_offsets(size)
    a = auto[d[..., 0] % shape[0], d[..., 1] % shape[1]]
    a.diagonal().add_(gamma)
    b = cross[p[:, 0] % shape[0], p[:, 1] % shape[1]]
    return torch.cholesky_solve(b[:, None], torch.linalg.cholesky(a)).reshape(size, size)


def prune_kernel(kernel: Tensor, threshold: float = PRUNE, component: float = COMPONENT) -> Tensor:
    """(K, K) -> (K, K) >= 0 summing to 1: negative taps and taps below ``threshold`` x the
    peak set to 0, then every 8-connected piece whose mass is below ``component`` x the
    heaviest piece's (Kornia's connected components)."""
    k = kernel.clamp(min=0)
    k = torch.where(k < threshold * k.max(), torch.zeros_like(k), k)
    support = (k > 0).to(torch.float32)[None, None]
    labels = connected_components(support, num_iterations=k.numel())[0, 0]
    ids, inverse = torch.unique(labels.flatten(), return_inverse=True)
    mass = torch.zeros(len(ids), dtype=k.dtype).index_add_(0, inverse, k.flatten())
    mass[ids == 0] = 0  # the background
    keep = (mass >= component * mass.max())[inverse].reshape(k.shape)
    k = k * keep
    return k / k.sum().clamp(min=1e-30)


def centre_kernel(kernel: Tensor) -> Tensor:
    """(K, K) kernel >= 0 moved so that its centroid is the centre tap: a whole-pixel roll,
    then the fraction by bilinear splatting. Mass is kept (what rolls off one side comes in
    at the other, far from a centred kernel's support)."""
    k = kernel.shape[-1]
    r = torch.arange(k, dtype=kernel.dtype)
    mass = kernel.sum()
    shift = [(k - 1) / 2 - float((kernel.sum(d) * r).sum() / mass) for d in (1, 0)]
    out = kernel
    for dim, s in zip((0, 1), shift):
        whole = round(s)
        frac = s - whole
        out = torch.roll(out, whole, dim)
        out = out * (1 - abs(frac)) + torch.roll(out, 1 if frac > 0 else -1, dim) * abs(frac)
    return out / out.sum()


def refine_kernel(image: Tensor, kernel: Tensor, iterations: int = 10) -> Tensor:
    """The kernel of a uniformly blurred photo, refined from ``kernel`` (module doc).

    image: (C, H, W) linear values (their channel mean is used); kernel: (K, K)
    correlation kernel (the field's convention). Returns a (K, K) correlation kernel,
    >= 0, summing to 1, centred on its centroid (``kernel`` itself if a photo without
    texture leaves no positive tap). Computed in float64 on the CPU.
    """
    size = kernel.shape[-1]
    y = periodic_pad(image.detach().double().cpu().mean(0), size)
    c = kernel.detach().double().cpu().flip(-1, -2)
    lam = LAMBDA
    for _ in range(iterations):
        x = sharp_latent(y, c, lam)
        new = prune_kernel(kernel_from_gradients(x, y, size))
        if not float(new.sum()) > 0:  # nothing positive left (a flat photo): keep the last
            break
        c = centre_kernel(new)
        lam = max(lam * LAMBDA_DECAY, LAMBDA_MIN)
    return c.flip(-1, -2).to(kernel)


def edge_mass(kernel: Tensor) -> float:
    """The share of a (K, K) kernel's mass on the outermost taps of its window (the border
    ring, 4 K - 4 taps)."""
    total = kernel.sum()
    return float((total - kernel[1:-1, 1:-1].sum()) / total.clamp(min=1e-30))


def centre_crop(image: Tensor, side: int) -> Tensor:
    """The centre ``side x side`` of (..., H, W) (each side at most what there is)."""
    h, w = image.shape[-2:]
    th, tw = min(side, h), min(side, w)
    top, left = (h - th) // 2, (w - tw) // 2
    return image[..., top:top + th, left:left + tw]


def refine_field(image: Tensor, kernels: Tensor, mixing: Tensor, *, iterations: int = 10,
                 margin: float = MARGIN, window: int = 384, probe: int = 10,
                 probe_window: int = 256, min_blur: float = MIN_BLUR,
                 edge: float = EDGE_MASS,
                 rl: Mapping[str, Any] | None = None) -> tuple[Tensor, Tensor, str]:
    """The refined uniform field of ``image`` if it explains the photo better, else the
    field as given (module doc).

    image: (1, C, H, W) linear; kernels (1, B, K, K), mixing (1, B, H, W) (the estimate).
    ``window``: side of the centre square the kernel is refined on; a refined kernel whose
    line-equivalent length (:func:`~blurfield.restore.noharm.blur_extent`) is below
    ``min_blur`` px is not used (on a sharp photo the alternation ends near a delta, which
    explains the photo best and would be taken for a small blur), nor one with more than
    ``edge`` of its mass on the border of its K x K window (:func:`edge_mass`: cut off by
    the window, or an alternation that spread instead of converging); ``probe``,
    ``probe_window``: the no-harm rule's probe length and windows
    (:func:`blurfield.restore.noharm.probe_windows`); ``rl``: RL options for the probes by
    name (those not in :data:`~blurfield.restore.noharm.PROBE_OPTIONS` are ignored; None:
    RL's defaults).
    Returns (kernels, mixing, note): (1, 1, K, K) and ones, or the inputs, and one line
    saying which and why.
    """
    mean = mean_kernel(kernels[0], mixing[0])
    refined = refine_kernel(centre_crop(image[0], window), mean, iterations).to(kernels)
    uniform_k, uniform_m = uniform_field(refined[None], *mixing.shape[-2:])
    length = blur_extent(uniform_k, uniform_m[..., :1, :1])
    if length < min_blur:
        return kernels, mixing, (f"{NETWORK_FIELD} kept (the refined kernel is {length:.1f} px "
                                 f"long, below {min_blur:g} px: the photo looks nearly sharp)")
    border = edge_mass(refined)
    if border > edge:
        k = refined.shape[-1]
        return kernels, mixing, (f"{NETWORK_FIELD} kept (the refined kernel has "
                                 f"{100 * border:.0f}% of its mass on the border of its "
                                 f"{k}x{k} window: {CUT_OFF}; a blur longer "
                                 f"than about {3 * (k - 1) // 4} px here fits at a larger --scale)")
    opts = {k: v for k, v in (rl or {}).items() if k in PROBE_OPTIONS}
    v, m = probe_windows(image, mixing, probe_window)
    u_field = unexplained(v, kernels, m.to(v), probe, opts)
    u_refined = unexplained(v, uniform_k.to(v), torch.ones_like(m[:, :1]), probe, opts)
    left = (f"{100 * u_refined:.0f}% vs {100 * u_field:.0f}% of the reblur error left "
            f"after {probe} iterations")
    if math.log(max(u_field, 1e-30) / max(u_refined, 1e-30)) > margin:
        return uniform_k.to(kernels), uniform_m.to(mixing), f"refined kernel ({left})"
    return kernels, mixing, f"{NETWORK_FIELD} kept (refined kernel: {left})"


def axis_ratio(kernel: Tensor) -> float:
    """``sqrt(λ2 / λ1)`` of a (K, K) kernel's second moments (:mod:`blurfield.physics.moments`):
    0 for a straight line, 1 for a round blob."""
    lam1, lam2 = principal_variances(field_covariance(kernel[None], kernel.new_ones(1, 1, 1)))
    return math.sqrt(float(lam2) / max(float(lam1), 1e-30))


def long_blur(kernels: Tensor, note: str, factor: float) -> str | None:
    """Why the field (kernels (1, B, K, K), refinement ``note``) of a photo estimated again
    ``factor`` times smaller, after its refined kernel was cut off at the first scale
    (:data:`CUT_OFF`), is not taken; None when it is: the refinement chose its kernel there,
    the kernel is longer than the first window could hold (line-equivalent length at least
    ``(K - 1) / factor`` px here) and elongated (:func:`axis_ratio` at most
    :data:`LINE_LIKE`). A blur that long is a motion; a kernel that spreads round over its
    window is the alternation failing on a smooth photo (README, "Long blur")."""
    if note.startswith(NETWORK_FIELD):
        return "the refinement kept the network's field there"
    k = kernels.shape[-1]
    length = blur_extent(kernels, kernels.new_ones(1, 1, 1, 1))
    if length < (k - 1) / factor:
        return f"its refined kernel is {length:.0f} px long there, short enough for the first scale"
    ratio = axis_ratio(kernels[0, 0])
    if ratio > LINE_LIKE:
        return f"its refined kernel is round there (axis ratio {ratio:.2f} > {LINE_LIKE:g})"
    return None


def rl_iterations(note: str, iterations: int, field_iterations: int) -> int:
    """RL's iteration count for a field whose refinement note is ``note``: at most
    ``field_iterations`` when the field is the network's own (the note begins with
    :data:`NETWORK_FIELD`: kept by the refinement, or the refinement off; its soft kernels'
    errors grow with every iteration), else ``iterations`` (a refined kernel, or a field
    from elsewhere, note ""). ValueError unless ``field_iterations`` is a count >= 1."""
    if int(field_iterations) != field_iterations or field_iterations < 1:
        raise ValueError(f"field_iterations: {field_iterations} is not a count >= 1")
    return min(iterations, int(field_iterations)) if note.startswith(NETWORK_FIELD) else iterations


def check_refine(iterations: int, window: int, probe: int = 10, probe_window: int = 256,
                 long_blur_scale: float = 2) -> None:
    """ValueError naming the ``restore`` key unless ``iterations`` is a count >= 0,
    ``window`` one >= 64, ``probe`` a count >= 1, ``probe_window`` one >= 0 and
    ``long_blur_scale`` a factor >= 1."""
    if int(iterations) != iterations or iterations < 0:
        raise ValueError(f"refine_iterations: {iterations} is not a count >= 0 (0 = off)")
    if int(window) != window or window < 64:
        raise ValueError(f"refine_window: {window} is not a side >= 64 pixels")
    if int(probe) != probe or probe < 1:
        raise ValueError(f"no_harm_probe: {probe} is not a count >= 1")
    if int(probe_window) != probe_window or probe_window < 0:
        raise ValueError(f"no_harm_window: {probe_window} is not a side >= 0 pixels "
                         "(0 = the whole photo)")
    if not float(long_blur_scale) >= 1:
        raise ValueError(f"long_blur_scale: {long_blur_scale} is not a factor >= 1 (1 = never)")


@torch.no_grad()
def estimate_field(model: torch.nn.Module, image: Tensor, tile: int, elements: int = 0, *,
                   gamma: float = 2.2, refine: int = 10, refine_margin: float = MARGIN,
                   refine_window: int = 384, probe: int = 10, probe_window: int = 256,
                   rl: Mapping[str, Any] | None = None) -> tuple[Tensor, Tensor, str]:
    """The estimator's field of (1, C, H, W) display ``image`` in tiles
    (:func:`~blurfield.models.tiled.estimate_tiled`), then, with ``refine`` iterations > 0,
    :func:`refine_field` on its linear values (``gamma``). Returns kernels (1, B', K, K),
    mixing (1, B', H, W) and the refinement's note (:func:`rl_iterations` reads whether the
    field is the network's; "network's field (refinement off)" when off). ``probe``,
    ``probe_window``: the no-harm rule's probe length and windows (``restore.no_harm_probe``
    and ``no_harm_window``), with which the refinement compares the two fields; ``rl``: the
    RL options of those probes by name (the ``restore`` section's; those not in
    :data:`~blurfield.restore.noharm.PROBE_OPTIONS` are ignored; None: RL's defaults)."""
    check_refine(refine, refine_window, probe, probe_window)
    kernels, mixing = estimate_tiled(model, image, tile, elements)
    if refine == 0:
        return kernels, mixing, f"{NETWORK_FIELD} (refinement off)"
    return refine_field(to_linear(image.float(), gamma), kernels, mixing, iterations=refine,
                        margin=refine_margin, window=refine_window, probe=probe,
                        probe_window=probe_window, rl=rl)
