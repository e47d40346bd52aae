"""``blurfield deblur PHOTO... [--checkpoint CKPT | --field FIELD.npz] --out DIR``.

Estimates each photo's blur field (or reads one with ``--field``, which goes with exactly
one photo of the field's image size) and restores the photo with non-uniform
Richardson–Lucy (docs/design.md §5). Writes exactly, per photo:

- ``<stem>_restored.png``: the restored photo at the input's size and bit depth (8 or 16);
- ``<stem>_compare.png``: blurry | restored | per-pixel PSFs (at most 1024 px a side each);
- ``<stem>_field.npz``: the field used (docs/design.md §8), with what the no-harm rule
  decided (``decision``, ``decision_reason``, ``blend``, ``iterations``, ...).

Each photo gets one line on stdout: "restored" or "left nearly as is", the blend and the
reason (``restore.no_harm``, :mod:`blurfield.restore.noharm`).

Large photos are restored in overlapping tiles (``restore.tile``, ``restore.tile_overlap``)
with a fixed number of iterations. Several photos run side by side in ``restore.workers``
processes (:mod:`blurfield.commands.workers`), their lines printed in input order. A photo
that cannot be read gets one line on stderr; the others still run and the exit code is 1.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

HELP = ("deblur photos: writes <stem>_restored.png, <stem>_compare.png and <stem>_field.npz")
ALIASES = {
    "--checkpoint": "restore.checkpoint",
    "--field": "restore.field",
    "--out": "restore.out_dir",
    "--scale": "restore.scale",
    "--iterations": "restore.iterations",
    "--device": "restore.device",
}


def compare_picture(blurry, restored, field, iterations: int, decision=None):
    """(h, w, 3) uint8: blurry | restored | per-pixel PSFs over the blurry photo; the middle
    caption gives the no-harm ``decision`` (and its blend) when there is one."""
    from blurfield import viz
    from blurfield.commands import preview

    small, small_restored = preview(blurry), preview(restored)
    overlay = viz.psf_overlay(small, field.kernels, field.mixing)
    caption = f"restored (RL, {iterations} it.)"
    if decision is not None and not decision.restored:
        caption = f"left nearly as is (blend {decision.blend:.2f})"
    elif decision is not None and decision.blend < 1:
        caption = f"restored (RL, {iterations} it., blend {decision.blend:.2f})"
    return viz.side_by_side([small, small_restored, overlay],
                            ["blurry", caption, "per-pixel PSFs"])


@dataclass
class DeblurJob:
    """``blurfield deblur`` on one photo (:class:`blurfield.commands.workers.PhotoJob`):
    estimate its field with the model of ``rc`` (or restore with the field ``rc.field``),
    restore it with ``options`` (:func:`blurfield.commands.restore_options`), write its
    three files and print the no-harm decision line."""

    rc: DictConfig
    options: dict
    scale: float | str | None
    command: str = "deblur"
    _model: Any = field(default=None, init=False, repr=False)
    _given: Any = field(default=None, init=False, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None, "_given": None}

    def prepare(self) -> None:
        """Load the estimator, or the field given with ``--field``."""
        from blurfield.api import load_field
        from blurfield.commands import load_model
        from blurfield.errors import UserError

        if self.rc.field is not None:
            try:
                self._given = load_field(self.rc.field)
            except ValueError as e:
                raise UserError(str(e)) from None
        else:
            self._model = load_model(self.rc)

    def run(self, path: Path, progress: bool) -> None:
        """Estimate (or take the given field), restore, write, print the decision."""
        import sys

        from tqdm import tqdm

        from blurfield.api import deblur, estimate, save_field
        from blurfield.commands import estimate_options, prefiltered, read_photo
        from blurfield.errors import UserError
        from blurfield.imageio import is_jpeg, write_image
        from blurfield.viz import save_png

        rc, given = self.rc, self._given
        min_size = given.kernel_size if given is not None else self._model.kernel_size
        image, depth = read_photo(path, min_size, "deblur")
        photo, note = prefiltered(image, rc, is_jpeg(path))
        if given is not None:
            h, w = image.shape[:2]
            if (h, w) != tuple(given.image_size):
                raise UserError(f"--field {rc.field} was estimated on a "
                                f"{given.image_size[1]}x{given.image_size[0]} photo, "
                                f"{path} is {w}x{h}")
            field_ = given
        else:
            field_ = estimate(photo, self._model, scale=self.scale,
                              max_megapixels=rc.max_megapixels, gamma=rc.gamma,
                              **estimate_options(rc))
        restored, res = deblur(photo, field_, gamma=rc.gamma, return_result=True,
                               progress=progress, **self.options)
        iterations, decision = res.iterations, res.decision
        del res, photo  # the linear restoration and the prefiltered photo: 1.2 GB at 48 MP
        out = Path(rc.out_dir)
        write_image(out / f"{path.stem}_restored.png", restored, bit_depth=depth)
        save_png(out / f"{path.stem}_compare.png",
                 compare_picture(image, restored, field_, iterations, decision))
        save_field(out / f"{path.stem}_field.npz", field_, decision=decision)
        if decision is not None:
            kernel = f"; kernel: {field_.refinement}" if field_.refinement else ""
            tqdm.write(f"{path}: {note}{decision.line()}{kernel}", file=sys.stdout)


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    """``blurfield deblur``: the photos one after another, or side by side in
    ``restore.workers`` processes (:mod:`blurfield.commands.workers`)."""
    from blurfield.commands import (
        apply_threads,
        estimate_options,
        parse_scale,
        photo_paths,
        restore_options,
    )
    from blurfield.commands.workers import exit_code, plan, run_photos
    from blurfield.errors import UserError

    rc = cfg.restore
    threads = apply_threads(rc)
    photos = photo_paths(args.inputs, "deblur")
    options = restore_options(rc)
    scale = None
    if rc.field is not None:
        if rc.checkpoint is not None:
            raise UserError("give --field or --checkpoint, not both")
        if len(photos) != 1:
            raise UserError(f"--field goes with exactly one photo (the one it was estimated "
                            f"on), got {len(photos)}")
    else:
        scale = parse_scale(rc.scale)
        estimate_options(rc)
    workers, each = plan(rc, len(photos), threads)
    return exit_code(run_photos(DeblurJob(rc, options, scale), photos, workers, each))
