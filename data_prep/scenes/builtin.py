"""Procedural dead-leaves scenes: occlusion layouts that need nothing on disk.

A scene is painted back to front on an ``S x S`` canvas:

1. a full-canvas texture (no holes);
2. ``leaves`` background leaves (discs, ellipses, rectangles at random angles) with
   power-law radii, density ``p(r) ∝ r^-alpha`` on ``[0.01 S, 0.3 S]`` (alpha = 2.5: a
   little flatter than the scale-invariant alpha = 3, so that 250 leaves per 512^2 cover
   much of the canvas at ~20 ms a scene);
3. 1..``max_objects`` larger "object" leaves on top, radius ~ U[0.10, 0.22] S.

Each leaf is textured with a crop of a photo bundled with scikit-image (colour ones as
they are, grey ones mapped through a random two-colour ramp), randomly flipped and
colour-scaled, or (30 %) filled with a flat colour plus a faint linear gradient. Leaves are
painted without anti-aliasing, so the object masks are exact: the visible part of object
leaf j is exactly the pixels painted last by it. Objects whose visible part is below
``min_object_pixels`` stay in the image as background content. Scene ``i`` depends only on
``(seed, i)`` and the parameters.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import Scene, order_instances

COLOUR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                 "immunohistochemistry", "colorwheel")
GREY_PHOTOS = ("camera", "brick", "grass", "gravel", "moon", "coins", "cell", "text")
FILES = {  # the files behind skimage.data's loaders, all shipped inside the wheel
    "astronaut": "astronaut.png", "chelsea": "chelsea.png", "coffee": "coffee.png",
    "rocket": "rocket.jpg", "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png", "colorwheel": "color.png", "camera": "camera.png",
    "brick": "brick.png", "grass": "grass.png", "gravel": "gravel.png", "moon": "moon.png",
    "coins": "coins.png", "cell": "cell.png", "text": "text.png",
}
STREAM = 0xDEAD1EAF  # SeedSequence([seed, STREAM, index])


def load_photo(name: str) -> np.ndarray:
    """A bundled scikit-image photo, uint8. Read with Pillow straight from the package's data
    folder (same pixels as ``skimage.data.<name>()``, without its ~1 s of lazy imports);
    ``skimage.data`` itself if the file is not where expected."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("skimage")
    locs = list(spec.submodule_search_locations or []) if spec else []
    f = Path(locs[0], "data", FILES[name]) if locs else None
    if f is not None and f.is_file():
        from PIL import Image

        with Image.open(f) as im:
            return np.asarray(im)
    import skimage.data

    return getattr(skimage.data, name)()


@functools.lru_cache(maxsize=1)
def textures() -> tuple[np.ndarray, ...]:
    """The bundled photos as float32 in [0, 1]: colour (h, w, 3), grey (h, w, 1); each also
    at half size (2 x 2 means) for a second scale. Only files shipped with scikit-image."""
    out = []
    for name in COLOUR_PHOTOS + GREY_PHOTOS:
        a = np.asarray(load_photo(name), np.float32) / 255.0
        a = a[..., :3] if a.ndim == 3 else a[..., None]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        half = a[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean((1, 3))
        out += [np.ascontiguousarray(a), np.ascontiguousarray(half)]
    return tuple(out)


def _mirror(i: np.ndarray, n: int) -> np.ndarray:
    period = 2 * (n - 1)
    i = np.abs(i) % period
    return np.where(i >= n, period - i, i)


def texture_patch(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An (h, w, 3) float32 texture: a flat colour with a faint gradient (30 %), or a
    randomly placed, flipped, colour-scaled crop of a bundled photo (mirrored if larger).
    Values may leave [0, 1] slightly: the finished canvas is clipped once."""
    if rng.random() < 0.3:
        c = rng.uniform(0.02, 0.98, 3).astype(np.float32)
        g = rng.normal(0, 0.1, (2, 3)).astype(np.float32)
        yy = (np.arange(h, dtype=np.float32) / max(h, 1) - 0.5)[:, None, None]
        xx = (np.arange(w, dtype=np.float32) / max(w, 1) - 0.5)[None, :, None]
        return c + yy * g[0] + xx * g[1]
    tex = textures()
    t = tex[rng.integers(len(tex))]
    th, tw = t.shape[:2]
    y0, x0 = int(rng.integers(max(1, th - h + 1))), int(rng.integers(max(1, tw - w + 1)))
    if h <= th and w <= tw:
        crop = t[y0 : y0 + h, x0 : x0 + w]
    else:
        crop = t[_mirror(np.arange(y0, y0 + h), th)][:, _mirror(np.arange(x0, x0 + w), tw)]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if crop.shape[-1] == 1:  # grey: a random two-colour ramp
        c0, c1 = rng.uniform(0, 1, (2, 3)).astype(np.float32)
        return c0 + crop * (c1 - c0)
    return crop * rng.uniform(0.7, 1.3, 3).astype(np.float32)


def paint_leaf(canvas: np.ndarray, labels: np.ndarray | None, label: int,
               rng: np.random.Generator, cy: float, cx: float, radius: float) -> None:
    """Paint one leaf (disc, ellipse or rotated rectangle) of size ~ ``radius`` centred at
    (cy, cx) into ``canvas`` (H, W, 3) float32 and ``label`` into ``labels`` (H, W) (None:
    leave the labels alone), in place."""
    h, w = canvas.shape[:2]
    kind = rng.integers(3)  # 0 disc, 1 ellipse, 2 rectangle
    a = radius
    b = radius if kind == 0 else radius * rng.uniform(0.35, 1.0)
    if kind == 2:
        a, b = a * 0.85, b * 0.85
    theta = rng.uniform(0, np.pi)
    ext = np.hypot(a, b) if kind == 2 else a
    y0, y1 = max(0, int(cy - ext)), min(h, int(np.ceil(cy + ext)) + 1)
    x0, x1 = max(0, int(cx - ext)), min(w, int(np.ceil(cx + ext)) + 1)
    if y1 <= y0 or x1 <= x0:
        return
    yy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    xx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
    if kind == 0:
        mask = yy * yy + xx * xx <= np.float32(a * a)
    else:
        c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
        u, v = xx * c + yy * s, yy * c - xx * s
        if kind == 2:
            mask = (np.abs(u) <= a) & (np.abs(v) <= b)
        else:
            mask = u * u * np.float32(1 / a**2) + v * v * np.float32(1 / b**2) <= 1.0
    if not mask.any():
        return
    patch = texture_patch(rng, y1 - y0, x1 - x0)
    np.copyto(canvas[y0:y1, x0:x1], patch, where=mask[..., None])
    if labels is not None:
        labels[y0:y1, x0:x1][mask] = label


def power_law(rng: np.random.Generator, n: int, lo: float, hi: float, alpha: float) -> np.ndarray:
    """n radii with density ∝ r^-alpha on [lo, hi] (inverse CDF; alpha != 1)."""
    e = 1.0 - alpha
    u = rng.random(n)
    return (lo**e + u * (hi**e - lo**e)) ** (1.0 / e)


def dead_leaves(seed: int, index: int, size: int = 512, max_objects: int = 3,
                min_object_pixels: int = 400, leaves: int | None = None,
                alpha: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Scene ``index`` of stream ``seed``: (size, size, 3) uint8 image and (size, size) uint8
    layers (0 background, objects 1..n largest first, each >= min_object_pixels).

    ``leaves`` defaults to 250 per 512^2 (at least 20).
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, STREAM, index])))
    n_leaves = leaves if leaves is not None else max(20, round(250 * (size / 512) ** 2))
    canvas = np.empty((size, size, 3), np.float32)
    labels = np.zeros((size, size), np.int32)
    canvas[:] = texture_patch(rng, size, size)
    radii = power_law(rng, n_leaves, max(2.0, 0.01 * size), 0.3 * size, alpha)
    for r in radii:
        cy, cx = rng.uniform(-0.1 * size, 1.1 * size, 2)
        paint_leaf(canvas, None, 0, rng, cy, cx, r)  # labels are all 0 still
    n_obj = int(rng.integers(1, max_objects + 1)) if max_objects > 0 else 0
    for j in range(1, n_obj + 1):
        cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
        paint_leaf(canvas, labels, j, rng, cy, cx, rng.uniform(0.10, 0.22) * size)
    image = np.rint(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)
    return image, order_instances(labels, min_object_pixels, max_objects)


@dataclass
class BuiltinSource:
    """Infinite source: ``scene(i)`` is dead-leaves scene i of stream ``seed``."""

    seed: int = 0
    size: int = 512
    max_objects: int = 3
    min_object_pixels: int = 400

    @classmethod
    def from_cfg(cls, sc: Any) -> BuiltinSource:
        need = sc.crop_size + sc.kernel_size - 1
        if sc.scene_size < need:
            raise ValueError(f"shards.scene_size {sc.scene_size} is smaller than crop_size + "
                             f"kernel_size - 1 = {need}: every builtin scene would be skipped")
        return cls(sc.seed, sc.scene_size, sc.max_objects, sc.min_object_pixels)

    def image_id(self, index: int) -> str:
        return f"builtin-s{self.seed}-{index:07d}"

    def scene(self, index: int) -> Scene:
        img, inst = dead_leaves(self.seed, index, self.size, self.max_objects,
                                self.min_object_pixels)
        return Scene(self.image_id(index), img, inst)

    def __iter__(self):
        i = 0
        while True:
            yield self.scene(i)
            i += 1
