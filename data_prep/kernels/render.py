"""Shared pieces of the kernel generators: orientation, per-kernel seeds, ragged paths, splatting.

Orientation (docs/design.md §1). A camera-shake *PSF* is the image of the motion path: the light of
one scene point lands on the pixels the path visits. blurfield computes blur as a
*correlation* ``v(i) = sum_j k(j) u(i + j - c)``, so the correlation kernel is the PSF rotated
by 180 degrees: ``k[y, x] = psf[K-1-y, K-1-x]``. The generators (``tremor.psfs``,
``boracchi.psfs``) return PSFs; ``bank.generate`` and everything stored in a bank are
correlation kernels; :func:`psf_to_correlation` is applied exactly once, in ``bank.generate``.

Ragged paths. A batch of ``n`` motion paths of different lengths is stored flat: sample
coordinates ``x, y`` of shape ``(S,)`` and offsets ``start`` of shape ``(n + 1,)``, path ``i``
being ``x[start[i]:start[i+1]]``. Every sample carries the same share of the exposure time,
so a path's PSF is the normalised histogram of its samples. Each operation here acts on one
path at a time (bincount / reduceat over disjoint segments), so kernel ``i`` comes out
bit-identical whatever else is in its batch. Keep it so: per-kernel maths uses elementwise
real ufuncs and FFTs along rows (checked: independent of the batch); numpy's in-place complex
multiply is not (its result for an element depends on the array's length).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def psf_to_correlation(k: np.ndarray) -> np.ndarray:
    """The correlation kernel of a PSF: a 180-degree flip of the last two dims. ``(..., K, K)``."""
    return np.ascontiguousarray(k[..., ::-1, ::-1])


def correlation_to_psf(k: np.ndarray) -> np.ndarray:
    """The PSF (what papers draw) of a correlation kernel: the same flip. ``(..., K, K)``."""
    return np.ascontiguousarray(k[..., ::-1, ::-1])


def kernel_rngs(seed: int, stream: int, indices: np.ndarray) -> list[np.random.Generator]:
    """One generator per kernel, from ``SeedSequence([seed, stream, index])``.

    ``stream`` names the generator (1 tremor, 2 Boracchi) so two generators with the same
    seed draw independent banks. Redraws of a rejected kernel continue its own stream.
    """
    return [
        np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), stream, int(i)])))
        for i in indices
    ]


def draw_uniform(rngs: list[np.random.Generator], count: int) -> np.ndarray:
    """``(len(rngs), count)`` U[0, 1) numbers, row ``i`` from ``rngs[i]``."""
    out = np.empty((len(rngs), count))
    for row, r in zip(out, rngs):
        r.random(out=row)
    return out


def log_uniform(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map U[0, 1) to log-uniform on [lo, hi] (``lo == hi`` gives the constant)."""
    if lo == hi:
        return np.full(np.shape(u), float(lo))
    return np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))


def uniform(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map U[0, 1) to U[lo, hi]."""
    return lo + u * (hi - lo)


@dataclass
class Paths:
    """``n`` ragged motion paths in pixels: ``x, y`` (S,), ``start`` (n + 1,) int64."""

    x: np.ndarray
    y: np.ndarray
    start: np.ndarray

    @property
    def n(self) -> int:
        return len(self.start) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.start)

    def kid(self) -> np.ndarray:
        """The path index of every sample, ``(S,)``."""
        return np.repeat(np.arange(self.n), self.counts)

    def take(self, sel: np.ndarray) -> Paths:
        """The paths ``sel`` (a boolean mask or indices), in that order."""
        idx = np.arange(self.n)[sel]
        cnt = self.counts[idx]
        start = np.concatenate([[0], np.cumsum(cnt)]).astype(np.int64)
        flat = np.repeat(self.start[idx] - start[:-1], cnt) + np.arange(start[-1])
        return Paths(self.x[flat], self.y[flat], start)


def concat_paths(parts: list[Paths]) -> Paths:
    """Paths of several batches, one after the other."""
    starts, off = [], 0
    for p in parts:
        starts.append(p.start[:-1] + off)
        off += p.start[-1]
    start = np.concatenate(starts + [np.array([off])]).astype(np.int64)
    return Paths(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), start)


def ragged_times(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Midpoint sample times of ``n`` segments with ``counts[i]`` samples each.

    Returns ``start`` (n + 1,), ``kid`` (S,) and ``s`` (S,) = ``(j + 0.5) / counts[i]`` in (0, 1)
    for the j-th sample of segment i (the midpoint rule: every sample stands for an equal time).
    """
    counts = np.asarray(counts, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    kid = np.repeat(np.arange(len(counts)), counts)
    j = np.arange(start[-1]) - start[kid]
    return start, kid, (j + 0.5) / counts[kid]


def path_lengths(p: Paths) -> np.ndarray:
    """Polyline length of each path in px, ``(n,)``."""
    d = np.hypot(np.diff(p.x), np.diff(p.y))
    d[p.start[1:-1] - 1] = 0.0  # the jumps between consecutive paths
    seg = np.zeros(len(p.x))
    seg[1:] = d
    return np.bincount(p.kid(), weights=seg, minlength=p.n)


def max_steps(p: Paths) -> np.ndarray:
    """The largest distance between consecutive samples of each path, ``(n,)`` px."""
    d = np.hypot(np.diff(p.x), np.diff(p.y))
    d[p.start[1:-1] - 1] = 0.0
    seg = np.zeros(len(p.x))
    seg[1:] = d
    return np.maximum.reduceat(seg, p.start[:-1])


def centre(p: Paths) -> Paths:
    """Each path moved so that the mean of its samples (the PSF's centroid) is at 0."""
    kid, cnt = p.kid(), p.counts
    mx = np.bincount(kid, weights=p.x, minlength=p.n) / cnt
    my = np.bincount(kid, weights=p.y, minlength=p.n) / cnt
    return Paths(p.x - mx[kid], p.y - my[kid], p.start)


def fit_scale(p: Paths, kernel_size: int, margin: int) -> np.ndarray:
    """For centred paths: the largest factor <= 1 that puts every sample inside the support.

    Samples are placed at ``c + (x, y)`` with ``c = kernel_size // 2``; bilinear splatting of a
    sample at ``x`` touches pixels ``floor(x)`` and ``floor(x) + 1``, so a sample fits when
    ``margin <= c + x <= kernel_size - 1 - margin`` (the ``margin`` outer rings stay empty).
    ``(n,)``; 1 where the path fits as it is.
    """
    c = kernel_size // 2
    lo, hi = c - margin, kernel_size - 1 - margin - c  # room on each side of the centre
    if lo <= 0 or hi <= 0:
        raise ValueError(f"margin={margin} leaves no room in a {kernel_size} px kernel")
    s = np.ones(p.n)
    for v in (p.x, p.y):
        vmin = np.minimum.reduceat(v, p.start[:-1])
        vmax = np.maximum.reduceat(v, p.start[:-1])
        with np.errstate(divide="ignore"):
            s = np.minimum(s, np.where(vmin < -lo, lo / -vmin, 1.0))
            s = np.minimum(s, np.where(vmax > hi, hi / vmax, 1.0))
    return np.where(s < 1.0, s * (1 - 1e-9), 1.0)  # rounding must not push a sample out


def scale_paths(p: Paths, s: np.ndarray) -> Paths:
    """Centred paths shrunk by ``s`` (n,) about their centroids (which stay at 0)."""
    kid = p.kid()
    return Paths(p.x * s[kid], p.y * s[kid], p.start)


def splat(p: Paths, kernel_size: int) -> np.ndarray:
    """PSFs of centred, fitting paths by bilinear splatting: ``(n, K, K)`` float64, each sum 1.

    Sample ``(x, y)`` lands at ``(c + x, c + y)``, split over its four neighbouring pixels
    with bilinear weights, which keeps the mass-weighted centroid exactly at the sample
    (nearest-pixel binning would shift it by up to half a pixel). Row ``y``, column ``x``:
    a path moving right puts mass right of the centre column. The histogram is normalised
    in float64; negatives (none by construction) are clipped.
    """
    K, c, n = kernel_size, kernel_size // 2, p.n
    X, Y = p.x + c, p.y + c
    x0, y0 = np.floor(X), np.floor(Y)
    fx, fy = X - x0, Y - y0
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    if len(X) and (min(X.min(), Y.min()) < 0 or max(X.max(), Y.max()) > K - 1):
        raise ValueError("splat: a path leaves the kernel support (fit it first)")
    x1, y1 = np.minimum(x0 + 1, K - 1), np.minimum(y0 + 1, K - 1)  # weight 0 where clipped
    base = p.kid() * (K * K)
    idx = np.concatenate([base + y0 * K + x0, base + y0 * K + x1,
                          base + y1 * K + x0, base + y1 * K + x1])
    w = np.concatenate([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    psf = np.bincount(idx, weights=w, minlength=n * K * K).reshape(n, K, K)
    psf = np.clip(psf, 0.0, None)
    return psf / psf.sum(axis=(1, 2), keepdims=True)


def to_float32(psf: np.ndarray) -> np.ndarray:
    """Cast float64 kernels summing to 1 to float32 (sums stay within ~1e-6 of 1)."""
    return psf.astype(np.float32)


def extents(k: np.ndarray, rel: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (width, height) in px of the pixels above ``rel`` x the max. ``(n,)`` each."""
    on = k > rel * k.max(axis=(1, 2), keepdims=True)
    cols, rows = on.any(axis=1), on.any(axis=2)  # (n, K) each
    K = k.shape[-1]
    ar = np.arange(K)

    def span(m: np.ndarray) -> np.ndarray:
        first = np.where(m, ar, K).min(axis=1)
        last = np.where(m, ar, -1).max(axis=1)
        return np.maximum(last - first + 1, 0)

    return span(cols), span(rows)


def draw_fitted(
    attempt, rngs: list[np.random.Generator], kernel_size: int, margin: int, fit: str,
    max_tries: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw one fitting path per generator, render it: the PSFs and their parameters.

    ``attempt(rngs) -> (Paths, params)`` draws one path (uncentred, px) and its parameters
    (dict of ``(m,)`` arrays) per generator. Paths are centred on their centroid and tested
    against the support (:func:`fit_scale`). ``fit="reject"``: a path that does not fit is
    redrawn from its own generator, up to ``max_tries`` draws, and the last draw is shrunk;
    ``fit="shrink"``: it is shrunk about its centroid at once. Either way the record says so:
    ``attempts`` (draws used, 1 = the first fitted) and ``scale`` (1 = not shrunk).

    Returns PSFs ``(n, K, K)`` float32 (image of the path, each summing to 1, centroid at
    pixel ``(K//2, K//2)``) and params: the attempt's own plus ``attempts``, ``scale``,
    ``path_length`` and ``max_step`` (px, after shrinking), ``n_samples``, ``bbox_w``,
    ``bbox_h``, ``extent`` = max(bbox_w, bbox_h) (px, pixels above 1% of the max).
    """
    if fit not in ("reject", "shrink"):
        raise ValueError(f"fit must be 'reject' or 'shrink', got {fit!r}")
    n = len(rngs)
    pending = np.arange(n)
    parts: list[Paths] = []
    ids: list[np.ndarray] = []
    params: dict[str, np.ndarray] = {}
    attempts = np.zeros(n, np.int64)
    scale = np.ones(n)
    for t in range(max(1, max_tries)):
        paths, prm = attempt([rngs[i] for i in pending])
        paths = centre(paths)
        s = fit_scale(paths, kernel_size, margin)
        last = fit == "shrink" or t == max(1, max_tries) - 1
        acc = (s >= 1.0) | last
        got = pending[acc]
        parts.append(scale_paths(paths.take(acc), s[acc]))
        ids.append(got)
        attempts[got] = t + 1
        scale[got] = s[acc]
        for k, v in prm.items():
            params.setdefault(k, np.zeros(n, np.asarray(v).dtype))[got] = np.asarray(v)[acc]
        pending = pending[~acc]
        if len(pending) == 0:
            break
    order = np.argsort(np.concatenate(ids), kind="stable")
    paths = concat_paths(parts).take(order)
    psf = splat(paths, kernel_size)
    bw, bh = extents(psf)
    params.update(attempts=attempts, scale=scale, path_length=path_lengths(paths),
                  max_step=max_steps(paths), n_samples=paths.counts, bbox_w=bw, bbox_h=bh,
                  extent=np.maximum(bw, bh))
    return to_float32(psf), params
