"""``blurfield estimate PHOTO... [--checkpoint CKPT] --out DIR``: the blur field of photos.

Writes, per photo, ``<stem>_field.npz`` (docs/design.md §8 field file) and ``<stem>_kernels.png``
(the basis PSFs, the mixing map in the same colours, and per-pixel PSFs drawn over the
photo). A photo that cannot be read gets one line on stderr; the others still run and the
exit code is 1.
"""

from __future__ import annotations

import argparse

import numpy as np
from omegaconf import DictConfig

HELP = "estimate the blur field of photos: writes <stem>_field.npz and <stem>_kernels.png"
ALIASES = {
    "--checkpoint": "restore.checkpoint",
    "--out": "restore.out_dir",
    "--scale": "restore.scale",
    "--device": "restore.device",
}


def field_picture(image: np.ndarray, field) -> np.ndarray:
    """(h, w, 3) uint8: basis PSFs | mixing map | per-pixel PSFs over the photo."""
    from blurfield import viz
    from blurfield.commands import preview

    small = preview(image)
    panels = [viz.psf_grid(field.kernels), viz.mixing_map(field.mixing),
              viz.psf_overlay(small, field.kernels, field.mixing)]
    labels = ["basis PSFs", "mixing", "per-pixel PSFs"]
    return viz.side_by_side(panels, labels, height=max(256, min(small.shape[0], 512)))


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    from pathlib import Path

    from blurfield.api import estimate, save_field
    from blurfield.commands import (
        apply_threads,
        each_photo,
        load_model,
        parse_scale,
        photo_paths,
        read_photo,
    )
    from blurfield.viz import save_png

    rc = cfg.restore
    apply_threads(rc)
    photos = photo_paths(args.inputs, "estimate")
    scale = parse_scale(rc.scale)
    model = load_model(rc)
    out = Path(rc.out_dir)

    def one(path: Path) -> None:
        image, _ = read_photo(path, model.kernel_size, "estimate")
        field = estimate(image, model, scale=scale, max_megapixels=rc.max_megapixels,
                         gamma=rc.gamma)
        save_field(out / f"{path.stem}_field.npz", field)
        save_png(out / f"{path.stem}_kernels.png", field_picture(image, field))

    return each_photo(photos, "estimate", one)
