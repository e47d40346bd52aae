"""The fast fft paths and skipped basis elements of BlurField (issue 17, part 1).

The bound under test (BlurField docstring): with ``delta_i`` the mixing mass of the skipped
elements at pixel i and the kept mixing renormalised,

    |H u - H_skip u|_i        <= delta_i (max u - min u)
    ||H^T y - H_skip^T y||_1  <= 2 sum_i delta_i |y_i|       (per sample and channel)
"""

from __future__ import annotations

import pytest
import torch

from blurfield.physics import BlurField, blur, blur_adjoint

PADDINGS = ["valid", "same", "circular"]
METHODS = ["direct", "fft"]
F64 = torch.float64


def out_size(h, w, k, padding):
    return (h - k + 1, w - k + 1) if padding == "valid" else (h, w)


def kernels_(n, b, k, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    kernels = torch.rand(n, b, k, k, generator=g, dtype=dtype)
    return kernels / kernels.sum((-1, -2), keepdim=True)


def peaky_mixing(n, b, h, w, strong, seed=0, dtype=F64):
    """Elements in ``strong`` carry the field; the others get logits 6-9 lower: small but
    non-zero everywhere (an estimated field's softmax tail)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, b, h, w, generator=g, dtype=dtype) - 6.0
    logits[:, strong] += 6.0
    weak = [i for i in range(b) if i not in strong]
    logits[:, weak] -= torch.rand(len(weak), generator=g, dtype=dtype)[:, None, None] * 3
    return logits.softmax(1)


def layered_mixing(n, b, h, w, layers, seed=0, dtype=F64):
    """A ground-truth-like field: only ``layers`` have mixing, the rest exactly 0."""
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(n, b, h, w, dtype=dtype)
    m[:, layers] = torch.randn(n, len(layers), h, w, generator=g, dtype=dtype).mul(3).softmax(1)
    return m


# --------------------------------------------------------------------------- fast path


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("b", [1, 2, 3, 6])
@pytest.mark.parametrize("size", [(21, 28), (30, 23)])
def test_fast_fft_path_equals_autograd_path(padding, b, size):
    """Kernel pairs (odd B leaves one element for real transforms; 5-smooth sizes odd and
    even) against the chunked real-transform path autograd uses."""
    n, c, k = 2, 3, 5
    h, w = size
    ho, wo = out_size(h, w, k, padding)
    kernels = kernels_(n, b, k)
    mixing = torch.randn(n, b, ho, wo, dtype=F64).softmax(1)
    field = BlurField(kernels, mixing, padding, "fft")
    u = torch.randn(n, c, h, w, dtype=F64)
    y = torch.randn(n, c, ho, wo, dtype=F64)
    fast_fwd, fast_adj = field.forward(u), field.adjoint(y)
    slow_fwd = field.forward(u.clone().requires_grad_()).detach()
    slow_adj = field.adjoint(y.clone().requires_grad_()).detach()
    torch.testing.assert_close(fast_fwd, slow_fwd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast_adj, slow_adj, rtol=1e-10, atol=1e-12)
    uncached = BlurField(kernels, mixing, padding, "fft", cache=False)
    torch.testing.assert_close(uncached.forward(u), fast_fwd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(uncached.adjoint(y), fast_adj, rtol=1e-10, atol=1e-12)


def test_fast_path_float32_matches_direct():
    kernels = kernels_(1, 25, 33, dtype=torch.float32)
    mixing = torch.randn(1, 25, 70, 64).softmax(1)
    u, y = torch.rand(2, 1, 3, 70, 64)
    for fn, x in ((blur, u), (blur_adjoint, y)):
        a = fn(x, kernels, mixing, "same", "fft")
        b = fn(x, kernels, mixing, "same", "direct")
        assert ((a - b).norm() / b.norm()).item() < 1e-5


# --------------------------------------------------------------------------- skipping


@pytest.mark.parametrize("method", METHODS)
def test_skip_tol_zero_drops_only_absent_layers_exactly(method):
    n, b, k, h, w = 2, 7, 5, 18, 16
    kernels = kernels_(n, b, k)
    mixing = layered_mixing(n, b, h, w, layers=[0, 2, 5])
    full = BlurField(kernels, mixing, "same", method, skip_tol=None)
    skip = BlurField(kernels, mixing, "same", method)  # default skip_tol=0
    assert full.active.tolist() == list(range(b))
    assert skip.active.tolist() == [0, 2, 5]
    assert skip.skip_error.tolist() == [0.0, 0.0]
    torch.testing.assert_close(skip._mix, mixing[:, [0, 2, 5]], rtol=0, atol=0)  # no renorm
    u, y = torch.randn(2, n, 3, h, w, dtype=F64)
    torch.testing.assert_close(skip(u), full(u), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(skip.adjoint(y), full.adjoint(y), rtol=1e-12, atol=1e-13)


def _skipped_fields(method, padding, tol=2e-3):
    n, b, k, h, w = 2, 9, 5, 20, 17
    ho, wo = out_size(h, w, k, padding)
    kernels = kernels_(n, b, k, seed=3)
    mixing = peaky_mixing(n, b, ho, wo, strong=[1, 4, 6], seed=3)
    full = BlurField(kernels, mixing, padding, method, skip_tol=None)
    skip = BlurField(kernels, mixing, padding, method, skip_tol=tol)
    return kernels, mixing, full, skip, (n, h, w, ho, wo)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("method", METHODS)
def test_skipped_operator_within_its_bound(padding, method):
    tol = 2e-3
    kernels, mixing, full, skip, (n, h, w, ho, wo) = _skipped_fields(method, padding, tol)
    b = mixing.shape[1]
    dropped = [i for i in range(b) if i not in skip.active.tolist()]
    assert 0 < len(dropped) < b - 3  # some elements skipped, the strong ones kept
    delta = mixing[:, dropped].sum(1, keepdim=True)  # (N, 1, H', W'), computed here
    eps = delta.amax((1, 2, 3))
    torch.testing.assert_close(skip.skip_error, eps)
    # eps <= sum of the skipped elements' max mixing <= (B - |A|) tol
    assert (eps <= mixing[:, dropped].amax((0, 2, 3)).sum() + 1e-15).all()
    assert (eps <= len(dropped) * tol).all() and (eps > 0).all()

    g = torch.Generator().manual_seed(5)
    u = torch.rand(n, 3, h, w, generator=g, dtype=F64) * 2 - 0.5
    err = (full(u) - skip(u)).abs()
    osc = (u.amax((1, 2, 3)) - u.amin((1, 2, 3)))[:, None, None, None]
    assert (err <= delta * osc + 1e-13).all()
    assert err.max() > 1e-3 * (delta * osc).max()  # the test is not vacuous
    assert (err.amax((1, 2, 3)) <= 2 * eps * u.abs().amax((1, 2, 3)) + 1e-13).all()

    y = torch.randn(n, 3, ho, wo, generator=g, dtype=F64)
    err_adj = (full.adjoint(y) - skip.adjoint(y)).abs().sum((-1, -2))  # (N, C)
    bound = 2 * (delta * y.abs()).sum((-1, -2))
    assert (err_adj <= bound + 1e-12).all()
    assert (err_adj > 1e-3 * bound).all()
    assert (err_adj <= 2 * eps[:, None] * y.abs().sum((-1, -2)) + 1e-12).all()


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("method", METHODS)
def test_skipped_operator_is_the_renormalised_field_and_keeps_row_sums(padding, method):
    kernels, mixing, _, skip, (n, h, w, ho, wo) = _skipped_fields(method, padding)
    keep = torch.zeros(mixing.shape[1], dtype=torch.bool)
    keep[skip.active] = True
    renorm = mixing * keep[None, :, None, None]
    renorm = renorm / renorm.sum(1, keepdim=True)
    ref = BlurField(kernels, renorm, padding, method, skip_tol=None)
    u = torch.randn(n, 3, h, w, dtype=F64)
    y = torch.randn(n, 3, ho, wo, dtype=F64)
    torch.testing.assert_close(skip(u), ref(u), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(skip.adjoint(y), ref.adjoint(y), rtol=1e-10, atol=1e-12)
    ones = torch.ones(n, 1, h, w, dtype=F64)
    torch.testing.assert_close(skip(ones), torch.ones(n, 1, ho, wo, dtype=F64))


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("method", METHODS)
def test_skipped_operator_adjoint_dot_product(padding, method):
    _, _, _, skip, (n, h, w, ho, wo) = _skipped_fields(method, padding)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(n, 3, h, w, generator=g, dtype=F64)
    y = torch.randn(n, 3, ho, wo, generator=g, dtype=F64)
    lhs = (skip(u) * y).sum()
    rhs = (u * skip.adjoint(y)).sum()
    assert abs(lhs - rhs) / abs(lhs) < 1e-10


def test_functional_skip_tol_and_gradcheck():
    n, b, k, h, w = 1, 5, 4, 9, 8
    kernels = kernels_(n, b, k)
    mixing = peaky_mixing(n, b, h, w, strong=[0, 3])
    field = BlurField(kernels, mixing, "same", "fft", skip_tol=5e-2)
    assert field.active.tolist() == [0, 3]
    u = torch.randn(n, 2, h, w, dtype=F64)
    torch.testing.assert_close(blur(u, kernels, mixing, "same", "fft", skip_tol=5e-2),
                               field(u))
    torch.testing.assert_close(blur_adjoint(u, kernels, mixing, "same", "fft", skip_tol=5e-2),
                               field.adjoint(u))
    args = [t[..., :6, :6].clone().requires_grad_() for t in (u[:, :1], kernels, mixing)]
    args[1] = kernels[..., :3, :3].clone().requires_grad_()
    assert torch.autograd.gradcheck(  # the renormalisation carries the gradient
        lambda a, bb, c: blur(a, bb, c, "same", "fft", check=False, skip_tol=5e-2), args,
        fast_mode=True)


def test_skip_tol_too_large_or_negative_raises():
    kernels = kernels_(1, 2, 3)
    mixing = torch.zeros(1, 2, 8, 8, dtype=F64)
    mixing[:, 0, :, :4] = 1
    mixing[:, 1, :, 4:] = 1
    with pytest.raises(ValueError, match="skip_tol"):
        BlurField(kernels, mixing, skip_tol=1.0)  # would leave the right half with no kernel
    with pytest.raises(ValueError, match="skip_tol"):
        BlurField(kernels, mixing, skip_tol=-1e-3)
    assert BlurField(kernels, mixing, skip_tol=0.5).active.tolist() == [0, 1]


def test_cached_spectra_are_computed_once():
    """Richardson-Lucy applies the same field 60+ times: no kernel transform per call."""
    kernels = kernels_(1, 5, 7, dtype=torch.float32)
    mixing = torch.randn(1, 5, 24, 20).softmax(1)
    field = BlurField(kernels, mixing, "same", "fft")
    u = torch.rand(1, 3, 24, 20)
    field(u), field.adjoint(u)
    pair_spec, spec = field._pair_spec, field._spec
    assert pair_spec.shape == (1, 3, *field.fft_size)
    assert spec.shape == (1, 5, field.fft_size[0], field.fft_size[1] // 2 + 1)
    field(u), field.adjoint(u), field.ht_one()
    assert field._pair_spec is pair_spec and field._spec is spec
