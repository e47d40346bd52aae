"""Scene sources for the blur synthesiser: a sharp photo and its object layers.

Every source yields :class:`Scene` objects: ``image`` (H, W, 3) uint8 display values and
``instances`` (H, W) uint8 with 0 = background and objects 1..n ordered largest first,
each >= ``min_object_pixels`` pixels, at most ``max_objects`` of them.

Sources (``shards.source``):

- ``builtin`` (:mod:`.builtin`): procedural dead-leaves scenes textured with the photos
  bundled with scikit-image; nothing on disk; scene ``i`` is a function of ``(seed, i)``.
- ``ade20k`` (:mod:`.ade20k`): the full ADE20K release or ADEChallengeData2016.
- ``folder`` (:mod:`.folder`): any folder of images with instance-mask PNGs beside them.

A finite source lists its inputs with ``inputs()`` (ids) and loads one with
``load(id) -> Scene``, raising :class:`SceneSkip` (with a reason) for a bad or unsuitable
input; ``iter(source)`` yields the good scenes and counts the rest in ``source.skipped``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blurfield.config import SceneSource


@dataclass
class Scene:
    """One sharp scene: ``image`` (H, W, 3) uint8, ``instances`` (H, W) uint8 (0 = background,
    objects 1..n largest first)."""

    image_id: str
    image: np.ndarray
    instances: np.ndarray

    @property
    def num_layers(self) -> int:
        """J = objects + 1 (layer 0 is the background)."""
        return int(self.instances.max()) + 1


class SceneSkip(Exception):
    """An input that is skipped: unreadable, wrong mask, too small, no object. ``reason``
    is a short phrase counted in the manifest."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class SceneFilter:
    """What a scene must satisfy (shared by all sources)."""

    min_size: int = 288  # crop_size + kernel_size - 1: smaller scenes are skipped
    min_object_pixels: int = 400
    max_objects: int = 3
    max_side: int = 0  # downscale larger scenes to this longer side (0 = keep)
    require_object: bool = False  # skip scenes without any object layer (ADE20K)

    @classmethod
    def from_cfg(cls, sc: Any, require_object: bool = False) -> SceneFilter:
        return cls(sc.crop_size + sc.kernel_size - 1, sc.min_object_pixels, sc.max_objects,
                   sc.max_side, require_object)


def order_instances(labels: np.ndarray, min_pixels: int, max_objects: int) -> np.ndarray:
    """Integer instance labels (H, W) (0 = none, any ids) -> uint8 layers: the instances with
    >= ``min_pixels`` pixels, largest first (ties: smaller label first), at most
    ``max_objects``, numbered 1..n; everything else 0 (background)."""
    if max_objects > 254:
        raise ValueError(f"max_objects must be <= 254 for a uint8 layer map, got {max_objects}")
    flat = labels.ravel()
    if flat.size and flat.min() >= 0 and flat.max() < 1 << 20:  # compact ids: bincount
        counts = np.bincount(flat.astype(np.int64))
        ids, inverse = np.arange(len(counts)), flat
    else:
        ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    keep = (ids != 0) & (counts >= min_pixels)
    cand = np.nonzero(keep)[0]
    cand = cand[np.lexsort((ids[cand], -counts[cand]))][:max_objects]
    lut = np.zeros(len(ids), np.uint8)
    lut[cand] = np.arange(1, len(cand) + 1, dtype=np.uint8)
    return lut[inverse].reshape(labels.shape)


def resize_scene(image: np.ndarray, labels: np.ndarray, max_side: int) -> tuple[np.ndarray, ...]:
    """Downscale so the longer side is ``max_side`` (image: Lanczos, labels: nearest)."""
    from PIL import Image

    h, w = labels.shape
    if max_side <= 0 or max(h, w) <= max_side:
        return image, labels
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    img = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
    lab = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(size,
                                                                     Image.Resampling.NEAREST))
    return img, lab.astype(labels.dtype)


def finish_scene(image_id: str, image: np.ndarray, labels: np.ndarray,
                 flt: SceneFilter) -> Scene:
    """Resize, check the size, order the instances; raises :class:`SceneSkip`."""
    if image.shape[:2] != labels.shape:
        raise SceneSkip("mask size differs from image",
                        f"{image_id}: image {image.shape[:2]}, mask {labels.shape}")
    image, labels = resize_scene(image, labels, flt.max_side)
    h, w = labels.shape
    if min(h, w) < flt.min_size:
        raise SceneSkip("smaller than crop_size + kernel_size - 1",
                        f"{image_id}: {h} x {w} < {flt.min_size}")
    inst = order_instances(labels, flt.min_object_pixels, flt.max_objects)
    if flt.require_object and inst.max() == 0:
        raise SceneSkip("no object instance >= min_object_pixels", image_id)
    return Scene(image_id, np.ascontiguousarray(image), inst)


def read_rgb(path: Any, image_id: str) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 (grey and RGBA converted); SceneSkip if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im)
    except Exception as e:  # PIL raises many kinds (OSError, SyntaxError, ValueError, ...)
        raise SceneSkip("unreadable image", f"{image_id}: {type(e).__name__}: {e}") from None


def read_png_array(path: Any, image_id: str, what: str = "mask") -> np.ndarray:
    """A PNG as an array in its own mode (no conversion); SceneSkip if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im)
    except Exception as e:
        raise SceneSkip(f"unreadable {what}", f"{image_id}: {type(e).__name__}: {e}") from None


@dataclass
class FiniteSource:
    """Base of the on-disk sources: ``inputs()``, ``load(id)``, iteration with skip counts."""

    flt: SceneFilter
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def inputs(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def load(self, input_id: str) -> Scene:  # pragma: no cover - overridden
        raise NotImplementedError

    def __iter__(self) -> Iterator[Scene]:
        for i in self.inputs():
            try:
                yield self.load(i)
            except SceneSkip as e:
                self.skipped.append((i, e.reason))


def make_source(sc: Any) -> Any:
    """The source named by the ``shards`` config section ``sc`` (ValueError if unknown)."""
    source = SceneSource.parse(sc.source, "shards.source")
    if source == SceneSource.builtin:
        from .builtin import BuiltinSource

        return BuiltinSource.from_cfg(sc)
    if source == SceneSource.ade20k:
        from .ade20k import make_ade20k

        return make_ade20k(sc)
    from .folder import FolderSource

    return FolderSource.from_cfg(sc)


__all__ = ["Scene", "SceneSkip", "SceneFilter", "FiniteSource", "order_instances",
           "finish_scene", "make_source", "read_rgb"]
