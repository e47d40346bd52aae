"""The blur synthesiser: paper Algorithm 1 with the docs/design.md §2 choices, and sample assembly.

For a sharp display image ``x`` (H, W, 3) uint8, layers ``L`` (H, W) (0 = background, objects
1..J-1) and correlation kernels ``k_j`` (J, K, K)::

    u   = to_linear(x / 255, gamma) * s                 linear light, s not clipped
    h_j = [L == j]                                      hard masks; h_0 = 1 - union of objects
    M_j = k_j ⋆ h_j   (/ sum_j M_j if normalize_masks)  smooth_masks(padding="same")
    v   = sum_j M_j ⊙ (k_j ⋆ u)                         blur(padding="same")
    v  <- a Poisson(v / a) + N(0, sigma^2)              optional noise (off by default)
    y   = round(255 * to_display(clip(v, 0, 1)))        the blurry photo, uint8

Both correlations mirror-pad ("same"), so any window at least K // 2 from the border equals
the "valid" computation on the sharp window K - 1 larger: what ``schema.gt_field`` and the
docs/design.md §8 invariant rely on. The physics lives in :mod:`blurfield.physics`; this module only
wires it.

Cost (bench/shards.py): ``M_j`` is exactly 0 farther than K // 2 from layer j's bounding
box, so layer j is computed on that window only, with one correlation of [u, h_j] (one
kernel spectrum for the image and the mask); objects are small, so most of the work is the
background's. ``to_linear`` of 8-bit values is a 256-entry table and the final quantisation
skips ``to_display``'s toe where it cannot change a byte. The same maths as
``smooth_masks`` + ``blur`` on the whole frame, to float rounding (a few pixels differ by 1
in 8 bits); ``SYNTH_VERSION`` in the shards' fingerprint keeps the two apart.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from blurfield.data.schema import Sample, hard_masks, make_meta
from blurfield.physics import correlate, pad, to_display, to_linear
from blurfield.physics.camera import TOE
from blurfield.physics.fields import normalize_masks as simplex_masks  # (name taken below)

SYNTH_VERSION = 2  # in the shards' fingerprint: bump when the bytes of a sample change


@dataclass(frozen=True)
class Noise:
    """Poisson–Gaussian noise in linear light: ``a * Poisson(v / a) + N(0, sigma^2)``
    (``poisson`` = a, 0 = no shot noise; ``gauss`` = sigma)."""

    poisson: float = 0.0
    gauss: float = 0.0

    def as_meta(self) -> dict[str, float]:
        return {"poisson": float(self.poisson), "gauss": float(self.gauss)}


def check_kernels(kernels: np.ndarray, num_layers: int, tol: float = 1e-4) -> None:
    """ValueError unless ``kernels`` is (J, K, K), J = num_layers, >= 0, each summing to 1."""
    if kernels.ndim != 3 or kernels.shape[1] != kernels.shape[2]:
        raise ValueError(f"kernels: expected (J, K, K), got {kernels.shape}")
    if kernels.shape[0] != num_layers:
        raise ValueError(f"kernels: {kernels.shape[0]} kernels for {num_layers} layers")
    if not np.isfinite(kernels).all() or kernels.min() < -tol:
        raise ValueError("kernels: must be finite and >= 0")
    err = np.abs(kernels.sum((1, 2)) - 1).max()
    if err > tol:
        raise ValueError(f"kernels: each must sum to 1 (max error {err:.3g})")


def add_noise(v: torch.Tensor, noise: Noise, rng: np.random.Generator) -> torch.Tensor:
    """Poisson–Gaussian noise on linear ``v`` (any shape), drawn from ``rng``."""
    x = v.double().clamp(min=0).numpy()
    if noise.poisson > 0:
        x = noise.poisson * rng.poisson(x / noise.poisson)
    if noise.gauss > 0:
        x = x + rng.normal(0.0, noise.gauss, x.shape)
    return torch.from_numpy(np.asarray(x, np.float64)).to(v.dtype)


def layer_windows(instances: np.ndarray, num_layers: int, kernel_size: int
                  ) -> list[tuple[int, int, int, int] | None]:
    """Where each layer's smoothed mask can be non-zero: (top, bottom, left, right), ends
    excluded, or None for an empty layer.

    Under mirror ("same") padding ``k_j ⋆ h_j`` is exactly 0 farther than ``K // 2`` from
    layer j's bounding box (a mirrored pixel lands no farther from the border than the
    pixel itself), so the window is that box grown by ``K // 2`` and clipped to the image.
    """
    from scipy import ndimage

    h, w = instances.shape
    r = kernel_size // 2
    labels = np.asarray(instances, np.int32) + 1  # find_objects ignores label 0
    out: list[tuple[int, int, int, int] | None] = []
    for box in ndimage.find_objects(labels, max_label=num_layers):
        if box is None:
            out.append(None)
            continue
        ys, xs = box
        out.append((max(0, ys.start - r), min(h, ys.stop + r),
                    max(0, xs.start - r), min(w, xs.stop + r)))
    return out


@functools.lru_cache(maxsize=8)
def linear_lut(gamma: float) -> np.ndarray:
    """(256,) float32: ``to_linear(i / 255, gamma)`` for every 8-bit value i."""
    return to_linear(torch.arange(256, dtype=torch.float32) / 255, gamma).numpy()


def quantize(v: torch.Tensor, gamma: float) -> torch.Tensor:
    """``round(255 * to_display(clip(v, 0, 1), gamma))`` as uint8, any shape.

    Computes ``clip(v, 0, 1) ** (1 / gamma)`` directly when that gives the same bytes: above
    the camera model's toe (``TOE`` in linear light) it is ``to_display``; below it both are
    under ``TOE ** (1 / gamma)``, which rounds to 0 when ``255 * TOE ** (1 / gamma) <= 0.5``
    (gamma <= 2.21, the default 2.2 included). Otherwise ``to_display`` itself.
    """
    x = v.clamp(0.0, 1.0)
    y = x.pow_(1.0 / gamma) if 255.0 * TOE ** (1.0 / gamma) <= 0.5 else to_display(x, gamma)
    return y.mul_(255.0).round_().to(torch.uint8)


def synthesize(
    sharp: np.ndarray,
    instances: np.ndarray,
    kernels: np.ndarray,
    brightness: float,
    gamma: float = 2.2,
    normalize_masks: bool = True,
    noise: Noise | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The blurry photo of one scene (Algorithm 1; module docstring).

    Each layer j is computed on its window only (:func:`layer_windows`), where ``M_j`` can
    be non-zero: one "valid" correlation of the mirror-padded [u, h_j] crop with ``k_j``
    gives both ``k_j ⋆ u`` and ``k_j ⋆ h_j`` there (one kernel spectrum for the mask and the
    three colours); outside the window ``M_j = 0``, so its term vanishes.

    Args:
        sharp: (H, W, 3) uint8 display image.
        instances: (H, W) integer layer map, values 0..J-1 (0 = background).
        kernels: (J, K, K) float32 correlation kernels, kernel j blurs layer j.
        brightness: s, multiplies the linear image (not clipped).
        gamma: display gamma.
        normalize_masks: divide the smoothed masks by their sum (docs/design.md §2 choice); False is
            Algorithm 1 literally.
        noise: Poisson–Gaussian parameters, None = none.
        rng: the generator of the noise draws (needed when ``noise`` is given).
    Returns:
        (H, W, 3) uint8 blurry display image.
    """
    j = kernels.shape[0]
    if sharp.ndim != 3 or sharp.shape[-1] != 3 or sharp.dtype != np.uint8:
        raise ValueError(f"sharp: expected (H, W, 3) uint8, got {sharp.shape} {sharp.dtype}")
    if instances.shape != sharp.shape[:2]:
        raise ValueError(f"instances: shape {instances.shape} differs from the image's "
                         f"{sharp.shape[:2]}")
    if int(instances.max()) >= j or int(instances.min()) < 0:
        raise ValueError(f"instances: values must be in [0, {j - 1}] for {j} kernels")
    check_kernels(kernels, j)
    h, w = instances.shape
    ks = kernels.shape[-1]
    with torch.no_grad():
        lut = linear_lut(float(gamma)) * np.float32(brightness)  # = to_linear(x / 255) * s
        u = torch.from_numpy(lut[np.asarray(sharp).transpose(2, 0, 1)])  # (3, H, W)
        k = torch.from_numpy(np.array(kernels, np.float32))
        hard = hard_masks(torch.from_numpy(np.array(instances)), j)  # (J, H, W)
        padded = pad(torch.cat([u, hard])[None], ks, "same")[0]  # (3 + J, H + K - 1, ...)
        soft = hard.new_zeros(j, h, w)
        blurred = []  # (layer, window, k_j ⋆ u on the window)
        for i, win in enumerate(layer_windows(instances, j, ks)):
            if win is None:
                continue
            t, b, left, right = win
            rows, cols = slice(t, b + ks - 1), slice(left, right + ks - 1)
            x = padded[:4, rows, cols] if i == 0 else padded[[0, 1, 2, 3 + i], rows, cols]
            y = correlate(x[None], k[i : i + 1], padding="valid")[0]  # (4, b - t, ...)
            soft[i, t:b, left:right] = y[3].clamp(min=0)
            blurred.append((i, win, y[:3]))
        m = simplex_masks(soft[None], hard[None])[0] if normalize_masks else soft
        v = u.new_zeros(3, h, w)
        for i, (t, b, left, right), ku in blurred:
            v[:, t:b, left:right] += m[i, t:b, left:right] * ku
        if noise is not None and (noise.poisson > 0 or noise.gauss > 0):
            if rng is None:
                raise ValueError("synthesize: noise needs rng")
            v = add_noise(v, noise, rng)
        out = quantize(v, float(gamma))
    return out.permute(1, 2, 0).contiguous().numpy()


def draw_noise(sc: Any, rng: np.random.Generator) -> Noise | None:
    """The sample's noise parameters from the ``shards`` config (None when off)."""
    if not sc.noise:
        return None
    return Noise(float(rng.uniform(sc.noise_poisson_min, sc.noise_poisson_max)),
                 float(rng.uniform(sc.noise_gauss_min, sc.noise_gauss_max)))


def sample_seed(seed: int, index: int) -> int:
    """The per-sample seed (recorded in meta.json): a 63-bit function of (seed, index)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


def draw_kernel_ids(rng: np.random.Generator, num_layers: int, pool: int) -> np.ndarray:
    """``num_layers`` distinct kernel ids from [0, pool), in layer order."""
    if pool < num_layers:
        raise ValueError(f"kernel pool of {pool} is smaller than {num_layers} layers")
    return rng.choice(pool, num_layers, replace=False).astype(np.int64)


def make_sample(
    key: str,
    scene: Any,
    kernel_source: Any,
    sc: Any,
    seed: int,
    source: str,
) -> Sample:
    """Sample ``key`` from ``scene`` (image_id, image, instances): kernel ids, brightness and
    noise drawn from ``default_rng(seed)``, the kernels from ``kernel_source.get(ids)``.

    ``sc`` is the ``shards`` config section; meta has exactly ``schema.META_KEYS``.
    """
    rng = np.random.default_rng(seed)
    j = int(scene.instances.max()) + 1
    ids = draw_kernel_ids(rng, j, kernel_source.pool)
    kernels = kernel_source.get(ids)
    s = float(rng.uniform(sc.brightness_min, sc.brightness_max))
    noise = draw_noise(sc, rng)
    blurry = synthesize(scene.image, scene.instances, kernels, s, sc.gamma,
                        sc.normalize_masks, noise, rng)
    meta = make_meta(
        has_field=True, brightness=s, gamma=sc.gamma, kernel_size=int(kernels.shape[-1]),
        normalize_masks=sc.normalize_masks,
        noise=noise.as_meta() if noise is not None else None, seed=int(seed),
        kernel_ids=[int(i) for i in ids], image_id=scene.image_id, source=source)
    return Sample(key, blurry, scene.image, meta, kernels.astype(np.float32),
                  scene.instances.astype(np.uint8))
