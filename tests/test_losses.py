"""Losses (docs/design.md §4, §8) against brute-force references built in the test."""

from __future__ import annotations

import math

import pytest
import torch

from blurfield.losses import (
    kernel_error,
    kernel_loss,
    mixing_entropy,
    mixing_usage,
    pixel_grid,
    reblur_loss,
    reblur_psnr,
    weighted_mean,
)
from blurfield.physics import reblur

D = torch.float64


def _simplex(shape, dim, gen, sharp=1.0):
    return torch.softmax(sharp * torch.randn(*shape, generator=gen, dtype=D), dim=dim)


def _kernels(n, b, k, gen):
    return _simplex((n, b, k * k), 2, gen, sharp=3.0).reshape(n, b, k, k)


def _field(gen, n=2, b=3, j=2, k=5, h=6, w=7):
    kernels = _kernels(n, b, k, gen)
    mixing = _simplex((n, b, h, w), 1, gen, sharp=2.0)
    gt_k = _kernels(n, j, k, gen)
    gt_m = _simplex((n, j, h, w), 1, gen, sharp=2.0)
    weights = torch.rand(n, h, w, generator=gen, dtype=D) + 0.1
    return kernels, mixing, gt_k, gt_m, weights


def _brute_error(kernels, mixing, gt_k, gt_m, p):
    """Materialise every per-pixel kernel and take its p-norm: (N, H, W)."""
    pred = torch.einsum("nbhw,nbkl->nhwkl", mixing, kernels)
    gt = torch.einsum("njhw,njkl->nhwkl", gt_m, gt_k)
    d = (pred - gt).flatten(3)
    return d.norm(p=p, dim=3)


def _direct_weighted(err, weights):
    """sum_i w_i e_i / sum_i w_i per image by explicit loops, then the batch mean."""
    total = 0.0
    for n in range(err.shape[0]):
        num = den = 0.0
        for y in range(err.shape[1]):
            for x in range(err.shape[2]):
                num += float(weights[n, y, x]) * float(err[n, y, x])
                den += float(weights[n, y, x])
        total += num / den
    return total / err.shape[0]


def test_l2_closed_form_equals_brute_force(rng):
    kernels, mixing, gt_k, gt_m, _ = _field(rng)
    got = kernel_error(kernels, mixing, gt_k, gt_m, p=2)
    want = _brute_error(kernels, mixing, gt_k, gt_m, 2)
    assert got.dtype == D
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_l2_closed_form_gradient_equals_brute_force(rng):
    kernels, mixing, gt_k, gt_m, weights = _field(rng)
    grads = []
    for fn in (
        lambda k, m: kernel_loss(k, m, gt_k, gt_m, weights, p=2),
        lambda k, m: weighted_mean(_brute_error(k, m, gt_k, gt_m, 2), weights),
    ):
        k, m = kernels.clone().requires_grad_(), mixing.clone().requires_grad_()
        fn(k, m).backward()
        grads.append((k.grad, m.grad))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 5, 13, 4096])
def test_l1_chunked_equals_brute_force_values_and_gradients(rng, chunk):
    kernels, mixing, gt_k, gt_m, weights = _field(rng)
    out = []
    for fn in (
        lambda k, m: kernel_loss(k, m, gt_k, gt_m, weights, p=1, chunk=chunk),
        lambda k, m: weighted_mean(_brute_error(k, m, gt_k, gt_m, 1), weights),
    ):
        k, m = kernels.clone().requires_grad_(), mixing.clone().requires_grad_()
        loss = fn(k, m)
        loss.backward()
        out.append((loss.detach(), k.grad, m.grad))
    torch.testing.assert_close(out[0], out[1], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("stride", [2, 3])
def test_pixel_grid_offsets_average_to_the_full_loss(rng, stride):
    """Uniform weights, H and W multiples of the stride: the mean over the stride² offsets
    of the grid's L1 loss (each grid scored by brute force) is the full-image loss, and a
    grid holds exactly the pixels [oy::s, ox::s]."""
    kernels, mixing, gt_k, gt_m, _ = _field(rng, h=6, w=12)
    full = kernel_loss(kernels, mixing, gt_k, gt_m, None, p=1)
    grids = []
    for oy in range(stride):
        for ox in range(stride):
            m, mm, none = pixel_grid(stride, (oy, ox), mixing, gt_m, None)
            assert none is None and m.shape[-2:] == (6 // stride, 12 // stride)
            assert torch.equal(m[:, :, 1, 1], mixing[:, :, oy + stride, ox + stride])
            grids.append(weighted_mean(_brute_error(kernels, m, gt_k, mm, 1)))
    torch.testing.assert_close(torch.stack(grids).mean(), full, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="offset"):
        pixel_grid(stride, (stride, 0), mixing)


def test_kernel_loss_zero_at_ground_truth(rng):
    """Predicting the GT layer kernels with the GT masks as mixing gives 0 (both p), also
    with a redundant basis element that gets no mixing weight and padded GT layers."""
    n, j, k, h, w = 2, 3, 33, 16, 16
    gt_k = _kernels(n, j, k, rng).float()
    gt_m = _simplex((n, j, h, w), 1, rng, sharp=3.0).float()
    gt_k[1, 2] = 0  # sample 1 has two layers: layer 2 is padding
    gt_m[1, :2] /= gt_m[1, :2].sum(0, keepdim=True)
    gt_m[1, 2] = 0
    valid = torch.tensor([[True, True, True], [True, True, False]])
    extra = _kernels(n, 1, k, rng).float()
    kernels = torch.cat([gt_k.clone(), extra], 1)
    kernels[1, 2] = extra[1, 0]  # a valid kernel in the padded slot, mixing weight 0
    mixing = torch.cat([gt_m, torch.zeros(n, 1, h, w)], 1)
    weights = torch.rand(n, h, w, generator=rng)
    scale = gt_k[0, 0].norm().item()  # ~ size of a kernel: errors are relative to it
    for p in (1, 2):
        loss = kernel_loss(kernels, mixing, gt_k, gt_m, weights, p=p, layer_valid=valid)
        assert loss.item() < 1e-4 * scale, (p, loss.item())
    # and clearly non-zero for a wrong field
    wrong = kernel_loss(kernels.roll(1, 1), mixing, gt_k, gt_m, weights, layer_valid=valid)
    assert wrong.item() > 0.1 * scale


def test_weighted_mean_matches_direct_computation(rng):
    kernels, mixing, gt_k, gt_m, weights = _field(rng, n=3)
    for p in (1, 2):
        err = _brute_error(kernels, mixing, gt_k, gt_m, p)
        got = kernel_loss(kernels, mixing, gt_k, gt_m, weights, p=p, chunk=7)
        assert got.item() == pytest.approx(_direct_weighted(err, weights), rel=1e-10)
    # uniform weights = plain mean; invalid samples are left out of the batch mean
    err = torch.rand(3, 4, 5, generator=rng, dtype=D)
    weights = torch.rand(3, 4, 5, generator=rng, dtype=D)
    assert weighted_mean(err).item() == pytest.approx(err.mean().item())
    valid = torch.tensor([True, False, True])
    want = _direct_weighted(err[valid], weights[valid])
    assert weighted_mean(err, weights, valid).item() == pytest.approx(want, rel=1e-12)


def test_kernel_loss_leaves_out_samples_without_field(rng):
    kernels, mixing, gt_k, gt_m, weights = _field(rng, n=2)
    gt_k[1], gt_m[1] = 0, 0
    valid = torch.tensor([[True, True], [False, False]])
    both = kernel_loss(kernels, mixing, gt_k, gt_m, weights, layer_valid=valid)
    first = kernel_loss(kernels[:1], mixing[:1], gt_k[:1], gt_m[:1], weights[:1])
    assert both.item() == pytest.approx(first.item(), rel=1e-12)
    none = kernel_loss(kernels, mixing, gt_k, gt_m, weights, layer_valid=valid & False)
    assert none.item() == 0.0


def _camera(x, gamma=2.2, a=50.0):
    """R(x) then x**(1/gamma) by the scalar formulas of eq. (3)-(4)."""
    r = x - math.log1p(math.exp(a * (x - 1))) / a
    return max(r, 0.0) ** (1 / gamma)


def test_reblur_loss_with_delta_kernels_matches_scalar_formula(rng):
    """A centred delta basis: H u is the centre crop of u, so v̂ = (R(u)) ** (1/gamma)."""
    n, b, k, h, w = 2, 2, 5, 4, 3
    kernels = torch.zeros(n, b, k, k, dtype=D)
    kernels[:, :, k // 2, k // 2] = 1
    mixing = _simplex((n, b, h, w), 1, rng)
    sharp = 1.3 * torch.rand(n, 3, h + k - 1, w + k - 1, generator=rng, dtype=D)
    # display values above the gamma toe (1.9e-3), where v ** gamma is exact
    blurry = 0.05 + 0.95 * torch.rand(n, 3, h, w, generator=rng, dtype=D)
    weights = torch.rand(n, h, w, generator=rng, dtype=D) + 0.1

    def direct_error(predict, target) -> torch.Tensor:
        """(n, h, w): mean over channels of (predict(u) - target(v)) ** 2, pixel by pixel,
        u the sharp pixel under the delta."""
        err = torch.zeros(n, h, w, dtype=D)
        for i in range(n):
            for y in range(h):
                for x in range(w):
                    for c in range(3):
                        u = float(sharp[i, c, y + k // 2, x + k // 2])
                        err[i, y, x] += (predict(u) - target(float(blurry[i, c, y, x]))) ** 2 / 3
        return err

    err = direct_error(_camera, lambda v: v)
    got = reblur_loss(kernels, mixing, sharp, blurry, weights)
    assert got.item() == pytest.approx(_direct_weighted(err, weights), rel=1e-9)
    # linear space: R(u) against blurry ** gamma
    err_lin = direct_error(lambda u: _camera(u, gamma=1.0), lambda v: v ** 2.2)
    got = reblur_loss(kernels, mixing, sharp, blurry, weights, space="linear")
    assert got.item() == pytest.approx(_direct_weighted(err_lin, weights), rel=1e-9)


def test_reblur_loss_zero_when_field_reproduces_blurry(rng):
    n, b, k, h, w = 2, 3, 9, 12, 10
    kernels = _kernels(n, b, k, rng).float()
    mixing = _simplex((n, b, h, w), 1, rng).float()
    sharp = 1.4 * torch.rand(n, 3, h + k - 1, w + k - 1, generator=rng)
    blurry = reblur(sharp, kernels, mixing)
    weights = torch.rand(n, h, w, generator=rng)
    for space in ("display", "linear"):
        assert reblur_loss(kernels, mixing, sharp, blurry, weights, space=space) < 1e-12
    assert reblur_psnr(kernels, mixing, sharp, blurry) > 80
    other = reblur_loss(kernels.flip(-1), mixing, sharp, blurry, weights)
    assert other > 1e-5
    psnr = reblur_psnr(kernels.flip(-1), mixing, sharp, blurry)
    mse = (reblur(sharp, kernels.flip(-1), mixing) - blurry).square().flatten(1).mean(1)
    assert psnr.item() == pytest.approx((-10 * mse.log10()).mean().item(), rel=1e-5)


def test_losses_under_bf16_autocast_stay_float32(rng):
    kernels, mixing, gt_k, gt_m, weights = (t.float() for t in _field(rng, k=9, h=8, w=8))
    want = kernel_loss(kernels, mixing, gt_k, gt_m, weights)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = kernel_loss(kernels.bfloat16(), mixing.bfloat16(), gt_k, gt_m, weights)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), rel=2e-2)


def test_bad_arguments_raise_value_error(rng):
    kernels, mixing, gt_k, gt_m, weights = _field(rng)
    with pytest.raises(ValueError, match="p:"):
        kernel_loss(kernels, mixing, gt_k, gt_m, weights, p=3)
    with pytest.raises(ValueError, match="gt_masks"):
        kernel_loss(kernels, mixing, gt_k, gt_m[..., :-1], weights)
    with pytest.raises(ValueError, match="space"):
        reblur_loss(kernels, mixing, torch.zeros(2, 3, 10, 11, dtype=D),
                    torch.zeros(2, 3, 6, 7, dtype=D), space="log")


# --------------------------------------------------------------------------- mixing entropy


def test_mixing_entropy_closed_forms():
    """Uniform over B -> 1, one basis element -> 0, half/half of two -> log 2 / log B."""
    b, h, w = 5, 3, 4
    uniform = torch.full((1, b, h, w), 1 / b, dtype=D)
    one = torch.zeros(1, b, h, w, dtype=D)
    one[:, 2] = 1
    half = torch.zeros(1, b, h, w, dtype=D)
    half[:, :2] = 0.5
    assert mixing_entropy(uniform).item() == pytest.approx(1.0, abs=1e-12)
    assert mixing_entropy(one).item() == pytest.approx(0.0, abs=1e-12)
    assert mixing_entropy(half).item() == pytest.approx(math.log(2) / math.log(b), abs=1e-12)
    assert mixing_entropy(torch.ones(2, 1, h, w, dtype=D)).item() == 0.0  # B = 1


def test_mixing_entropy_matches_a_direct_weighted_sum(rng):
    _, mixing, _, _, weights = _field(rng, b=4)
    h = -(mixing * mixing.log()).sum(1) / math.log(4)
    want = ((weights * h).sum((1, 2)) / weights.sum((1, 2))).mean()
    assert mixing_entropy(mixing, weights).item() == pytest.approx(want.item(), rel=1e-12)


def test_mixing_entropy_gradient_sharpens_the_mixing(rng):
    """A gradient step on the logits lowers the entropy and raises each pixel's largest
    weight; the gradient is finite at a weight of exactly 0."""
    logits = torch.randn(1, 6, 5, 5, generator=rng, dtype=D, requires_grad=True)
    mixing = torch.softmax(logits, 1)
    mixing_entropy(mixing).backward()
    with torch.no_grad():
        after = torch.softmax(logits - 0.5 * logits.grad, 1)
    assert mixing_entropy(after) < mixing_entropy(mixing.detach())
    assert bool((after.amax(1) > mixing.detach().amax(1)).all())
    m = torch.tensor([1.0, 0.0, 0.0], dtype=D).view(1, 3, 1, 1).requires_grad_(True)
    mixing_entropy(m).backward()
    assert bool(torch.isfinite(m.grad).all())


def test_mixing_usage_closed_forms():
    """One kernel everywhere -> 0 however sharp each pixel is; each of B kernels on 1/B of
    the pixels -> 1 although every pixel uses one; uniform mixing -> 1; two kernels on
    3/4 and 1/4 of the pixels -> H(3/4, 1/4) / log B; B = 1 -> 0."""
    b, h, w = 4, 4, 4
    one = torch.zeros(1, b, h, w, dtype=D)
    one[:, 1] = 1
    tiles = torch.zeros(1, b, h, w, dtype=D)
    for j in range(b):
        tiles[0, j, j] = 1  # row j uses kernel j
    split = torch.zeros(1, b, h, w, dtype=D)
    split[0, 0, :3] = 1
    split[0, 3, 3:] = 1
    h34 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(b)
    assert mixing_usage(one).item() == pytest.approx(0.0, abs=1e-12)
    assert mixing_entropy(tiles).item() == pytest.approx(0.0, abs=1e-12)
    assert mixing_usage(tiles).item() == pytest.approx(1.0, abs=1e-12)
    assert mixing_usage(torch.full((1, b, h, w), 1 / b, dtype=D)).item() == pytest.approx(1.0)
    assert mixing_usage(split).item() == pytest.approx(h34, abs=1e-12)
    assert mixing_usage(torch.ones(2, 1, h, w, dtype=D)).item() == 0.0


def test_mixing_usage_matches_a_direct_weighted_sum(rng):
    _, mixing, _, _, weights = _field(rng, b=4)
    want = []
    for n in range(mixing.shape[0]):
        p = torch.stack([(weights[n] * mixing[n, j]).sum() / weights[n].sum() for j in range(4)])
        want.append(-(p * p.log()).sum() / math.log(4))
    assert mixing_usage(mixing, weights).item() == pytest.approx(sum(want).item() / len(want),
                                                                 rel=1e-12)


def test_mixing_usage_gradient_spreads_a_collapsed_field(rng):
    """From a field that puts ~all pixels on one kernel, a gradient ascent step on the logits
    raises the usage and lowers that kernel's share of the image."""
    logits = torch.randn(1, 5, 6, 6, generator=rng, dtype=D)
    logits[:, 0] += 4.0
    logits.requires_grad_(True)
    mixing = torch.softmax(logits, 1)
    mixing_usage(mixing).backward()
    with torch.no_grad():
        after = torch.softmax(logits + 2.0 * logits.grad, 1)
    assert mixing_usage(after) > mixing_usage(mixing.detach())
    assert after[:, 0].mean() < mixing.detach()[:, 0].mean()
