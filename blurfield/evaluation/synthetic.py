"""The synthetic benchmark: held-out shard samples whose blur field is known.

For each sample a centre window (``window`` px, a multiple of 32, at least K//2 from the
border) is scored:

- ``kernel_error``: mean over pixels of ``|| sum_b m_i^b k^b - sum_j M_j(i) k_j ||_2``,
  the estimated vs the ground-truth per-pixel kernel (:func:`.metrics.kernel_error`);
- ``direction``: whether the estimated blur directions are right, in [-1, 1] (1 = every
  principal axis right, 0 = round or random; :func:`.metrics.direction_agreement`);
- ``reblur_psnr_est``: the ground-truth sharp window reblurred with the estimated field
  (eq. 3) against the blurry window — how well the field explains the photo;
- PSNR after Richardson–Lucy (same settings for all) with
  (a) ``psnr_est``: the estimated field;
  (b) ``psnr_gt``: the ground-truth field (the upper bound; its masks renormalised onto
  the simplex if the sample was made without);
  (c) ``psnr_uniform_gt``: one uniform kernel, the mean of the ground-truth per-pixel
  kernels (the best single kernel in that sense);
  (e) ``psnr_uniform_est``: one uniform kernel, the mean of the estimated per-pixel kernels;
  (d) ``psnr_blurry``: the blurry input itself; and ``ssim_est`` for (a);
- with the no-harm rule, what it decided for (a): ``decision``, ``blend``,
  ``kernel_scale``, ``decision_reason`` (:meth:`~blurfield.restore.noharm.Decision.columns`).

The reference for PSNR is ``to_display(min(u, 1))`` with ``u`` the sample's linear sharp
image (brightness included): the blurry sample was made from ``u`` and saturates at 1.
RL runs with ``padding="valid"`` (the window is the valid blur of a larger sharp window,
so no border assumption is made) and the centre of its estimate is scored; restorations
are clipped to [0, 1] in linear light and rounded to 8 bits. With ``no_harm`` in ``rl`` (the
restore section's default) every restoration goes through the no-harm rule
(:mod:`blurfield.restore.noharm`), as ``blurfield deblur`` does: the rule's probes cost four
RL runs of ``no_harm_probe`` iterations more per restoration. Cost on a CPU is dominated by
RL with the B estimated kernels: ``iterations`` and ``window`` set it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from blurfield.config import RLOptions
from blurfield.data.schema import Sample, gt_field, image_tensor, sharp_linear, sharp_window
from blurfield.evaluation import metrics
from blurfield.physics import reblur, to_display, to_linear, uniform_field
from blurfield.restore import no_harm_richardson_lucy, noharm, noise, richardson_lucy
from blurfield.restore.refine import rl_iterations

# (1, 3, h, w) display -> (kernels, mixing), or (kernels, mixing, the refinement's note)
EstimateFn = Callable[[Tensor], tuple[Tensor, ...]]
# the restore section's no-harm rule
NO_HARM_KEYS = ("no_harm", "no_harm_probe", "no_harm_evidence", "no_harm_margin",
                "no_harm_max_unexplained", "no_harm_shrink", "no_harm_window", "no_harm_noise",
                "no_harm_min_blur", "no_harm_spread", "no_harm_slope")


@dataclass
class SyntheticResult:
    row: dict[str, Any]
    panels: list[tuple[str, Tensor]]
    seconds: float


def centre_window(height: int, width: int, kernel_size: int, window: int) -> tuple[int, ...]:
    """(top, left, h, w): the centre square of side ``window`` (shrunk to fit, multiple of
    32) at least ``kernel_size // 2`` from every border."""
    side = min(window, height - (kernel_size - 1), width - (kernel_size - 1)) // 32 * 32
    if side < 32:
        raise ValueError(f"a {height} x {width} sample is too small for a 32 px window at "
                         f"K = {kernel_size}")
    return ((height - side) // 2, (width - side) // 2, side, side)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _restore(v_lin: Tensor, kernels: Tensor, mixing: Tensor, gamma: float,
             rl: dict[str, Any]) -> tuple[Tensor, noharm.Decision | None]:
    """RL in linear light -> display (3, h, w), clipped and rounded to 8 bits, and the
    no-harm rule's decision (None without the rule).

    The blurry window is exactly the "valid" blur of the sharp window K - 1 larger, so RL
    runs with ``padding="valid"`` (no mirror assumption at the window's border) and the
    centre h x w of its (h + K - 1, w + K - 1) estimate is scored.
    """
    opts = {**rl, "padding": "valid"}
    rule = {k: opts.pop(k) for k in NO_HARM_KEYS if k in opts}
    if rule.get("no_harm", False):
        res = no_harm_richardson_lucy(v_lin, kernels.to(v_lin), mixing.to(v_lin), gamma=gamma,
                                      **noharm.rule_kwargs(rule), **opts)
    else:
        res = richardson_lucy(v_lin, kernels.to(v_lin), mixing.to(v_lin), **opts)
    o = (kernels.shape[-1] - 1) // 2
    h, w = v_lin.shape[-2:]
    out = res.image[0, :, o : o + h, o : o + w]
    return metrics.quantize(to_display(out.clamp(0, 1), gamma)).cpu(), res.decision


def _on_simplex(mixing: Tensor) -> Tensor:
    return mixing / mixing.sum(1, keepdim=True).clamp(min=1e-12)


def _uniform(kernel: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """A uniform field of ``kernel`` renormalised to sum 1 (unnormalised masks)."""
    kernel = kernel.float().clamp(min=0)
    return uniform_field(kernel / kernel.sum(), h, w)


def evaluate_sample(sample: Sample, estimate: EstimateFn, *, window: int = 256,
                    gamma: float | None = None, rl: dict[str, Any] | None = None,
                    device: str | torch.device = "cpu",
                    denoise_above: float | None = None,
                    smooth: float | None = None) -> SyntheticResult:
    """Score one sample (see the module doc). ``estimate`` maps a (1, 3, h, w) display
    window to (kernels (1, B, K', K'), mixing (1, B, h, w)) and, optionally, the
    refinement's note; ``rl`` are the keyword arguments of
    :func:`~blurfield.restore.richardson_lucy` plus, optionally, the no-harm rule's
    :data:`NO_HARM_KEYS` and ``field_iterations`` (as in the restore section: the
    estimated field, and its mean kernel, are restored with at most that many iterations
    when the note says it is the network's own, as ``deblur`` does); ``gamma`` the data
    gamma of the restoration (None: the sample's); ``denoise_above``: a noisy window is
    denoised first (:func:`blurfield.restore.noise.denoise`, as ``deblur`` does with
    ``restore.denoise_above``; None: never), and every field restores the denoised window,
    while ``psnr_blurry`` stays that of the window as it was; ``smooth``: a window that is
    not denoised goes through the same filter at that noise level (a JPEG photo,
    ``restore.jpeg_smooth`` with ``eval.jpeg``; None: not)."""
    dev = torch.device(device)
    rl = dict(rl or {})
    field_iterations = rl.pop("field_iterations", None)
    k = int(sample.meta["kernel_size"])
    data_gamma = float(sample.meta["gamma"])
    g = data_gamma if gamma is None else float(gamma)
    top, left, h, w = centre_window(*sample.sharp.shape[:2], k, window)
    gt = gt_field(sample, (top, left, h, w))
    blurry = image_tensor(sample.blurry)[:, top : top + h, left : left + w]
    u = sharp_linear(sample)
    ref = to_display(u[:, top : top + h, left : left + w].clamp(0, 1), data_gamma)
    _sync(dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        v, _, _ = noise.prefilter(blurry[None].to(dev), denoise_above, smooth, g)
        v_lin = to_linear(v, g)
        kernels, mixing, *note = estimate(v)
        rl_est = rl
        if field_iterations is not None and note:
            rl_est = {**rl, "iterations": rl_iterations(
                note[0], rl.get("iterations", RLOptions().iterations), field_iterations)}
        restored, decision = _restore(v_lin, kernels, mixing, g, rl_est)
    _sync(dev)
    seconds = time.perf_counter() - t0
    kernels, mixing = kernels.detach().float(), mixing.detach().float()
    k_cpu, m_cpu = kernels[0].cpu(), mixing[0].cpu()

    row: dict[str, Any] = {
        "kernel_error": float(metrics.kernel_error(k_cpu, m_cpu, gt.kernels, gt.masks)),
        "direction": float(metrics.direction_agreement(
            metrics.field_covariance(k_cpu, m_cpu),
            metrics.field_covariance(gt.kernels, gt.masks))),
        "psnr_est": float(metrics.psnr(ref, restored)),
        "ssim_est": float(metrics.ssim(ref, restored)),
    }
    ke = kernels.shape[-1]
    st, sl, sh, sw = sharp_window((top, left, h, w), ke)
    if st >= 0 and sl >= 0 and st + sh <= u.shape[-2] and sl + sw <= u.shape[-1]:
        rb = reblur(u[None, :, st : st + sh, sl : sl + sw].to(dev), kernels, mixing,
                    gamma=data_gamma, padding="valid")
        row["reblur_psnr_est"] = float(metrics.psnr(blurry, rb[0].cpu()))
    else:
        row["reblur_psnr_est"] = float("nan")

    gt_k, gt_m = gt.kernels[None].float().to(dev), _on_simplex(gt.masks[None].float()).to(dev)
    with torch.no_grad():
        by_gt, _ = _restore(v_lin, gt_k, gt_m, g, rl)
        k_ugt, m_ugt = _uniform(metrics.mean_kernel(gt.kernels, gt.masks), h, w)
        by_ugt, _ = _restore(v_lin, k_ugt.to(dev), m_ugt.to(dev), g, rl)
        k_uest, m_uest = _uniform(metrics.mean_kernel(k_cpu, m_cpu), h, w)
        by_uest, _ = _restore(v_lin, k_uest.to(dev), m_uest.to(dev), g, rl_est)
    row["psnr_gt"] = float(metrics.psnr(ref, by_gt))
    row["psnr_uniform_gt"] = float(metrics.psnr(ref, by_ugt))
    row["psnr_uniform_est"] = float(metrics.psnr(ref, by_uest))
    row["psnr_blurry"] = float(metrics.psnr(ref, blurry))
    row["layers"] = float(gt.kernels.shape[0])
    if decision is not None:
        row |= decision.columns()
    panels = [("blurry", blurry), ("estimated field", restored), ("true field", by_gt),
              ("sharp", ref)]
    return SyntheticResult(row, panels, seconds)
