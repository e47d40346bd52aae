"""Non-uniform Richardson–Lucy with saturation-aware updates and TV (docs/design.md §5; paper §7.1).

All images are linear light. With ``H`` the blur field of :mod:`blurfield.physics` (one
cached :class:`~blurfield.physics.BlurField`) and ``d = max(H^T 1, eps)`` its column sums:

plain (paper eq. 9, normalised by the column sums, which are not 1 where mixing varies)::

    x <- x ⊙ H^T( v / max(Hx, eps) ) ⊘ d

saturation-aware (Whyte et al. 2014; paper eqs. 11–13), with ``R``/``R'`` the camera
response and its slope (:func:`blurfield.physics.saturate`, ``saturate_grad``)::

    a_S = v ⊙ R'(Hx) / max(R(Hx), eps) + 1 - R'(Hx)
    a_U = v ⊙ R'(Hx) ⊙ z / max(R(Hx), eps) + 1 - R'(Hx) ⊙ z
    x <- (1 - s) ⊙ x ⊙ H^T(a_U) ⊘ d  +  s ⊙ x ⊙ H^T(a_S) ⊘ d

- ``s`` (the smoothed split): per channel, the unsaturated set ``U = {x < sat_threshold}``
  is eroded 3 x 3 (so the bright set ``S`` grows by one pixel) and box-blurred 3 x 3;
  ``s = 1 - that``.
- ``z`` marks where the blurry photo is reliable: 0 where ``v >= sat_threshold`` in any
  channel, that set dilated ``z_dilate x z_dilate``; 1 elsewhere. Only the U update uses it.

TV (Dey et al. 2006; paper eq. 14): the update is divided by ``1 - λ div(∇x / |∇x|)``, with
unnormalised Sobel derivatives (the scale the authors' λ = 1e-3 was tuned for; equal to
Kornia's ``spatial_gradient(normalized=False)``, computed separably for speed); the
denominator is clamped at ``TV_MIN_DENOMINATOR`` so a large λ cannot flip its sign.

The iteration starts from the blurry image (for ``padding="valid"``, the blurry image
mirror-padded to the input size) and runs ``iterations`` updates, or (``early_stop``) stops
at the first update that does not lower the reblur error and returns the best iterate, or
(``stop_error``, the discrepancy principle) stops once the reblur error is at most that, or
(``reject``) stops before the first iterate a given test rejects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from blurfield.options import Padding, RLOptions
from blurfield.physics import (
    BlurField,
    check_field,
    pad,
    principal_kernels,
    saturate,
    saturate_grad,
)
from blurfield.restore.bounds import blur_range, correction_range

TV_MIN_DENOMINATOR = 0.1
EXACT = RLOptions(skip_tol=0.0, rank_tol=None)  # richardson_lucy's defaults: the exact operator


class RLResult(NamedTuple):
    """The restored image and how it was reached.

    image: (N, C, H, W) linear light (>= 0, may exceed 1 in saturated regions).
    reblur_error: one float per evaluated iterate, ``reblur_error[t]`` = mean squared error
        (over the batch, channels and pixels) between the reblur of the iterate after ``t``
        updates and the blurry image, in linear light; the reblur is ``R(Hx)`` with
        ``saturation=True``, ``Hx`` without. ``reblur_error[0]`` is the blurry image itself.
    iterations: number of updates applied to ``image`` (``reblur_error[iterations]`` is its
        error).
    decision: what the no-harm rule decided (:class:`blurfield.restore.noharm.Decision`:
        "restored" or "left nearly as is", the reason, the blend), None without the rule.
    """

    image: Tensor
    reblur_error: list[float]
    iterations: int
    decision: Any = None


def reliable_mask(blurry_linear: Tensor, threshold: float = 0.99, dilate: int = 3) -> Tensor:
    """``z`` (N, 1, H, W): 0 where any channel of the blurry image is ``>= threshold`` (that
    set dilated by a ``dilate x dilate`` square; ``dilate <= 1``: not dilated), else 1."""
    lost = (blurry_linear >= threshold).any(1, keepdim=True).to(blurry_linear.dtype)
    if dilate > 1 and bool(lost.any()):
        se = lost.new_ones(dilate, dilate)
        lost = kornia.morphology.dilation(lost, se)
    return 1.0 - lost


def bright_split(x: Tensor, threshold: float = 0.99) -> Tensor:
    """The smoothed share ``s`` (N, C, H, W) of each pixel handled by the bright-pixel update:
    ``1 - box3(erode3(x < threshold))``, per channel; 0 where no pixel is near the threshold."""
    unsat = (x < threshold).to(x.dtype)
    if bool(unsat.all()):
        return torch.zeros_like(x)
    return 1.0 - box3(erode3(unsat))


def _three(xp: Tensor, dim: int, op: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``op`` over the three neighbours along ``dim`` of a padded image: two shorter."""
    n = xp.shape[dim]
    return op(op(xp.narrow(dim, 0, n - 2), xp.narrow(dim, 1, n - 2)), xp.narrow(dim, 2, n - 2))


def erode3(x: Tensor) -> Tensor:
    """The minimum over each pixel's 3 x 3 neighbourhood within the image (N, C, H, W):
    ``kornia.morphology.erosion(x, ones(3, 3))`` (tested), in slices, ~5x faster here."""
    xp = F.pad(x, (1, 1, 1, 1), value=float("inf"))
    return _three(_three(xp, -2, torch.minimum), -1, torch.minimum)


def box3(x: Tensor) -> Tensor:
    """The 3 x 3 mean with replicate border (N, C, H, W): ``kornia.filters.box_blur(x, 3,
    border_type="replicate")`` (tested), in slices, ~15x faster here."""
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return _three(_three(xp, -2, torch.add), -1, torch.add) / 9


def _sobel_pair(x: Tensor, which: str = "xy") -> tuple[Tensor, ...]:
    """Unnormalised Sobel d/dx and/or d/dy (``which``: "xy", "x" or "y") of (N, C, H, W),
    replicate border, from one padded copy: ``[1, 2, 1]`` down the columns then ``[-1, 0,
    1]`` along the rows for d/dx, the other way round for d/dy (separable), in slices."""
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    top, mid, bottom = xp[..., :-2, :], xp[..., 1:-1, :], xp[..., 2:, :]  # (N, C, H, W + 2)
    out = []
    if "x" in which:
        smooth = torch.add(top + bottom, mid, alpha=2)
        out.append(smooth[..., 2:] - smooth[..., :-2])
    if "y" in which:
        diff = bottom - top
        out.append(torch.add(diff[..., :-2] + diff[..., 2:], diff[..., 1:-1], alpha=2))
    return tuple(out)


def sobel(x: Tensor) -> Tensor:
    """Unnormalised Sobel derivatives (N, C, H, W) -> (N, C, 2, H, W), [:, :, 0] = d/dx,
    [:, :, 1] = d/dy, replicate border: exactly ``kornia.filters.spatial_gradient(x,
    normalized=False)`` (tested), computed separably with slices (about 10x faster here)."""
    return torch.stack(_sobel_pair(x), 2)


def tv_denominator(x: Tensor, weight: float, eps: float = 1e-9) -> Tensor:
    """``max(1 - weight div(∇x / |∇x|), TV_MIN_DENOMINATOR)`` (N, C, H, W), with the
    unnormalised Sobel derivatives of :func:`sobel`, per channel."""
    gx, gy = _sobel_pair(x)
    norm = torch.hypot(gx, gy).clamp_(min=eps)
    (div,) = _sobel_pair(gx.div_(norm), "x")
    div.add_(_sobel_pair(gy.div_(norm), "y")[0])
    return div.mul_(-weight).add_(1.0).clamp_(min=TV_MIN_DENOMINATOR)


def _operator(kernels: Tensor, mixing: Tensor, padding: str,
              opts: RLOptions) -> tuple[BlurField, bool]:
    """The field's operator, on its principal kernels when ``rank_tol`` makes it smaller
    (then True: its kernels and mixing are signed). It checks nothing: RL checks the field
    and the photo once, and its own iterates need no check at every application."""
    if opts.rank_tol is not None:
        field = principal_kernels(kernels, mixing, opts.rank_tol)
        if field is not None:
            return BlurField(field.kernels, field.mixing(mixing), padding=padding,
                             method=opts.method, check=False, skip_tol=None), True
    return BlurField(kernels, mixing, padding=padding, method=opts.method, check=False,
                     skip_tol=opts.skip_tol), False


def richardson_lucy(
    blurry_linear: Tensor,
    kernels: Tensor,
    mixing: Tensor,
    options: RLOptions | None = None,
    *,
    eps: float = 1e-6,
    check: bool = True,
    stop_error: float | None = None,
    reject: Callable[[Tensor], bool] | None = None,
    callback: Callable[[int, Tensor, float], None] | None = None,
    **overrides: Any,
) -> RLResult:
    """Restore ``blurry_linear`` blurred by the field (kernels, mixing); see the module doc.

    Args:
        blurry_linear: (N, C, H', W') the blurry photo in linear light (>= 0).
        kernels: (N, B, K, K) correlation kernels on the simplex.
        mixing: (N, B, H', W') per-pixel mixing on the simplex, the blurry image's size.
        options: :class:`blurfield.config.RLOptions` (or the ``restore`` config, or
            :class:`~blurfield.config.RestoreOptions`: only the RL fields are read); None:
            :data:`EXACT`, the defaults with the exact operator (``skip_tol=0``,
            ``rank_tol=None``).
        overrides: fields of :class:`~blurfield.config.RLOptions` by name, replacing those
            of ``options``; choices may be given as strings. They are:
        iterations: maximum number of updates.
        saturation: saturation-aware updates (eqs. 11–12) instead of the plain one (eq. 9).
        tv_weight: λ of the TV prior (eq. 14); 0 switches it off.
        early_stop: stop at the first update that does not lower the reblur error and return
            the best iterate; otherwise run exactly ``iterations`` updates, return the last.
        padding: the field's padding ("same": mirror, "circular", or — here only, not in
            the config nor :func:`blurfield.api.restore`, which keep the photo's size —
            "valid": the estimate is (N, C, H' + K - 1, W' + K - 1)).
        method: "auto", "fft" or "direct" (see :class:`blurfield.physics.BlurField`).
        sat_threshold: the split threshold on the estimate and the ``z`` threshold on the
            blurry image (linear light).
        z_dilate: size of the square dilating the lost-information set of ``z``.
        skip_tol: basis elements whose mixing is <= this everywhere in ``mixing`` are
            dropped from the operator (:class:`~blurfield.physics.BlurField`; the kept
            mixing is renormalised, every application of ``H`` is then within
            ``eps (max x - min x)`` of the full one per pixel, ``eps <= (B - kept) skip_tol``
            the largest dropped mass, and RL is exact RL for that operator). 0: only
            elements that are zero everywhere (exact); None: none.
        rank_tol: run on the field's principal kernels
            (:func:`blurfield.physics.principal_kernels`): the fewest elements for which
            every pixel's kernel is within this relative L2 error of its own (then
            ``skip_tol`` is not used; the full field where that saves nothing; ``Hx``
            and each correction are held in the ranges the exact ones keep,
            :mod:`blurfield.restore.bounds`); None: off.
        eps: floor of ``Hx``, ``R(Hx)`` and ``H^T 1`` in the divisions.
        check: validate the field and the image (switch off inside loops).
        stop_error: the discrepancy principle: stop at the first iterate whose reblur error
            is <= this (e.g. the noise variance; :mod:`blurfield.restore.noharm`) and return
            it; None: no such stop.
        reject: ``reject(x)`` is asked of every iterate after the first update; the first
            it is true for ends the iterations, and the iterate before it is returned (e.g.
            :func:`blurfield.restore.noise.amplification_stop`); None: no such stop.
        callback: called as ``callback(t, x, err)`` for every evaluated iterate ``x``
            (``t`` updates applied, ``err = reblur_error[t]``).
    Returns:
        :class:`RLResult`.
    """
    valid = str(overrides.get("padding", "")) == "valid"
    if valid:  # the operator's third padding, outside the photo options' choices
        overrides = {**overrides, "padding": Padding.same}
    opts = RLOptions.make(EXACT if options is None else options, **overrides)
    iterations, saturation, early_stop = opts.iterations, opts.saturation, opts.early_stop
    sat_threshold, tv_weight = opts.sat_threshold, opts.tv_weight
    padding = "valid" if valid else opts.padding
    v = blurry_linear
    if check:
        check_field(kernels, mixing)
        if v.dim() != 4 or tuple(v.shape[-2:]) != tuple(mixing.shape[-2:]):
            raise ValueError(f"blurry_linear: shape {tuple(v.shape)} does not match mixing "
                             f"{tuple(mixing.shape)} (expected (N, C, H, W) of the same H, W)")
        if not torch.isfinite(v).all() or v.min() < 0:
            raise ValueError("blurry_linear: must be finite and >= 0 (linear light)")
        if padding != "valid" and min(v.shape[-2:]) < kernels.shape[-1]:
            raise ValueError(f"blurry_linear: image {tuple(v.shape[-2:])} is smaller than "
                             f"the kernel {kernels.shape[-1]}")
    if iterations < 0:
        raise ValueError(f"iterations: must be >= 0, got {iterations}")
    op, signed = _operator(kernels.to(v.dtype), mixing.to(v.dtype), padding, opts)
    x = pad(v, op.kernel_size, "same") if padding == "valid" else v
    x = x.clamp(min=0)
    col_sums = op.ht_one().clamp(min=eps)  # (N, 1, H, W)
    z = reliable_mask(v, sat_threshold, opts.z_dilate) if saturation else None
    z_all_ones = z is None or bool((z == 1).all())

    errors: list[float] = []
    best_x, best_t, best_err = x, 0, float("inf")
    k = op.kernel_size

    def correction(a: Tensor) -> Tensor:
        """``H^T a ⊘ d``: a weighted mean of ``a``, where the signed operator of principal
        kernels is held (:mod:`blurfield.restore.bounds`)."""
        c = op.adjoint(a) / col_sums
        return c.clamp(*correction_range(a, k, padding)) if signed else c

    for t in range(iterations + 1):
        if t > 0 and reject is not None and reject(x):
            break
        hx = op.forward(x)
        if signed:  # a weighted mean of x in the exact operator: held there
            hx = hx.clamp(*blur_range(x, k, padding))
        r = saturate(hx) if saturation else hx  # R(Hx): the error's and the update's
        err = float((r - v).square().mean())
        errors.append(err)
        if callback is not None:
            callback(t, x, err)
        if err < best_err or not early_stop:
            best_x, best_t, best_err = x, t, err
        else:
            break
        if t == iterations or (stop_error is not None and err <= stop_error):
            break
        if saturation:
            dr = saturate_grad(hx)
            common = v * dr / r.clamp(min=eps)
            a_s = common + 1.0 - dr
            if z_all_ones:  # then a_U = a_S: one update for every pixel
                new = x * correction(a_s)
            else:
                corr_u = correction(common * z + 1.0 - dr * z)
                split = bright_split(x, sat_threshold)
                if bool(split.any()):
                    new = x * ((1.0 - split) * corr_u + split * correction(a_s))
                else:
                    new = x * corr_u
        else:
            new = x * correction(v / hx.clamp(min=eps))
        if tv_weight:
            new = new / tv_denominator(x, tv_weight)
        x = new
    return RLResult(best_x, errors, best_t)
