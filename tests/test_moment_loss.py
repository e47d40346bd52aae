"""The moment loss (blurfield.losses.moment_loss): closed forms on line kernels, the sign of
its direction term, its gradient, and its agreement with val/direction."""

from __future__ import annotations

import math

import pytest
import torch

from blurfield.evaluation.metrics import direction_agreement
from blurfield.losses import moment_loss
from blurfield.models.basis_init import line_kernel
from blurfield.physics.moments import field_covariance

D = torch.float64


def _line(length: int, angle: float) -> torch.Tensor:
    return line_kernel(length, angle, 33).to(D)  # (33, 33), on the simplex


def _uniform(kernel: torch.Tensor, h: int = 6, w: int = 8):
    """One kernel everywhere: kernels (1, 1, K, K), mixing (1, 1, h, w)."""
    return kernel[None, None], torch.ones(1, 1, h, w, dtype=D)


def _dir(est: torch.Tensor, gt: torch.Tensor) -> float:
    k, m = _uniform(est)
    g, gm = _uniform(gt)
    return float(moment_loss(k, m, g, gm, size_weight=0.0))


def test_direction_term_closed_forms_and_sign():
    gt = _line(17, 0.0)
    # 1 - cos 2Δθ whatever the lengths: right axis 0, 45° off 1, turned 90° 2.
    assert _dir(_line(9, 0.0), gt) == pytest.approx(0.0, abs=1e-9)
    assert _dir(_line(9, 45.0), gt) == pytest.approx(1.0, abs=1e-9)
    assert _dir(_line(25, 90.0), gt) == pytest.approx(2.0, abs=1e-9)
    # The sign that matters: a kernel scores better than the same kernel turned 90°.
    for angle in (0.0, 30.0, 60.0, 120.0):
        k = _line(15, angle)
        assert _dir(k, _line(15, angle)) < _dir(_line(15, angle + 90.0), _line(15, angle)) - 1.5
    # A round estimate has no direction: 1. A round ground truth has none to score: 0.
    yy, xx = torch.meshgrid(torch.arange(33.0, dtype=D) - 16, torch.arange(33.0, dtype=D) - 16,
                            indexing="ij")
    disc = torch.exp(-(yy**2 + xx**2) / 8)
    disc = disc / disc.sum()
    assert _dir(disc, gt) == pytest.approx(1.0, abs=1e-6)
    assert _dir(gt, disc) == 0.0


def test_direction_term_is_one_minus_weighted_direction_agreement():
    g = torch.Generator().manual_seed(3)
    kern = torch.softmax(3 * torch.randn(1, 4, 33 * 33, generator=g, dtype=D), -1)
    kern = kern.reshape(1, 4, 33, 33)
    mix = torch.softmax(2 * torch.randn(1, 4, 5, 6, generator=g, dtype=D), 1)
    gt_k = torch.stack([_line(21, 10.0), _line(11, 100.0)])[None]
    gt_m = torch.zeros(1, 2, 5, 6, dtype=D)
    gt_m[:, 0, :, :3], gt_m[:, 1, :, 3:] = 1, 1
    got = float(moment_loss(kern, mix, gt_k, gt_m, size_weight=0.0))
    agree = direction_agreement(field_covariance(kern[0], mix[0]),
                                field_covariance(gt_k[0], gt_m[0]))
    assert got == pytest.approx(1 - float(agree), abs=1e-9)


def test_size_term_is_the_log_trace_difference():
    # A line of n px has variance (n² - 1) / 12 along it and 0 across.
    var = lambda n: (n**2 - 1) / 12  # noqa: E731
    k, m = _uniform(_line(9, 0.0))
    g, gm = _uniform(_line(25, 0.0))
    full = float(moment_loss(k, m, g, gm))
    assert full == pytest.approx(abs(math.log1p(var(9)) - math.log1p(var(25))), rel=1e-6)
    # Pixel weights: a weighted mean over pixels of |log(1 + t) - log(1 + t_gt)|.
    est = torch.cat([_uniform(_line(9, 0.0), w=4)[0], _uniform(_line(25, 0.0), w=4)[0]], 1)
    mix = torch.zeros(1, 2, 6, 8, dtype=D)
    mix[:, 0, :, :4], mix[:, 1, :, 4:] = 1, 1
    w = torch.ones(1, 6, 8, dtype=D)
    w[..., :4] = 3.0  # the wrong half counts 3 times as much
    got = float(moment_loss(est, mix, g, gm, w))
    assert got == pytest.approx(0.75 * abs(math.log1p(var(9)) - math.log1p(var(25))), rel=1e-6)


def test_gradient_turns_the_basis_towards_the_true_axis():
    gt_k, gt_m = _uniform(_line(21, 0.0))
    # Start from an elongated Gaussian whose axis is 60° off; descend on its logits.
    r = torch.arange(33.0, dtype=D) - 16
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    c, s = math.cos(math.radians(60)), math.sin(math.radians(60))
    along, across = xx * c + yy * s, -xx * s + yy * c
    logits = (-(along**2) / 18 - across**2 / 2).reshape(1, 1, -1).clone().requires_grad_(True)
    m = torch.ones(1, 1, 6, 8, dtype=D)
    opt = torch.optim.Adam([logits], lr=0.2)
    losses = []
    for _ in range(150):
        loss = moment_loss(torch.softmax(logits, -1).reshape(1, 1, 33, 33), m, gt_k, gt_m)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[0] > 1.0  # 60° off: 1 - cos 120° = 1.5, plus the size term
    assert losses[-1] < 0.3 * losses[0]
    assert _dir(torch.softmax(logits.detach(), -1).reshape(33, 33), _line(21, 0.0)) < 0.2


def test_samples_without_a_field_are_left_out():
    k, m = _uniform(_line(15, 90.0))
    g, gm = _uniform(_line(15, 0.0))
    k2, m2, g2, gm2 = (torch.cat([a, a]) for a in (k, m, g, gm))
    valid = torch.tensor([[True], [False]])
    both = float(moment_loss(k2, m2, g2, gm2, layer_valid=valid, size_weight=0.0))
    assert both == pytest.approx(2.0, abs=1e-9)  # the mean over the one sample with a field
