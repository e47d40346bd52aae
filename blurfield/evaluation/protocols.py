"""How each benchmark is scored (docs/design.md §7), as pure functions of tensors.

Images are display values (3, H, W) in [0, 1]; a restoration is scored as the 8-bit file
it would be saved as (``quantize``), since the published protocols read files.

- RealBlur (Rim et al. 2020): intensity match, ECC homography on grayscale, bicubic warp,
  valid mask; masked PSNR and masked Gaussian SSIM (:mod:`.metrics`). The blurry input is
  scored without alignment (mask of ones), as in their code.
- Köhler et al. 2012: for each recorded sharp frame, intensity match and integer
  translation registration; PSNR on luminance (0.299 R + 0.587 G + 0.114 B) over the whole
  frame, the zero-filled border included (their metrix_mux PSNR); the score is the maximum
  over frames. The paper does not say how its Köhler SSIM was computed; ours is the
  Gaussian SSIM on luminance of the aligned pair, at the max-PSNR frame (``best``) or the
  maximum over frames (``max``).
- GoPro: plain PSNR and Gaussian SSIM (RGB, mean over channels), no alignment.
- synthetic: see :func:`score_synthetic_field` and the command's synthetic loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from blurfield.evaluation import align, metrics


@dataclass(frozen=True)
class Protocol:
    """Defaults of one benchmark: the data gamma and saturation handling of RL (the
    authors': 'basic' RL and gamma 1 for Köhler, 'combined' for RealBlur), how it is
    scored, and the paper's figures (PSNR, SSIM) for the README table."""

    name: str
    gamma: float | None  # None: restore.gamma (folder) or the sample's (synthetic)
    saturation: bool | None  # None: restore.saturation
    metric: str  # realblur | koehler | plain | none | synthetic
    paper: tuple[float, float] | None = None


PROTOCOLS = {
    "realblur_j": Protocol("realblur_j", 2.2, True, "realblur", (28.95, 0.865)),
    # RealBlur-R images are linear (camera raw, no tone curve): gamma 1, as for Köhler.
    "realblur_r": Protocol("realblur_r", 1.0, True, "realblur", (36.17, 0.946)),
    "koehler": Protocol("koehler", 1.0, False, "koehler", (28.39, 0.82)),
    "gopro": Protocol("gopro", 2.2, True, "plain"),
    "folder": Protocol("folder", None, None, "none"),
    "synthetic": Protocol("synthetic", None, True, "synthetic"),
}


def luminance(x: Tensor) -> Tensor:
    """(3, H, W) -> (1, H, W) with ITU-R 601 weights."""
    return align.rgb_to_gray(x)[None]


# --------------------------------------------------------------------------- RealBlur


def score_realblur(restored: Tensor, sharp: Tensor, *, iterations: int = 100,
                   eps: float = 0.0, gauss_size: int = 5, levels: int = 1,
                   device: torch.device | str | None = None) -> dict[str, float]:
    """RealBlur PSNR/SSIM of ``restored`` against ``sharp`` after ECC alignment.

    Returns psnr, ssim, ``align_scale`` (intensity factor) and ``aligned`` (1, or 0 when
    ECC diverged and the identity warp was used). ``device``: where to align (float64).
    """
    if device is not None:
        restored, sharp = restored.to(device), sharp.to(device)
    try:
        a = align.align_homography(restored, sharp, iterations=iterations, eps=eps,
                                   gauss_size=gauss_size, levels=levels)
        ok = 1.0
    except align.AlignmentError:
        x = sharp.double()
        zs, s = align.intensity_match(restored, x)
        ones = torch.ones_like(x[:1])
        a = align.Aligned(zs, x, ones, torch.eye(3, dtype=torch.float64), s)
        ok = 0.0
    return {
        "psnr": float(metrics.masked_psnr(a.target, a.image, a.mask)),
        "ssim": float(metrics.masked_ssim(a.target, a.image, a.mask)),
        "align_scale": a.scale,
        "aligned": ok,
    }


# --------------------------------------------------------------------------- Köhler


def koehler_psnr(restored: Tensor, frame: Tensor) -> tuple[float, align.Aligned]:
    """Köhler PSNR against one sharp frame (after scaling + integer registration)."""
    a = align.align_translation(restored, frame)
    y_t, y_z = luminance(a.target), luminance(a.image)
    return float(metrics.psnr(y_t, y_z)), a


def score_koehler(candidates: dict[str, Tensor], frames: Iterable[Tensor],
                  ssim_mode: str = "best", device: torch.device | str | None = None
                  ) -> dict[str, dict[str, float]]:
    """Köhler scores of each candidate image (e.g. restored, blurry) in one pass over the
    frames: the maximum PSNR over frames, and the SSIM at that frame (``best``) or the
    maximum over frames (``max``). Returns ``{name: {psnr, ssim, best_frame, frames}}``."""
    if ssim_mode not in ("best", "max"):
        raise ValueError(f"koehler_ssim: '{ssim_mode}' is not 'best' or 'max'")
    if device is not None:
        candidates = {k: v.to(device) for k, v in candidates.items()}
    best = {k: (-float("inf"), -1, None) for k in candidates}
    ssim_max = dict.fromkeys(candidates, -float("inf"))
    n = 0
    for i, frame in enumerate(frames):
        n += 1
        frame = frame.to(device) if device is not None else frame
        for k, img in candidates.items():
            p, a = koehler_psnr(img, frame)
            if ssim_mode == "max":
                ssim_max[k] = max(ssim_max[k], float(metrics.ssim(luminance(a.target),
                                                                  luminance(a.image))))
            if p > best[k][0]:
                best[k] = (p, i, a)
    if n == 0:
        raise ValueError("score_koehler: no sharp frames")
    out = {}
    for k, (p, i, a) in best.items():
        s = ssim_max[k] if ssim_mode == "max" else float(
            metrics.ssim(luminance(a.target), luminance(a.image)))
        out[k] = {"psnr": p, "ssim": s, "best_frame": float(i), "frames": float(n)}
    return out


# --------------------------------------------------------------------------- plain


def score_plain(restored: Tensor, sharp: Tensor) -> dict[str, float]:
    """Plain PSNR and Gaussian SSIM (mean over channels), no alignment."""
    if restored.shape != sharp.shape:
        raise ValueError(f"restored {tuple(restored.shape)} and sharp {tuple(sharp.shape)} "
                         "differ in size")
    return {"psnr": float(metrics.psnr(sharp, restored)),
            "ssim": float(metrics.ssim(sharp, restored))}


def prefix(scores: dict[str, float], name: str, keys: tuple[str, ...] = ("psnr", "ssim")
           ) -> dict[str, float]:
    """``{"psnr": v}`` -> ``{"<name>_psnr": v}`` for the listed keys."""
    return {f"{name}_{k}": v for k, v in scores.items() if k in keys}


# --------------------------------------------------------------------------- synthetic


def synthetic_reference(sharp_linear_window: Tensor, gamma: float) -> Tensor:
    """The display image a perfect restoration would give: ``to_display(min(u, 1))``.

    The blurry sample is made from ``u = to_linear(sharp) * brightness`` and saturates at 1,
    so that (not the stored sharp.png) is what restoring the blurry image can reach.
    """
    from blurfield.physics import to_display

    return to_display(sharp_linear_window.clamp(0, 1), gamma)
