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
with a fixed number of iterations. A photo that cannot be read gets one line on stderr; the
others still run and the exit code is 1.
"""

from __future__ import annotations

import argparse

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


def run(cfg: DictConfig, args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from blurfield.api import deblur, estimate, load_field, save_field
    from blurfield.commands import (
        apply_threads,
        each_photo,
        load_model,
        parse_scale,
        photo_paths,
        read_photo,
        restore_options,
    )
    from blurfield.errors import UserError
    from blurfield.imageio import write_image
    from blurfield.viz import save_png

    rc = cfg.restore
    apply_threads(rc)
    photos = photo_paths(args.inputs, "deblur")
    options = restore_options(rc)
    given = None
    if rc.field is not None:
        if rc.checkpoint is not None:
            raise UserError("give --field or --checkpoint, not both")
        if len(photos) != 1:
            raise UserError(f"--field goes with exactly one photo (the one it was estimated "
                            f"on), got {len(photos)}")
        try:
            given = load_field(rc.field)
        except ValueError as e:
            raise UserError(str(e)) from None
        min_size, model, scale = given.kernel_size, None, None
    else:
        scale = parse_scale(rc.scale)
        model = load_model(rc)
        min_size = model.kernel_size
    out = Path(rc.out_dir)

    def one(path: Path) -> None:
        image, depth = read_photo(path, min_size, "deblur")
        if given is not None:
            h, w = image.shape[:2]
            if (h, w) != tuple(given.image_size):
                raise UserError(f"--field {rc.field} was estimated on a "
                                f"{given.image_size[1]}x{given.image_size[0]} photo, "
                                f"{path} is {w}x{h}")
            field = given
        else:
            field = estimate(image, model, scale=scale, max_megapixels=rc.max_megapixels,
                             gamma=rc.gamma)
        restored, res = deblur(image, field, gamma=rc.gamma, return_result=True,
                               progress=True, **options)
        write_image(out / f"{path.stem}_restored.png", restored, bit_depth=depth)
        save_png(out / f"{path.stem}_compare.png",
                 compare_picture(image, restored, field, res.iterations, res.decision))
        save_field(out / f"{path.stem}_field.npz", field, decision=res.decision)
        if res.decision is not None:
            tqdm.write(f"{path}: {res.decision.line()}", file=sys.stdout)

    return each_photo(photos, "deblur", one)
