"""The blur-field operator and the camera model against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from blurfield.physics import (
    BlurField,
    blur,
    blur_adjoint,
    check_field,
    ht_one,
    pad,
    per_pixel_kernels,
    reblur,
    saturate,
    saturate_grad,
    smooth_masks,
    to_display,
    to_linear,
    uniform_field,
)
from blurfield.physics.camera import TOE

PADDINGS = ["valid", "same", "circular"]
METHODS = ["direct", "fft"]


def random_field(n, b, k, h, w, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    kernels = torch.rand(n, b, k, k, generator=g, dtype=dtype)
    kernels = kernels / kernels.sum((-1, -2), keepdim=True)
    mixing = torch.randn(n, b, h, w, generator=g, dtype=dtype).mul(2).softmax(1)
    return kernels, mixing


def out_size(h, w, k, padding):
    return (h - k + 1, w - k + 1) if padding == "valid" else (h, w)


def brute_force(u, kernels, mixing, padding):
    """Per-pixel reference: pad with numpy, extract every K x K patch with F.unfold, and take
    the dot product with that pixel's own kernel sum_b m_b k_b (mask after correlation)."""
    n, c, h, w = u.shape
    k = kernels.shape[-1]
    front, rear = (k - 1) // 2, k // 2
    if padding == "valid":
        up = u.numpy()
    else:
        mode = {"same": "reflect", "circular": "wrap"}[padding]
        up = np.pad(u.numpy(), ((0, 0), (0, 0), (front, rear), (front, rear)), mode=mode)
    up = torch.from_numpy(up)
    ho, wo = up.shape[-2] - k + 1, up.shape[-1] - k + 1
    patches = F.unfold(up, k).reshape(n, c, k * k, ho * wo)  # (N, C, K*K, P)
    per_pixel = torch.einsum("nbp,nbq->npq", mixing.reshape(n, -1, ho * wo),
                             kernels.reshape(n, -1, k * k))  # (N, P, K*K)
    return torch.einsum("ncqp,npq->ncp", patches, per_pixel).reshape(n, c, ho, wo)


# --------------------------------------------------------------------------- operator


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", [5, 6])
def test_adjoint_dot_product(padding, method, k):
    n, c, h, w = 2, 3, 19, 22
    ho, wo = out_size(h, w, k, padding)
    kernels, mixing = random_field(n, 3, k, ho, wo)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    y = torch.randn(n, c, ho, wo, generator=g, dtype=torch.float64)
    lhs = (blur(u, kernels, mixing, padding, method) * y).sum()
    rhs = (u * blur_adjoint(y, kernels, mixing, padding, method)).sum()
    assert abs(lhs - rhs) / abs(lhs) < 1e-10


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("method", METHODS)
def test_adjoint_equals_autograd_vjp(padding, method):
    n, c, h, w, k = 1, 2, 16, 13, 5
    ho, wo = out_size(h, w, k, padding)
    kernels, mixing = random_field(n, 2, k, ho, wo)
    u = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    y = torch.randn(n, c, ho, wo, dtype=torch.float64)
    (vjp,) = torch.autograd.grad(blur(u, kernels, mixing, padding, method), u, y)
    torch.testing.assert_close(blur_adjoint(y, kernels, mixing, padding, method), vjp,
                               rtol=1e-10, atol=1e-12)


def test_wrong_adjoint_that_reflect_pads_y_fails_the_dot_product_test():
    """The test above has teeth: reflect-padding y instead of folding strips back fails it."""
    n, c, h, w, k = 1, 1, 15, 15, 5
    kernels, mixing = random_field(n, 2, k, h, w)
    u, y = torch.randn(n, c, h, w, dtype=torch.float64), torch.randn(n, c, h, w,
                                                                     dtype=torch.float64)
    wrong = blur_adjoint(pad(mixing[:, :1] * 0 + y, k, "same"), kernels,
                         torch.ones(n, 2, h + k - 1, w + k - 1, dtype=torch.float64) / 2,
                         padding="valid")[..., k - 1 : k - 1 + h, k - 1 : k - 1 + w]
    lhs = (blur(u, kernels, mixing, "same") * y).sum()
    assert abs(lhs - (u * wrong).sum()) / abs(lhs) > 1e-3


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("k", [7, 8])
@pytest.mark.parametrize("size", [(21, 24), (25, 19)])
def test_fft_equals_direct_float32(padding, k, size):
    h, w = size
    ho, wo = out_size(h, w, k, padding)
    kernels, mixing = random_field(2, 4, k, ho, wo, dtype=torch.float32)
    u = torch.rand(2, 3, h, w)
    y = torch.rand(2, 3, ho, wo)
    for fn, x in ((blur, u), (blur_adjoint, y)):
        a = fn(x, kernels, mixing, padding, "fft")
        b = fn(x, kernels, mixing, padding, "direct")
        assert ((a - b).norm() / b.norm()).item() < 1e-5


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", [5, 6])
def test_brute_force_per_pixel_reference(padding, method, k):
    n, c, h, w = 2, 3, 17, 20
    ho, wo = out_size(h, w, k, padding)
    kernels, mixing = random_field(n, 3, k, ho, wo)
    u = torch.randn(n, c, h, w, dtype=torch.float64)
    torch.testing.assert_close(blur(u, kernels, mixing, padding, method),
                               brute_force(u, kernels, mixing, padding))


def test_mask_before_correlation_is_caught_by_brute_force():
    n, c, h, w, k = 1, 1, 16, 16, 5
    kernels, mixing = random_field(n, 3, k, h, w)
    u = torch.randn(n, c, h, w, dtype=torch.float64)
    mask_before = sum(blur(mixing[:, b : b + 1] * u, kernels[:, b : b + 1],
                           torch.ones(n, 1, h, w, dtype=torch.float64), "same")
                      for b in range(3))
    assert (mask_before - brute_force(u, kernels, mixing, "same")).abs().max() > 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_single_kernel_equals_conv2d(method):
    k = 7
    kernels, _ = random_field(1, 1, k, 1, 1)
    u = torch.randn(1, 3, 20, 18, dtype=torch.float64)
    kernels_, mixing = uniform_field(kernels[0, 0], 14, 12)
    ref = F.conv2d(u.transpose(0, 1), kernels[0, :1][:, None]).transpose(0, 1)
    torch.testing.assert_close(blur(u, kernels_, mixing, "valid", method), ref)


@pytest.mark.parametrize("method", METHODS)
def test_linearity(method):
    kernels, mixing = random_field(1, 3, 5, 12, 12)
    u1, u2 = torch.randn(2, 1, 3, 12, 12, dtype=torch.float64)
    a, b = 0.7, -2.3
    torch.testing.assert_close(
        blur(a * u1 + b * u2, kernels, mixing, "same", method),
        a * blur(u1, kernels, mixing, "same", method) + b * blur(u2, kernels, mixing, "same",
                                                                 method))


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("method", METHODS)
def test_gradcheck(padding, method):
    h, w, k = 9, 8, 4
    ho, wo = out_size(h, w, k, padding)
    kernels, mixing = random_field(1, 2, k, ho, wo)
    u = torch.randn(1, 2, h, w, dtype=torch.float64)
    args = [t.clone().requires_grad_() for t in (u, kernels, mixing)]
    assert torch.autograd.gradcheck(
        lambda a, b, c: blur(a, b, c, padding, method, check=False), args)


def test_blurfield_cache_matches_functional_and_ht_one():
    kernels, mixing = random_field(1, 4, 9, 30, 28, dtype=torch.float32)
    field = BlurField(kernels, mixing, padding="same", method="fft")
    u = torch.rand(1, 3, 30, 28)
    for _ in range(2):  # the second call uses the cached spectra
        torch.testing.assert_close(field(u), blur(u, kernels, mixing, "same", "direct"),
                                   rtol=1e-5, atol=1e-5)
    ones = torch.ones(1, 1, 30, 28)
    torch.testing.assert_close(field.ht_one(), blur_adjoint(ones, kernels, mixing, "same"),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ht_one(kernels, mixing, "same"), field.ht_one(),
                               rtol=1e-5, atol=1e-5)


def test_rows_sum_to_one_but_columns_do_not():
    kernels, mixing = random_field(1, 3, 7, 24, 24)
    ones = torch.ones(1, 1, 24, 24, dtype=torch.float64)
    torch.testing.assert_close(blur(ones, kernels, mixing, "same"), ones)
    col = ht_one(kernels, mixing, "same")
    assert (col - 1).abs().max() > 0.05  # H^T 1 != 1 where the mixing varies


def test_per_pixel_kernels_and_smooth_masks():
    kernels, mixing = random_field(1, 3, 5, 10, 10)
    ys, xs = torch.tensor([0, 4, 9]), torch.tensor([3, 4, 0])
    kp = per_pixel_kernels(kernels, mixing, ys, xs)
    for p in range(3):
        ref = sum(mixing[0, b, ys[p], xs[p]] * kernels[0, b] for b in range(3))
        torch.testing.assert_close(kp[0, p], ref)
    hard = torch.zeros(1, 2, 12, 12, dtype=torch.float64)
    hard[:, 1, 3:8, 2:9] = 1
    hard[:, 0] = 1 - hard[:, 1]
    lk, _ = random_field(1, 2, 5, 1, 1)
    soft = smooth_masks(hard, lk, padding="same", normalize=True)
    torch.testing.assert_close(soft.sum(1), torch.ones(1, 12, 12, dtype=torch.float64))
    raw = smooth_masks(hard, lk, padding="same", normalize=False)
    valid = smooth_masks(hard, lk, padding="valid", normalize=False)
    torch.testing.assert_close(valid, raw[..., 2:10, 2:10])  # interior of "same" = "valid"
    for j in range(2):
        ref = brute_force(hard[:, j : j + 1], lk[:, j : j + 1],
                          torch.ones(1, 1, 12, 12, dtype=torch.float64), "same")
        torch.testing.assert_close(raw[:, j : j + 1], ref)


def test_normalize_masks_matches_smooth_masks_and_falls_back_to_hard():
    from blurfield.physics import normalize_masks

    hard = torch.zeros(1, 2, 12, 14, dtype=torch.float64)
    hard[:, 1, :, :7] = 1  # layer 1 = left half, layer 0 = right half
    hard[:, 0] = 1 - hard[:, 1]
    lk = torch.zeros(1, 2, 5, 5, dtype=torch.float64)
    lk[0, 1, 2, 4] = 1  # layer 1 looks 2 px right, layer 0 2 px left: near the seam
    lk[0, 0, 2, 0] = 1  # neither kernel reaches its own layer, so the sum is 0 there
    for padding in ("same", "valid"):
        raw = smooth_masks(hard, lk, padding=padding, normalize=False)
        o = 2 if padding == "valid" else 0
        h = hard[..., o : o + raw.shape[-2], o : o + raw.shape[-1]]
        got = normalize_masks(raw, h)
        torch.testing.assert_close(got, smooth_masks(hard, lk, padding=padding))
        zero = raw.sum(1) <= 1e-6
        assert zero.sum() > 0  # the fallback branch is exercised: the hard mask there
        assert torch.equal(got[:, :, zero[0]], h[:, :, zero[0]])
        total = raw.sum(1, keepdim=True)  # elsewhere the direct quotient
        torch.testing.assert_close(got[:, :, ~zero[0]], (raw / total)[:, :, ~zero[0]])
        torch.testing.assert_close(got.sum(1), torch.ones_like(got.sum(1)))


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_naming_the_argument():
    kernels, mixing = random_field(1, 2, 5, 12, 12, dtype=torch.float32)
    u = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="mixing"):  # wrong spatial size for valid
        blur(u, kernels, torch.ones(1, 2, 5, 5) / 2)
    with pytest.raises(ValueError, match="kernels"):
        blur(u, kernels * 2, mixing)
    with pytest.raises(ValueError, match="kernels"):
        bad = kernels.clone()
        bad[0, 0, 0, 0] = -0.5
        bad[0, 0, 0, 1] += 0.5
        blur(u, bad, mixing)
    with pytest.raises(ValueError, match="mixing"):
        blur(u, kernels, mixing * 0.9)
    with pytest.raises(ValueError, match="u"):
        blur(u.clone().fill_(float("nan")), kernels, mixing)
    with pytest.raises(ValueError, match="smaller"):
        blur(torch.rand(1, 3, 3, 3), kernels, torch.ones(1, 2, 3, 3) / 2, padding="same")
    with pytest.raises(ValueError, match="u"):
        blur(torch.rand(3, 16, 16), kernels, mixing)
    with pytest.raises(ValueError, match="mixing"):
        blur(u, kernels, torch.ones(1, 3, 12, 12) / 3)
    with pytest.raises(ValueError, match="padding"):
        blur(u, kernels, mixing, padding="reflect")
    with pytest.raises(ValueError, match="y"):
        blur_adjoint(torch.rand(1, 3, 16, 16), kernels, mixing)
    with pytest.raises(ValueError, match="NaN"):
        check_field(kernels, mixing.clone().fill_(float("nan")))
    blur(u, kernels * 2, mixing, check=False)  # check=False skips the checks


# --------------------------------------------------------------------------- camera


@pytest.mark.parametrize("gamma", [1.0, 2.2])
def test_gamma_round_trip_and_black(gamma):
    v = torch.linspace(0, 1, 256, dtype=torch.float64)
    torch.testing.assert_close(to_display(to_linear(v, gamma), gamma), v)
    assert to_display(torch.zeros(1), gamma).item() == 0
    assert to_linear(torch.zeros(1), gamma).item() == 0
    x = torch.tensor([-1.0, -1e-30, 0.0, 1e-12, 0.5, 2.0], requires_grad=True)
    y = to_display(x, gamma)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(y).all() and torch.isfinite(g).all()
    assert g[2] > 0 or gamma == 1  # finite, non-zero slope at exactly 0


def test_gamma_matches_power_law_above_the_toe():
    x = torch.tensor([1e-4, 0.01, 0.2, 0.9], dtype=torch.float64)
    torch.testing.assert_close(to_display(x, 2.2), x ** (1 / 2.2))
    # every non-zero 8-bit value is above the toe
    v = torch.arange(1, 256, dtype=torch.float64) / 255
    torch.testing.assert_close(to_linear(v, 2.2), v**2.2)


@pytest.mark.parametrize("gamma", [1.0, 2.2])
def test_gamma_without_autograd_is_the_same_curve_in_place(gamma):
    """The in-place path (no autograd) gives the closed form's values to the bit, toe
    included, and leaves its input as it was."""
    x = torch.cat([torch.linspace(-0.1, 1.5, 4001), torch.linspace(0, 3e-6, 301)])
    kept = x.clone()
    toe_display = TOE ** (1 / gamma)
    want_d = torch.where(x.clamp(min=0) < TOE, x.clamp(min=0) * TOE ** (1 / gamma - 1),
                         x.clamp(min=TOE) ** (1 / gamma))
    want_l = torch.where(x.clamp(min=0) < toe_display, x.clamp(min=0) * (TOE / toe_display),
                         x.clamp(min=toe_display) ** gamma)
    if gamma == 1:
        want_d = want_l = x.clamp(min=0)
    assert torch.equal(to_display(x, gamma), want_d)
    assert torch.equal(to_linear(x, gamma), want_l)
    assert torch.equal(x, kept)


def test_saturation_closed_form():
    x = torch.tensor([0.0, 0.5, 0.9, 1.0, 1.5, 10.0], dtype=torch.float64, requires_grad=True)
    r = saturate(x)
    ref = x - torch.log1p(torch.exp(50 * (x - 1))) / 50
    torch.testing.assert_close(r, ref.clamp(min=0))
    assert (r <= 1).all() and (r[:4] < 1).all() and r[-1] > 0.99  # tends to 1 from below
    assert abs(r[1].item() - 0.5) < 1e-9  # identity well below 1
    (g,) = torch.autograd.grad(r.sum(), x)
    torch.testing.assert_close(saturate_grad(x.detach()), g)
    assert abs(saturate_grad(torch.tensor(1.0)).item() - 0.5) < 1e-7
    assert not torch.isnan(saturate(torch.tensor([-3.0, 0.0]))).any()


def test_saturation_without_autograd_is_the_closed_form():
    """RL's path (no autograd, another formula) against the closed form in float64, on a
    grid dense around the knee at 1 and into the dark, in both precisions."""
    x = torch.cat([torch.linspace(0, 2, 20001, dtype=torch.float64),
                   torch.logspace(-8, -1, 50, dtype=torch.float64), torch.tensor([1.0, 30.0])])
    z = 50 * (x - 1)  # log(1 + e^z) = logaddexp(0, z), without overflow at x = 30
    ref = (x - torch.logaddexp(torch.zeros_like(z), z) / 50).clamp(min=0)
    torch.testing.assert_close(saturate(x), ref, rtol=1e-12, atol=1e-14)
    out = saturate(x.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=2e-7, atol=1e-7)
    with torch.no_grad():  # the same under no_grad for a tensor that requires it
        torch.testing.assert_close(saturate(x.clone().requires_grad_()), ref, rtol=1e-12,
                                   atol=1e-14)


def test_reblur_is_eq3_without_noise():
    kernels, mixing = random_field(1, 2, 5, 12, 12)
    u = torch.rand(1, 3, 16, 16, dtype=torch.float64) * 1.5
    hu = brute_force(u, kernels, mixing, "valid")
    ref = (hu - torch.log1p(torch.exp(50 * (hu - 1))) / 50).clamp(min=0) ** (1 / 2.2)
    torch.testing.assert_close(reblur(u, kernels, mixing), ref)


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_adjoint(method):
    kernels, mixing = random_field(1, 2, 4, 8, 7)
    y = torch.randn(1, 2, 8, 7, dtype=torch.float64)
    args = [t.clone().requires_grad_() for t in (y, kernels, mixing)]
    assert torch.autograd.gradcheck(
        lambda a, b, c: blur_adjoint(a, b, c, "same", method, check=False), args)


@pytest.mark.parametrize("padding, np_mode", [("same", "reflect"), ("circular", "wrap")])
@pytest.mark.parametrize("size, k", [((12, 15), 6), ((3, 4), 9), ((2, 5), 8), ((1, 7), 2)])
def test_pad_equals_numpy_pad(padding, np_mode, size, k):
    """Both branches of ``pad`` (F.pad, and the gather for images under K // 2 a side)."""
    x = torch.rand(1, 2, *size, dtype=torch.float64)
    f, r = (k - 1) // 2, k // 2
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (f, r), (f, r)), mode=np_mode)
    assert np.array_equal(pad(x, k, padding).numpy(), ref)
