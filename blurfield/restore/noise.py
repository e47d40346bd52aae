"""The photo's noise, and when Richardson–Lucy has reached it or amplifies it: the measures
behind the no-harm rule's steps 2 and 5 (:mod:`blurfield.restore.noharm`).

- :func:`noise_sigma`: σ of a linear photo, read on its flattest squares (Haar diagonal
  detail), at least the rounding noise of its display values;
- :func:`amplification_stop`: a test of RL's iterates, true once their spread in the
  photo's flattest squares passes a factor times the photo's own (step 5, off by default);
- :func:`rl_stops`: both as RL's keyword arguments (``stop_error``, ``reject``);
- :func:`smooth`: the same filter at a given level, for JPEG photos (``restore.jpeg_smooth``);
- :func:`prefilter`: the one of the two a photo gets before the estimate and RL;
- :func:`denoise`: a noisy photo denoised before anything else (``restore.denoise_above``):
  its noise level above a threshold and its finest detail white (:func:`whiteness`), then
  kornia's bilateral filter on its linear values, the range scaled to the noise. The rule's
  probes compare reblur errors that the noise floor pulls together, and RL amplifies noise;
  with the photo denoised first the noisy held-out shake photos went from -0.65 / -1.22 dB
  to +0.13 / -0.05 dB (2 / 4-5 grey levels; README, "Noisy photos: denoised first"). The
  threshold is 0.001: Poisson-Gaussian noise is weakest in dark squares, often a photo's
  flattest, where its Gaussian part alone (0.002 at 2 grey levels) reads about 20% low.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from kornia.filters import bilateral_blur
from torch import Tensor

from blurfield.physics import to_display, to_linear

MAD_TO_SIGMA = 0.6745  # median |N(0, 1)|
SPREAD_FLOOR = 1 / 255  # display values: the least spread of the flattest squares step 5 takes
WHITE = 0.45  # whiteness above which a photo's finest detail counts as noise (denoise)
BILATERAL_SIZE, BILATERAL_SPACE, BILATERAL_COLOUR = 5, 1.0, 6.0  # px, px, x the noise level
# pixels per strip of the bilateral filter (it unfolds BILATERAL_SIZE² taps of each): the
# strips' rows are this over the photo's width, so memory does not grow with the width
STRIP_PIXELS = 256 * 1024


def noise_sigma(linear: Tensor, gamma: float = 2.2, bits: int = 8, block: int = 16,
                quantile: float = 0.1) -> float:
    """σ of (N, C, H, W) linear light (the no-harm rule's step 2,
    :mod:`blurfield.restore.noharm`): the Haar diagonal detail
    ``d = (x00 - x10 - x01 + x11) / 2`` of 2 x 2 cells, ``median |d| / 0.6745`` in each
    ``block`` x ``block`` px square and channel, the ``quantile`` of those over the squares
    (the whole photo's median when it is smaller than one square), at least the rounding
    noise of ``bits``-bit display values in linear light. On white noise the 10th percentile
    of 64-sample medians reads about 20% low; on a textured photo it reads the flattest
    squares instead of the texture."""
    h, w = linear.shape[-2] // 2 * 2, linear.shape[-1] // 2 * 2
    x = linear[..., :h, :w].float()
    d = ((x[..., 0::2, 0::2] - x[..., 1::2, 0::2] - x[..., 0::2, 1::2]
          + x[..., 1::2, 1::2]) / 2).abs().flatten(0, 1)  # (N C, h/2, w/2)
    b = block // 2
    rows, cols = d.shape[-2] // b, d.shape[-1] // b
    if d.numel() == 0:
        mad = 0.0
    elif rows and cols:
        cells = d[:, : rows * b, : cols * b].reshape(d.shape[0], rows, b, cols, b)
        med = cells.transpose(2, 3).flatten(-2).median(-1).values.flatten()
        mad = float(torch.quantile(med, quantile)) / MAD_TO_SIGMA
    else:
        mad = float(d.flatten().median()) / MAD_TO_SIGMA
    if gamma != 1:  # the display slope gamma y^(gamma - 1), y = x^(1/gamma), on one copy
        slope = linear.float().clamp(0, 1).pow_(1.0 / gamma).pow_(gamma - 1.0).mul_(gamma)
        floor = float(slope.square_().mean()) / (12.0 * (2**bits - 1) ** 2)
    else:
        floor = 1.0 / (12.0 * (2**bits - 1) ** 2)
    return math.sqrt(max(mad * mad, floor))


def amplification_stop(v: Tensor, spread: float, gamma: float = 2.2, block: int = 16,
                       share: float = 0.1) -> Callable[[Tensor], bool]:
    """The no-harm rule's step 5 (:mod:`blurfield.restore.noharm`) as a test for RL's
    ``reject``: a function of an iterate ``x`` (N, C, H', W') of linear (N, C, H, W) ``v``
    (for ``H' > H``, RL's ``padding="valid"``, its centre H x W is read) that is true when the
    median standard deviation of ``x``'s display values (``gamma``, clipped to [0, 1]) over
    the ``share`` of ``block`` x ``block`` squares (and channels) where ``v``'s is smallest
    exceeds ``spread`` times ``v``'s there, taken as at least ``SPREAD_FLOOR``."""
    h, w = v.shape[-2] // block * block, v.shape[-1] // block * block

    def square_std(x: Tensor) -> Tensor:
        top, left = (x.shape[-2] - v.shape[-2]) // 2, (x.shape[-1] - v.shape[-1]) // 2
        x = x[..., top : top + h, left : left + w].float().clamp(0, 1).flatten(0, 1)
        cells = to_display(x, gamma).reshape(x.shape[0], h // block, block, w // block, block)
        return cells.transpose(2, 3).flatten(-2).std(-1).flatten()

    if h == 0 or w == 0:
        return lambda x: False
    own = square_std(v)
    flat = own.argsort()[: max(1, int(share * own.numel()))]
    limit = spread * max(float(own[flat].median()), SPREAD_FLOOR)
    return lambda x: float(square_std(x)[flat].median()) > limit


def rl_stops(v: Tensor, noise_factor: float, spread: float, gamma: float = 2.2,
             sigma: float | None = None) -> dict[str, Any]:
    """RL's stops under the rule for linear ``v``, as its keyword arguments: ``stop_error``
    ``noise_factor · σ²`` (step 2; ``sigma``: σ when known, else :func:`noise_sigma` of
    ``v``) and, with ``spread > 0``, ``reject`` (step 5, :func:`amplification_stop`)."""
    sigma = noise_sigma(v, gamma) if sigma is None else sigma
    stops: dict[str, Any] = {"stop_error": noise_factor * sigma**2}
    if spread > 0:
        stops["reject"] = amplification_stop(v, spread, gamma)
    return stops


def whiteness(linear: Tensor, gamma: float = 2.2, level: float | None = None) -> float:
    """How white the finest detail of (N, C, H, W) linear ``linear`` is: its detail level
    (:func:`noise_sigma` without the rounding floor) over twice that of the photo 2 x 2
    averaged. White noise gives 1 (averaging halves it); texture and blur, whose detail
    grows with scale, less (0.2-0.44 on the noise-free tuning photos whose flattest squares
    read above 0.002). ``level``: the photo's detail level when it has been read already."""
    level = noise_sigma(linear, gamma, bits=16) if level is None else level
    coarse = noise_sigma(F.avg_pool2d(linear.float(), 2), gamma, bits=16)
    return level / max(2 * coarse, 1e-12)


def denoise(display: Tensor, above: float | None, gamma: float = 2.2,
            strip: int | None = None) -> tuple[Tensor, float | None]:
    """(1, C, H, W) display ``display`` denoised when it is noisy, else itself.

    Noisy: its linear noise level σ (:func:`noise_sigma` as measured, without the rounding
    floor, which alone reads 0.002 on a bright 8-bit photo) above ``above`` (None: never)
    and :func:`whiteness` above ``WHITE``. Its linear values are then filtered by kornia's
    bilateral filter (``BILATERAL_SIZE``² taps, spatial σ ``BILATERAL_SPACE`` px, range σ
    ``BILATERAL_COLOUR · σ``; kornia's colour distance sums the channels' absolute
    differences, about 3.4 σ between two noisy samples of one grey), ``strip`` rows at a
    time (None: ``STRIP_PIXELS`` pixels' worth; the filter unfolds every tap: a 12 MP photo
    at once would take 3.6 GB), clipped
    to [0, 1] and brought back to display values. Returns the photo and σ when it was
    denoised, else None."""
    if above is None:
        return display, None
    linear = to_linear(display.float(), gamma)
    sigma = noise_sigma(linear, gamma, bits=16)
    if sigma <= above or whiteness(linear, gamma, sigma) <= WHITE:
        return display, None
    return _bilateral(linear, sigma, gamma, strip).to(display.dtype), sigma


def smooth(display: Tensor, sigma: float, gamma: float = 2.2, strip: int | None = None
           ) -> Tensor:
    """(1, C, H, W) display ``display`` through :func:`denoise`'s filter at noise level
    ``sigma`` (linear light), whatever its own noise: what ``deblur`` does to a JPEG photo
    the noise test leaves as it is (``restore.jpeg_smooth``), whose blocks and ringing RL
    would sharpen as detail."""
    return _bilateral(to_linear(display.float(), gamma), sigma, gamma, strip).to(display.dtype)


def prefilter(display: Tensor, above: float | None, jpeg: float | None = None,
              gamma: float = 2.2, strip: int | None = None
              ) -> tuple[Tensor, float | None, bool]:
    """(1, C, H, W) display ``display`` as the estimate and RL take it: denoised
    (:func:`denoise`) when it is noisy (``above``), else smoothed (:func:`smooth`) at
    ``jpeg`` (a JPEG photo's level, ``restore.jpeg_smooth``; None: not a JPEG, or never),
    else itself. Returns the photo, σ when it was denoised (else None) and whether it was
    smoothed."""
    out, sigma = denoise(display, above, gamma, strip)
    if sigma is None and jpeg is not None:
        return smooth(display, jpeg, gamma, strip), None, True
    return out, sigma, False


def _bilateral(linear: Tensor, sigma: float, gamma: float, strip: int | None) -> Tensor:
    """kornia's bilateral filter of linear values, range ``BILATERAL_COLOUR · sigma``,
    ``strip`` rows at a time (None: ``STRIP_PIXELS`` over the width, at least 16), clipped
    to [0, 1], as display values."""
    halo, h = BILATERAL_SIZE // 2, linear.shape[-2]
    if strip is None:
        strip = max(16, STRIP_PIXELS // linear.shape[-1])
    out = torch.empty_like(linear)
    for top in range(0, h, strip):
        lo, hi = max(top - halo, 0), min(top + strip + halo, h)
        part = bilateral_blur(linear[..., lo:hi, :], BILATERAL_SIZE, BILATERAL_COLOUR * sigma,
                              (BILATERAL_SPACE, BILATERAL_SPACE))
        part = part[..., top - lo : top - lo + min(strip, h - top), :]
        out[..., top : top + strip, :] = to_display(part.clamp(0, 1), gamma)
    return out
