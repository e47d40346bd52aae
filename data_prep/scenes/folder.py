"""Any folder of photos with instance masks beside them (``shards.source=folder``).

Naming: an image ``<name>.<ext>`` (ext: jpg, jpeg, png, bmp, tif, tiff, webp; searched
recursively under ``shards.root``) goes with the mask ``<name>_mask.png`` in the same folder::

    root/street.jpg      root/street_mask.png
    root/a/b/x.png       root/a/b/x_mask.png

The mask is a single-channel PNG (8- or 16-bit grey, or palette indices) of the image's
size: pixel value j > 0 is instance j, 0 is background. Instances are reordered largest
first; those below ``min_object_pixels`` join the background; at most ``max_objects`` are
kept. An image without any object is used with a single (uniform-blur) layer.

Skipped and counted with a reason: an unreadable image or mask, no mask file, a mask that is
not single-channel, a mask whose size differs from the image, a scene smaller than
``crop_size + kernel_size - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import FiniteSource, Scene, SceneFilter, SceneSkip, finish_scene, read_png_array, read_rgb

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_SUFFIX = "_mask"


@dataclass
class FolderSource(FiniteSource):
    """Images with ``<name>_mask.png`` beside them; input ids are paths relative to root."""

    root: Path = Path(".")

    @classmethod
    def from_cfg(cls, sc: Any) -> FolderSource:
        if sc.root is None:
            raise ValueError("shards.source=folder needs shards.root=FOLDER holding images "
                             "with <name>_mask.png beside each (value j > 0 = instance j)")
        root = Path(sc.root).expanduser()
        if not root.is_dir():
            raise ValueError(f"shards.root={sc.root}: not a folder (expected images with "
                             "<name>_mask.png beside each)")
        return cls(SceneFilter.from_cfg(sc), root=root)

    def inputs(self) -> list[str]:
        files = [p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTS
                 and not p.stem.endswith(MASK_SUFFIX) and p.is_file()]
        if not files:
            raise ValueError(f"shards.root={self.root}: no images ({', '.join(IMAGE_EXTS)}) "
                             "found")
        return sorted(str(p.relative_to(self.root)) for p in files)

    def image_id(self, rel: str) -> str:
        return "folder/" + str(Path(rel).with_suffix("")).replace("\\", "/")

    def load(self, input_id: str) -> Scene:
        iid = self.image_id(input_id)
        p = self.root / input_id
        mp = p.with_name(p.stem + MASK_SUFFIX + ".png")
        if not mp.is_file():
            raise SceneSkip("no mask file", f"{iid}: {mp.name} missing")
        mask = read_png_array(mp, iid)
        if mask.ndim != 2:
            raise SceneSkip("mask is not single-channel", f"{iid}: shape {mask.shape}")
        image = read_rgb(p, iid)
        return finish_scene(iid, image, mask.astype(np.int32), self.flt)
