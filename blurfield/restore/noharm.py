"""Deblur does no harm: how much of a Richardson–Lucy restoration to keep, and at what size.

An estimated field can be wrong (wrong direction, too large, blur where the photo is
sharp), and RL with a wrong field makes the photo worse. The rule below decides, per photo,
a blend ``β`` in [0, 1] and a kernel scale ``s`` in (0, 1], restores with every basis kernel
shrunk to ``s`` of its size and returns ``v + β (x - v)`` (``v`` the photo, ``x`` the RL
result, linear light), with a reason:

1. **Blur below ``min_blur_px``.** The field's largest per-pixel blur (line-equivalent
   length ``sqrt(12 λ_max)`` of the per-pixel kernel's second moments, on a 16 x 16 grid of
   cells, in full-size pixels) is below it: nothing to undo; ``β = 0``.
2. **Already at the noise level** (discrepancy principle). ``σ`` is the photo's noise level:
   ``median |Haar diagonal detail| / 0.6745`` of the linear photo in each 16 x 16 px square
   and channel, the 10th percentile of those (the smoothest squares, where texture adds
   least to the detail; over the whole photo fine texture read as noise and stopped RL
   early), at least the 8-bit rounding noise in linear light (``mean (γ D^(γ-1))² /
   (12·255²)``, ``D`` the display values). If the reblur error of the photo itself,
   ``mean (R(Hv) - v)²``, is at most ``noise_factor · σ²``, the field already explains the
   photo: ``β = 0``. Otherwise RL stops once its reblur error reaches ``noise_factor · σ²``
   (``stop_error``).
3. **The photo must show the blur the field claims.** ``U(k) = reblur error after
   ``probe`` RL iterations with kernels k / reblur error of the photo`` is the share of the
   photo a field leaves unexplained (RL with ``padding="valid"``: no border assumption).
   A photo that has detail a blur would have removed cannot be explained by that blur: RL
   cannot put the detail back into ``Hx``, so ``U`` stays high. A field claiming more blur
   than the photo shows is therefore explained nearly as well by its half-size copy; one
   of the right size clearly better than by it. With ``s_i = 2^(-i/2)`` (1, 0.71, 0.5, ...)
   the field is tried at ``s_0, ..., s_shrink``: the first ``s_i`` with
   ``U(s_i) <= max_unexplained`` and ``log(U(s_(i+2)) / U(s_i)) >= -margin`` (its half-size
   copy leaves at most ``e^margin`` times less unexplained) is the kernel scale; so is one
   whose half-size copy explains the photo clearly *worse* (``log(U(s_(i+2)) / U(s_i)) >=
   0.05``, ``CLEARLY_WORSE``), however much it leaves unexplained: the photo is at least as
   blurred as claimed (a real photo with more blur than the field estimates: RL with the
   smaller field is a partial, safe restoration). If none passes, ``β = 0`` (a sharp photo,
   or a blur far larger than the photo's).
4. **The field's direction must show in the photo** (at the chosen scale; skipped, ``β =
   1``, where the turned field hardly differs from the field: relative L2 difference of
   the field's mean kernel below 0.2, a round blur has no direction). First in its
   spectrum: within rings of frequencies the photo's power must follow the field's
   ``|K|²`` with a slope of at least ``slope``
   (:func:`blurfield.restore.spectrum.spectral_slope` on the probe squares, their median;
   1 for the photo's own blur, near 0 for a sharp photo), else ``β = 0``. Then the field
   must explain the photo better than itself turned 90°: ``e = log(U(turned) /
   U(field))``, ``β = clip(e / evidence, 0, 1)``. The spectral test (twentieth session)
   leaves nearly sharp photos on which the estimator reads a blur with a direction, which
   the probes let through: a ``cell`` under a shake of under a pixel went 22–24 dB worse.

5. **Optional (``spread > 0``; off by default): the restoration must not amplify noise**
   (or ring) where the photo is flat. RL stops before the first iterate whose spread
   (standard deviation of display values, clipped to [0, 1]) in the photo's flattest
   16 x 16 px squares (the 10% of squares and channels where the photo's is smallest; the
   median over them) exceeds ``spread`` times the photo's own there (taken as at least
   ``SPREAD_FLOOR``, one 8-bit grey level): if those squares are flat in the sharp photo
   too, what RL adds there is noise it amplified or the ringing of a kernel the photo does
   not have (:func:`blurfield.restore.noise.amplification_stop`). Where they are not (a
   blur large for the photo, texture everywhere), it stops a right kernel early; on the
   tuning sets no factor gained without costing elsewhere (fifteenth session;
   docs/experiments.md).

Steps 2 and 5 measure the photo's noise with :mod:`blurfield.restore.noise`.

The photo is "restored" when ``β >= 0.5``, else "left nearly as is". Probes run on the
photo or, when it is larger than four ``window``² squares, on four ``window``² squares at
the centres of its quarters (batched; the rule's cost no longer grows with the photo). For
a field estimated downscaled (:func:`blurfield.api.restore`) the probes of steps 3 and 4
run on those squares of the photo at full size, the kernels grown by the field's scale
(``assess(full=...)``): at the estimator's size a nearly sharp textured photo looks blurred
and a field judged there was let through (eighteenth session: 32 held-out photos under a
small camera shake at ``restore.scale=2`` went from −1.26 dB, 8 more than 0.5 dB worse and
one 12 dB, to +0.17 dB, none worse; long blurs kept their gains). Probes: 3 for a right
field (``s = 1``, its half, turned), at most ``2 shrink + 3``. ``noise_factor = 0.5``
(fourteenth session: 1.5 stopped RL early on photos whose flattest squares still read
texture as noise; 0.5 gained on every tuning set, noise-free and noisy, at 10 and 30
iterations), ``max_unexplained = 0.45``, ``margin = 0.25``, ``evidence = 0.2`` (with
10-iteration probes, the TV and saturation defaults):

Designed on 50 samples that are not the reported sets (20 of the compact shards'
``val-000004``, ten other scikit-image photos with hand-made three-layer motion fields, and
the sharp originals of 20 of them), 10 RL iterations, fields of the v3 compact model: mean /
worst gain +0.44 / -0.07 dB on the synthetic ones (RL alone +0.24 / -5.10) and +0.14 /
-0.25 dB on the hand-made ones (RL alone -0.17 / -1.14), none of the 20 sharp originals
restored (without the ``CLEARLY_WORSE`` exception +0.38 and +0.13 dB; with a threshold of
0 instead of 0.05 one sharp original is restored). Margins 0.15–0.25 decide the same there,
0.3 restores a sharp original; 0.25 also restores ``bench/restore.py``'s photo (two 25 px
line blurs, v4 field at 0.71 of its size: +1.89 dB, where 0.15 left it as is). The
previous rule (the field had to beat its half-size and 1.6 x copies outright) left nearly
every estimated field unused. Steps 1 and 2 are taken at the resolution the field was
estimated at, steps 3 and 4 on the photo itself (above); a tiled restoration (every tile
runs the same number of iterations) applies steps 1, 3 and 4 there and blends, without the
discrepancy stop or, with step 5 on, runs as many iterations as RL with the stops of steps
2 and 5 takes on the probe squares (:func:`blurfield.api.restore`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from blurfield.physics import BlurField, mean_kernel, saturate
from blurfield.physics.moments import field_covariance, principal_variances
from blurfield.restore.noise import noise_sigma, rl_stops
from blurfield.restore.rl import RLResult, richardson_lucy
from blurfield.restore.spectrum import spectral_slope

GRID = 16  # cells a side for the field's blur size
TURN_MIN_DIFFERENCE = 0.2  # below this relative L2 difference, the turned variant is skipped
RESTORED_AT = 0.5  # blend from which a photo counts as "restored"
TURNED = "turned 90°"
CLEARLY_WORSE = 0.05  # log(U_half / U_field) from which the photo shows the field's blur anyway
PROBE_OPTIONS = ("saturation", "tv_weight", "method", "sat_threshold", "z_dilate", "skip_tol",
                 "rank_tol")  # the RL options the probes take from the restoration's
LEFT, RESTORED = "left nearly as is", "restored"
COLUMNS = ("decision", "blend", "kernel_scale", "decision_reason")  # of an evaluation row


@dataclass(frozen=True)
class Decision:
    """What the no-harm rule decided for one photo.

    blend: β, the share of the RL restoration in the output (0 = the input); reason: why,
    in words; noise_sigma: σ in linear light; blur_px: the field's largest per-pixel blur
    (px, full size); kernel_scale: ``s``, the size the basis kernels were restored at (1 =
    as estimated); evidence: ``e`` of step 4 (nan when not tested); unexplained: ``U`` of
    each kernel set probed (not stored in field files); iterations: RL updates of the
    restoration (0 when it was not run); slope: step 4's spectral slope (nan when not
    tested). ``decision`` is "restored" when ``β >= 0.5``,
    else "left nearly as is".
    """

    blend: float
    reason: str
    noise_sigma: float
    blur_px: float
    kernel_scale: float = 1.0
    evidence: float = float("nan")
    unexplained: dict[str, float] | None = None
    iterations: int = 0
    slope: float = float("nan")

    @property
    def decision(self) -> str:
        return RESTORED if self.blend >= RESTORED_AT else LEFT

    @property
    def restored(self) -> bool:
        return self.decision == RESTORED

    def line(self) -> str:
        """One line for people: ``restored (blend 1.00, 10 iterations): reason``."""
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
            "kernel_scale": np.float64(self.kernel_scale),
            "spectral_slope": np.float64(self.slope),
        }

    def columns(self) -> dict[str, Any]:
        """The columns of an evaluation row: ``decision``, ``blend``, ``kernel_scale`` and
        ``decision_reason``, as the field file stores them (:meth:`arrays`)."""
        saved = self.arrays()
        return {k: saved[k].item() for k in COLUMNS}

    @classmethod
    def from_arrays(cls, data: dict[str, Any]) -> Decision | None:
        """The decision stored in a field file's arrays, or None (older files have none;
        files from before the kernel scale have 1)."""
        if "decision" not in data:
            return None
        return cls(blend=float(data["blend"]), reason=str(data["decision_reason"]),
                   noise_sigma=float(data["noise_sigma"]), blur_px=float(data["blur_px"]),
                   kernel_scale=float(data.get("kernel_scale", 1.0)),
                   evidence=float(data["evidence"]), iterations=int(data["iterations"]),
                   slope=float(data.get("spectral_slope", math.nan)))


# --------------------------------------------------------------------------- measures


def blur_extent(kernels: Tensor, mixing: Tensor, grid: int = GRID) -> float:
    """The largest line-equivalent blur length ``sqrt(12 λ_max)`` (px) over a ``grid x grid``
    set of cells, each with its mean per-pixel kernel (kernels (N, B, K, K), mixing
    (N, B, H, W))."""
    cells = F.adaptive_avg_pool2d(mixing.float(), (min(grid, mixing.shape[-2]),
                                                   min(grid, mixing.shape[-1])))
    k = torch.einsum("nbyx,nbij->nyxij", cells, kernels.float()).double()
    lam = principal_variances(field_covariance(k[..., None, :, :], k.new_ones(1, 1, 1)))
    return float((12 * lam[..., 0, 0, 0].clamp(min=0)).sqrt().max())


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
    mean = mean_kernel(kernels, mixing).float()  # (N, K, K)
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


def probe_boxes(height: int, width: int, window: int) -> list[tuple[int, int, int, int]]:
    """Where the probes run in a ``height x width`` photo, as windows ``(y0, y1, x0, x1)``:
    the whole photo, or (when ``H·W > 4 window²`` and both sides are at least ``window``)
    the four ``window x window`` squares centred on its quarters."""
    h, w = height, width
    if window <= 0 or h * w <= 4 * window * window or min(h, w) < window:
        return [(0, h, 0, w)]
    tops = [min(max(round(f * h - window / 2), 0), h - window) for f in (0.25, 0.75)]
    lefts = [min(max(round(f * w - window / 2), 0), w - window) for f in (0.25, 0.75)]
    return [(t, t + window, c, c + window) for t in tops for c in lefts]


def probe_windows(v: Tensor, mixing: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """The part of (1, C, H, W) ``v`` and (1, B, H, W) ``mixing`` the probes run on
    (:func:`probe_boxes`), as a batch of 1 or 4."""
    boxes = probe_boxes(*v.shape[-2:], window)
    if len(boxes) == 1:
        return v, mixing
    return (torch.cat([v[..., y0:y1, x0:x1] for y0, y1, x0, x1 in boxes]),
            torch.cat([mixing[..., y0:y1, x0:x1] for y0, y1, x0, x1 in boxes]))


def unexplained(v: Tensor, kernels: Tensor, mixing: Tensor, probe: int, rl: dict,
                 callback: Any = None) -> float:
    """``U``: the reblur error after ``probe`` RL iterations over the photo's own (over
    the batch of ``v``), RL with ``padding="valid"``."""
    k = kernels.expand(v.shape[0], *kernels.shape[1:])
    err = richardson_lucy(v, k, mixing, iterations=probe, early_stop=False, check=False,
                          callback=callback, **{**rl, "padding": "valid"}).reblur_error
    return err[-1] / max(err[0], 1e-30)


def max_probes(shrink: int) -> int:
    """The most RL probes :func:`assess` runs with ``shrink`` (for a progress bar)."""
    return 2 * shrink + 3


def _pct(u: float) -> str:
    return f"{100 * u:.0f}%"


def assess(v: Tensor, kernels: Tensor, mixing: Tensor, *, probe: int = 10,
           evidence: float = 0.2, margin: float = 0.25, max_unexplained: float = 0.45,
           shrink: int = 1, window: int = 256, noise_factor: float = 0.5,
           min_blur_px: float = 1.0, gamma: float = 2.2, pixel_scale: float = 1.0,
           iterations: int | None = None, callback: Any = None,
           full: tuple[Tensor, Tensor] | None = None, slope: float | None = 0.1,
           **rl: Any) -> Decision:
    """Steps 1–4 of the module doc for (1, C, H, W) linear ``v`` and its field (kernels
    (1, B, K, K), mixing (1, B, H, W)): a :class:`Decision` with ``iterations == 0``.

    ``pixel_scale``: full-size pixels per pixel of ``v`` (the field's downscale factor);
    ``iterations``: the restoration's, the probes run at most that many (at least 1);
    ``window``: side of the probe squares (:func:`probe_windows`; 0 = the whole photo);
    ``rl``: the restoration's other RL options (saturation, tv_weight, method,
    sat_threshold, z_dilate, skip_tol, rank_tol; padding is "valid" for the probes, the
    restoration's for step 2); ``callback``: passed to every probe's :func:`richardson_lucy`;
    ``full``: for a field estimated downscaled (``pixel_scale > 1``), the photo's probe
    windows at full size and the field's mixing there, (N, C, h, w) and (N, B, h, w): steps
    3 and 4 then probe them with every kernel grown by ``pixel_scale`` (the photo's own
    detail, which the downscale removed, is what tells a blur from a sharp photo; module
    doc), steps 1 and 2 stay at ``v``'s resolution; ``slope``: step 4's least spectral slope
    (None: no spectral test)."""
    if iterations is not None:
        probe = max(1, min(probe, int(iterations)))
    sigma = noise_sigma(v, gamma)
    blur = blur_extent(kernels, mixing) * pixel_scale
    if blur < min_blur_px:
        return Decision(0.0, f"the field's blur is below {min_blur_px:g} px ({blur:.2f} px)",
                        sigma, blur)
    pad_mode = str(rl.get("padding", "same"))  # a Padding member prints as its value
    err0 = reblur_error(v, kernels, mixing, saturation=rl.get("saturation", True),
                        padding="same" if pad_mode == "valid" else pad_mode,
                        method=rl.get("method", "auto"), skip_tol=rl.get("skip_tol", 0.0))
    if err0 <= noise_factor * sigma**2:
        return Decision(0.0, "the reblur residual is already at the noise level "
                        f"({math.sqrt(err0):.2g} vs noise {sigma:.2g})", sigma, blur)
    opts = {k: rl[k] for k in PROBE_OPTIONS if k in rl}
    vw, mw = probe_windows(v, mixing, window) if full is None else full
    grow = 1.0 if full is None else pixel_scale
    u: dict[str, float] = {}

    def probed(scale: float) -> Tensor:  # the kernels at ``scale`` on the probe squares
        return kernels if scale * grow == 1 else rescaled(kernels, scale * grow)

    def u_at(scale: float, turn: bool = False) -> float:
        name = f"{scale:.2f}" + (" turned" if turn else "")
        if name not in u:
            k = probed(scale)
            u[name] = unexplained(vw, turned(k) if turn else k, mw, probe, opts, callback)
        return u[name]

    scales = [2 ** (-i / 2) for i in range(shrink + 3)]
    chosen = None
    for i in range(shrink + 1):
        mine = u_at(scales[i])
        e_size = math.log(u_at(scales[i + 2]) / max(mine, 1e-30))
        if e_size >= CLEARLY_WORSE or (e_size >= -margin and mine <= max_unexplained):
            chosen = scales[i]
            break
    if chosen is None:
        tried = ", ".join(f"{s:.2f}" for s in scales[: shrink + 1])
        half = u[f"{scales[shrink + 2]:.2f}"]
        left = f"{_pct(half)} vs {_pct(mine)} of the reblur error left after {probe} iterations"
        if e_size < -margin:
            why = f"half that size explains it better ({left})"
        else:
            why = (f"it leaves more than {_pct(max_unexplained)} of the reblur error unexplained "
                   f"and half that size explains it nearly as well ({left}): the photo has "
                   "detail that blur would have removed")
        return Decision(0.0, f"the photo does not show the blur the field claims: at {tried} "
                        f"of its size, {why}", sigma, blur, unexplained=u)
    at = "" if chosen == 1 else f" at {chosen:.2f} of its size"
    k = kernels if chosen == 1 else rescaled(kernels, chosen)
    if _turn_difference(k, mixing) < TURN_MIN_DIFFERENCE:
        return Decision(1.0, f"a round blur{at} the photo shows (its half-size copy leaves "
                        "more unexplained)", sigma, blur, chosen, unexplained=u)
    fit = float("nan")
    if slope is not None:
        sigma_w = sigma if full is None else noise_sigma(vw, gamma)
        fit = _median_slope(vw, probed(chosen), mw, sigma_w)
        if fit < slope:
            return Decision(0.0, f"the photo's spectrum does not fall off along the field{at} "
                            f"(slope {fit:.2f} < {slope:g}): a sharp photo, or a blur in "
                            "another direction", sigma, blur, chosen, unexplained=u, slope=fit)
    mine, rival = u_at(chosen), u_at(chosen, turn=True)
    e = math.log(max(rival, 1e-30) / max(mine, 1e-30))
    beta = float(np.clip(e / evidence, 0.0, 1.0)) if evidence > 0 else float(e > 0)
    left = f"{_pct(mine)} vs {_pct(rival)} of the reblur error left after {probe} iterations"
    if beta >= RESTORED_AT:
        reason = f"the field{at} explains the blur better than turned 90° ({left})"
    else:
        reason = f"the field{at} explains the photo no better than turned 90° ({left})"
    return Decision(beta, reason, sigma, blur, chosen, e, u, slope=fit)


def _median_slope(v: Tensor, kernels: Tensor, mixing: Tensor, sigma: float) -> float:
    """The median over the probe squares of :func:`blurfield.restore.spectrum.spectral_slope`
    (NaN when the kernels do not fit in a square or have no direction there)."""
    if kernels.shape[-1] > min(v.shape[-2:]):
        return float("nan")
    return float(spectral_slope(v, kernels, mixing, sigma).nanmedian())


def rule_kwargs(options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`assess` (and :func:`no_harm_richardson_lucy`) from the
    restore section's ``no_harm_*`` keys in ``options`` (``no_harm`` itself and other keys
    are left out): ``no_harm_probe`` -> ``probe``, ..., ``no_harm_noise`` ->
    ``noise_factor``, ``no_harm_min_blur`` -> ``min_blur_px``, ``no_harm_spread`` -> ``spread``
    (the restoration's, not :func:`assess`'s)."""
    renamed = {"noise": "noise_factor", "min_blur": "min_blur_px"}
    out = {}
    for key, value in options.items():
        if key.startswith("no_harm_"):
            name = key.removeprefix("no_harm_")
            out[renamed.get(name, name)] = value
    return out


def blend(v: Tensor, x: Tensor, beta: float) -> Tensor:
    """``v + β (x - v)`` (``β = 1``: ``x`` itself, ``β = 0``: ``v`` itself), computed in
    ``x``'s memory: ``x``, the restoration, is given up (no photo-sized temporary)."""
    if beta >= 1:
        return x
    if beta <= 0:
        return v
    return x.sub_(v).mul_(beta).add_(v)  # v + β (x - v) to the bit


def no_harm_richardson_lucy(
    v: Tensor, kernels: Tensor, mixing: Tensor, *, probe: int = 10, evidence: float = 0.2,
    margin: float = 0.25, max_unexplained: float = 0.45, shrink: int = 1, window: int = 256,
    noise_factor: float = 0.5, min_blur_px: float = 1.0, spread: float = 0.0,
    slope: float | None = 0.1, gamma: float = 2.2, **rl: Any,
) -> RLResult:
    """:func:`~blurfield.restore.richardson_lucy` of ``v`` (1, C, H, W) under the no-harm
    rule (module doc), at one resolution: the :class:`RLResult` of the blend, with its
    ``decision``; the restoration uses the kernels at the decision's ``kernel_scale``. With
    ``padding="valid"`` the result is (1, C, H + K - 1, W + K - 1) and the blend is taken
    against ``v`` mirror-padded, like RL's own start. ``spread``: step 5's factor (0: off)."""
    d = assess(v, kernels, mixing, probe=probe, evidence=evidence, margin=margin,
               max_unexplained=max_unexplained, shrink=shrink, window=window,
               noise_factor=noise_factor, min_blur_px=min_blur_px, gamma=gamma, slope=slope,
               **rl)
    if d.blend <= 0:
        start = richardson_lucy(v, kernels, mixing, **{**rl, "iterations": 0})
        return start._replace(decision=d)
    if d.kernel_scale < 1:
        kernels = rescaled(kernels, d.kernel_scale)
    res = richardson_lucy(v, kernels, mixing, **rl_stops(v, noise_factor, spread, gamma,
                                                         d.noise_sigma), **rl)
    start = v
    if str(rl.get("padding")) == "valid":
        from blurfield.physics import pad

        start = pad(v, kernels.shape[-1], "same")
    out = blend(start.clamp(min=0), res.image, d.blend)
    return res._replace(image=out, decision=dataclasses.replace(d, iterations=res.iterations))
