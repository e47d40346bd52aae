"""docs/demo/spectrum.png: the no-harm rule's spectral test (README: The spectral test) on
two tuning photos of `data_prep handmade`: `cell` under a camera shake of under a pixel,
on which the shipped model reads a blur with a direction, and `coins` under one straight
motion. Per row: the blurry photo | its power spectrum less the noise and the field's |K|²
(centre square, log, each ring of the test less its mean: what the slope compares; zero
frequency in the middle, grey outside the rings) | RL with the test off | `deblur` as it
is; PSNR against the sharp photo. Run from the repository root:

    python docs/demo/spectrum.py
"""

import numpy as np
import torch
from common import psnr

from blurfield.api import deblur, estimate, load_estimator
from blurfield.physics import to_linear
from blurfield.restore.noharm import rescaled
from blurfield.restore.scale import upscale_mixing
from blurfield.restore.spectrum import field_power, periodogram, rings
from blurfield.viz import save_png, side_by_side
from data_prep.handmade import make

OUT = "docs/demo/spectrum.png"
SAMPLES = (("cell", dict(shake=True), 1235), ("coins", dict(one_motion=True), 1234))
SIDE = 256  # the centre square the spectra are taken on


def in_rings(power: torch.Tensor, floor: float) -> np.ndarray:
    """(h, w) power -> (h, w) display in [0, 1]: log10 less its mean over each ring of the
    test (what the slope compares: the change with direction at one radius), ±1.5 decades
    to black / white, frequencies outside the rings grey; zero frequency in the middle."""
    logp = power.clamp(min=floor).log10()
    ring = rings(*power.shape)
    out = torch.zeros_like(logp)
    for i in range(int(ring.max()) + 1):
        at = ring == i
        out[at] = logp[at] - logp[at].mean()
    out = torch.where(ring >= 0, out.clamp(-1.5, 1.5) / 3 + 0.5, torch.full_like(out, 0.5))
    return torch.fft.fftshift(out).numpy()


model = load_estimator()
rows = []
for name, kind, seed in SAMPLES:
    s = make(name, 7 if name == "cell" else 0, 384, 33, seed, **kind)
    blurry, sharp = s.blurry / 255.0, s.sharp / 255.0
    field = estimate(blurry, model)
    restored, result = deblur(blurry, field, return_result=True)
    off, off_result = deblur(blurry, field, return_result=True, no_harm_slope=None)
    d = result.decision
    h, w = blurry.shape[:2]
    y0, x0 = (h - SIDE) // 2, (w - SIDE) // 2
    box = (y0, y0 + SIDE, x0, x0 + SIDE)
    v = to_linear(torch.from_numpy(blurry).float().permute(2, 0, 1)[None])[..., y0:y0 + SIDE,
                                                                          x0:x0 + SIDE]
    kernels = rescaled(field.kernels[None].float(), d.kernel_scale * field.scale)
    mixing = upscale_mixing(field.mixing[None].float(), (h, w), box)
    sigma = d.noise_sigma
    photo_power = in_rings(periodogram(v)[0] - sigma**2, 0.1 * sigma**2 + 1e-30)
    kernel_power = in_rings(field_power(kernels, mixing)[0], 1e-3)
    titles = [f"{name}: blurry, {psnr(blurry, sharp):.1f} dB", "the photo's power (in rings)",
              f"the field's |K|^2 (in rings; slope {d.slope:.2f})",
              f"test off: {off_result.decision.decision}, {psnr(off, sharp):.1f} dB",
              f"deblur: {d.decision}, {psnr(restored, sharp):.1f} dB"]
    rows.append(side_by_side([blurry, photo_power[..., None], kernel_power[..., None], off,
                              restored], titles, height=256))
width = max(r.shape[1] for r in rows)
rows = [np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0))) for r in rows]
save_png(OUT, np.concatenate(rows, 0))
