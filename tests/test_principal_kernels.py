"""Principal kernels (blurfield.physics.lowrank): the field on fewer, signed elements, its
error against a direct per-pixel computation, the per-pixel bound on ``H u``, the exact
adjoint, and Richardson–Lucy on them against RL on the full field."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.fields import peaky_field
from helpers.images import astronaut, display, psnr

from blurfield.physics import (
    BlurField,
    blur,
    per_pixel_kernels,
    principal_kernels,
    saturate,
    to_linear,
)
from blurfield.restore import richardson_lucy, rl

pytestmark = pytest.mark.usefixtures("one_thread")


def random_field(b: int = 8, k: int = 7, size: int = 24, seed: int = 0):
    """Random kernels on the simplex, mixing a softmax of smooth random logits."""
    g = torch.Generator().manual_seed(seed)
    kernels = torch.rand(1, b, k, k, generator=g) ** 3
    kernels = kernels / kernels.sum((-1, -2), keepdim=True)
    logits = F.interpolate(torch.randn(1, b, 2, 2, generator=g), size=(size, size),
                           mode="bicubic", align_corners=False)
    return kernels, logits.softmax(1)


def pixel_kernels(kernels, mixing):
    """(N, P, K, K): every pixel's kernel, ``sum_b m^b_p k^b``, by the direct sum."""
    h, w = mixing.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return per_pixel_kernels(kernels, mixing, ys.flatten(), xs.flatten())


def test_mixing_on_a_line_is_rank_one_and_exact():
    kernels, mixing = random_field()
    p, q = mixing[..., 3, 5], mixing[..., 17, 20]  # two pixels' mixing vectors (1, B)
    t = torch.linspace(0, 1, 24)[None, None, :, None].expand(1, 1, 24, 24)
    line = t * p[..., None, None] + (1 - t) * q[..., None, None]
    pf = principal_kernels(kernels, line, tol=1e-4)
    assert pf.rank == 1 and pf.kernels.shape == (1, 2, 7, 7)
    full = BlurField(kernels, line, skip_tol=None)
    fast = BlurField(pf.kernels, pf.mixing(line), check=False, skip_tol=None)
    u, y = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24)
    torch.testing.assert_close(fast.forward(u), full.forward(u), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fast.adjoint(y), full.adjoint(y), atol=1e-5, rtol=1e-4)


def test_uniform_field_is_its_mean_kernel():
    kernels, mixing = random_field()
    flat = mixing[..., 7:8, 9:10].expand_as(mixing).contiguous()  # one pixel's mixing everywhere
    pf = principal_kernels(kernels, flat, tol=1e-6)
    assert pf.rank == 0
    expected = torch.einsum("nb,nbij->nij", flat[..., 0, 0], kernels)
    torch.testing.assert_close(pf.kernels[:, 0], expected, atol=1e-6, rtol=1e-5)
    assert torch.allclose(pf.mixing(flat), torch.ones(1, 1, 24, 24))


@pytest.mark.parametrize("tol", [0.2, 0.05, 0.01])  # ranks 2, 3, 6 of 10
def test_error_is_the_largest_relative_kernel_error_and_the_rank_is_the_smallest(tol):
    kernels, mixing = random_field(b=10)
    pf = principal_kernels(kernels, mixing, tol)
    exact = pixel_kernels(kernels, mixing)
    approx = pixel_kernels(pf.kernels, pf.mixing(mixing))
    rel = ((approx - exact).flatten(2).norm(dim=2) / exact.flatten(2).norm(dim=2)).max()
    assert float(pf.error) <= tol
    assert float(pf.error) == pytest.approx(float(rel), rel=1e-3, abs=1e-6)
    if pf.rank > 0:  # one rank less does not meet the tolerance
        assert principal_kernels(kernels, mixing, tol, max_rank=pf.rank - 1) is None
    assert approx.sum((-1, -2)).sub(1).abs().max() < 1e-4  # the kernels keep their mass


def test_blur_is_within_the_per_pixel_bound_and_the_adjoint_is_exact():
    kernels, mixing = random_field(b=10, size=30)
    k = kernels.shape[-1]
    tol = 0.05
    pf = principal_kernels(kernels, mixing, tol)
    u = torch.rand(1, 3, 30 + k - 1, 30 + k - 1, dtype=torch.float64)
    full = BlurField(kernels.double(), mixing.double(), padding="valid", skip_tol=None)
    fast = BlurField(pf.kernels.double(), pf.mixing(mixing).double(), padding="valid",
                     check=False, skip_tol=None)
    patches = F.unfold(u, k).reshape(1, 3, k * k, 30, 30).norm(dim=2)  # ||patch_i(u)||_2
    knorm = pixel_kernels(kernels, mixing).flatten(2).norm(dim=2).reshape(1, 1, 30, 30)
    diff = (fast.forward(u) - full.forward(u)).abs()
    assert diff.max() > 0  # not exact at this tolerance
    assert bool((diff <= tol * knorm * patches + 1e-9).all())
    y = torch.rand(1, 3, 30, 30, dtype=torch.float64)
    lhs = (fast.forward(u) * y).sum()
    rhs = (u * fast.adjoint(y)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-10)


def test_richardson_lucy_on_principal_kernels_matches_the_full_field(monkeypatch):
    size = 128
    kernels, mixing = peaky_field(size, k=13, sharpness=0.02)  # rank 8 of 16 at 0.05
    v = saturate(blur(to_linear(astronaut(size)), kernels, mixing, padding="same"))
    built = []

    class Recording(BlurField):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            built.append(self.kernels.shape[1])

    monkeypatch.setattr(rl, "BlurField", Recording)
    exact = richardson_lucy(v, kernels, mixing, iterations=30, early_stop=False)
    fast = richardson_lucy(v, kernels, mixing, iterations=30, early_stop=False, rank_tol=0.05)
    assert built[0] == 16 and built[1] < 16
    assert psnr(display(fast.image), display(exact.image)) >= 40
    assert psnr(display(exact.image), display(v)) < 35  # RL changed the photo
    # "valid" padding (the no-harm probes'): the border pixels' column sums are a few kernel
    # taps, which principal kernels alone do not keep positive; held in the exact ranges,
    # the reblur error follows the exact one
    exact = richardson_lucy(v, kernels, mixing, iterations=10, early_stop=False,
                            padding="valid")
    fast = richardson_lucy(v, kernels, mixing, iterations=10, early_stop=False,
                           padding="valid", rank_tol=0.05)
    assert built[-1] < 16 and torch.isfinite(fast.image).all()
    def unexplained(res):  # what the no-harm rule reads
        return res.reblur_error[-1] / res.reblur_error[0]

    assert unexplained(fast) == pytest.approx(unexplained(exact), rel=0.02)
    inner = (..., slice(6, -6), slice(6, -6))  # the photo's own pixels
    assert psnr(display(fast.image[inner]), display(exact.image[inner])) >= 40


def test_turned_kernels_do_not_diverge():
    """A wrong field (kernels turned 90°) makes RL ring towards black; on principal kernels
    the iterate stays finite and the reblur error close to the full field's."""
    size = 96
    kernels, mixing = peaky_field(size, k=13, sharpness=0.02)
    v = saturate(blur(to_linear(astronaut(size)), kernels, mixing, padding="same"))
    turned = kernels.transpose(-1, -2).contiguous()
    exact = richardson_lucy(v, turned, mixing, iterations=20, early_stop=False)
    fast = richardson_lucy(v, turned, mixing, iterations=20, early_stop=False, rank_tol=0.05)
    assert torch.isfinite(fast.image).all()
    assert fast.reblur_error[-1] == pytest.approx(exact.reblur_error[-1], rel=0.05)
    assert psnr(display(fast.image), display(exact.image)) >= 35
