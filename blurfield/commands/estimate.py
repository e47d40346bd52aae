"""``blurfield estimate PHOTO... [--checkpoint CKPT] --out DIR``: the blur field of photos.

Writes, per photo, ``<stem>_field.npz`` (docs/design.md §8 field file) and ``<stem>_kernels.png``
(the basis PSFs, the mixing map in the same colours, and per-pixel PSFs drawn over the
photo). Several photos run side by side in ``restore.workers`` processes
(:mod:`blurfield.commands.workers`). A photo that cannot be read gets one line on stderr; the
others still run and the exit code is 1.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class EstimateJob:
    """``blurfield estimate`` on one photo (:class:`blurfield.commands.workers.PhotoJob`):
    its field with the model of ``rc``, written with its picture."""

    rc: DictConfig
    scale: float | str
    command: str = "estimate"
    _model: Any = field(default=None, init=False, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    def prepare(self) -> None:
        """Load the estimator."""
        from blurfield.commands import load_model

        self._model = load_model(self.rc)

    def run(self, path: Path, progress: bool) -> None:
        """Estimate the field, write ``<stem>_field.npz`` and ``<stem>_kernels.png``, print
        what the kernel refinement did (one line)."""
        import sys

        from tqdm import tqdm

        from blurfield.api import estimate, save_field
        from blurfield.commands import estimate_options, prefiltered, read_photo
        from blurfield.imageio import is_jpeg
        from blurfield.viz import save_png

        rc = self.rc
        image, _ = read_photo(path, self._model.kernel_size, "estimate")
        photo, note = prefiltered(image, rc, is_jpeg(path))
        field_ = estimate(photo, self._model, scale=self.scale,
                          max_megapixels=rc.max_megapixels, gamma=rc.gamma,
                          **estimate_options(rc))
        out = Path(rc.out_dir)
        save_field(out / f"{path.stem}_field.npz", field_)
        save_png(out / f"{path.stem}_kernels.png", field_picture(image, field_))
        if field_.refinement or note:
            kernel = f"kernel: {field_.refinement}" if field_.refinement else ""
            tqdm.write(f"{path}: {note}{kernel}".rstrip("; "), file=sys.stdout)


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    """``blurfield estimate``: the photos one after another, or side by side in
    ``restore.workers`` processes (:mod:`blurfield.commands.workers`)."""
    from blurfield.commands import apply_threads, estimate_options, parse_scale, photo_paths
    from blurfield.commands.workers import exit_code, plan, run_photos

    rc = cfg.restore
    threads = apply_threads(rc)
    photos = photo_paths(args.inputs, "estimate")
    scale = parse_scale(rc.scale)
    estimate_options(rc)
    workers, each = plan(rc, len(photos), threads)
    return exit_code(run_photos(EstimateJob(rc, scale), photos, workers, each))
