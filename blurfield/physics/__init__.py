"""Pure tensor functions: the blur-field operator, its adjoint, and the camera model."""

from blurfield.physics.blur import (
    BlurField,
    blur,
    blur_adjoint,
    check_field,
    correlate,
    ht_one,
    pad,
    pad_adjoint,
    per_pixel_kernels,
    smooth_masks,
    smooth_size,
    uniform_field,
)
from blurfield.physics.camera import reblur, saturate, saturate_grad, to_display, to_linear

__all__ = [
    "BlurField",
    "blur",
    "blur_adjoint",
    "check_field",
    "correlate",
    "ht_one",
    "pad",
    "pad_adjoint",
    "per_pixel_kernels",
    "reblur",
    "saturate",
    "saturate_grad",
    "smooth_masks",
    "smooth_size",
    "to_display",
    "to_linear",
    "uniform_field",
]
