"""Pure tensor functions: the blur-field operator, its adjoint, fields as data, and the
camera model."""

from blurfield.physics.blur import (
    BlurField,
    blur,
    blur_adjoint,
    check_field,
    correlate,
    ht_one,
    pad,
    pad_adjoint,
    smooth_size,
)
from blurfield.physics.camera import reblur, saturate, saturate_grad, to_display, to_linear
from blurfield.physics.fields import (
    mean_kernel,
    normalize_masks,
    per_pixel_kernels,
    smooth_masks,
    uniform_field,
)
from blurfield.physics.lowrank import PrincipalField, principal_kernels

__all__ = [
    "BlurField",
    "PrincipalField",
    "blur",
    "blur_adjoint",
    "check_field",
    "correlate",
    "ht_one",
    "mean_kernel",
    "normalize_masks",
    "pad",
    "pad_adjoint",
    "per_pixel_kernels",
    "principal_kernels",
    "reblur",
    "saturate",
    "saturate_grad",
    "smooth_masks",
    "smooth_size",
    "to_display",
    "to_linear",
    "uniform_field",
]
