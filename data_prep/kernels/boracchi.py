"""Random camera-shake trajectories after Boracchi & Foi (2012), without their flaws.

A particle starts at 0 with speed ``s = L / (n_steps - 1)`` in a random direction; at each
step (complex positions ``x``, velocity ``v``)::

    dv = r_t * 2 v e^{i (pi + a_t - 1/2)}                  abrupt reversal, r_t ~ Bernoulli(b A)
       + A (g (n_t + i n'_t) - c x) s                     Gaussian kick and centripetal pull
    v <- s (v + dv) / |v + dv|                            constant speed
    x <- x + v

with anxiety ``A``, kick scale ``g``, pull ``c``, reversal rate ``b`` drawn per kernel, ``n_t,
n'_t ~ N(0, 1)``, ``a_t ~ U[0, 1)``. The total length ``L`` is fixed per kernel; an exposure
fraction ``e`` keeps the first ``round(e n_steps)`` samples (at least 2).

Unlike the common implementations: the partial path is centred on its own centroid,
a path that leaves the ``K x K`` support is redrawn or shrunk (never clamped onto the
border), and every PSF, partial or not, sums to 1 (:func:`render.draw_fitted`). The step
``s`` is far below a pixel (0.015 px for 30 px), so ``C = ceil(M s samples_per_px)`` of the
``M`` exposed samples, evenly spread in time, are rendered (``<= 1 / samples_per_px`` px
apart) instead of all of them.

:func:`psfs` returns PSFs (the image of the path); ``bank.generate`` flips them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .render import Paths, draw_fitted, draw_uniform, kernel_rngs, ragged_times, uniform

STREAM = 2  # SeedSequence([seed, STREAM, index])
N_PARAMS = 7

PARAM_UNITS = {
    "length": "px", "exposure": "1", "anxiety": "1", "centripetal": "1", "gaussian": "1",
    "big_shake": "1", "direction": "deg", "reversals": "1",
}


def attempt(bc: Any, rngs: list[np.random.Generator]) -> tuple[Paths, dict]:
    """One trajectory per generator: its exposed part in px (uncentred) and its parameters."""
    m, ns = len(rngs), int(bc.n_steps)
    if ns < 2:
        raise ValueError(f"boracchi.n_steps must be >= 2, got {ns}")
    u = draw_uniform(rngs, N_PARAMS)
    us = np.empty((m, 2 * (ns - 1)), np.float32)  # per-step draws in float32: twice as fast
    g = np.empty((m, 2 * (ns - 1)), np.float32)
    for a, b, r in zip(us, g, rngs):
        r.random(out=a, dtype=np.float32)
        r.standard_normal(out=b, dtype=np.float32)
    p = {
        "length": uniform(u[:, 0], bc.length_min, bc.length_max),
        "exposure": uniform(u[:, 1], bc.exposure_min, bc.exposure_max),
        "anxiety": uniform(u[:, 2], bc.anxiety_min, bc.anxiety_max),
        "centripetal": bc.centripetal_max * u[:, 3],
        "gaussian": bc.gaussian_max * u[:, 4],
        "big_shake": bc.big_shake_max * u[:, 5],
        "direction": 360.0 * u[:, 6],
    }
    step = p["length"] / (ns - 1)
    # real arithmetic only (+ - * / sqrt are exactly rounded, so kernel i is bit-identical in
    # any batch; numpy's in-place complex multiply is not)
    rev = us[:, ns - 1:].T < (p["big_shake"] * p["anxiety"])  # (ns - 1, m)
    psi = np.pi + us[:, : ns - 1].T[rev].astype(np.float64) - 0.5  # reversal: dv = 2 v e^{i psi}
    c2, s2 = np.zeros((ns - 1, m)), np.zeros((ns - 1, m))
    c2[rev], s2[rev] = 2.0 * np.cos(psi), 2.0 * np.sin(psi)
    a = p["anxiety"] * p["gaussian"] * step
    kx, ky = a * g[:, : ns - 1].T, a * g[:, ns - 1:].T  # (ns - 1, m) Gaussian kicks
    pull = -p["anxiety"] * p["centripetal"] * step
    tx, ty = np.zeros((ns, m)), np.zeros((ns, m))
    d = np.deg2rad(p["direction"])
    vx, vy = step * np.cos(d), step * np.sin(d)
    x, y, t1, t2 = tx[0], ty[0], np.empty(m), np.empty(m)
    turns = set(np.flatnonzero(rev.any(1)).tolist())
    for t in range(ns - 1):
        if t in turns:
            r = np.flatnonzero(rev[t])
            ux, uy = vx[r], vy[r]
            vx[r] = ux + (ux * c2[t, r] - uy * s2[t, r])
            vy[r] = uy + (ux * s2[t, r] + uy * c2[t, r])
        vx += kx[t]
        vx += np.multiply(pull, x, out=t1)
        vy += ky[t]
        vy += np.multiply(pull, y, out=t1)
        np.multiply(vx, vx, out=t1)
        t1 += np.multiply(vy, vy, out=t2)
        np.sqrt(t1, out=t1)
        np.divide(step, t1, out=t1)
        vx *= t1
        vy *= t1
        x = np.add(x, vx, out=tx[t + 1])
        y = np.add(y, vy, out=ty[t + 1])
    p["reversals"] = rev.sum(0).astype(np.float64)  # over the whole trajectory
    # the exposed samples 0 .. M-1; every sample is an equal time, but ~0.015 px apart, so
    # render C <= M of them (midpoints of C equal slices), <= 1 / samples_per_px px apart
    M = np.clip(np.round(p["exposure"] * ns), 2, ns).astype(np.int64)
    C = np.clip(np.ceil(M * step * bc.samples_per_px), 2, M).astype(np.int64)
    start, kid, frac = ragged_times(C)
    j = np.floor(frac * M[kid]).astype(np.int64)
    return Paths(tx[j, kid], ty[j, kid], start), p


def psfs(cfg: Any, seed: int, indices: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """PSFs (image of the path) ``(n, K, K)`` float32 and per-kernel params, kernel ``i``
    a function of ``(seed, indices[i])`` and the config only. ``cfg``: the ``kernels`` section."""
    rngs = kernel_rngs(seed, STREAM, np.asarray(indices))
    return draw_fitted(lambda r: attempt(cfg.boracchi, r), rngs, cfg.kernel_size, cfg.margin,
                       cfg.fit, cfg.max_tries)
