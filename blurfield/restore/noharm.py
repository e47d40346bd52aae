"""Deblur does no harm: how much of a Richardson–Lucy restoration to keep.

An estimated field can be wrong (wrong direction, wrong size, blur where the photo is
sharp), and RL with a wrong field makes the photo worse. The rule below decides, per photo,
a blend ``β`` in [0, 1] and returns ``v + β (x - v)`` (``v`` the photo, ``x`` the RL result,
linear light), with a reason:

1. **Blur below ``min_blur_px``.** The field's largest per-pixel blur (line-equivalent
   length ``sqrt(12 λ_max)`` of the per-pixel kernel's second moments, on a 16 x 16 grid of
   cells, in full-size pixels) is below it: nothing to undo; ``β = 0``.
2. **Already at the noise level** (discrepancy principle). ``σ`` is the photo's noise level,
   ``median |Haar diagonal detail| / 0.6745`` of the linear photo, at least the 8-bit
   rounding noise in linear light (``mean (γ D^(γ-1))² / (12·255²)``, ``D`` the display
   values). If the reblur error of the photo itself, ``mean (R(Hv) - v)²``, is at most
   ``noise_factor · σ²``, the field already explains the photo: ``β = 0``. Otherwise RL
   stops once its reblur error reaches ``noise_factor · σ²`` (``stop_error``).
3. **The field must explain the photo better than its variants.** RL runs ``probe``
   iterations (at most the restoration's) with the field and with three variants of it:
   every basis kernel turned 90°, shrunk to half its size and grown to 1.6 times (same
   mixing). ``U = reblur error after the probe / reblur error of the photo`` is the share
   of the photo the field leaves unexplained. A right field explains the photo faster than
   its variants; a field of the wrong direction is beaten by its turned copy, one claiming
   blur a sharp photo does not have (or too large a blur) by its half-size copy, one of too
   small a blur by its larger copy. The evidence is ``e = min over variants of
   log(U_variant / U_field)`` and ``β = clip(e / evidence, 0, 1)`` (``evidence = 0.4``: the
   whole restoration once the field leaves at most 1/1.5 of what its best variant leaves).
   The turned variant is skipped where it hardly differs from the field (relative L2
   difference of the field's mean kernel below 0.2: a round blur has no direction).
   The variants are probed in that order and the probing stops at the first one that
   explains the photo at least as well as the field (``log(U_variant / U_field) <= 0``):
   ``e`` can only be lower, so ``β = 0`` is already decided (the probes are most of the
   rule's time, 62% of a 1 MP deblur; issue 17). Only ``e`` itself, the rival named in
   the reason and ``unexplained`` can differ from probing every variant.

The photo is "restored" when ``β >= 0.5``, else "left nearly as is". Designed on 26
samples that are not the reported hand-made set (ten other scikit-image photos with straight
and bent hand-made motion fields, 16 of the compact shards' ``val-000004``), 10 RL
iterations: the true field keeps +2.41 of its +2.89 dB and +1.90 of +1.90 dB; the true field
turned 90° loses nothing (RL alone: -0.83 and -0.13 dB on average, -2.46 at worst); the
compact model's fields of these blurred photos and of the sharp originals are left (nearly)
as is (sharp photos stay >= 38 dB from themselves, RL alone >= 33 dB).
The decision is taken at the resolution the field was estimated at; tiled restoration
applies steps 1–3 there and blends, without the discrepancy stop (every tile runs the
same number of iterations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from blurfield.physics import BlurField, saturate
from blurfield.restore.rl import RLResult, richardson_lucy

MAD_TO_SIGMA = 0.6745  # median |N(0, 1)|
GRID = 16  # cells a side for the field's blur size
TURN_MIN_DIFFERENCE = 0.2  # below this relative L2 difference, the turned variant is skipped
RESTORED_AT = 0.5  # blend from which a photo counts as "restored"
VARIANTS = ("turned 90°", "half its size", "1.6 times its size")
LEFT, RESTORED = "left nearly as is", "restored"


@dataclass
class Decision:
    """What the no-harm rule decided for one photo.

    decision: "restored" or "left nearly as is"; reason: why, in words; blend: β, the share
    of the RL restoration in the output (0 = the input); iterations: RL updates of the
    restoration (0 when it was not run); noise_sigma: σ in linear light; blur_px: the
    field's largest per-pixel blur (px, full size); evidence: ``e`` of step 3 (nan when not
    probed); unexplained: ``U`` of the field and of each variant probed.
    """

    decision: str
    reason: str
    blend: float
    iterations: int
    noise_sigma: float
    blur_px: float
    evidence: float = float("nan")
    unexplained: dict[str, float] | None = None

    @property
    def restored(self) -> bool:
        return self.decision == RESTORED

    def line(self) -> str:
        """One line for people: ``restored (blend 1.00, 30 iterations): reason``."""
        its = ""
        if self.iterations:
            its = f", {self.iterations} iteration{'s' if self.iterations != 1 else ''}"
        return f"{self.decision} (blend {self.blend:.2f}{its}): {self.reason}"

    def arrays(self) -> dict[str, np.ndarray]:
        """The extra keys of a field file (``api.save_field(..., decision=)``)."""
        return {
            "decision": np.str_(self.decision),
            "decision_reason": np.str_(self.reason),
            "blend": np.float64(self.blend),
            "iterations": np.int64(self.iterations),
            "noise_sigma": np.float64(self.noise_sigma),
            "blur_px": np.float64(self.blur_px),
            "evidence": np.float64(self.evidence),
        }

    @classmethod
    def from_arrays(cls, data: dict[str, Any]) -> Decision | None:
        """The decision stored in a field file's arrays, or None (older files have none)."""
        if "decision" not in data:
            return None
        return cls(decision=str(data["decision"]), reason=str(data["decision_reason"]),
                   blend=float(data["blend"]), iterations=int(data["iterations"]),
                   noise_sigma=float(data["noise_sigma"]), blur_px=float(data["blur_px"]),
                   evidence=float(data["evidence"]))


# --------------------------------------------------------------------------- measures


def noise_sigma(linear: Tensor, gamma: float = 2.2, bits: int = 8) -> float:
    """σ of (N, C, H, W) linear light: ``median |Haar diagonal detail| / 0.6745`` over all
    channels, at least the rounding noise of ``bits``-bit display values in linear light
    (module doc)."""
    h, w = linear.shape[-2] // 2 * 2, linear.shape[-1] // 2 * 2
    x = linear[..., :h, :w].float()
    d = (x[..., 0::2, 0::2] - x[..., 1::2, 0::2] - x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) / 2
    mad = float(d.abs().flatten().median()) / MAD_TO_SIGMA if d.numel() else 0.0
    display = linear.float().clamp(0, 1).pow(1.0 / gamma)
    slope = gamma * display.pow(gamma - 1.0) if gamma != 1 else torch.ones_like(display)
    floor = float(slope.square().mean()) / (12.0 * (2**bits - 1) ** 2)
    return math.sqrt(max(mad * mad, floor))


def blur_extent(kernels: Tensor, mixing: Tensor, grid: int = GRID) -> float:
    """The largest line-equivalent blur length ``sqrt(12 λ_max)`` (px) over a ``grid x grid``
    set of cells, each with its mean per-pixel kernel (kernels (N, B, K, K), mixing
    (N, B, H, W))."""
    cells = F.adaptive_avg_pool2d(mixing.float(), (min(grid, mixing.shape[-2]),
                                                   min(grid, mixing.shape[-1])))
    k = torch.einsum("nbyx,nbij->nyxij", cells, kernels.float()).double()
    size = k.shape[-1]
    c = torch.arange(size, dtype=k.dtype) - (size - 1) / 2
    s = k.sum((-1, -2)).clamp(min=1e-12)
    py, px = k.sum(-1), k.sum(-2)
    my, mx = (py * c).sum(-1) / s, (px * c).sum(-1) / s
    vyy = (py * c.square()).sum(-1) / s - my.square()
    vxx = (px * c.square()).sum(-1) / s - mx.square()
    vxy = (k * c[:, None] * c[None, :]).sum((-1, -2)) / s - mx * my
    tr, det = vyy + vxx, vyy * vxx - vxy.square()
    lam = tr / 2 + (tr.square() / 4 - det).clamp(min=0).sqrt()
    return float((12 * lam.clamp(min=0)).sqrt().max())


def turned(kernels: Tensor) -> Tensor:
    """Every kernel (..., K, K) turned by 90°."""
    return torch.rot90(kernels, 1, (-2, -1))


def rescaled(kernels: Tensor, factor: float) -> Tensor:
    """Every kernel (..., K, K) stretched about its centre tap by ``factor``, renormalised to
    sum 1. Growing (``factor > 1``): bilinear resampling onto ``K' x K'`` with ``K' - 1 = 2
    round(factor (K - 1) / 2)`` (as :func:`blurfield.restore.upscale_kernels`). Shrinking:
    each tap's mass is moved to ``factor`` times its offset from the centre and split
    bilinearly among the four nearest taps (mass and centre kept, no tap lost), on K x K."""
    k = kernels.shape[-1]
    lead = kernels.shape[:-2]
    flat = kernels.reshape(-1, k, k).double()
    if factor >= 1:
        k2 = 2 * round(factor * (k - 1) / 2) + 1
        out = F.interpolate(flat[:, None], size=(k2, k2), mode="bilinear",
                            align_corners=True)[:, 0].clamp(min=0)
    else:
        c = (k - 1) / 2
        pos = (torch.arange(k, dtype=flat.dtype) - c) * factor + c
        lo = pos.floor().long().clamp(0, k - 1)
        frac = pos - lo
        hi = (lo + 1).clamp(max=k - 1)
        # splat along y then x: out = A flat A^T with A[i, j] the share of source j at i
        a = torch.zeros(k, k, dtype=flat.dtype)
        j = torch.arange(k)
        a.index_put_((lo, j), 1 - frac, accumulate=True)
        a.index_put_((hi, j), frac, accumulate=True)
        out = a @ flat @ a.T
    out = out / out.sum((-1, -2), keepdim=True).clamp(min=1e-12)
    return out.reshape(*lead, *out.shape[-2:]).to(kernels.dtype)


def _turn_difference(kernels: Tensor, mixing: Tensor) -> float:
    mean = torch.einsum("nb,nbij->nij", mixing.float().mean((-1, -2)), kernels.float())
    return float((mean - turned(mean)).norm() / mean.norm().clamp(min=1e-12))


def reblur_error(v: Tensor, kernels: Tensor, mixing: Tensor, *, saturation: bool = True,
                 padding: str = "same", method: str = "auto",
                 skip_tol: float | None = 0.0) -> float:
    """``mean (R(Hv) - v)²`` (``Hv`` without ``saturation``): the reblur error of the photo
    itself, RL's error at iteration 0 (``padding`` "same" or "circular"; ``skip_tol`` as in
    :class:`~blurfield.physics.BlurField`)."""
    op = BlurField(kernels.to(v.dtype), mixing.to(v.dtype), padding=padding, method=method,
                   skip_tol=skip_tol)
    hv = op.forward(v)
    return float(((saturate(hv) if saturation else hv) - v).square().mean())


# --------------------------------------------------------------------------- the rule


@dataclass
class Assessment:
    """Steps 1–3 at one resolution: the blend and its reason (see :class:`Decision`)."""

    blend: float
    reason: str
    noise_sigma: float
    blur_px: float
    evidence: float = float("nan")
    unexplained: dict[str, float] | None = None


def _unexplained(v, kernels, mixing, probe, rl, callback=None) -> float:
    err = richardson_lucy(v, kernels, mixing, iterations=probe, early_stop=False,
                          check=False, callback=callback, **rl).reblur_error
    return err[-1] / max(err[0], 1e-30)


def assess(v: Tensor, kernels: Tensor, mixing: Tensor, *, probe: int = 10,
           evidence: float = 0.4, noise_factor: float = 1.5, min_blur_px: float = 1.0,
           gamma: float = 2.2, pixel_scale: float = 1.0, iterations: int | None = None,
           callback: Any = None, **rl: Any) -> Assessment:
    """Steps 1–3 of the module doc for (1, C, H, W) linear ``v`` and its field (kernels
    (1, B, K, K), mixing (1, B, H, W)); ``pixel_scale``: full-size pixels per pixel of ``v``
    (the field's downscale factor); ``iterations``: the restoration's, the probes run at
    most that many (at least 1); ``rl``: the restoration's other RL options (saturation,
    tv_weight, padding, method, sat_threshold, z_dilate, skip_tol; others are ignored);
    ``callback``: passed to every probe's :func:`richardson_lucy` (e.g. a progress bar)."""
    if iterations is not None:
        probe = max(1, min(probe, int(iterations)))
    sigma = noise_sigma(v, gamma)
    blur = blur_extent(kernels, mixing) * pixel_scale
    if blur < min_blur_px:
        return Assessment(0.0, f"the field's blur is below {min_blur_px:g} px ({blur:.2f} px)",
                          sigma, blur)
    pad_mode = rl.get("padding", "same")
    err0 = reblur_error(v, kernels, mixing, saturation=rl.get("saturation", True),
                        padding="same" if pad_mode == "valid" else pad_mode,
                        method=rl.get("method", "auto"), skip_tol=rl.get("skip_tol", 0.0))
    if err0 <= noise_factor * sigma**2:
        return Assessment(0.0, "the reblur residual is already at the noise level "
                          f"({math.sqrt(err0):.2g} vs noise {sigma:.2g})", sigma, blur)
    opts = {k: rl[k] for k in ("saturation", "tv_weight", "padding", "method",
                               "sat_threshold", "z_dilate", "skip_tol") if k in rl}
    u = {"field": _unexplained(v, kernels, mixing, probe, opts, callback)}
    variants = {VARIANTS[1]: rescaled(kernels, 0.5), VARIANTS[2]: rescaled(kernels, 1.6)}
    if _turn_difference(kernels, mixing) >= TURN_MIN_DIFFERENCE:
        variants = {VARIANTS[0]: turned(kernels), **variants}
    logs = {}
    for name, k in variants.items():
        u[name] = _unexplained(v, k, mixing, probe, opts, callback)
        logs[name] = math.log(max(u[name], 1e-30) / max(u["field"], 1e-30))
        if logs[name] <= 0 < evidence:  # e <= this already: beta = 0 whatever the rest give
            break
    rival = min(logs, key=logs.get)
    e = logs[rival]
    beta = float(np.clip(e / evidence, 0.0, 1.0))
    left = (f"{100 * u['field']:.0f}% vs {100 * u[rival]:.0f}% of the reblur error left "
            f"after {probe} iterations")
    if beta >= RESTORED_AT:
        reason = (f"the field explains the blur better than its variants (closest: the same "
                  f"field {rival}; {left})")
    else:
        reason = f"the field explains the photo no better than the same field {rival} ({left})"
    return Assessment(beta, reason, sigma, blur, e, u)


def blend(v: Tensor, x: Tensor, beta: float) -> Tensor:
    """``v + β (x - v)`` (``β = 1``: ``x`` itself, ``β = 0``: ``v`` itself)."""
    if beta >= 1:
        return x
    if beta <= 0:
        return v
    return v + beta * (x - v)


def decision(a: Assessment, iterations: int) -> Decision:
    """The :class:`Decision` of an assessment whose restoration ran ``iterations`` updates."""
    label = RESTORED if a.blend >= RESTORED_AT else LEFT
    return Decision(label, a.reason, a.blend, iterations, a.noise_sigma, a.blur_px,
                    a.evidence, a.unexplained)


def no_harm_richardson_lucy(
    v: Tensor, kernels: Tensor, mixing: Tensor, *, probe: int = 10, evidence: float = 0.4,
    noise_factor: float = 1.5, min_blur_px: float = 1.0, gamma: float = 2.2, **rl: Any,
) -> RLResult:
    """:func:`~blurfield.restore.richardson_lucy` of ``v`` (1, C, H, W) under the no-harm
    rule (module doc), at one resolution: the :class:`RLResult` of the blend, with its
    ``decision``. With ``padding="valid"`` the result is (1, C, H + K - 1, W + K - 1) and
    the blend is taken against ``v`` mirror-padded, like RL's own start."""
    a = assess(v, kernels, mixing, probe=probe, evidence=evidence, noise_factor=noise_factor,
               min_blur_px=min_blur_px, gamma=gamma, **rl)
    if a.blend <= 0:
        start = richardson_lucy(v, kernels, mixing, **{**rl, "iterations": 0})
        return start._replace(decision=decision(a, 0))
    res = richardson_lucy(v, kernels, mixing, stop_error=noise_factor * a.noise_sigma**2, **rl)
    start = v
    if rl.get("padding") == "valid":
        from blurfield.physics import pad

        start = pad(v, kernels.shape[-1], "same")
    out = blend(start.clamp(min=0), res.image, a.blend)
    return res._replace(image=out, decision=decision(a, res.iterations))
