"""Physiological hand-tremor camera shake (docs/kernels.md; after Gavant et al. 2011).

For yaw and pitch separately the camera angle is ``theta(t) = drift(t) + tremor(t)``, two
stationary processes made by spectral synthesis over a window of ``W`` seconds sampled at
``rate`` Hz (``N = W * rate`` samples, periodic)::

    theta(t_n) = sum_k a_k cos(2 pi f_k t_n + phi_k),   f_k = k / W,  phi_k ~ U[0, 2 pi)

with amplitudes from a second-order resonance spectrum
``S(f) = 1 / ((f_c^2 - f^2)^2 + (f f_c / Q)^2)``, ``a_k ∝ sqrt(S(f_k))``. The drift is scaled so
its angular velocity has RMS ``v`` over the window (``sum (2 pi f_k a_k)^2 / 2 = v^2``), the
tremor so its angle has RMS ``r`` (``sum a_k^2 / 2 = r^2``); the drift's minor axis (pitch) is
``aniso`` times the major (yaw). The window is much longer than the exposure (else the
slow drift vanishes); an exposure ``[t0, t0 + T]`` is cut out of it, the angles are made
relative to the start, projected ``x = f tan(theta_yaw)``, ``y = f tan(theta_pitch)`` and turned
by a random in-plane angle. The path is resampled by Catmull-Rom interpolation with
uniform time steps, at least ``samples_per_px`` samples per px at its fastest, and
rendered by :func:`render.draw_fitted` (centred, fitted, bilinear splatting).

:func:`psfs` returns PSFs (the image of the path); ``bank.generate`` flips them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .render import (
    Paths,
    draw_fitted,
    draw_uniform,
    kernel_rngs,
    log_uniform,
    ragged_times,
    uniform,
)

STREAM = 1  # SeedSequence([seed, STREAM, index])
N_PARAMS = 11

PARAM_UNITS = {  # the per-kernel parameters this generator records
    "exposure": "s", "t0": "s", "focal": "px", "rotation": "deg",
    "drift_fc": "Hz", "drift_q": "1", "drift_vrms": "deg/s", "drift_aniso": "1",
    "tremor_f": "Hz", "tremor_q": "1", "tremor_rms": "deg",
}


def resonance(f: np.ndarray, fc: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Amplitude spectrum ``sqrt(S(f))`` of a second-order resonance, ``(m, F)`` for
    frequencies ``f`` (F,) and per-kernel centre ``fc`` and quality ``q`` (m,)."""
    fc, q = fc[:, None], q[:, None]
    return 1.0 / np.sqrt((fc**2 - f**2) ** 2 + (f * fc / q) ** 2)


def synthesise_angles(tc: Any, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Yaw and pitch over the whole window, radians, ``(m, N)`` each, and the parameters.

    ``u`` (m, N_PARAMS + 4 (N/2 - 1)) are the kernel's U[0, 1) draws: parameters, then phases.
    """
    n = int(round(tc.window * tc.rate))
    nb = n // 2 - 1  # bins 1 .. N/2 - 1: no DC (the angle offset), no Nyquist
    f = np.arange(1, nb + 1) / tc.window
    p = {
        "exposure": uniform(u[:, 0], tc.exposure_min, tc.exposure_max),
        "t0": u[:, 1] * tc.window,
        "focal": log_uniform(u[:, 2], tc.focal_min, tc.focal_max),
        "rotation": 360.0 * u[:, 3],
        "drift_fc": log_uniform(u[:, 4], tc.drift_fc_min, tc.drift_fc_max),
        "drift_q": uniform(u[:, 5], tc.drift_q_min, tc.drift_q_max),
        "drift_vrms": log_uniform(u[:, 6], tc.drift_vrms_min, tc.drift_vrms_max),
        "drift_aniso": uniform(u[:, 7], tc.drift_aniso_min, tc.drift_aniso_max),
        "tremor_f": uniform(u[:, 8], tc.tremor_f_min, tc.tremor_f_max),
        "tremor_q": uniform(u[:, 9], tc.tremor_q_min, tc.tremor_q_max),
        "tremor_rms": log_uniform(u[:, 10], tc.tremor_rms_min, tc.tremor_rms_max),
    }
    rad = np.pi / 180.0
    ad = resonance(f, p["drift_fc"], p["drift_q"])
    ad *= (p["drift_vrms"] * rad / np.sqrt(0.5 * ((2 * np.pi * f * ad) ** 2).sum(1)))[:, None]
    at = resonance(f, p["tremor_f"], p["tremor_q"])
    at *= (p["tremor_rms"] * rad / np.sqrt(0.5 * (at**2).sum(1)))[:, None]
    # a random phase needs no precision: float32 cos/sin are ~30x faster than float64 here
    phi = (2 * np.pi * u[:, N_PARAMS:].reshape(-1, 4, nb)).astype(np.float32)
    c, s = np.cos(phi), np.sin(phi)
    adp = p["drift_aniso"][:, None] * ad
    spec = np.zeros((len(u), 2, n // 2 + 1), complex)
    spec.real[:, 0, 1:nb + 1] = ad * c[:, 0] + at * c[:, 1]
    spec.imag[:, 0, 1:nb + 1] = ad * s[:, 0] + at * s[:, 1]
    spec.real[:, 1, 1:nb + 1] = adp * c[:, 2] + at * c[:, 3]
    spec.imag[:, 1, 1:nb + 1] = adp * s[:, 2] + at * s[:, 3]
    theta = np.fft.irfft(0.5 * spec, n=n, norm="forward", axis=-1)  # sum_k a_k cos(...)
    return theta[:, 0], theta[:, 1], p


def sample_path(
    x: np.ndarray, y: np.ndarray, t0: np.ndarray, T: np.ndarray, counts: np.ndarray, rate: float
) -> Paths:
    """Catmull-Rom resampling of periodic tracks ``x, y`` (m, N) sampled at ``rate`` Hz.

    Path ``i`` gets ``counts[i]`` samples at the midpoints of equal slices of
    ``[t0[i], t0[i] + T[i]]`` (times wrap around the window).
    """
    m, n = x.shape
    start, kid, s = ragged_times(counts)
    u = (t0[kid] + s * T[kid]) * rate
    i1 = np.floor(u)
    w = u - i1
    i1 = i1.astype(np.int64)
    w2, w3 = w * w, w * w * w
    cw = (0.5 * (-w3 + 2 * w2 - w), 0.5 * (3 * w3 - 5 * w2 + 2), 0.5 * (-3 * w3 + 4 * w2 + w),
          0.5 * (w3 - w2))
    base = kid * n
    xf, yf = x.ravel(), y.ravel()
    px = np.zeros(len(u))
    py = np.zeros(len(u))
    for o, c in zip((-1, 0, 1, 2), cw):
        idx = base + (i1 + o) % n
        px += c * xf[idx]
        py += c * yf[idx]
    return Paths(px, py, start)


def attempt(tc: Any, rngs: list[np.random.Generator]) -> tuple[Paths, dict]:
    """One draw per generator: the exposure's path in px (uncentred) and its parameters."""
    n = int(round(tc.window * tc.rate))
    u = draw_uniform(rngs, N_PARAMS + 4 * (n // 2 - 1))
    yaw, pitch, p = synthesise_angles(tc, u)
    T, t0 = p["exposure"], p["t0"]
    # the fastest motion over the exposure, from the synthesis samples; the spline can be a
    # little faster than its chords, hence the 1.25 (tests check the spacing <= 0.5 px)
    speed = p["focal"] * max_coarse_step(yaw, pitch, t0, T, tc.rate) * T * tc.rate  # px / T
    count = np.maximum(np.ceil(tc.samples_per_px * 1.25 * speed), tc.min_samples)
    ref = np.round(t0 * tc.rate).astype(np.int64) % n  # angles relative to the start
    rows = np.arange(len(u))
    return project(sample_path(yaw, pitch, t0, T, count.astype(np.int64), tc.rate), p,
                   yaw[rows, ref], pitch[rows, ref]), p


def max_coarse_step(
    yaw: np.ndarray, pitch: np.ndarray, t0: np.ndarray, T: np.ndarray, rate: float
) -> np.ndarray:
    """Largest angle step (rad) between synthesis samples around ``[t0, t0 + T]``, ``(m,)``."""
    m, n = yaw.shape
    counts = np.ceil(T * rate).astype(np.int64) + 3
    start, kid, _ = ragged_times(counts)
    i = (np.floor(t0 * rate).astype(np.int64)[kid] + np.arange(start[-1]) - start[kid]) % n
    flat = kid * n + i
    nxt = kid * n + (i + 1) % n
    yf, pf = yaw.ravel(), pitch.ravel()
    step = np.hypot(yf[nxt] - yf[flat], pf[nxt] - pf[flat])
    return np.maximum.reduceat(step, start[:-1])


def project(angles: Paths, p: dict, yaw0: np.ndarray, pitch0: np.ndarray) -> Paths:
    """Yaw/pitch samples (rad) to pixels, relative to the angles ``yaw0, pitch0`` (m,) at
    the start: ``f tan(theta - theta0)``, then turned by the in-plane rotation."""
    kid = angles.kid()
    a = np.deg2rad(p["rotation"])
    f, ca, sa = p["focal"][kid], np.cos(a)[kid], np.sin(a)[kid]
    x0, y0 = f * np.tan(angles.x - yaw0[kid]), f * np.tan(angles.y - pitch0[kid])
    return Paths(ca * x0 - sa * y0, sa * x0 + ca * y0, angles.start)


def psfs(cfg: Any, seed: int, indices: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """PSFs (image of the path) ``(n, K, K)`` float32 and per-kernel params, kernel ``i``
    a function of ``(seed, indices[i])`` and the config only. ``cfg``: the ``kernels`` section."""
    rngs = kernel_rngs(seed, STREAM, np.asarray(indices))
    return draw_fitted(lambda r: attempt(cfg.tremor, r), rngs, cfg.kernel_size, cfg.margin,
                       cfg.fit, cfg.max_tries)
