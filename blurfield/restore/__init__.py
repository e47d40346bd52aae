"""Non-uniform Richardson–Lucy (docs/design.md §5): the iteration, tiling for large photos, and
the scale option (estimate on a downscaled photo, restore at full size)."""

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
    scaled_size,
    upscale_kernels,
    upscale_mixing,
    upscaled_kernel_size,
)
from blurfield.restore.tiles import auto_overlap, restore_tiled, tile_grid

__all__ = [
    "RLResult",
    "auto_overlap",
    "bright_split",
    "choose_scale",
    "downscale_image",
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
