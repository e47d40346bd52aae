"""The camera model of paper eq. (3)-(4): gamma, saturation, and the reblur of a sharp image.

    v = R( H u ) ** (1 / gamma),      R(x) = x - log(1 + exp(a (x - 1))) / a,  a = 50

``u`` is linear light (may exceed 1 after brightness augmentation), ``v`` display values in
[0, 1]. This module is the only place where gamma and saturation are applied.

Gamma near black: ``x ** (1/gamma)`` has an infinite slope at 0 (and is NaN below 0 in
float). We use a linear toe below ``TOE`` (1e-6 in linear light, 1.9e-3 in display for
gamma 2.2: below every non-zero 8-bit value), continuous at the joint, so both directions
are exact inverses, 0 maps to 0, negatives clamp to 0, and gradients stay finite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from blurfield.physics.blur import blur

TOE = 1e-6  # linear-light threshold of the linear toe of the gamma curve
SATURATION_A = 50.0


def _power_with_toe(x: Tensor, joint: float, slope: float, power: float) -> Tensor:
    """``where(x < joint, x slope, max(x, joint) ** power)`` for ``x >= 0``, a copy the
    caller made and gives up. Without autograd it is computed in place in ``x`` (the
    toe's pixels set after): the same values to the bit without four temporaries of
    ``x``'s size (a 48 MP photo's were 2.3 GB)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return torch.where(x < joint, x * slope, x.clamp(min=joint) ** power)
    toe = x < joint
    low = x[toe] * slope
    x.clamp_(min=joint).pow_(power)
    x[toe] = low
    return x


def to_display(linear: Tensor, gamma: float = 2.2) -> Tensor:
    """Linear light -> display: ``x ** (1/gamma)`` (linear toe below TOE, 0 below 0).

    Any shape. Values above 1 stay above 1 (clip or saturate before if needed).
    """
    x = linear.clamp(min=0)
    if gamma == 1:
        return x
    return _power_with_toe(x, TOE, TOE ** (1.0 / gamma - 1.0), 1.0 / gamma)


def to_linear(display: Tensor, gamma: float = 2.2) -> Tensor:
    """Display -> linear light: ``v ** gamma``, the exact inverse of :func:`to_display`."""
    v = display.clamp(min=0)
    if gamma == 1:
        return v
    joint = TOE ** (1.0 / gamma)
    return _power_with_toe(v, joint, TOE / joint, gamma)


def saturate(x: Tensor, a: float = SATURATION_A) -> Tensor:
    """R(x) = x - softplus(a (x - 1)) / a, clamped at 0 (eq. 4). Smooth clip to [0, 1).

    In float32 R(0) rounds to about -4e-24; the value is clamped at 0 to keep gamma away
    from negatives, while the gradient stays R'(x) (the clamp only moves values by ~1e-24
    for x >= 0, and a zero gradient there would stall black pixels).
    """
    if not (x.requires_grad and torch.is_grad_enabled()):
        # RL, no autograd: softplus(z) = max(z, 0) - log(sigmoid(|z|)), in place; the same
        # values to float rounding (tested), several times faster on the CPU than
        # F.softplus, whose log1p of the tiny exp(-|z|) of dark pixels is slow there
        z = (x - 1.0).mul_(a)
        soft = torch.sigmoid(z.abs()).log_().sub_(z.clamp_(min=0))  # -softplus(z)
        return soft.div_(a).add_(x).clamp_(min=0)
    r = x - F.softplus(a * (x - 1.0)) / a
    return r + (r.clamp(min=0) - r).detach()


def saturate_grad(x: Tensor, a: float = SATURATION_A) -> Tensor:
    """R'(x) = 1 - sigmoid(a (x - 1)): 1 in the dark, 1/2 at x = 1, -> 0 above."""
    return 1.0 - torch.sigmoid(a * (x - 1.0))


def reblur(
    sharp_linear: Tensor,
    kernels: Tensor,
    mixing: Tensor,
    *,
    gamma: float = 2.2,
    padding: str = "valid",
    method: str = "auto",
    check: bool = True,
) -> Tensor:
    """Eq. (3) without noise: ``to_display(R(H u), gamma)``.

    Args:
        sharp_linear: (N, C, H, W) linear light.
        kernels: (N, B, K, K) correlation kernels on the simplex.
        mixing: (N, B, H', W') per-pixel weights on the simplex, H' as for :func:`blur`.
    Returns:
        (N, C, H', W') display values in [0, 1).
    """
    hu = blur(sharp_linear, kernels, mixing, padding=padding, method=method, check=check)
    return to_display(saturate(hu), gamma)
