"""Non-uniform Richardson–Lucy (docs/design.md §5): the iteration, tiling for large photos,
the scale option (estimate on a downscaled photo, restore at full size), the no-harm rule
that decides how much of a restoration to keep (:mod:`blurfield.restore.noharm`), and the
blind refinement of the estimated kernel against the photo (:mod:`blurfield.restore.refine`)."""

from blurfield.restore import noharm, noise
from blurfield.restore.noharm import Decision, no_harm_richardson_lucy
from blurfield.restore.noise import noise_sigma
from blurfield.restore.rl import (
    RLResult,
    bright_split,
    reliable_mask,
    richardson_lucy,
    sobel,
    tv_denominator,
)
from blurfield.restore.scale import (
    choose_scale,
    downscale_image,
    parse_scale,
    scaled_size,
    upscale_kernels,
    upscale_mixing,
    upscaled_kernel_size,
)
from blurfield.restore.tiles import auto_overlap, progress_bar, restore_tiled, tile_grid

__all__ = [
    "Decision",
    "RLResult",
    "auto_overlap",
    "bright_split",
    "choose_scale",
    "downscale_image",
    "no_harm_richardson_lucy",
    "noharm",
    "noise",
    "noise_sigma",
    "parse_scale",
    "progress_bar",
    "reliable_mask",
    "restore_tiled",
    "richardson_lucy",
    "scaled_size",
    "sobel",
    "tile_grid",
    "tv_denominator",
    "upscale_kernels",
    "upscale_mixing",
    "upscaled_kernel_size",
]
